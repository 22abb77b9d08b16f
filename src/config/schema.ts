// The shape of kms.toml: every key upstream accepts (spec revision and upstream HEAD) plus ours.
// Each layer is checked against it on its own, so an unknown key or a wrong type is reported with
// the file it came from; the merged result is then known to be well typed.

import { KmsError, errorMessage } from '../errors.js'
import { parseByteSize, parseDuration } from './units.js'

export type LeafKind =
  | { kind: 'string' }
  | { kind: 'path' }
  | { kind: 'bool' }
  | { kind: 'port' }
  | { kind: 'uint' }
  | { kind: 'duration' }
  | { kind: 'bytes' }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'string-or-bool' }

export interface LeafNode {
  leaf: LeafKind
  /** set when the key is accepted for compatibility but has no effect here: the warning text */
  unused?: string
}

export interface TableNode {
  table: Readonly<Record<string, SchemaNode>>
  /** a table whose keys are free-form (`[rpc.limits]`), each checked against this node */
  anyKey?: LeafNode
}

export type SchemaNode = LeafNode | TableNode

export type RawTable = { [key: string]: unknown }

/** `[default] log_level` and RUST_LOG names → pino levels. Rocket's own names (`normal`,
 * `critical`, `off`) are accepted because upstream files may carry them. */
export const LOG_LEVELS: Readonly<Record<string, string>> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  normal: 'info',
  warn: 'warn',
  error: 'error',
  critical: 'error',
  fatal: 'fatal',
  off: 'silent',
  silent: 'silent',
}

const str: LeafNode = { leaf: { kind: 'string' } }
const path: LeafNode = { leaf: { kind: 'path' } }
const bool: LeafNode = { leaf: { kind: 'bool' } }
const port: LeafNode = { leaf: { kind: 'port' } }
const duration: LeafNode = { leaf: { kind: 'duration' } }

function rocketKnob(leaf: LeafKind): LeafNode {
  return {
    leaf,
    unused:
      'is a Rocket server knob with no effect in dstack-kms-ts (upstream loads it non-nested, so it never reaches Rocket either)',
  }
}

// Upstream hands the whole [rpc] table to Rocket, so Rocket's own knobs work there.
function rpcRocketKnob(leaf: LeafKind): LeafNode {
  return { leaf, unused: 'is a Rocket server knob with no effect in dstack-kms-ts' }
}

export const KMS_SCHEMA: TableNode = {
  table: {
    default: {
      table: {
        workers: rocketKnob({ kind: 'uint' }),
        max_blocking: rocketKnob({ kind: 'uint' }),
        ident: rocketKnob({ kind: 'string-or-bool' }),
        temp_dir: rocketKnob({ kind: 'string' }),
        keep_alive: rocketKnob({ kind: 'uint' }),
        log_level: { leaf: { kind: 'enum', values: Object.keys(LOG_LEVELS) } },
      },
    },
    rpc: {
      table: {
        address: str,
        port,
        tls: {
          table: {
            key: path,
            certs: path,
            mutual: { table: { ca_certs: path, mandatory: bool } },
          },
        },
        limits: { table: {}, anyKey: { leaf: { kind: 'bytes' } } },
        workers: { leaf: { kind: 'uint' } },
        max_blocking: rpcRocketKnob({ kind: 'uint' }),
        ident: rpcRocketKnob({ kind: 'string-or-bool' }),
        temp_dir: rpcRocketKnob({ kind: 'string' }),
        keep_alive: rpcRocketKnob({ kind: 'uint' }),
        log_level: rpcRocketKnob({ kind: 'string' }),
      },
    },
    core: {
      table: {
        cert_dir: path,
        subject_postfix: {
          leaf: { kind: 'string' },
          unused: 'is unused (upstream never reads it)',
        },
        admin_token_hash: str,
        site_name: str,
        enforce_self_authorization: bool,
        amd_kds_base_url: str,
        pccs_url: str,
        sev_snp_key_release: bool,
        aws_nitro_tpm_key_release: bool,
        attest_rpc_cert: {
          leaf: { kind: 'bool' },
          unused:
            'has no effect: the RPC certificate is attested whenever tee.backend can attest; use [tee] backend = "none" to run without attestation',
        },
        attestation: {
          table: {
            insecure_allow_external_trust_anchors: bool,
            urls: { table: { pccs: str, amd_kds: str } },
            root_ca_tdx: path,
            root_ca: {
              table: {
                tdx: path,
                gcp_tpm: path,
                aws_nitro_enclave: path,
                aws_nitro_tpm: path,
                sev_snp_milan: path,
                sev_snp_genoa: path,
                sev_snp_turin: path,
              },
            },
          },
        },
        image: {
          table: { verify: bool, cache_dir: path, download_url: str, download_timeout: duration },
        },
        metrics: { table: { enabled: bool } },
        audit: {
          table: { enabled: bool, path, max_size: { leaf: { kind: 'bytes' } }, max_age: duration },
        },
        auth_api: {
          table: {
            type: { leaf: { kind: 'enum', values: ['webhook', 'dev'] } },
            webhook: { table: { url: str, timeout: duration } },
            dev: { table: { gateway_app_id: str } },
          },
        },
        onboard: {
          table: { enabled: bool, auto_bootstrap_domain: str, address: str, port, tls: bool },
        },
        admin: {
          table: {
            enabled: bool,
            address: str,
            port,
            auth_token: str,
            htpasswd_file: path,
            insecure_no_auth: bool,
          },
        },
      },
    },
    tee: {
      table: {
        backend: { leaf: { kind: 'enum', values: ['none', 'simulator', 'guest-agent', 'tdx'] } },
        simulator: { table: { seed: str, trust_mock_root: bool } },
      },
    },
    crypto: { table: { backend: { leaf: { kind: 'enum', values: ['auto', 'native', 'js'] } } } },
    auth_simple: { table: { enabled: bool, address: str, port, config: path } },
  },
}

