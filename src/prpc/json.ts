// The pRPC JSON mapping (spec 01 §3): plain serde over the prost structs, not proto3 canonical
// JSON. Input is parsed by a small schema-driven reader that follows serde_json's order of
// checks, so errors (duplicate keys, wrong types, bad hex) read like upstream's, positions
// included. `JSON.parse` cannot be used: it silently keeps the last of duplicate keys.
import { Buffer } from 'node:buffer'
import { KmsError } from '../errors.js'
import {
  blankObject,
  encodeError,
  readField,
  type FieldDescriptor,
  type MessageType,
} from './schema.js'
import { HexError, decodeHex, hexDigitValue } from '../util/hex.js'
import { rustDebugStr } from '../util/rust-text.js'

// ---------------------------------------------------------------------------------------------
// Output

function bytesHex(v: Uint8Array): string {
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
      // digits straight from the bigint (D2: a JSON number, no precision loss)
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
  const parts: string[] = []
  for (const f of type.fields) {
    const text = jsonField(type.name, f, readField(type, value, f.name))
    parts.push(`${JSON.stringify(f.name)}:${text}`)
    for (const alias of f.jsonAliases) parts.push(`${JSON.stringify(alias)}:${text}`)
  }
  return `{${parts.join(',')}}`
}

/** Compact JSON of a message: every field, declaration order, bytes as hex, u64 as numbers. */
export function encodeJson<T>(type: MessageType<T>, value: T): string {
  return jsonMessage(type, value)
}

/** The JSON of `google.protobuf.Empty` (serde's unit). */
export const EMPTY_JSON = 'null'

// ---------------------------------------------------------------------------------------------
// Shared value conversions (JSON input and GET query strings)

/** A custom (serde `Error::custom`) error: no position yet; serde_json adds the current one. */
class JsonError extends KmsError {
  line = 0
  column = 0

  constructor(text: string, line = 0, column = 0) {
    super('KMS_ERR_JSON_DECODE', text)
    this.name = 'JsonError'
    this.line = line
    this.column = column
  }

  display(): string {
    return this.line === 0
      ? this.message
      : `${this.message} at line ${this.line} column ${this.column}`
  }
}

/** prpc's `bytes_as_hex_str`: strip every leading `0x` (not `0X`), then the `hex` crate's decode. */
function decodeHexField(text: string): Buffer {
  let s = text
  while (s.startsWith('0x')) s = s.slice(2)
  try {
    return decodeHex(s)
  } catch (err) {
    if (err instanceof HexError) throw new JsonError(err.message)
    throw err
  }
}

function uintExpected(type: 'uint32' | 'uint64'): string {
  return type === 'uint32' ? 'u32' : 'u64'
}

function uintMax(type: 'uint32' | 'uint64'): bigint {
  return type === 'uint32' ? 0xffffffffn : 0xffffffffffffffffn
}

function uintValue(type: 'uint32' | 'uint64', v: bigint): number | bigint {
  return type === 'uint32' ? Number(v) : v
}

/** D2: integers may also arrive as decimal strings (Rust `str::parse` accepts a leading `+`). */
function uintFromText(type: 'uint32' | 'uint64', s: string): number | bigint {
  if (/^\+?[0-9]+$/.test(s)) {
    // leading zeros are fine; more than 20 significant digits never fit (and BigInt is slow on
    // megabytes of digits)
    const digits = s.replace(/^\+?0*/, '')
    const v = digits.length <= 20 ? BigInt(`0${digits}`) : undefined
    if (v !== undefined && v <= uintMax(type)) return uintValue(type, v)
  }
  throw new JsonError(`invalid value: string ${rustDebugStr(s)}, expected ${uintExpected(type)}`)
}

// ---------------------------------------------------------------------------------------------
// JSON input

const E = {
  eofList: 'EOF while parsing a list',
  eofObject: 'EOF while parsing an object',
  eofString: 'EOF while parsing a string',
  eofValue: 'EOF while parsing a value',
  colon: 'expected `:`',
  listCommaOrEnd: 'expected `,` or `]`',
  objectCommaOrEnd: 'expected `,` or `}`',
  ident: 'expected ident',
  value: 'expected value',
  escape: 'invalid escape',
  number: 'invalid number',
  numberRange: 'number out of range',
  unicode: 'invalid unicode code point',
  control: 'control character (\\u0000-\\u001F) found while parsing a string',
  keyString: 'key must be a string',
  loneSurrogate: 'lone leading surrogate in hex escape',
  trailingComma: 'trailing comma',
  trailingChars: 'trailing characters',
  hexEnd: 'unexpected end of hex escape',
} as const

const QUOTE = 0x22
const BACKSLASH = 0x5c
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

