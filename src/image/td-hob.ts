// The TD HOB that TDVF hands to the guest, rebuilt from the compact witness a lite measurement
// document carries (upstream `dstack-mr` `tdx.rs` `measure_td_hob_from_witness_data`; the same
// HOB layout as `tdvf.rs` `measure_td_hob`). Its SHA-384 is the first RTMR0 event.
import { KmsError } from '../errors.js'
import { sha384 } from './tdx-registers.js'

const PAGE = 0x1000n
const U64_MAX = (1n << 64n) - 1n
/** At or above this size QEMU splits guest RAM around the 32-bit PCI hole (0x80000000..4 GiB). */
export const HIGH_MEMORY_MIN = 0xb0000000n
const LOW_MEMORY_TOP = 0x80000000n
const HIGH_MEMORY_BASE = 0x100000000n
/** Witness ranges are bounded so that a hostile document cannot make us build a huge HOB. */
const MAX_WITNESS_RANGES = 256

export interface TdHobWitness {
  tdHobBase: bigint
  /** accepted [start, end) ranges in bytes */
  ranges: Array<{ start: bigint; end: bigint }>
}

function fail(message: string): never {
  throw new KmsError('KMS_ERR_ATTESTATION', message)
}

/** Unsigned LEB128 values in 4 KiB pages: base_page, td_hob_page − base_page, range_count, then
 * (start_page − base_page, page_count) per range. Trailing bytes are an error. */
export function decodeTdHobWitness(data: Uint8Array): TdHobWitness {
  let pos = 0
  const varuint = (): bigint => {
    let value = 0n
    let shift = 0n
    for (;;) {
      const byte = data[pos++]
      if (byte === undefined) fail('truncated TD HOB witness varuint')
      value |= BigInt(byte & 0x7f) << shift
      if ((byte & 0x80) === 0) return value
      shift += 7n
      if (shift >= 64n) fail('TD HOB witness varuint is too large')
    }
  }
  const checked = (v: bigint, what: string): bigint => {
    if (v > U64_MAX) fail(`${what} overflow`)
    return v
  }
  const basePage = varuint()
  const tdHobDelta = varuint()
  const count = varuint()
  if (count > BigInt(MAX_WITNESS_RANGES)) {
    fail(`TD HOB witness has ${count} ranges, at most ${MAX_WITNESS_RANGES} are supported`)
  }
  const tdHobBase = checked((basePage + tdHobDelta) * PAGE, 'TD HOB base address')
  const ranges: TdHobWitness['ranges'] = []
  for (let i = 0n; i < count; i++) {
    const start = checked((basePage + varuint()) * PAGE, 'TD HOB range start')
    const len = checked(varuint() * PAGE, 'TD HOB range length')
    ranges.push({ start, end: checked(start + len, 'TD HOB range end') })
  }
  if (pos !== data.length) fail('TD HOB witness has trailing bytes')
  return { tdHobBase, ranges }
}

type MemRange = { accepted: boolean; start: bigint; end: bigint }

/** TDVF's memory acceptance: split every unaccepted range the accepted one overlaps, append it,
 * keep the list sorted by start (stable). */
function accept(ranges: MemRange[], start: bigint, end: bigint): MemRange[] {
  if (start >= end) return ranges
  const out: MemRange[] = []
  for (const r of ranges) {
    if (r.accepted || r.end <= start || r.start >= end) {
      out.push(r)
      continue
    }
    if (r.start < start) out.push({ accepted: false, start: r.start, end: start })
    if (r.end > end) out.push({ accepted: false, start: end, end: r.end })
  }
  out.push({ accepted: true, start, end })
  // Array.prototype.sort is stable, like Rust's sort_by_key
  out.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
  return out
}

function u64le(v: bigint): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(BigInt.asUintN(64, v))
  return b
}

function resourceHob(type: number, start: bigint, length: bigint): Buffer {
  const hob = Buffer.alloc(48)
  hob.writeUInt16LE(3, 0) // EFI_HOB_TYPE_RESOURCE_DESCRIPTOR
  hob.writeUInt16LE(48, 2)
  // 4 reserved + 16-byte owner GUID stay zero
  hob.writeUInt32LE(type, 24)
  hob.writeUInt32LE(7, 28) // present | initialized | tested
  u64le(start).copy(hob, 32)
  u64le(length).copy(hob, 40)
  return hob
}

/** The TD HOB bytes for `memorySize` bytes of guest RAM. */
export function buildTdHob(w: TdHobWitness, memorySize: bigint): Buffer {
  let ranges: MemRange[] = [{ accepted: false, start: 0n, end: memorySize }]
  for (const r of w.ranges) ranges = accept(ranges, r.start, r.end)
  const phit = Buffer.alloc(56)
  phit.writeUInt16LE(1, 0) // EFI_HOB_TYPE_HANDOFF
  phit.writeUInt16LE(56, 2)
  phit.writeUInt32LE(9, 8) // PHIT version
  const parts: Buffer[] = [phit]
  const last = ranges.pop()
  if (last === undefined) fail('No ranges')
  for (const r of ranges) {
    if (r.end < r.start) fail('Invalid memory range: end < start')
    parts.push(resourceHob(r.accepted ? 0 : 7, r.start, r.end - r.start))
  }
  if (last.end < last.start) fail('Invalid last memory range: end < start')
  if (memorySize >= HIGH_MEMORY_MIN) {
    if (last.start < LOW_MEMORY_TOP) {
      parts.push(resourceHob(7, last.start, LOW_MEMORY_TOP - last.start))
    }
    if (last.end > LOW_MEMORY_TOP) {
      parts.push(resourceHob(7, HIGH_MEMORY_BASE, last.end - LOW_MEMORY_TOP))
    }
  } else {
    parts.push(resourceHob(7, last.start, last.end - last.start))
  }
  const hob = Buffer.concat(parts)
  // EfiEndOfHobList: just past the end-of-list HOB that TDVF appends (not measured)
  u64le(w.tdHobBase + BigInt(hob.length) + 8n).copy(hob, 48)
  return hob
}

export function tdHobDigest(witness: Uint8Array, memorySize: bigint): Buffer {
  return sha384(buildTdHob(decodeTdHobWitness(witness), memorySize))
}

/** LEB128 encoding of a witness (upstream `td_hob_witness_v1`), for the simulator's image. */
export function encodeTdHobWitness(tdHobPage: bigint, ranges: Array<[bigint, bigint]>): Buffer {
  const sorted = [...ranges].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  const first = sorted[0]
  if (first === undefined) fail('TDVF metadata has no TD_HOB/TEMP_MEM sections')
  const base = first[0]
  const out: number[] = []
  const put = (v: bigint): void => {
    do {
      let byte = Number(v & 0x7fn)
      v >>= 7n
      if (v !== 0n) byte |= 0x80
      out.push(byte)
    } while (v !== 0n)
  }
  put(base)
  put(tdHobPage - base)
  put(BigInt(sorted.length))
  for (const [start, count] of sorted) {
    put(start - base)
    put(count)
  }
  return Buffer.from(out)
}
