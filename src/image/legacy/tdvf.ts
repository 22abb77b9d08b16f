// TDVF (TDX OVMF) metadata, MRTD and the TD HOB digest, as upstream `dstack-mr/src/tdvf.rs`
// computes them: MRTD emulates the TDX module's TDH.MEM.PAGE.ADD / TDH.MR.EXTEND over the
// firmware sections; the TD HOB is the memory map OVMF hands over, measured as RTMR0 event 0.
// Unlike upstream, a zero-length GUID-table entry, an out-of-range section or an absurd section
// size is a clear error instead of an endless loop or a panic.
import { createHash } from 'node:crypto'
import { encodeGuid, sha384 } from '../tdx-registers.js'
import { ImageError } from './errors.js'
import { buildTdHob, encodeTdHobWitness, type TdHobWitness } from '../td-hob.js'

const PAGE = 0x1000
const EXTEND_CHUNK = 0x100
const ATTR_MR_EXTEND = 1
const ATTR_PAGE_AUG = 2
export const SECTION_TD_HOB = 2
export const SECTION_TEMP_MEM = 3
const TABLE_FOOTER_GUID = encodeGuid('96b582de-1fb2-45f7-baea-a366c55a082d')
const METADATA_OFFSET_GUID = encodeGuid('e47a6535-984a-4798-865e-4685a7bf8ec2')
/** 4 GiB of pages: far above any real TDVF, low enough that hashing stays in seconds */
const MAX_MEASURED_PAGES = 0x100000

export interface TdvfSection {
  dataOffset: number
  rawDataSize: number
  memoryAddress: number
  memoryDataSize: number
  type: number
  attributes: number
}

const fail = (msg: string): never => {
  throw new ImageError(`Failed to parse TDVF metadata: ${msg}`)
}

