// The shape of kms.toml (every key upstream accepts, in its older and its HEAD spelling, plus
// ours), derived from the declaration in keys.ts. Each layer is checked against it on its own,
// so an unknown key or a wrong type is reported with the file it came from; the merged result is
// then known to be well typed.

import { KmsError, errorMessage } from '../errors.js'
import { CONFIG_KEYS, FREE_FORM_TABLES, type KeyDecl, type LeafKind } from './keys.js'
import { MAX_TIMER_MS, parseByteSize, parseDuration } from './units.js'

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

/** The tree of tables and keys, built from the declaration in keys.ts. */
export const KMS_SCHEMA: TableNode = schemaFromKeys()

function schemaFromKeys(): TableNode {
  type MutableTable = { table: Record<string, SchemaNode>; anyKey?: LeafNode }
  const root: MutableTable = { table: {} }
  const tableAt = (parts: readonly string[]): MutableTable => {
    let node = root
    for (const part of parts) {
      const child = node.table[part]
      if (child === undefined) {
        const created: MutableTable = { table: {} }
        node.table[part] = created
        node = created
      } else if ('table' in child) {
        node = child as MutableTable
      } else {
        throw new KmsError('KMS_ERR_INTERNAL', `configuration key ${parts.join('.')} is a leaf`)
      }
    }
    return node
  }
  for (const [key, decl] of Object.entries(CONFIG_KEYS) as Array<[string, KeyDecl]>) {
    const parts = key.split('.')
    const name = parts.pop() as string
    const leaf: LeafNode = { leaf: decl.kind }
    if (decl.unused !== undefined) leaf.unused = decl.unused
    tableAt(parts).table[name] = leaf
  }
  for (const [key, decl] of Object.entries(FREE_FORM_TABLES)) {
    tableAt(key.split('.')).anyKey = { leaf: decl.kind }
  }
  return root
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
    case 'timeout':
      return 'a duration string from "1s" to "24d" (like "30s" or "2m")'
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

function valueError(key: string, reason: string, where: string): KmsError {
  return new KmsError(
    'KMS_ERR_CONFIG',
    `invalid value for configuration key ${key}: ${reason}${where}`,
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
    case 'timeout': {
      if (typeof v !== 'string') fail()
      let ms: number | null
      try {
        ms = parseDuration(v as string)
      } catch (err) {
        throw valueError(key, errorMessage(err), where)
      }
      // a limit that never ends, ends at once or overflows a timer is no limit
      if (leaf.kind === 'timeout' && (ms === null || ms === 0 || ms > MAX_TIMER_MS)) {
        throw valueError(
          key,
          `${JSON.stringify(v)} is not a finite duration from "1s" to "24d"`,
          where,
        )
      }
      return
    }
    case 'bytes': {
      const n = asInteger(v)
      if (typeof v !== 'string' && n === undefined) fail()
      try {
        parseByteSize(typeof v === 'string' ? v : (n as number))
      } catch (err) {
        throw valueError(key, errorMessage(err), where)
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

/** The table at `parts` under `root`, creating (or replacing non-table values with) empty tables
 * on the way. */
export function tableAt(root: RawTable, parts: readonly string[]): RawTable {
  let node = root
  for (const part of parts) {
    const child = node[part]
    if (isTable(child)) {
      node = child
    } else {
      const created: RawTable = {}
      node[part] = created
      node = created
    }
  }
  return node
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
