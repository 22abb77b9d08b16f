// Byte-level mutations of real inputs as fast-check arbitraries: a seed input is picked and 1–8
// edits are applied. The edits target what binary decoders trust: length prefixes (u8/u16/u32
// set to boundary values), truncation, duplicated and spliced ranges, flipped bits.
import fc from 'fast-check'

type Edit =
  | { kind: 'flip'; pos: number; bit: number }
  | { kind: 'set'; pos: number; value: number }
  | { kind: 'insert'; pos: number; bytes: Uint8Array }
  | { kind: 'delete'; pos: number; len: number }
  | { kind: 'truncate'; pos: number }
  | { kind: 'duplicate'; pos: number; len: number }
  | { kind: 'u32'; pos: number; value: number; littleEndian: boolean }
  | { kind: 'u16'; pos: number; value: number; littleEndian: boolean }
  | { kind: 'splice'; pos: number; other: number; from: number; len: number }

const BOUNDARY_U32 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0xffffffff]
const BOUNDARY_U16 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff]

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), bit: fc.nat(7) }),
  fc.record({
    kind: fc.constant('set' as const),
    pos: fc.nat(),
    value: fc.oneof(fc.constantFrom(0, 0xff, 0x7f, 0x80), fc.nat(255)),
  }),
  fc.record({
    kind: fc.constant('insert' as const),
    pos: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({
    kind: fc.constant('delete' as const),
    pos: fc.nat(),
    len: fc.integer({ min: 1, max: 64 }),
  }),
  fc.record({ kind: fc.constant('truncate' as const), pos: fc.nat() }),
  fc.record({
    kind: fc.constant('duplicate' as const),
    pos: fc.nat(),
    len: fc.integer({ min: 1, max: 256 }),
  }),
  fc.record({
    kind: fc.constant('u32' as const),
    pos: fc.nat(),
    value: fc.oneof(fc.constantFrom(...BOUNDARY_U32), fc.nat()),
    littleEndian: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('u16' as const),
    pos: fc.nat(),
    value: fc.constantFrom(...BOUNDARY_U16),
    littleEndian: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('splice' as const),
    pos: fc.nat(),
    other: fc.nat(),
    from: fc.nat(),
    len: fc.integer({ min: 1, max: 512 }),
  }),
)

/** Inputs never grow past this, so a mutation cannot turn into a memory test of its own. */
const MAX_INPUT = 256 * 1024

function applyEdit(buf: Buffer, e: Edit, seeds: readonly Uint8Array[]): Buffer {
  const n = buf.length
  const at = (p: number): number => (n === 0 ? 0 : p % (n + 1))
  switch (e.kind) {
    case 'flip': {
      if (n === 0) return buf
      const out = Buffer.from(buf)
      const p = e.pos % n
      out[p] = (out[p] ?? 0) ^ (1 << e.bit)
      return out
    }
    case 'set': {
      if (n === 0) return buf
      const out = Buffer.from(buf)
      out[e.pos % n] = e.value
      return out
    }
    case 'insert': {
      const p = at(e.pos)
      return Buffer.concat([buf.subarray(0, p), e.bytes, buf.subarray(p)])
    }
    case 'delete': {
      const p = at(e.pos)
      return Buffer.concat([buf.subarray(0, p), buf.subarray(p + e.len)])
    }
    case 'truncate':
      return buf.subarray(0, at(e.pos))
    case 'duplicate': {
      const p = at(e.pos)
      const chunk = buf.subarray(p, p + e.len)
      return Buffer.concat([buf.subarray(0, p), chunk, chunk, buf.subarray(p)])
    }
    case 'u32':
    case 'u16': {
      const width = e.kind === 'u32' ? 4 : 2
      if (n < width) return buf
      const out = Buffer.from(buf)
      const p = e.pos % (n - width + 1)
      if (e.kind === 'u32') {
        if (e.littleEndian) out.writeUInt32LE(e.value >>> 0, p)
        else out.writeUInt32BE(e.value >>> 0, p)
      } else if (e.littleEndian) out.writeUInt16LE(e.value, p)
      else out.writeUInt16BE(e.value, p)
      return out
    }
    case 'splice': {
      const other = Buffer.from(seeds[e.other % seeds.length] ?? new Uint8Array())
      if (other.length === 0) return buf
      const from = e.from % other.length
      const p = at(e.pos)
      return Buffer.concat([
        buf.subarray(0, p),
        other.subarray(from, from + e.len),
        buf.subarray(p),
      ])
    }
  }
}

/** A seed with 1–8 edits applied. */
export function mutatedFrom(seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  if (seeds.length === 0) throw new Error('mutatedFrom needs at least one seed')
  return fc
    .tuple(fc.nat(seeds.length - 1), fc.array(editArb, { minLength: 1, maxLength: 8 }))
    .map(([i, edits]) => {
      let buf: Buffer = Buffer.from(seeds[i] ?? new Uint8Array())
      for (const e of edits) {
        buf = applyEdit(buf, e, seeds)
        if (buf.length > MAX_INPUT) buf = buf.subarray(0, MAX_INPUT)
      }
      return new Uint8Array(buf)
    })
}

/** Random bytes, sometimes starting like the formats we parse. */
export function bytesFrom(maxLength: number): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(
      fc.constantFrom([], [0x00], [0x81], [0xde], [0x30, 0x82], [0x7b], [0x04, 0x00, 0x02, 0x00]),
      fc.uint8Array({ maxLength }),
    )
    .map(([prefix, rest]) => new Uint8Array([...prefix, ...rest]))
}
