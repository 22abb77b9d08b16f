// A minimal DER writer (enough to reproduce rcgen/yasna output byte for byte) and a strict DER
// reader for the few structures we parse (certificates, PKCS#8/SEC1 keys, extension values).
// Hand-written because the generic ASN.1 libraries re-encode values (e.g. KeyUsage) differently
// from rcgen, and because every parse error must become a typed KmsError.
import { KmsError, type KmsErrorCode } from '../errors.js'

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  TELETEX_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const

// ---------------------------------------------------------------------------------------------
// Writer

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length])
  const bytes: number[] = []
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

export function derTlv(tag: number, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(content.length), content])
}

export function derSequence(...items: readonly Uint8Array[]): Buffer {
  return derTlv(TAG.SEQUENCE, Buffer.concat(items))
}

export function derSet(...items: readonly Uint8Array[]): Buffer {
  return derTlv(TAG.SET, Buffer.concat(items))
}

/** Constructed context-specific tag `[n]` wrapping already-encoded content (EXPLICIT). */
export function derExplicit(tagNumber: number, content: Uint8Array): Buffer {
  return derTlv(0xa0 | tagNumber, content)
}

/** Primitive context-specific tag `[n]` with raw content (IMPLICIT over a primitive type). */
export function derImplicitPrimitive(tagNumber: number, content: Uint8Array): Buffer {
  return derTlv(0x80 | tagNumber, content)
}

export function derBoolean(value: boolean): Buffer {
  return Buffer.from([TAG.BOOLEAN, 0x01, value ? 0xff : 0x00])
}

/** Minimal positive INTEGER from an unsigned big-endian magnitude (yasna `write_bigint_bytes(…,
 * true)`): leading zero bytes dropped, one 0x00 added back when the top bit is set. */
export function derUnsignedInteger(magnitude: Uint8Array): Buffer {
  let start = 0
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++
  let body = Buffer.from(magnitude.subarray(start))
  if (body.length === 0) body = Buffer.from([0])
  if ((body[0] ?? 0) & 0x80) body = Buffer.concat([Buffer.from([0]), body])
  return derTlv(TAG.INTEGER, body)
}

export function derSmallInteger(value: number): Buffer {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new KmsError('KMS_ERR_CERT', `cannot encode integer ${value}`)
  }
  const bytes: number[] = []
  for (let n = value; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff)
  return derUnsignedInteger(Uint8Array.from(bytes))
}

export function derOctetString(content: Uint8Array): Buffer {
  return derTlv(TAG.OCTET_STRING, content)
}

export function derBitString(content: Uint8Array, unusedBits = 0): Buffer {
  return derTlv(TAG.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), content]))
}

export function encodeOidContent(dotted: string): Buffer {
  const parts = dotted.split('.')
  if (parts.length < 2 || parts.some((p) => !/^(0|[1-9][0-9]*)$/.test(p))) {
    throw new KmsError('KMS_ERR_CERT', `invalid OID ${JSON.stringify(dotted)}`)
  }
  const arcs = parts.map((p) => BigInt(p))
  const first = arcs[0] ?? 0n
  const second = arcs[1] ?? 0n
  if (first > 2n || (first < 2n && second > 39n)) {
    throw new KmsError('KMS_ERR_CERT', `invalid OID ${JSON.stringify(dotted)}`)
  }
  const subids = [first * 40n + second, ...arcs.slice(2)]
  const out: number[] = []
  for (const id of subids) {
    const groups: number[] = [Number(id & 0x7fn)]
    for (let n = id >> 7n; n > 0n; n >>= 7n) groups.unshift(Number(n & 0x7fn) | 0x80)
    out.push(...groups)
  }
  return Buffer.from(out)
}

export function derOid(dotted: string): Buffer {
  return derTlv(TAG.OID, encodeOidContent(dotted))
}

export function derUtf8String(text: string): Buffer {
  return derTlv(TAG.UTF8_STRING, Buffer.from(text, 'utf8'))
}

/** IA5String; rcgen refuses non-ASCII, and so do we. */
export function derIa5String(text: string): Buffer {
  if (!isAscii(text)) {
    throw new KmsError('KMS_ERR_CERT', `not an IA5 (ASCII) string: ${JSON.stringify(text)}`)
  }
  return derTlv(TAG.IA5_STRING, Buffer.from(text, 'latin1'))
}

export function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false
  return true
}

const pad2 = (n: number): string => n.toString().padStart(2, '0')

