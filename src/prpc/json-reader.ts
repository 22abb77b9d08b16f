// A JSON reader that follows serde_json's order of checks, so that a malformed request is
// refused with upstream's error text, position included (`... at line 1 column 7`).
// `JSON.parse` cannot be used: it silently keeps the last of duplicate keys and reports errors in
// its own words. Message mapping on top of it is json.ts.
import { Buffer } from 'node:buffer'
import { KmsError } from '../errors.js'
import { hexDigitValue } from '../util/hex.js'
import { rustDebugStrEcho } from '../util/rust-text.js'

/** A custom (serde `Error::custom`) error: no position yet; serde_json adds the current one. */
export class JsonError extends KmsError {
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

export const E = {
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

export const QUOTE = 0x22
const BACKSLASH = 0x5c
/** up to this many bytes, an unescaped ASCII string is built char by char (measured: ~2× faster
 * than the decoder for a field name; slower from a few dozen bytes on) */
const SHORT_ASCII = 16
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

const SIMPLE_ESCAPES: ReadonlySet<number> = new Set([
  0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74,
])

/** UTF-8 of a scalar value (never a surrogate) at `out[len]`; returns the new length. */
function writeUtf8(out: Buffer, len: number, cp: number): number {
  if (cp < 0x80) {
    out[len] = cp
    return len + 1
  }
  if (cp < 0x800) {
    out[len] = 0xc0 | (cp >> 6)
    out[len + 1] = 0x80 | (cp & 0x3f)
    return len + 2
  }
  if (cp < 0x10000) {
    out[len] = 0xe0 | (cp >> 12)
    out[len + 1] = 0x80 | ((cp >> 6) & 0x3f)
    out[len + 2] = 0x80 | (cp & 0x3f)
    return len + 3
  }
  out[len] = 0xf0 | (cp >> 18)
  out[len + 1] = 0x80 | ((cp >> 12) & 0x3f)
  out[len + 2] = 0x80 | ((cp >> 6) & 0x3f)
  out[len + 3] = 0x80 | (cp & 0x3f)
  return len + 4
}

export type JsonNumber =
  { kind: 'u64'; value: bigint } | { kind: 'i64'; value: bigint } | { kind: 'f64'; value: number }

export class Cursor {
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

  /** Unescaped string bytes go here, reused across strings: a string's unescaped form is never
   * longer than its escaped form, so one buffer of the rest of the input always suffices and an
   * input byte costs at most one byte of it, whatever the escapes. */
  private scratch: Buffer = Buffer.alloc(0)

  private scratchFor(capacity: number): Buffer {
    if (this.scratch.length < capacity) this.scratch = Buffer.allocUnsafe(capacity)
    return this.scratch
  }

  /** Scans to the next quote, backslash or control character; returns that byte or -1. */
  private plainRun(): number {
    const s = this.s
    const n = s.length
    let i = this.i
    while (i < n) {
      const b = s[i] ?? -1
      if (b === QUOTE || b === BACKSLASH || b < 0x20) break
      i++
    }
    this.i = i
    return i < n ? (s[i] ?? -1) : -1
  }

  private decodeUtf8(bytes: Uint8Array): string {
    try {
      return utf8.decode(bytes)
    } catch {
      throw this.error(E.unicode)
    }
  }

  str(): string {
    const start = this.i
    let b = this.plainRun()
    if (b === QUOTE) {
      const end = this.i
      this.i++
      // a short ASCII run (every field name) is its own string: no decoder call
      if (end - start <= SHORT_ASCII) {
        let text = ''
        for (let k = start; k < end; k++) {
          const ch = this.s[k] ?? 0x80
          if (ch >= 0x80) return this.decodeUtf8(this.s.subarray(start, end))
          text += String.fromCharCode(ch)
        }
        return text
      }
      // no escapes: decode the input bytes in place
      return this.decodeUtf8(this.s.subarray(start, end))
    }
    const out = this.scratchFor(this.s.length - start)
    const src = this.s
    const n = src.length
    // the plain run before the first escape, then byte by byte: no object per escape or run
    out.set(src.subarray(start, this.i), 0)
    let len = this.i - start
    for (;;) {
      if (b < 0) throw this.error(E.eofString)
      if (b === QUOTE) {
        this.i++
        return this.decodeUtf8(out.subarray(0, len))
      }
      this.i++
      if (b !== BACKSLASH) throw this.error(E.control)
      len = this.escapeInto(out, len)
      let i = this.i
      for (;;) {
        b = i < n ? (src[i] ?? -1) : -1
        if (b === QUOTE || b === BACKSLASH || b < 0x20) break
        out[len++] = b
        i++
      }
      this.i = i
    }
  }

  private nextInString(): number {
    if (this.i >= this.s.length) throw this.error(E.eofString)
    return this.at(this.i++)
  }

  /** Writes the unescaped bytes of the escape after a backslash at `out[len]`; returns the new
   * length. */
  private escapeInto(out: Buffer, len: number): number {
    const ch = this.nextInString()
    let byte: number
    switch (ch) {
      case 0x22:
      case 0x5c:
      case 0x2f:
        byte = ch
        break
      case 0x62:
        byte = 0x08
        break
      case 0x66:
        byte = 0x0c
        break
      case 0x6e:
        byte = 0x0a
        break
      case 0x72:
        byte = 0x0d
        break
      case 0x74:
        byte = 0x09
        break
      case 0x75:
        return writeUtf8(out, len, this.unicodeEscape())
      default:
        throw this.error(E.escape)
    }
    out[len] = byte
    return len + 1
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
      else if (!SIMPLE_ESCAPES.has(ch)) throw this.error(E.escape)
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
      unexpected = `string ${rustDebugStrEcho(this.str())}`
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

export function describeNumber(n: JsonNumber): string {
  return n.kind === 'f64' ? `floating point \`${formatFloat(n.value)}\`` : `integer \`${n.value}\``
}