/** Extra words for keys that existed in some upstream version but are gone. */
const REMOVED_KEY_HINTS: Readonly<Record<string, string>> = {
  'core.onboard.quote_enabled':
    'removed upstream; to run without attestation set [tee] backend = "none" and core.enforce_self_authorization = false',
}

export function isTable(v: unknown): v is RawTable {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date)
}

function isTableNode(n: SchemaNode): n is TableNode {
  return 'table' in n
}

/** Describes a raw value for "found …" in type errors. */
function describe(v: unknown): string {
  if (typeof v === 'string') return `string ${JSON.stringify(v)}`
  if (typeof v === 'bigint') return `integer ${v}`
  if (typeof v === 'number') return Number.isInteger(v) ? `number ${v}` : `float ${v}`
  if (typeof v === 'boolean') return `boolean ${v}`
  if (Array.isArray(v)) return 'an array'
  if (v instanceof Date) return 'a datetime'
  if (isTable(v)) return 'a table'
  return typeof v
}

function expected(leaf: LeafKind): string {
  switch (leaf.kind) {
    case 'string':
      return 'a string'
    case 'path':
      return 'a path string'
    case 'bool':
      return 'a boolean (true or false)'
    case 'port':
      return 'an integer port from 0 to 65535'
    case 'uint':
      return 'a non-negative integer'
    case 'duration':
      return 'a duration string like "30s", "2m", "1h", "7d" or "never"'
    case 'bytes':
      return 'a byte size (an integer or a string like "1MiB")'
    case 'enum':
      return `one of ${leaf.values.map((v) => JSON.stringify(v)).join(', ')}`
    case 'string-or-bool':
      return 'a string or a boolean'
  }
}

/** TOML integers arrive as bigint (we parse with integersAsBigInt), JSON ones as number. */
export function asInteger(v: unknown): number | undefined {
  if (typeof v === 'bigint') {
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v)
      : undefined
  }
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v
  return undefined
}

function typeError(key: string, leaf: LeafKind, v: unknown, where: string): KmsError {
  return new KmsError(
    'KMS_ERR_CONFIG',
    `invalid type for configuration key ${key}: expected ${expected(leaf)}, found ${describe(v)}${where}`,
  )
}

function checkLeaf(key: string, leaf: LeafKind, v: unknown, where: string): void {
  const fail = (): never => {
    throw typeError(key, leaf, v, where)
  }
  switch (leaf.kind) {
    case 'string':
    case 'path':
      if (typeof v !== 'string') fail()
      return
    case 'bool':
      if (typeof v !== 'boolean') fail()
      return
    case 'string-or-bool':
      if (typeof v !== 'string' && typeof v !== 'boolean') fail()
      return
    case 'port': {
      const n = asInteger(v)
      if (n === undefined || n < 0 || n > 65535) fail()
      return
    }
    case 'uint': {
      const n = asInteger(v)
      if (n === undefined || n < 0) fail()
      return
    }
    case 'enum':
      if (typeof v !== 'string' || !leaf.values.includes(v)) fail()
      return
    case 'duration':
      if (typeof v !== 'string') fail()
      try {
        parseDuration(v as string)
      } catch (err) {
        throw new KmsError(
          'KMS_ERR_CONFIG',
          `invalid value for configuration key ${key}: ${errorMessage(err)}${where}`,
        )
      }
      return
    case 'bytes': {
      const n = asInteger(v)
      if (typeof v !== 'string' && n === undefined) fail()
      try {
        parseByteSize(typeof v === 'string' ? v : (n as number))
      } catch (err) {
        throw new KmsError(
          'KMS_ERR_CONFIG',
          `invalid value for configuration key ${key}: ${errorMessage(err)}${where}`,
        )
      }
    }
  }
}

/**
 * Checks one layer against the schema: unknown keys and wrong types throw KMS_ERR_CONFIG naming
 * the full dotted key and `source`. Returns one warning per accepted-but-unused key present.
 */
export function checkLayer(raw: RawTable, source: string): string[] {
  const warnings: string[] = []
  const where = ` (in ${source})`
  const walk = (node: TableNode, table: RawTable, prefix: string): void => {
    for (const [name, value] of Object.entries(table)) {
      const key = prefix === '' ? name : `${prefix}.${name}`
      const child = Object.hasOwn(node.table, name) ? node.table[name] : node.anyKey
      if (child === undefined) {
        const hint = REMOVED_KEY_HINTS[key]
        throw new KmsError(
          'KMS_ERR_CONFIG',
          `unknown configuration key: ${key}${hint === undefined ? '' : ` (${hint})`}${where}`,
        )
      }
      if (isTableNode(child)) {
        if (!isTable(value)) {
          throw new KmsError(
            'KMS_ERR_CONFIG',
            `invalid type for configuration key ${key}: expected a table, found ${describe(value)}${where}`,
          )
        }
        walk(child, value, key)
        continue
      }
      checkLeaf(key, child.leaf, value, where)
      if (child.unused !== undefined) warnings.push(`${key} ${child.unused}`)
    }
  }
  walk(KMS_SCHEMA, raw, '')
  return warnings
}

/** Tables merge key by key; anything else (scalars, arrays) in `over` replaces `base`. */
export function deepMerge(base: RawTable, over: RawTable): RawTable {
  const out: RawTable = { ...base }
  for (const [k, v] of Object.entries(over)) {
    const prev = out[k]
    out[k] = isTable(prev) && isTable(v) ? deepMerge(prev, v) : v
  }
  return out
}