function assertWholeSecondTime(date: Date): void {
  if (Number.isNaN(date.getTime())) throw new KmsError('KMS_ERR_CERT', 'invalid date')
  if (date.getUTCMilliseconds() !== 0) {
    throw new KmsError('KMS_ERR_CERT', 'certificate times must be whole seconds')
  }
}

/** `MMDDHHMMSSZ`, the part UTCTime and GeneralizedTime share. */
function monthToSecond(date: Date): string {
  return (
    pad2(date.getUTCMonth() + 1) +
    pad2(date.getUTCDate()) +
    pad2(date.getUTCHours()) +
    pad2(date.getUTCMinutes()) +
    pad2(date.getUTCSeconds()) +
    'Z'
  )
}

export function derUtcTime(date: Date): Buffer {
  assertWholeSecondTime(date)
  const y = date.getUTCFullYear()
  if (y < 1950 || y > 2049) throw new KmsError('KMS_ERR_CERT', `year ${y} outside UTCTime range`)
  return derTlv(TAG.UTC_TIME, Buffer.from(pad2(y % 100) + monthToSecond(date), 'latin1'))
}

export function derGeneralizedTime(date: Date): Buffer {
  assertWholeSecondTime(date)
  const y = date.getUTCFullYear()
  if (y < 0 || y > 9999) {
    throw new KmsError('KMS_ERR_CERT', `year ${y} outside GeneralizedTime range`)
  }
  const year = y.toString().padStart(4, '0')
  return derTlv(TAG.GENERALIZED_TIME, Buffer.from(year + monthToSecond(date), 'latin1'))
}

/** RFC 5280 / rcgen rule: UTCTime for 1950–2049, GeneralizedTime otherwise. */
export function derTime(date: Date): Buffer {
  const y = date.getUTCFullYear()
  return y >= 1950 && y <= 2049 ? derUtcTime(date) : derGeneralizedTime(date)
}

// ---------------------------------------------------------------------------------------------
// Reader

export interface DerNode {
  /** the identifier octet (class, constructed bit and tag number; high tag numbers are refused) */
  readonly tag: number
  /** content octets */
  readonly content: Buffer
  /** the whole TLV */
  readonly raw: Buffer
}

export class DerReadError extends KmsError {
  constructor(message: string, code: KmsErrorCode = 'KMS_ERR_CERT') {
    super(code, message)
    this.name = 'DerReadError'
  }
}

/** Reads one TLV at `offset`; returns it and the offset just past it. */
export function readTlv(buf: Buffer, offset: number): { node: DerNode; end: number } {
  if (offset >= buf.length) throw new DerReadError('DER truncated: missing tag')
  const tag = buf[offset] ?? 0
  if ((tag & 0x1f) === 0x1f) throw new DerReadError('DER: high tag numbers are not supported')
  if (offset + 1 >= buf.length) throw new DerReadError('DER truncated: missing length')
  const first = buf[offset + 1] ?? 0
  let length: number
  let headerLen: number
  if (first < 0x80) {
    length = first
    headerLen = 2
  } else if (first === 0x80) {
    throw new DerReadError('DER: indefinite length is not allowed')
  } else {
    const count = first & 0x7f
    if (count > 4) throw new DerReadError('DER: length too large')
    if (offset + 2 + count > buf.length) throw new DerReadError('DER truncated: length')
    length = 0
    for (let i = 0; i < count; i++) length = length * 256 + (buf[offset + 2 + i] ?? 0)
    if ((buf[offset + 2] ?? 0) === 0 || length < 0x80) {
      throw new DerReadError('DER: non-minimal length encoding')
    }
    headerLen = 2 + count
  }
  const end = offset + headerLen + length
  if (end > buf.length) throw new DerReadError('DER truncated: content shorter than its length')
  return {
    node: {
      tag,
      content: buf.subarray(offset + headerLen, end),
      raw: buf.subarray(offset, end),
    },
    end,
  }
}

/** Parses exactly one TLV covering all of `bytes` (no trailing data). */
export function parseDer(bytes: Uint8Array): DerNode {
  const buf = Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const { node, end } = readTlv(buf, 0)
  if (end !== buf.length) {
    throw new DerReadError('DER: trailing data after the value', 'KMS_ERR_DER_TRAILING_DATA')
  }
  return node
}

