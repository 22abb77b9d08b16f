// The pRPC JSON mapping of messages: plain serde over the prost structs as upstream's prpc does
// it, not proto3 canonical JSON. Output is written from the message descriptors; input is read
// with the serde_json-faithful reader (json-reader.ts), field by field in descriptor terms, so
// errors (duplicate keys, wrong types, bad hex) read like upstream's.
import { Buffer } from 'node:buffer'
import { KmsError } from '../errors.js'
import { hexDigitValue } from '../util/hex.js'
import { Cursor, E, JsonError, QUOTE, describeNumber } from './json-reader.js'
import {
  badRequest,
  decodeHexField,
  lookupKey,
  uintExpected,
  uintFromText,
  uintMax,
  uintValue,
} from './field-values.js'
import {
  blankObject,
  encodeError,
  readField,
  type FieldDescriptor,
  type MessageType,
} from './schema.js'

// ---------------------------------------------------------------------------------------------
// Output

function bytesHex(v: Uint8Array): string {
  // a Buffer (every handler's bytes) needs no view of its own made first
  if (Buffer.isBuffer(v)) return v.toString('hex')
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')
}

function jsonSingle(owner: string, f: FieldDescriptor, v: unknown): string {
  const bad = (expected: string): KmsError => encodeError(owner, f.name, expected)
  switch (f.type) {
    case 'string':
      if (typeof v !== 'string') throw bad('a string')
      // serde_json escapes exactly like JSON.stringify for well-formed strings
      return JSON.stringify(v)
    case 'bytes':
      if (!(v instanceof Uint8Array)) throw bad('a Buffer')
      return `"${bytesHex(v)}"`
    case 'bool':
      if (typeof v !== 'boolean') throw bad('a boolean')
      return v ? 'true' : 'false'
    case 'uint32':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
        throw bad('a uint32 number')
      }
      return String(v)
    case 'uint64':
      // digits straight from the bigint: a JSON number, as serde writes a u64, with no precision
      // loss
      if (typeof v !== 'bigint' || v < 0n || v > 0xffffffffffffffffn) throw bad('a uint64 bigint')
      return v.toString()
    case 'message':
      if (f.message === null) throw bad('a message type')
      return jsonMessage(f.message, v)
  }
}

function jsonField(owner: string, f: FieldDescriptor, v: unknown): string {
  if (f.label === 'repeated') {
    if (!Array.isArray(v)) throw encodeError(owner, f.name, 'an array')
    return `[${v.map((el: unknown) => jsonSingle(owner, f, el)).join(',')}]`
  }
  if (f.label === 'optional' && v === null) return 'null'
  return jsonSingle(owner, f, v)
}

function jsonMessage(type: MessageType<unknown>, value: unknown): string {
  let out = ''
  for (const f of type.fields) {
    const text = jsonField(type.name, f, readField(type, value, f.name))
    for (const key of f.jsonKeys) out += out === '' ? key + text : ',' + key + text
  }
  return `{${out}}`
}

/** Compact JSON of a message: every field, declaration order, bytes as hex, u64 as numbers. */
export function encodeJson<T>(type: MessageType<T>, value: T): string {
  return jsonMessage(type, value)
}

/** The JSON of `google.protobuf.Empty` (serde's unit). */
export const EMPTY_JSON = 'null'

// ---------------------------------------------------------------------------------------------
// Input

function readStr(c: Cursor): string {
  const b = c.ws()
  if (b < 0) throw c.peekError(E.eofValue)
  try {
    if (b !== QUOTE) throw c.invalidType('a string')
    c.i++
    return c.str()
  } catch (err) {
    throw c.fix(err)
  }
}

/** The common bytes value, a quoted run of an even number of hex digits and nothing else, decoded
 * straight from the input; undefined (nothing consumed) for anything else, which the general
 * path reads with its error texts. Saves making a string of the digits only to encode it back. */
function readPlainHex(c: Cursor): Buffer | undefined {
  if (c.ws() !== QUOTE) return undefined
  const s = c.s
  const start = c.i + 1
  let end = start
  while (end < s.length && hexDigitValue(s[end] ?? -1) >= 0) end++
  if (s[end] !== QUOTE || (end - start) % 2 !== 0) return undefined
  const out = Buffer.allocUnsafe((end - start) / 2)
  for (let k = 0; k < out.length; k++) {
    out[k] =
      (hexDigitValue(s[start + 2 * k] ?? -1) << 4) | hexDigitValue(s[start + 2 * k + 1] ?? -1)
  }
  c.i = end + 1
  return out
}

function readBool(c: Cursor): boolean {
  const b = c.ws()
  if (b < 0) throw c.peekError(E.eofValue)
  try {
    if (b === 0x74) {
      c.i++
      c.ident('rue')
      return true
    }
    if (b === 0x66) {
      c.i++
      c.ident('alse')
      return false
    }
    throw c.invalidType('a boolean')
  } catch (err) {
    throw c.fix(err)
  }
}

function readUint(c: Cursor, type: 'uint32' | 'uint64'): number | bigint {
  const b = c.ws()
  if (b < 0) throw c.peekError(E.eofValue)
  const expected = uintExpected(type)
  try {
    if (b === QUOTE) {
      c.i++
      return uintFromText(type, c.str())
    }
    if (b !== 0x2d && (b < 0x30 || b > 0x39)) throw c.invalidType(expected)
    if (b === 0x2d) c.i++
    const n = c.number(b !== 0x2d)
    if (n.kind === 'f64') {
      throw new JsonError(`invalid type: ${describeNumber(n)}, expected ${expected}`)
    }
    if (n.kind === 'i64' || n.value > uintMax(type)) {
      throw new JsonError(`invalid value: ${describeNumber(n)}, expected ${expected}`)
    }
    return uintValue(type, n.value)
  } catch (err) {
    throw c.fix(err)
  }
}