function u64(buf: Buffer, off: number, what: string): number {
  const v = buf.readBigUInt64LE(off)
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} is out of range`)
  return Number(v)
}

export function parseTdvf(fw: Buffer): TdvfSection[] {
  if (fw.length < 32 + 18) fail('firmware too small')
  const footer = fw.length - 32
  if (!fw.subarray(footer - 16, footer).equals(TABLE_FOOTER_GUID)) fail('Invalid footer GUID')
  const tablesLen = fw.readUInt16LE(footer - 18)
  if (tablesLen === 0 || tablesLen > footer - 18) fail('Invalid tables length')
  const tables = fw.subarray(footer - 18 - tablesLen, footer - 18)

  // The GUIDed table is walked from its end: each entry ends with u16 length and a GUID.
  let o = tables.length
  let entry: Buffer | null = null
  while (o >= 18) {
    const len = tables.readUInt16LE(o - 18)
    if (len > o - 18) fail('Invalid entry length')
    if (tables.subarray(o - 16, o).equals(METADATA_OFFSET_GUID)) {
      entry = tables.subarray(o - 18 - len, o - 18)
      break
    }
    if (len === 0) fail('zero-length GUID table entry')
    o -= len
  }
  if (entry === null) return fail('Missing TDVF metadata')
  if (entry.length < 4) fail('TDVF metadata data too small')
  const metaOffset = entry.readUInt32LE(entry.length - 4)
  if (metaOffset > fw.length) fail('TDVF metadata offset exceeds firmware size')
  const meta = fw.length - metaOffset
  if (meta + 16 > fw.length) fail('TDVF descriptor is truncated')
  if (fw.subarray(meta, meta + 4).toString('latin1') !== 'TDVF') fail('Invalid TDVF descriptor')
  if (fw.readUInt32LE(meta + 8) !== 1) fail('Unsupported TDVF version')
  const count = fw.readUInt32LE(meta + 12)
  if (meta + 16 + 32 * count > fw.length) {
    fail(`TDVF section table (${count} sections) is truncated`)
  }

  const sections: TdvfSection[] = []
  for (let i = 0; i < count; i++) {
    const s = meta + 16 + 32 * i
    const sec: TdvfSection = {
      dataOffset: fw.readUInt32LE(s),
      rawDataSize: fw.readUInt32LE(s + 4),
      memoryAddress: u64(fw, s + 8, `section ${i} address`),
      memoryDataSize: u64(fw, s + 16, `section ${i} size`),
      type: fw.readUInt32LE(s + 24),
      attributes: fw.readUInt32LE(s + 28),
    }
    if (sec.memoryAddress % PAGE !== 0) fail('Section memory address not aligned')
    if (sec.memoryDataSize < sec.rawDataSize) fail('Section memory data size less than raw')
    if (sec.memoryDataSize % PAGE !== 0) fail('Section memory data size not aligned')
    sections.push(sec)
  }
  return sections
}

/** MRTD over `fw`'s sections; `twoPass`: every PAGE.ADD of a section before its MR.EXTENDs. */
export function computeMrtd(
  fw: Buffer,
  sections: readonly TdvfSection[],
  twoPass: boolean,
): Buffer {
  let total = 0
  for (const s of sections) total += s.memoryDataSize / PAGE
  if (total > MAX_MEASURED_PAGES) {
    throw new ImageError(
      `TDVF sections describe ${total} pages; refusing to measure more than ${MAX_MEASURED_PAGES}`,
    )
  }
  const h = createHash('sha384')
  const block = Buffer.alloc(128)
  const pageAdd = (s: TdvfSection, page: number): void => {
    if (s.attributes & ATTR_PAGE_AUG) return
    block.fill(0)
    block.write('MEM.PAGE.ADD', 0, 'latin1')
    block.writeBigUInt64LE(BigInt(s.memoryAddress + page * PAGE), 16)
    h.update(block)
  }
  const extend = (s: TdvfSection, page: number): void => {
    if (!(s.attributes & ATTR_MR_EXTEND)) return
    for (let i = 0; i < PAGE / EXTEND_CHUNK; i++) {
      const off = s.dataOffset + page * PAGE + i * EXTEND_CHUNK
      if (off + EXTEND_CHUNK > fw.length) {
        throw new ImageError(
          `TDVF section at 0x${s.memoryAddress.toString(16)} extends past the end of the firmware`,
        )
      }
      block.fill(0)
      block.write('MR.EXTEND', 0, 'latin1')
      block.writeBigUInt64LE(BigInt(s.memoryAddress + page * PAGE + i * EXTEND_CHUNK), 16)
      h.update(block)
      h.update(fw.subarray(off, off + EXTEND_CHUNK))
    }
  }
  for (const s of sections) {
    const pages = s.memoryDataSize / PAGE
    if (twoPass) {
      for (let p = 0; p < pages; p++) pageAdd(s, p)
      for (let p = 0; p < pages; p++) extend(s, p)
    } else {
      for (let p = 0; p < pages; p++) {
        pageAdd(s, p)
        extend(s, p)
      }
    }
  }
  return h.digest()
}

/** SHA-384 of the TD HOB OVMF builds for `memorySize` bytes of guest memory (RTMR0 event 0): the
 * lite scheme's HOB builder fed with the TD_HOB / TEMP_MEM sections in metadata order. */
export function measureTdHob(sections: readonly TdvfSection[], memorySize: number): Buffer {
  if (!Number.isSafeInteger(memorySize) || memorySize <= 0) {
    throw new ImageError(`memory_size ${memorySize} cannot be measured`)
  }
  const witness: TdHobWitness = { tdHobBase: 0x809000n, ranges: [] }
  for (const s of sections) {
    if (s.type === SECTION_TD_HOB || s.type === SECTION_TEMP_MEM) {
      const start = BigInt(s.memoryAddress)
      witness.ranges.push({ start, end: start + BigInt(s.memoryDataSize) })
    }
    if (s.type === SECTION_TD_HOB) witness.tdHobBase = BigInt(s.memoryAddress)
  }
  return sha384(buildTdHob(witness, BigInt(memorySize)))
}

/** The compact TD HOB witness (v1) upstream's lite measurement documents carry. */
export function tdHobWitnessV1(sections: readonly TdvfSection[]): Buffer {
  const ranges: Array<[number, number]> = []
  let hobPage: number | null = null
  for (const s of sections) {
    if (s.type === SECTION_TD_HOB || s.type === SECTION_TEMP_MEM) {
      const pages = s.memoryDataSize / PAGE
      if (pages === 0) throw new ImageError('TD HOB witness range must not be empty')
      ranges.push([s.memoryAddress / PAGE, pages])
    }
    if (s.type === SECTION_TD_HOB) {
      if (hobPage !== null) {
        throw new ImageError('TDVF metadata contains more than one TD_HOB section')
      }
      hobPage = s.memoryAddress / PAGE
    }
  }
  if (ranges.length === 0) throw new ImageError('TDVF metadata has no TD_HOB/TEMP_MEM sections')
  if (hobPage === null) throw new ImageError('TDVF metadata is missing TD_HOB section')
  ranges.sort((a, b) => a[0] - b[0])
  for (let i = 1; i < ranges.length; i++) {
    const [ps, pc] = ranges[i - 1] as [number, number]
    if ((ranges[i] as [number, number])[0] < ps + pc) {
      throw new ImageError('TD HOB witness ranges must not overlap')
    }
  }
  const base = (ranges[0] as [number, number])[0]
  if (hobPage < base) throw new ImageError('TD_HOB page is below TD HOB witness base page')
  return encodeTdHobWitness(
    BigInt(hobPage),
    ranges.map(([start, pages]) => [BigInt(start), BigInt(pages)]),
  )
}
