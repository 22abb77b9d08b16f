// Configuration layering, as upstream's `load_config("kms", …)`: built-in defaults →
// (quick-start profile) → /etc/kms/kms.toml → /etc/kms/kms.json → ./kms.toml → ./kms.json →
// `-c FILE`. Tables merge key by key; scalars and arrays replace.

import { readFileSync, realpathSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { KmsError, configError, errorMessage } from '../errors.js'
import { errnoCode } from '../fs/errno.js'
import { DEFAULT_ETC_FILE, DEFAULT_PCCS_URL, builtinDefaults } from './defaults.js'
import {
  QUICKSTART_SEED_FILE,
  QUICKSTART_TOKEN_FILE,
  QUICKSTART_TOML,
  quickstartDataDir,
  readQuickstartAdminTokenHash,
  readQuickstartSeed,
} from './quickstart.js'
import {
  CONFIG_KEYS,
  type ConfigKey,
  type ConfigValue,
  type FREE_FORM_TABLES,
  type KeyDecl,
  LOG_LEVELS,
} from './keys.js'
import { unixSocketOf, unixUrl } from '../http/unix-url.js'
import { type RawTable, asInteger, checkLayer, deepMerge, isTable, tableAt } from './schema.js'
import type { AuthApiConfig, KmsConfig, LimitsConfig } from './types.js'
import { parseByteSize, parseDuration } from './units.js'
import { validateConfig } from './validate.js'

export { parseByteSize, parseDuration } from './units.js'
export { QUICKSTART_TOML } from './quickstart.js'

export interface LoadOptions {
  /** -c FILE (must exist, else KmsError KMS_ERR_CONFIG) */
  configFile?: string
  /** for ./kms.toml and relative paths (default process.cwd()) */
  cwd?: string
  /** default '/etc/kms/kms.toml' (tests override); its `.json` sibling is read too */
  etcFile?: string
  /** layer the embedded quick-start profile right after the built-in defaults */
  quickstart?: boolean
  /** default process.env */
  env?: NodeJS.ProcessEnv
}

/** Upstream picks the format by extension and parses any other name as JSON; a TOML document
 * cannot start with `{`, so for other names we pick JSON exactly when it looks like JSON. */
function parseConfigText(text: string, file: string): RawTable {
  const json =
    file.endsWith('.json') || (!file.endsWith('.toml') && text.trimStart().startsWith('{'))
  let parsed: unknown
  try {
    parsed = json
      ? JSON.parse(text)
      : parseToml(text, { integersAsBigInt: true, unsafeKeyBehaviour: 'throw' })
  } catch (err) {
    throw configError(`failed to parse config file ${file}: ${errorMessage(err)}`, err)
  }
  if (!isTable(parsed)) throw configError(`config file ${file} must contain a table of settings`)
  return parsed
}

/** Reads a file; undefined if it does not exist (any other failure is fatal: fail closed). */
function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    const code = errnoCode(err)
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined
    throw configError(`failed to read config file ${file}: ${errorMessage(err)}`, err)
  }
}

function jsonSibling(file: string): string | undefined {
  return file.endsWith('.toml') ? `${file.slice(0, -'.toml'.length)}.json` : undefined
}

// Typed access to the merged tree, by declared key only (a typo does not compile). Every layer
// was checked against the schema and the built-in defaults supply every required key, so a miss
// here is a bug in the declaration, not in the file.
class Tree {
  constructor(private readonly root: RawTable) {}

  private lookup(key: ConfigKey | keyof typeof FREE_FORM_TABLES): unknown {
    let node: unknown = this.root
    for (const part of key.split('.')) {
      if (!isTable(node)) return undefined
      node = Object.hasOwn(node, part) ? node[part] : undefined
    }
    return node
  }

  private missing(key: string): KmsError {
    return new KmsError('KMS_ERR_INTERNAL', `configuration key ${key} has no built-in default`)
  }