/** The elements of a constructed value. */
export function derChildren(node: DerNode): DerNode[] {
  if ((node.tag & 0x20) === 0) throw new DerReadError('DER: expected a constructed value')
  const out: DerNode[] = []
  let offset = 0
  while (offset < node.content.length) {
    const { node: child, end } = readTlv(node.content, offset)
    out.push(child)
    offset = end
  }
  return out
}

export function expectTag(node: DerNode | undefined, tag: number, what: string): DerNode {
  if (node === undefined) throw new DerReadError(`${what}: missing`)
  if (node.tag !== tag) {
    throw new DerReadError(
      `${what}: expected tag 0x${tag.toString(16)}, got 0x${node.tag.toString(16)}`,
    )
  }
  return node
}

/** Children of a SEQUENCE with an exact or bounded element count. */
export function sequenceOf(node: DerNode | undefined, what: string, min = 0, max = min): DerNode[] {
  const seq = expectTag(node, TAG.SEQUENCE, what)
  const children = derChildren(seq)
  if (children.length < min || children.length > max) {
    throw new DerReadError(`${what}: unexpected number of elements (${children.length})`)
  }
  return children
}

/** INTEGER content as an unsigned magnitude (minimal encoding enforced; negatives refused). */
export function readUnsignedInteger(node: DerNode | undefined, what: string): Buffer {
  const n = expectTag(node, TAG.INTEGER, what)
  const c = n.content
  if (c.length === 0) throw new DerReadError(`${what}: empty INTEGER`)
  const b0 = c[0] ?? 0
  const b1 = c[1] ?? 0
  if (c.length > 1 && ((b0 === 0 && (b1 & 0x80) === 0) || (b0 === 0xff && (b1 & 0x80) !== 0))) {
    throw new DerReadError(`${what}: non-minimal INTEGER`)
  }
  if (b0 & 0x80) throw new DerReadError(`${what}: negative INTEGER`)
  return c
}

export function readSmallInteger(node: DerNode | undefined, what: string): number {
  const c = readUnsignedInteger(node, what)
  if (c.length > 6) throw new DerReadError(`${what}: INTEGER too large`)
  return c.readUIntBE(0, c.length)
}

export function readBoolean(node: DerNode | undefined, what: string): boolean {
  const n = expectTag(node, TAG.BOOLEAN, what)
  if (n.content.length !== 1) throw new DerReadError(`${what}: invalid BOOLEAN`)
  const v = n.content[0]
  if (v === 0xff) return true
  if (v === 0x00) return false
  throw new DerReadError(`${what}: non-DER BOOLEAN`)
}

export function readOid(node: DerNode | undefined, what: string): string {
  return decodeOidContent(expectTag(node, TAG.OID, what).content, what)
}

/** The largest arc value that can take another 7 bits and stay an exact Number. */
const MAX_SHIFTABLE_ARC = Math.floor((Number.MAX_SAFE_INTEGER - 0x7f) / 0x80)

export function decodeOidContent(content: Buffer, what = 'OID'): string {
  if (content.length === 0) throw new DerReadError(`${what}: empty OID`)
  // An arc is a Number while it stays exact (every arc certificates use) and turns into a BigInt
  // only past 2^53, so the common OID costs no BigInt arithmetic.
  const subids: Array<number | bigint> = []
  let value: number | bigint = 0
  let started = false
  for (const byte of content) {
    if (!started && byte === 0x80) throw new DerReadError(`${what}: non-minimal OID`)
    started = true
    const low = byte & 0x7f
    value =
      typeof value === 'number' && value <= MAX_SHIFTABLE_ARC
        ? value * 0x80 + low
        : (BigInt(value) << 7n) | BigInt(low)
    if ((byte & 0x80) === 0) {
      subids.push(value)
      value = 0
      started = false
    }
  }
  if (started) throw new DerReadError(`${what}: truncated OID`)
  // the first subidentifier carries two arcs: 40 × first + second, the first at most 2
  const head = subids[0] ?? 0
  const arcs: Array<number | bigint> =
    typeof head === 'bigint'
      ? [2, head - 80n]
      : head < 80
        ? [Math.floor(head / 40), head % 40]
        : [2, head - 80]
  for (let i = 1; i < subids.length; i++) arcs.push(subids[i] ?? 0)
  return arcs.join('.')
}

export function readOctetString(node: DerNode | undefined, what: string): Buffer {
  return expectTag(node, TAG.OCTET_STRING, what).content
}