type JsonNumber =
  { kind: 'u64'; value: bigint } | { kind: 'i64'; value: bigint } | { kind: 'f64'; value: number }

class Cursor {
  readonly s: Uint8Array
  i = 0

  constructor(s: Uint8Array) {
    this.s = s
  }

  at(i: number): number {
    return this.s[i] ?? -1
  }

  peek(): number {
    return this.at(this.i)
  }

  /** serde_json positions: 1-based line, column = bytes since the last newline */
  private errorAt(text: string, index: number): JsonError {
    let line = 1
    let lineStart = 0
    for (let k = 0; k < index; k++) {
      if (this.s[k] === 0x0a) {
        line++
        lineStart = k + 1
      }
    }
    return new JsonError(text, line, index - lineStart)
  }

  /** an error about a consumed byte */
  error(text: string): JsonError {
    return this.errorAt(text, this.i)
  }

  /** an error about the peeked byte */
  peekError(text: string): JsonError {
    return this.errorAt(text, Math.min(this.s.length, this.i + 1))
  }

  /** serde_json's `fix_position`: custom errors get the current position */
  fix(err: unknown): unknown {
    if (err instanceof JsonError && err.line === 0) return this.errorAt(err.message, this.i)
    return err
  }

  ws(): number {
    for (;;) {
      const b = this.peek()
      if (b === 0x20 || b === 0x0a || b === 0x09 || b === 0x0d) this.i++
      else return b
    }
  }

  ident(rest: string): void {
    for (let k = 0; k < rest.length; k++) {
      if (this.i >= this.s.length) throw this.error(E.eofValue)
      if (this.at(this.i++) !== rest.charCodeAt(k)) throw this.error(E.ident)
    }
  }

  // ---- strings (the opening quote is already consumed)

  str(): string {
    const pieces: Uint8Array[] = []
    let start = this.i
    for (;;) {
      while (this.i < this.s.length) {
        const b = this.at(this.i)
        if (b === QUOTE || b === BACKSLASH || b < 0x20) break
        this.i++
      }
      if (this.i >= this.s.length) throw this.error(E.eofString)
      const b = this.at(this.i)
      if (b === QUOTE) {
        pieces.push(this.s.subarray(start, this.i))
        this.i++
        try {
          return utf8.decode(Buffer.concat(pieces))
        } catch {
          throw this.error(E.unicode)
        }
      }
      if (b === BACKSLASH) {
        pieces.push(this.s.subarray(start, this.i))
        this.i++
        pieces.push(this.escape())
        start = this.i
        continue
      }
      this.i++
      throw this.error(E.control)
    }
  }

  private nextInString(): number {
    if (this.i >= this.s.length) throw this.error(E.eofString)
    return this.at(this.i++)
  }

  private escape(): Uint8Array {
    const ch = this.nextInString()
    switch (ch) {
      case 0x22:
        return Buffer.from('"')
      case 0x5c:
        return Buffer.from('\\')
      case 0x2f:
        return Buffer.from('/')
      case 0x62:
        return Buffer.from('\b')
      case 0x66:
        return Buffer.from('\f')
      case 0x6e:
        return Buffer.from('\n')
      case 0x72:
        return Buffer.from('\r')
      case 0x74:
        return Buffer.from('\t')
      case 0x75:
        return Buffer.from(String.fromCodePoint(this.unicodeEscape()), 'utf8')
      default:
        throw this.error(E.escape)
    }
  }

  private hex4(): number {
    if (this.i + 4 > this.s.length) {
      this.i = this.s.length
      throw this.error(E.eofString)
    }
    let n = 0
    let ok = true
    for (let k = 0; k < 4; k++) {
      const v = hexDigitValue(this.at(this.i + k))
      if (v < 0) ok = false
      n = n * 16 + v
    }
    this.i += 4
    if (!ok) throw this.error(E.escape)
    return n
  }

  /** `\uXXXX` after `\u`; surrogates must pair up (strings are validated UTF-8) */
  private unicodeEscape(): number {
    const n = this.hex4()
    if (n >= 0xdc00 && n <= 0xdfff) throw this.error(E.loneSurrogate)
    if (n < 0xd800 || n > 0xdbff) return n
    for (const expected of [BACKSLASH, 0x75]) {
      if (this.i >= this.s.length) throw this.error(E.eofString)
      if (this.at(this.i++) !== expected) throw this.error(E.hexEnd)
    }
    const n2 = this.hex4()
    if (n2 < 0xdc00 || n2 > 0xdfff) throw this.error(E.loneSurrogate)
    return ((n - 0xd800) << 10) + (n2 - 0xdc00) + 0x10000
  }

