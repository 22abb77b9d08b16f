// Field values shared by the two request encodings, JSON bodies (json.ts) and GET query strings
// (query.ts): prpc's hex bytes, integers given as decimal strings, key lookup with aliases, and
// the mapping of reader errors to a 400.
import type { Buffer } from 'node:buffer'
import { KmsError } from '../errors.js'
import { HexError, decodeHex } from '../util/hex.js'
import { rustDebugStrEcho } from '../util/rust-text.js'
import { JsonError } from './json-reader.js'
import type { FieldDescriptor, MessageType } from './schema.js'

/** prpc's `bytes_as_hex_str`: strip every leading `0x` (not `0X`), then the `hex` crate's decode. */
export function decodeHexField(text: string): Buffer {
  let s = text
  while (s.startsWith('0x')) s = s.slice(2)
  try {
    return decodeHex(s)
  } catch (err) {
    if (err instanceof HexError) throw new JsonError(err.message)
    throw err
  }
}

export function uintExpected(type: 'uint32' | 'uint64'): string {
  return type === 'uint32' ? 'u32' : 'u64'
}

export function uintMax(type: 'uint32' | 'uint64'): bigint {
  return type === 'uint32' ? 0xffffffffn : 0xffffffffffffffffn
}

export function uintValue(type: 'uint32' | 'uint64', v: bigint): number | bigint {
  return type === 'uint32' ? Number(v) : v
}

/** Integers may also arrive as decimal strings, as upstream's prpc accepts them (Rust
 * `str::parse`, so a leading `+` too). */
export function uintFromText(type: 'uint32' | 'uint64', s: string): number | bigint {
  if (/^\+?[0-9]+$/.test(s)) {
    // leading zeros are fine; more than 20 significant digits never fit (and BigInt is slow on
    // megabytes of digits)
    const digits = s.replace(/^\+?0*/, '')
    const v = digits.length <= 20 ? BigInt(`0${digits}`) : undefined
    if (v !== undefined && v <= uintMax(type)) return uintValue(type, v)
  }
  throw new JsonError(
    `invalid value: string ${rustDebugStrEcho(s)}, expected ${uintExpected(type)}`,
  )
}

export function lookupKey(
  type: MessageType<unknown>,
  key: string,
): { field: FieldDescriptor; alias: boolean } | undefined {
  for (const f of type.fields) {
    if (f.name === key) return { field: f, alias: false }
  }
  for (const f of type.fields) {
    if (f.jsonAliases.includes(key)) return { field: f, alias: true }
  }
  return undefined
}

export function badRequest(err: unknown): unknown {
  if (err instanceof JsonError) {
    return new KmsError('KMS_ERR_BAD_REQUEST', err.display(), { cause: err })
  }
  return err
}