  has(key: ConfigKey): boolean {
    return this.lookup(key) !== undefined
  }

  /** A string-valued key (string, path, duration, enum) with a built-in default. */
  str<K extends ConfigKey>(key: K & (ConfigValue<K> extends string ? K : never)): ConfigValue<K> {
    const v = this.lookup(key)
    if (typeof v !== 'string') throw this.missing(key)
    return v as ConfigValue<K>
  }

  /** Any string-valued key with a built-in default, untyped (for the loop over the table). */
  text(key: ConfigKey): string {
    const v = this.lookup(key)
    if (typeof v !== 'string') throw this.missing(key)
    return v
  }

  /** A string key that may be absent (no built-in default): "" then. */
  optStr(key: ConfigKey): string {
    const v = this.lookup(key)
    return typeof v === 'string' ? v : ''
  }

  bool(key: ConfigKey): boolean {
    const v = this.lookup(key)
    if (typeof v !== 'boolean') throw this.missing(key)
    return v
  }

  int(key: ConfigKey): number {
    const v = asInteger(this.lookup(key))
    if (v === undefined) throw this.missing(key)
    return v
  }

  table(key: keyof typeof FREE_FORM_TABLES): RawTable {
    const v = this.lookup(key)
    return isTable(v) ? v : {}
  }
}

/** A value that two spellings of the same setting (spec revision vs upstream HEAD) must agree
 * on; "" when neither is set. */
function agreeing(a: ConfigKey, va: string, b: ConfigKey, vb: string): string {
  if (va !== '' && vb !== '' && va !== vb) {
    throw configError(
      `${a} (${JSON.stringify(va)}) and ${b} (${JSON.stringify(vb)}) set the same thing to different values; keep one`,
    )
  }
  return va !== '' ? va : vb
}

function oneOf(tree: Tree, a: ConfigKey, b: ConfigKey): string {
  return agreeing(a, tree.optStr(a).trim(), b, tree.optStr(b).trim())
}

/** RUST_LOG's global level (a directive without `=`), like upstream's logger reads it. */
function rustLogLevel(env: NodeJS.ProcessEnv, warnings: string[]): string | undefined {
  const value = env.RUST_LOG
  if (value === undefined || value.trim() === '') return undefined
  let level: string | undefined
  for (const directive of value.split(',')) {
    const d = directive.trim().toLowerCase()
    if (d === '' || d.includes('=')) continue
    const mapped = LOG_LEVELS[d]
    if (mapped === undefined) {
      warnings.push(
        `RUST_LOG directive ${JSON.stringify(directive.trim())} is not a log level; ignored`,
      )
    } else {
      level = mapped
    }
  }
  return level
}

/** Puts `value` at the dotted path `to` of `target`, creating the tables on the way. */
function setAt(target: RawTable, to: string, value: unknown): void {
  const parts = to.split('.')
  const name = parts.pop() as string
  tableAt(target, parts)[name] = value
}

/** The value of one declared key as KmsConfig holds it, converted by the key's kind. */
function resolvedValue(t: Tree, key: ConfigKey, decl: KeyDecl, cwd: string): unknown {
  // a key with a built-in default is always there; one without reads as "" when unset
  const text = (): string => (decl.default === undefined ? t.optStr(key) : t.text(key))
  switch (decl.kind.kind) {
    case 'bool':
      return t.bool(key)
    case 'port':
    case 'uint':
      return t.int(key)
    case 'path': {
      const p = text()
      return p === '' ? '' : resolve(cwd, p)
    }
    case 'duration':
    case 'timeout':
      return parseDuration(text())
    case 'bytes':
      return byteSize(t, key)
    default:
      return decl.lowercase === true ? text().toLowerCase() : text()
  }
}

/** A `bytes` key: a TOML integer or a string with a unit. */
function byteSize(tree: Tree, key: ConfigKey): number {
  const raw = tree.optStr(key)
  return parseByteSize(raw !== '' ? raw : tree.int(key))
}