  ignoreStr(): void {
    for (;;) {
      while (this.i < this.s.length) {
        const b = this.at(this.i)
        if (b === QUOTE || b === BACKSLASH || b < 0x20) break
        this.i++
      }
      if (this.i >= this.s.length) throw this.error(E.eofString)
      const b = this.at(this.i)
      if (b === QUOTE) {
        this.i++
        return
      }
      if (b !== BACKSLASH) throw this.error(E.control)
      this.i++
      const ch = this.nextInString()
      if (ch === 0x75) this.hex4()
      else if (![0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74].includes(ch)) {
        throw this.error(E.escape)
      }
    }
  }

  // ---- numbers

  private digits(): void {
    while (this.peek() >= 0x30 && this.peek() <= 0x39) this.i++
  }

  /** Scans one number (after a `-`, if any); returns whether it had a fraction or exponent. */
  private scanNumber(ignoring: boolean): boolean {
    if (this.i >= this.s.length) throw this.error(ignoring ? E.number : E.eofValue)
    const first = this.at(this.i++)
    if (first === 0x30) {
      if (this.peek() >= 0x30 && this.peek() <= 0x39) throw this.peekError(E.number)
    } else if (first >= 0x31 && first <= 0x39) {
      this.digits()
    } else {
      throw this.error(E.number)
    }
    let float = false
    if (this.peek() === 0x2e) {
      this.i++
      float = true
      const before = this.i
      this.digits()
      if (this.i === before) {
        throw this.peekError(this.i >= this.s.length && !ignoring ? E.eofValue : E.number)
      }
    }
    if (this.peek() === 0x65 || this.peek() === 0x45) {
      this.i++
      float = true
      if (this.peek() === 0x2b || this.peek() === 0x2d) this.i++
      if (this.i >= this.s.length) throw this.error(ignoring ? E.number : E.eofValue)
      const d = this.at(this.i++)
      if (d < 0x30 || d > 0x39) throw this.error(E.number)
      this.digits()
    }
    return float
  }

  /** serde_json `parse_any_number`: u64, negative i64, or f64 (also for u64 overflow and -0). */
  number(positive: boolean): JsonNumber {
    const start = this.i
    const float = this.scanNumber(false)
    const text = Buffer.from(this.s.subarray(start, this.i)).toString('latin1')
    // u64::MAX has 20 digits; longer integers are floats for serde_json too
    if (!float && text.length <= 20) {
      const v = BigInt(text)
      if (v <= 0xffffffffffffffffn) {
        if (positive) return { kind: 'u64', value: v }
        if (v !== 0n && v <= 0x8000000000000000n) return { kind: 'i64', value: -v }
      }
    }
    const f = Number(positive ? text : `-${text}`)
    if (!Number.isFinite(f)) throw this.error(E.numberRange)
    return { kind: 'f64', value: f }
  }

  /** serde_json `ignore_value`: validates any JSON value without building it, iteratively. */
  ignoreValue(): void {
    const frames: number[] = []
    for (;;) {
      const b = this.ws()
      if (b < 0) throw this.peekError(E.eofValue)
      let opened = false
      if (b === 0x6e) {
        this.i++
        this.ident('ull')
      } else if (b === 0x74) {
        this.i++
        this.ident('rue')
      } else if (b === 0x66) {
        this.i++
        this.ident('alse')
      } else if (b === 0x2d) {
        this.i++
        this.scanNumber(true)
      } else if (b >= 0x30 && b <= 0x39) {
        this.scanNumber(true)
      } else if (b === QUOTE) {
        this.i++
        this.ignoreStr()
      } else if (b === 0x5b || b === 0x7b) {
        this.i++
        frames.push(b)
        opened = true
      } else {
        throw this.peekError(E.value)
      }
      // after a value (or an opening bracket): close finished containers, then expect the next
      let acceptComma = !opened
      for (;;) {
        const frame = frames[frames.length - 1]
        if (frame === undefined) return
        const n = this.ws()
        if (n < 0) throw this.peekError(frame === 0x5b ? E.eofList : E.eofObject)
        if (n === 0x2c && acceptComma) {
          this.i++
          break
        }
        if ((n === 0x5d && frame === 0x5b) || (n === 0x7d && frame === 0x7b)) {
          this.i++
          frames.pop()
          acceptComma = true
          continue
        }
        if (acceptComma) {
          throw this.peekError(frame === 0x5b ? E.listCommaOrEnd : E.objectCommaOrEnd)
        }
        break
      }
      if (frames[frames.length - 1] === 0x7b) {
        const q = this.ws()
        if (q < 0) throw this.peekError(E.eofObject)
        if (q !== QUOTE) throw this.peekError(E.keyString)
        this.i++
        this.ignoreStr()
        this.colon()
      }
    }
  }

