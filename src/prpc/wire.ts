// Protobuf wire primitives with prost 0.13's exact decoding rules and error descriptions, because
// decode errors reach clients verbatim inside pRPC error bodies.
import { Buffer } from 'node:buffer'
import { KmsError } from '../errors.js'

export const WireType = {
  Varint: 0,
  SixtyFourBit: 1,
  LengthDelimited: 2,
  StartGroup: 3,
  EndGroup: 4,
  ThirtyTwoBit: 5,
} as const
export type WireTypeNumber = (typeof WireType)[keyof typeof WireType]

// prost prints wire types with Rust's `{:?}` of its enum
const WIRE_TYPE_NAMES = [
  'Varint',
  'SixtyFourBit',
  'LengthDelimited',
  'StartGroup',
  'EndGroup',
  'ThirtyTwoBit',
] as const

/** prost's recursion limit for nested messages and groups */
export const RECURSION_LIMIT = 100

const WIRE_TYPES: readonly WireTypeNumber[] = [0, 1, 2, 3, 4, 5]

const U32_MAX = 0xffffffffn
const U64_MAX = 0xffffffffffffffffn

/** A prost `DecodeError`: a description plus a stack of (message, field) frames, innermost first. */
export class ProtoDecodeError extends KmsError {
  readonly description: string
  readonly frames: Array<readonly [string, string]> = []

  constructor(description: string) {
    super('KMS_ERR_PROTO_DECODE', description)
    this.name = 'ProtoDecodeError'
    this.description = description
  }

  push(message: string, field: string): void {
    this.frames.push([message, field])
  }

  /** prost's Display: `failed to decode Protobuf message: Msg.field: …: description` */
  display(): string {
    const frames = this.frames.map(([m, f]) => `${m}.${f}: `).join('')
    return `failed to decode Protobuf message: ${frames}${this.description}`
  }
}

export class Writer {
  private buf: Buffer = Buffer.allocUnsafe(64)
  private len = 0

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n))
    this.buf.copy(next, 0, 0, this.len)
    this.buf = next
  }

  /** LEB128 varint of a non-negative integer below 2^64. */
  varint(value: number | bigint): this {
    this.reserve(10)
    if (typeof value === 'number' && value <= 0x7fffffff) {
      let v = value
      while (v > 0x7f) {
        this.buf[this.len++] = (v & 0x7f) | 0x80
        v >>>= 7
      }
      this.buf[this.len++] = v
      return this
    }
    let v = BigInt(value)
    if (v < 0n || v > U64_MAX) throw new RangeError(`varint out of range: ${v}`)
    while (v > 0x7fn) {
      this.buf[this.len++] = Number(v & 0x7fn) | 0x80
      v >>= 7n
    }
    this.buf[this.len++] = Number(v)
    return this
  }

  key(tag: number, wireType: WireTypeNumber): this {
    return this.varint(tag * 8 + wireType)
  }

  /** A length-delimited payload: varint length, then the bytes. */
  lengthDelimited(data: Uint8Array): this {
    this.varint(data.length)
    this.reserve(data.length)
    this.buf.set(data, this.len)
    this.len += data.length
    return this
  }

  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len))
  }
}

export function checkWireType(expected: WireTypeNumber, actual: WireTypeNumber): void {
  if (expected !== actual) {
    throw new ProtoDecodeError(
      `invalid wire type: ${WIRE_TYPE_NAMES[actual]} (expected ${WIRE_TYPE_NAMES[expected]})`,
    )
  }
}

export class Reader {
  readonly buf: Uint8Array
  pos = 0

  constructor(buf: Uint8Array) {
    this.buf = buf
  }

  get remaining(): number {
    return this.buf.length - this.pos
  }

  /** prost `decode_varint`: at most 10 bytes, the 10th must be 0 or 1 (no u64 overflow). */
  varint(): bigint {
    const buf = this.buf
    let low = 0
    for (let i = 0; i < 4; i++) {
      const b = buf[this.pos + i]
      if (b === undefined) throw new ProtoDecodeError('invalid varint')
      low += (b & 0x7f) * 2 ** (7 * i)
      if (b < 0x80) {
        this.pos += i + 1
        return BigInt(low)
      }
    }
    let value = BigInt(low)
    for (let i = 4; i < 10; i++) {
      const b = buf[this.pos + i]
      if (b === undefined) throw new ProtoDecodeError('invalid varint')
      if (i === 9 && b >= 0x02) throw new ProtoDecodeError('invalid varint')
      value |= BigInt(b & 0x7f) << BigInt(7 * i)
      if (b < 0x80) {
        this.pos += i + 1
        return value
      }
    }
    throw new ProtoDecodeError('invalid varint')
  }

  /** prost `decode_key` */
  key(): { tag: number; wireType: WireTypeNumber } {
    const key = this.varint()
    if (key > U32_MAX) throw new ProtoDecodeError(`invalid key value: ${key}`)
    const wt = Number(key & 7n)
    const wireType = WIRE_TYPES[wt]
    if (wireType === undefined) throw new ProtoDecodeError(`invalid wire type value: ${wt}`)
    const tag = Number(key >> 3n)
    if (tag < 1) throw new ProtoDecodeError('invalid tag value: 0')
    return { tag, wireType }
  }

  /** The length prefix of a delimited field, checked against the bytes left. */
  length(): number {
    const len = this.varint()
    if (len > BigInt(this.remaining)) throw new ProtoDecodeError('buffer underflow')
    return Number(len)
  }

  /** prost `bytes::merge`: wire type check, length, copy. */
  bytes(wireType: WireTypeNumber): Buffer {
    checkWireType(WireType.LengthDelimited, wireType)
    const len = this.length()
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + len))
    this.pos += len
    return out
  }

  /** prost `skip_field`, including (deprecated) groups. */
  skip(wireType: WireTypeNumber, tag: number, depth: number): void {
    if (depth <= 0) throw new ProtoDecodeError('recursion limit reached')
    let len: bigint
    switch (wireType) {
      case WireType.Varint:
        this.varint()
        len = 0n
        break
      case WireType.ThirtyTwoBit:
        len = 4n
        break
      case WireType.SixtyFourBit:
        len = 8n
        break
      case WireType.LengthDelimited:
        len = this.varint()
        break
      case WireType.StartGroup:
        for (;;) {
          const inner = this.key()
          if (inner.wireType === WireType.EndGroup) {
            if (inner.tag !== tag) throw new ProtoDecodeError('unexpected end group tag')
            break
          }
          this.skip(inner.wireType, inner.tag, depth - 1)
        }
        len = 0n
        break
      case WireType.EndGroup:
        throw new ProtoDecodeError('unexpected end group tag')
    }
    if (len > BigInt(this.remaining)) throw new ProtoDecodeError('buffer underflow')
    this.pos += Number(len)
  }
}