/** Every declared key that maps one-to-one onto a field, put at its `to` path of `out`; with
 * `under`, only the keys whose path starts with it. */
function setDeclared(out: RawTable, t: Tree, cwd: string, under = ''): void {
  for (const [key, decl] of Object.entries(CONFIG_KEYS) as [ConfigKey, KeyDecl][]) {
    if (decl.to?.startsWith(under) === true) setAt(out, decl.to, resolvedValue(t, key, decl, cwd))
  }
}

function build(
  merged: RawTable,
  cwd: string,
  env: NodeJS.ProcessEnv,
  warnings: string[],
): KmsConfig {
  const t = new Tree(merged)
  const path = (key: ConfigKey): string => {
    const p = t.optStr(key)
    return p === '' ? '' : resolve(cwd, p)
  }
  const out: RawTable = {}
  setDeclared(out, t, cwd)

  // and what is computed from several keys
  const limits: Record<string, number> = {}
  for (const [method, v] of Object.entries(t.table('rpc.limits'))) {
    limits[method] = parseByteSize(typeof v === 'string' ? v : (asInteger(v) ?? -1))
  }
  setAt(out, 'rpc.limits', limits)
  setAt(
    out,
    'core.image.acpiTablesCommand',
    t
      .str('core.image.acpi_tables_command')
      .split(/\s+/)
      .filter((a) => a !== ''),
  )
  // beside the cert dir, not in it: the cert dir keeps upstream's exact layout
  setAt(
    out,
    'core.audit.path',
    path('core.audit.path') || join(dirname(path('core.cert_dir')), 'kms-audit.sqlite3'),
  )
  const webhookUrl = t.str('core.auth_api.webhook.url')
  const webhookSocket = unixSocketOf(webhookUrl)
  const webhook = {
    // a relative socket path follows the working directory, like every other path
    url:
      webhookSocket === undefined || webhookSocket === ''
        ? webhookUrl
        : unixUrl(resolve(cwd, webhookSocket)),
    timeoutMs: parseDuration(t.str('core.auth_api.webhook.timeout')) ?? Infinity,
    tokenFile: path('core.auth_api.webhook.token_file'),
  }
  if (webhook.timeoutMs === Infinity) {
    throw configError('core.auth_api.webhook.timeout must be a finite duration, not "never"')
  }
  const dev = { gatewayAppId: t.str('core.auth_api.dev.gateway_app_id') }
  const authType = t.str('core.auth_api.type')
  const authApi: AuthApiConfig =
    authType === 'dev' ? { type: 'dev', webhook, dev } : { type: 'webhook', webhook, dev }
  setAt(out, 'core.authApi', authApi)
  setAt(
    out,
    'core.subjectPostfix',
    t.has('core.subject_postfix') ? t.str('core.subject_postfix') : '.dstack',
  )
  setAt(
    out,
    'core.amdKdsBaseUrl',
    oneOf(t, 'core.amd_kds_base_url', 'core.attestation.urls.amd_kds'),
  )
  setAt(
    out,
    'core.pccsUrl',
    oneOf(t, 'core.pccs_url', 'core.attestation.urls.pccs') || DEFAULT_PCCS_URL,
  )
  setAt(
    out,
    'core.attestation.rootCa.tdx',
    agreeing(
      'core.attestation.root_ca.tdx',
      path('core.attestation.root_ca.tdx'),
      'core.attestation.root_ca_tdx',
      path('core.attestation.root_ca_tdx'),
    ),
  )
  // beside the cert dir like the audit log; the directory is created private by the sidecar
  setAt(
    out,
    'authSimple.socket',
    path('auth_simple.socket') || join(dirname(path('core.cert_dir')), 'run', 'auth-simple.sock'),
  )
  const fileLevel = LOG_LEVELS[t.str('default.log_level')] ?? 'info'
  setAt(out, 'log.level', rustLogLevel(env, warnings) ?? fileLevel)
  setAt(out, 'sources', [])
  setAt(out, 'warnings', [])
  // the shape is KmsConfig by construction: types.ts derives it from the same declarations,
  // and the configuration tests compare a whole loaded config field by field
  return out as unknown as KmsConfig
}