/** BIT STRING content with its unused-bit count (DER: unused bits must be zero). */
export function readBitString(
  node: DerNode | undefined,
  what: string,
): { bytes: Buffer; unusedBits: number } {
  const c = expectTag(node, TAG.BIT_STRING, what).content
  if (c.length === 0) throw new DerReadError(`${what}: empty BIT STRING`)
  const unusedBits = c[0] ?? 0
  if (unusedBits > 7 || (c.length === 1 && unusedBits !== 0)) {
    throw new DerReadError(`${what}: invalid BIT STRING`)
  }
  const bytes = c.subarray(1)
  const last = bytes[bytes.length - 1] ?? 0
  if (unusedBits > 0 && (last & ((1 << unusedBits) - 1)) !== 0) {
    throw new DerReadError(`${what}: non-zero unused bits`)
  }
  return { bytes, unusedBits }
}

export function readOctetAlignedBitString(node: DerNode | undefined, what: string): Buffer {
  const { bytes, unusedBits } = readBitString(node, what)
  if (unusedBits !== 0) throw new DerReadError(`${what}: BIT STRING is not octet-aligned`)
  return bytes
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/** UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), the only forms RFC 5280
 * allows; fractions, offsets and missing seconds are refused. */
export function readTime(node: DerNode | undefined, what: string): Date {
  if (node === undefined) throw new DerReadError(`${what}: missing`)
  const text = node.content.toString('latin1')
  let year: number
  let rest: string
  if (node.tag === TAG.UTC_TIME) {
    if (!/^\d{12}Z$/.test(text)) throw new DerReadError(`${what}: invalid UTCTime`)
    const yy = Number(text.slice(0, 2))
    year = yy < 50 ? 2000 + yy : 1900 + yy
    rest = text.slice(2)
  } else if (node.tag === TAG.GENERALIZED_TIME) {
    if (!/^\d{14}Z$/.test(text)) throw new DerReadError(`${what}: invalid GeneralizedTime`)
    year = Number(text.slice(0, 4))
    rest = text.slice(4)
  } else {
    throw new DerReadError(`${what}: expected a time`)
  }
  const month = Number(rest.slice(0, 2))
  const day = Number(rest.slice(2, 4))
  const hour = Number(rest.slice(4, 6))
  const minute = Number(rest.slice(6, 8))
  const second = Number(rest.slice(8, 10))
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0
  const monthDays = (DAYS_IN_MONTH[month - 1] ?? 0) + (month === 2 && leap ? 1 : 0)
  if (month < 1 || month > 12 || day < 1 || day > monthDays || hour > 23 || minute > 59) {
    throw new DerReadError(`${what}: invalid date`)
  }
  if (second > 59) throw new DerReadError(`${what}: invalid date`)
  const date = new Date(0)
  date.setUTCFullYear(year, month - 1, day)
  date.setUTCHours(hour, minute, second, 0)
  return date
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

export function decodeUtf8Strict(bytes: Uint8Array, what: string): string {
  try {
    return strictUtf8.decode(bytes)
  } catch {
    throw new DerReadError(`${what}: invalid UTF-8`)
  }
}

/** A DirectoryString-like value as text (the string types rcgen can read back). */
export function readDirectoryString(node: DerNode, what: string): string {
  const c = node.content
  switch (node.tag) {
    case TAG.UTF8_STRING:
      return decodeUtf8Strict(c, what)
    case TAG.PRINTABLE_STRING:
    case TAG.IA5_STRING:
      if (!c.every((b) => b < 0x80)) throw new DerReadError(`${what}: non-ASCII string`)
      return c.toString('latin1')
    case TAG.TELETEX_STRING:
      return c.toString('latin1')
    case TAG.BMP_STRING: {
      if (c.length % 2 !== 0) throw new DerReadError(`${what}: invalid BMPString`)
      const swapped = Buffer.from(c)
      swapped.swap16()
      return swapped.toString('utf16le')
    }
    case TAG.UNIVERSAL_STRING: {
      if (c.length % 4 !== 0) throw new DerReadError(`${what}: invalid UniversalString`)
      let s = ''
      for (let i = 0; i < c.length; i += 4) {
        const cp = c.readUInt32BE(i)
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
          throw new DerReadError(`${what}: invalid UniversalString`)
        }
        s += String.fromCodePoint(cp)
      }
      return s
    }
    default:
      throw new DerReadError(`${what}: unsupported string type 0x${node.tag.toString(16)}`)
  }
}