  colon(): void {
    const b = this.ws()
    if (b === 0x3a) this.i++
    else if (b < 0) throw this.peekError(E.eofObject)
    else throw this.peekError(E.colon)
  }

  /** serde_json `peek_invalid_type`: consumes a scalar to describe it; brackets are peeked. */
  invalidType(expected: string): JsonError {
    const b = this.peek()
    let unexpected: string
    if (b === 0x6e) {
      this.i++
      this.ident('ull')
      unexpected = 'null'
    } else if (b === 0x74) {
      this.i++
      this.ident('rue')
      unexpected = 'boolean `true`'
    } else if (b === 0x66) {
      this.i++
      this.ident('alse')
      unexpected = 'boolean `false`'
    } else if (b === 0x2d || (b >= 0x30 && b <= 0x39)) {
      if (b === 0x2d) this.i++
      unexpected = describeNumber(this.number(b !== 0x2d))
    } else if (b === QUOTE) {
      this.i++
      unexpected = `string ${rustDebugStr(this.str())}`
    } else if (b === 0x5b) {
      unexpected = 'sequence'
    } else if (b === 0x7b) {
      unexpected = 'map'
    } else {
      throw this.peekError(E.value)
    }
    return this.error(`invalid type: ${unexpected}, expected ${expected}`)
  }
}

/** Rust's shortest float formatting as serde_json prints it (ryu style: `1.0`, `1e20`). */
function formatFloat(f: number): string {
  if (Object.is(f, -0)) return '-0.0'
  const sign = f < 0 ? '-' : ''
  const [mantissa = '0', expText = '0'] = Math.abs(f).toExponential().split('e')
  const digits = mantissa.replace('.', '')
  const length = digits.length
  const kk = Number(expText) + 1
  const k = kk - length
  let body: string
  if (k >= 0 && kk <= 16) body = `${digits}${'0'.repeat(k)}.0`
  else if (kk > 0 && kk <= 16) body = `${digits.slice(0, kk)}.${digits.slice(kk)}`
  else if (kk > -5 && kk <= 0) body = `0.${'0'.repeat(-kk)}${digits}`
  else if (length === 1) body = `${digits}e${kk - 1}`
  else body = `${digits.slice(0, 1)}.${digits.slice(1)}e${kk - 1}`
  return sign + body
}

function describeNumber(n: JsonNumber): string {
  return n.kind === 'f64' ? `floating point \`${formatFloat(n.value)}\`` : `integer \`${n.value}\``
}

function lookupKey(
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
      return decodeHexField(readStr(c))
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
  const seenKeys = new Set<string>()
  const setByPrimary = new Set<string>()
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
    if (seenKeys.has(key)) throw new JsonError(`duplicate field \`${hit.field.name}\``)
    seenKeys.add(key)
    c.colon()
    const value = readFieldValue(c, hit.field)
    // an alias (D19's `tee_variant`) only fills the field when its own key is absent
    if (!hit.alias || !setByPrimary.has(hit.field.name)) Reflect.set(target, hit.field.name, value)
    if (!hit.alias) setByPrimary.add(hit.field.name)
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

function badRequest(err: unknown): unknown {
  if (err instanceof JsonError) {
    return new KmsError('KMS_ERR_BAD_REQUEST', err.display(), { cause: err })
  }
  return err
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

// ---------------------------------------------------------------------------------------------
// GET query strings (serde_qs over the raw query: flat `key=value&…`, percent-decoded, `+` = space)

function queryValue(f: FieldDescriptor, text: string): unknown {
  switch (f.type) {
    case 'string':
      return text
    case 'bytes':
      return decodeHexField(text)
    case 'bool':
      if (text === 'true') return true
      if (text === 'false') return false
      throw new JsonError(`invalid value: string ${rustDebugStr(text)}, expected a boolean`)
    case 'uint32':
    case 'uint64':
      return uintFromText(f.type, text)
    case 'message':
      throw new JsonError(`field \`${f.name}\` cannot be given in a query string`)
  }
}

/** Decodes a GET query string into a request message; unknown keys (e.g. `json`) are ignored. */
export function decodeQuery<T>(type: MessageType<T>, rawQuery: string): T {
  const target = blankObject(type)
  const seen = new Set<string>()
  try {
    for (const [key, text] of new URLSearchParams(rawQuery)) {
      const hit = lookupKey(type, key)
      if (hit === undefined) continue
      const f = hit.field
      if (seen.has(f.name)) throw new JsonError(`duplicate field \`${f.name}\``)
      seen.add(f.name)
      if (f.label === 'repeated') {
        throw new JsonError(`field \`${f.name}\` cannot be given in a query string`)
      }
      Reflect.set(target, f.name, queryValue(f, text))
    }
  } catch (err) {
    throw badRequest(err)
  }
  return type.adopt(target)
}