/** The listener limits of the built-in defaults, for servers started without a kms.toml (the
 * standalone auth-simple command) and for tests. */
export function defaultLimits(): LimitsConfig {
  // the [limits] table is made of declared keys only
  const out: RawTable = {}
  setDeclared(out, new Tree(builtinDefaults()), process.cwd(), 'limits.')
  return out['limits'] as unknown as LimitsConfig
}

/**
 * Loads, layers, type-checks and validates the configuration. Throws KmsError('KMS_ERR_CONFIG')
 * with a message naming the key (and file) at fault. Relative paths in any layer are resolved
 * against `cwd`, as upstream resolves them against the process working directory.
 */
export function loadConfig(opts: LoadOptions = {}): KmsConfig {
  const cwd = resolve(opts.cwd ?? process.cwd())
  const env = opts.env ?? process.env
  const etcFile = opts.etcFile ?? DEFAULT_ETC_FILE
  const warnings: string[] = []
  const sources: string[] = []
  const seen = new Set<string>()
  let merged = builtinDefaults()

  const apply = (raw: RawTable, source: string, userFile: boolean): void => {
    const layerWarnings = checkLayer(raw, source)
    if (userFile) warnings.push(...layerWarnings)
    merged = deepMerge(merged, raw)
  }

  if (opts.quickstart === true) {
    const raw = parseConfigText(QUICKSTART_TOML, 'quick-start profile.toml')
    const dataDir = quickstartDataDir(cwd)
    const hash = readQuickstartAdminTokenHash(dataDir)
    if (hash === undefined) {
      warnings.push(
        `quick-start admin token hash ${join(dataDir, QUICKSTART_TOKEN_FILE)} does not exist: ClearImageCache refuses every token`,
      )
    } else {
      raw.core = { ...(isTable(raw.core) ? raw.core : {}), admin_token_hash: hash }
    }
    const seed = readQuickstartSeed(dataDir)
    if (seed === undefined) {
      throw configError(
        `quick-start simulator seed ${join(dataDir, QUICKSTART_SEED_FILE)} does not exist; start the quick-start KMS once (dstack-kms serve --quickstart) to create it`,
      )
    }
    const tee = isTable(raw.tee) ? raw.tee : {}
    const sim = isTable(tee.simulator) ? tee.simulator : {}
    raw.tee = { ...tee, simulator: { ...sim, seed } }
    apply(raw, 'quick-start profile', false)
  }

  const applyFile = (file: string, text: string): void => {
    let key = file
    try {
      key = realpathSync(file)
    } catch {
      // keep the given path
    }
    // `-c ./kms.toml` from the working directory (upstream's entrypoint.sh) is one layer, not two.
    if (seen.has(key)) return
    seen.add(key)
    apply(parseConfigText(text, file), file, true)
    sources.push(file)
  }

  const etcAbs = resolve(cwd, etcFile)
  const etcJson = jsonSibling(etcAbs)
  const candidates = [etcAbs, etcJson, join(cwd, 'kms.toml'), join(cwd, 'kms.json')]
  for (const file of candidates) {
    if (file === undefined) continue
    const text = readOptional(file)
    if (text !== undefined) applyFile(file, text)
  }

  if (opts.configFile !== undefined) {
    const file = resolve(cwd, opts.configFile)
    const text = readOptional(file)
    if (text === undefined) {
      throw configError(`config file ${file} (given with -c) does not exist`)
    }
    applyFile(file, text)
  }

  const cfg = build(merged, cwd, env, warnings)
  warnings.push(...validateConfig(cfg, env))
  cfg.sources = sources
  cfg.warnings = [...new Set(warnings)]
  return cfg
}
