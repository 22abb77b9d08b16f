// A minimal SCALE codec (parity-scale-codec 3.7.5, as upstream derives it for
// `VersionedAttestation` and CSRs) with the same acceptance rules and the same error texts as
// upstream's derived decoders, because a CSR that fails to decode is answered with `Failed to parse
// csr: <codec error chain>` and clients see that text verbatim.
import { KmsError } from '../errors.js'

const NOT_ENOUGH_DATA = 'Not enough data to fill buffer'
const COMPACT_U32_OUT_OF_RANGE = 'out of range decoding Compact<u32>'
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Renders a codec error chain the way anyhow's `{:#}` prints a chained `parity_scale_codec::Error`:
 * every link is displayed (and each link's own Display repeats its causes, tab-indented). */
function renderChain(descs: readonly string[]): string {
  const display = (start: number): string => {
    let out = ''
    for (let i = start; i < descs.length; i++) {
      const indent = i - start
      out += '\t'.repeat(indent) + (descs[i] ?? '')
      if (i < descs.length - 1) out += ':\n'
      else if (indent !== 0) out += '\n'
    }
    return out
  }
  return descs.map((_, k) => display(k)).join(': ')
}

/** A decode failure; `descs` is the codec's own chain, outermost first. */
export class ScaleError extends KmsError {
  readonly descs: readonly string[]

  constructor(descs: string | readonly string[]) {
    const list = typeof descs === 'string' ? [descs] : [...descs]
    super('KMS_ERR_BAD_REQUEST', renderChain(list))
    this.name = 'ScaleError'
    this.descs = list
  }

  /** parity-scale-codec's `Error::chain`: `desc` becomes the outermost link. */
  chain(desc: string): ScaleError {
    return new ScaleError([desc, ...this.descs])
  }
}

export class ScaleReader {
  readonly #buf: Buffer
  #offset = 0

  constructor(bytes: Uint8Array) {
    this.#buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  /** bytes consumed so far */
  get offset(): number {
    return this.#offset
  }

  get remaining(): number {
    return this.#buf.length - this.#offset
  }

  /** Runs a field decoder; a failure is chained with the derive macro's `Could not decode \`name\``. */
  field<T>(name: string, decode: (r: ScaleReader) => T): T {
    try {
      return decode(this)
    } catch (err) {
      if (err instanceof ScaleError) throw err.chain(`Could not decode \`${name}\``)
      throw err
    }
  }

  /** Consumes `n` bytes and returns where they start. */
  #take(n: number): number {
    if (n > this.remaining) throw new ScaleError(NOT_ENOUGH_DATA)
    const at = this.#offset
    this.#offset += n
    return at
  }

  /** A copy: what is decoded does not share memory with the input. */
  bytes(n: number): Buffer {
    const at = this.#take(n)
    return Buffer.from(this.#buf.subarray(at, at + n))
  }

  rest(): Buffer {
    return this.bytes(this.remaining)
  }

  // integers are read in place: a copy per length prefix and per field was most of the
  // decoding work of an attestation with a long event log
  u8(): number {
    return this.#buf.readUInt8(this.#take(1))
  }

  u16(): number {
    return this.#buf.readUInt16LE(this.#take(2))
  }

  u32(): number {
    return this.#buf.readUInt32LE(this.#take(4))
  }

  u64(): bigint {
    return this.#buf.readBigUInt64LE(this.#take(8))
  }

  bool(): boolean {
    const b = this.u8()
    if (b === 0) return false
    if (b === 1) return true
    throw new ScaleError('Invalid boolean representation')
  }

  /** `Compact<u32>` (every length prefix): non-minimal forms are refused. */
  compactU32(): number {
    const prefix = this.u8()
    switch (prefix & 3) {
      case 0:
        return prefix >> 2
      case 1: {
        const x = (prefix | (this.u8() << 8)) >> 2
        if (x <= 0x3f) throw new ScaleError(COMPACT_U32_OUT_OF_RANGE)
        return x
      }
      case 2: {
        const x = ((prefix | (this.#buf.readUIntLE(this.#take(3), 3) << 8)) >>> 2) >>> 0
        if (x <= 0x3fff) throw new ScaleError(COMPACT_U32_OUT_OF_RANGE)
        return x
      }
      default: {
        if (prefix >> 2 !== 0) throw new ScaleError(COMPACT_U32_OUT_OF_RANGE)
        const x = this.u32()
        if (x <= 0x3fffffff) throw new ScaleError(COMPACT_U32_OUT_OF_RANGE)
        return x
      }
    }
  }

  /** A `Vec<u8>`'s bytes in place: the length is checked against the remaining input first. */
  #vecBytes(): Buffer {
    const len = this.compactU32()
    if (this.remaining < len) throw new ScaleError('Not enough data to decode vector')
    const at = this.#take(len)
    return this.#buf.subarray(at, at + len)
  }

  /** `Vec<u8>`, copied. */
  vecU8(): Buffer {
    return Buffer.from(this.#vecBytes())
  }

  string(): string {
    const raw = this.#vecBytes()
    try {
      // decoded in place: the string is the copy
      return UTF8.decode(raw)
    } catch {
      throw new ScaleError('Invalid utf8 sequence')
    }
  }

  option<T>(decode: (r: ScaleReader) => T): T | null {
    let tag: number
    try {
      tag = this.u8()
    } catch (err) {
      if (err instanceof ScaleError) throw err.chain('Could not decode variant byte for `Option`')
      throw err
    }
    if (tag === 0) return null
    if (tag !== 1) throw new ScaleError('unexpected first byte decoding Option')
    try {
      return decode(this)
    } catch (err) {
      if (err instanceof ScaleError) throw err.chain('Could not decode `Option::Some(T)`')
      throw err
    }
  }

  /** `Vec<T>` for non-byte items: no up-front length check, item errors are not chained. */
  /** `max` bounds the item count before anything is allocated: a 10 MiB input of empty items
   * would otherwise become millions of objects (upstream's decoder has no such bound). */
  vec<T>(decode: (r: ScaleReader) => T, max = Infinity): T[] {
    const len = this.compactU32()
    if (len > max) throw new ScaleError(`Vec length ${len} exceeds the limit of ${max}`)
    const out: T[] = []
    for (let i = 0; i < len; i++) out.push(decode(this))
    return out
  }
}

/** SCALE compact encoding of an unsigned integer (any width up to u128). */
export function encodeCompact(value: number | bigint): Buffer {
  const n = BigInt(value)
  if (n < 0n) throw new KmsError('KMS_ERR_INTERNAL', 'compact integers are unsigned')
  if (n < 1n << 6n) return Buffer.from([Number(n << 2n)])
  if (n < 1n << 14n) {
    const b = Buffer.alloc(2)
    b.writeUInt16LE(Number((n << 2n) | 1n))
    return b
  }
  if (n < 1n << 30n) {
    const b = Buffer.alloc(4)
    b.writeUInt32LE(Number((n << 2n) | 2n))
    return b
  }
  const bytes: number[] = []
  for (let v = n; v > 0n; v >>= 8n) bytes.push(Number(v & 0xffn))
  if (bytes.length > 16) throw new KmsError('KMS_ERR_INTERNAL', 'compact integer over u128')
  return Buffer.from([((bytes.length - 4) << 2) | 3, ...bytes])
}

export class ScaleWriter {
  readonly #parts: Buffer[] = []

  raw(bytes: Uint8Array): this {
    this.#parts.push(Buffer.from(bytes))
    return this
  }

  u8(v: number): this {
    return this.raw(Buffer.from([v & 0xff]))
  }

  u16(v: number): this {
    const b = Buffer.alloc(2)
    b.writeUInt16LE(v)
    return this.raw(b)
  }

  u32(v: number): this {
    const b = Buffer.alloc(4)
    b.writeUInt32LE(v)
    return this.raw(b)
  }

  u64(v: bigint): this {
    const b = Buffer.alloc(8)
    b.writeBigUInt64LE(v)
    return this.raw(b)
  }

  bool(v: boolean): this {
    return this.u8(v ? 1 : 0)
  }

  compact(v: number | bigint): this {
    return this.raw(encodeCompact(v))
  }

  vecU8(bytes: Uint8Array): this {
    return this.compact(bytes.length).raw(bytes)
  }

  string(s: string): this {
    return this.vecU8(Buffer.from(s, 'utf8'))
  }

  option<T>(value: T | null, encode: (w: ScaleWriter, v: T) => void): this {
    if (value === null) return this.u8(0)
    this.u8(1)
    encode(this, value)
    return this
  }

  vec<T>(items: readonly T[], encode: (w: ScaleWriter, v: T) => void): this {
    this.compact(items.length)
    for (const item of items) encode(this, item)
    return this
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.#parts)
  }
}