function readSingle(c: Cursor, f: FieldDescriptor): unknown {
  switch (f.type) {
    case 'string':
      return readStr(c)
    case 'bytes':
      // the hex error is raised after the string is read: serde positions it at the struct level
      return readPlainHex(c) ?? decodeHexField(readStr(c))
    case 'bool':
      return readBool(c)
    case 'uint32':
    case 'uint64':
      return readUint(c, f.type)
    case 'message':
      if (f.message === null) throw new KmsError('KMS_ERR_INTERNAL', `no message for ${f.name}`)
      return readMessage(c, f.message)
  }
}

function readSeq(c: Cursor, f: FieldDescriptor): unknown[] {
  const b = c.ws()
  if (b < 0) throw c.peekError(E.eofValue)
  try {
    if (b !== 0x5b) throw c.invalidType('a sequence')
    c.i++
    const items: unknown[] = []
    let failure: unknown
    try {
      let first = true
      for (;;) {
        const n = c.ws()
        if (n < 0) throw c.peekError(E.eofList)
        if (n === 0x5d) break
        if (first) {
          first = false
        } else if (n === 0x2c) {
          c.i++
          const m = c.ws()
          if (m === 0x5d) throw c.peekError(E.trailingComma)
          if (m < 0) throw c.peekError(E.eofValue)
        } else {
          throw c.peekError(E.listCommaOrEnd)
        }
        items.push(f.type === 'bytes' ? readStr(c) : readSingle(c, f))
      }
    } catch (err) {
      failure = err
    }
    // serde_json ends the sequence even after a failed element; the first error wins
    const endFailure = endSeq(c)
    if (failure !== undefined) throw failure
    if (endFailure !== undefined) throw endFailure
    return items
  } catch (err) {
    throw c.fix(err)
  }
}

function endSeq(c: Cursor): JsonError | undefined {
  const b = c.ws()
  if (b === 0x5d) {
    c.i++
    return undefined
  }
  if (b === 0x2c) {
    c.i++
    return c.peekError(c.ws() === 0x5d ? E.trailingComma : E.trailingChars)
  }
  return c.peekError(b < 0 ? E.eofList : E.trailingChars)
}

function endMap(c: Cursor): JsonError | undefined {
  const b = c.ws()
  if (b === 0x7d) {
    c.i++
    return undefined
  }
  if (b === 0x2c) return c.peekError(E.trailingComma)
  return c.peekError(b < 0 ? E.eofObject : E.trailingChars)
}

function readFieldValue(c: Cursor, f: FieldDescriptor): unknown {
  if (f.label === 'repeated') {
    const items = readSeq(c, f)
    // like single bytes fields, hex errors come after the whole sequence has been read
    if (f.type !== 'bytes') return items
    return items.map((s) => decodeHexField(typeof s === 'string' ? s : ''))
  }
  if (f.label === 'optional' && c.ws() === 0x6e) {
    c.i++
    c.ident('ull')
    return null
  }
  return readSingle(c, f)
}

function visitMap(c: Cursor, type: MessageType<unknown>): object {
  const target = blankObject(type)
  // arrays, not Sets: they hold at most the message's own keys, and most messages have one or two
  const seenKeys: string[] = []
  const setByPrimary: string[] = []
  let first = true
  for (;;) {
    const b = c.ws()
    if (b < 0) throw c.peekError(E.eofObject)
    if (b === 0x7d) return target
    if (first) {
      first = false
      if (b !== QUOTE) throw c.peekError(E.keyString)
    } else if (b === 0x2c) {
      c.i++
      const n = c.ws()
      if (n === 0x7d) throw c.peekError(E.trailingComma)
      if (n < 0) throw c.peekError(E.eofValue)
      if (n !== QUOTE) throw c.peekError(E.keyString)
    } else {
      throw c.peekError(E.objectCommaOrEnd)
    }
    c.i++
    const key = c.str()
    const hit = lookupKey(type, key)
    if (hit === undefined) {
      c.colon()
      c.ignoreValue()
      continue
    }
    if (seenKeys.includes(key)) throw new JsonError(`duplicate field \`${hit.field.name}\``)
    seenKeys.push(key)
    c.colon()
    const value = readFieldValue(c, hit.field)
    // an alias (`tee_variant`, upstream HEAD's name of `attestation_mode`) only fills the field
    // when its own key is absent
    if (!hit.alias || !setByPrimary.includes(hit.field.name)) {
      target[hit.field.name] = value
    }
    if (!hit.alias) setByPrimary.push(hit.field.name)
  }
}

function readMessage(c: Cursor, type: MessageType<unknown>): object {
  const b = c.ws()
  if (b < 0) throw c.peekError(E.eofValue)
  try {
    if (b !== 0x7b) throw c.invalidType(`struct ${type.name}`)
    c.i++
    let result: object | undefined
    let failure: unknown
    try {
      result = visitMap(c, type)
    } catch (err) {
      failure = err
    }
    // serde_json ends the map even after a failed field, which moves the error position past `}`
    const endFailure = endMap(c)
    if (failure !== undefined) throw failure
    if (endFailure !== undefined) throw endFailure
    return result ?? blankObject(type)
  } catch (err) {
    throw c.fix(err)
  }
}

/** Decodes a JSON request body (empty → all defaults), with serde_json's error texts. */
export function decodeJson<T>(type: MessageType<T>, body: Uint8Array): T {
  if (body.length === 0) return type.create()
  const c = new Cursor(body)
  try {
    const value = readMessage(c, type)
    if (c.ws() >= 0) throw c.peekError(E.trailingChars)
    return type.adopt(value)
  } catch (err) {
    throw badRequest(err)
  }
}
