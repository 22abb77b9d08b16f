// A synthetic legacy OS image, small enough to build in every test: a fake OVMF with a valid
// TDVF metadata table (the TD_HOB/TEMP_MEM layout of real dstack firmware, so its TD HOB matches
// upstream's vectors), a bzImage-shaped kernel with a Linux setup header and a PE32+ header, an
// initrd, metadata.json, sha256sum.txt and digest.txt; plus a ustar writer for the archive
// (including the hostile entries the extractor must refuse).
import { createHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'

const PAGE = 0x1000

function guid(text: string): Buffer {
  return Buffer.concat(
    text.split('-').map((g, i) => {
      const b = Buffer.from(g, 'hex')
      return i <= 2 ? b.reverse() : b
    }),
  )
}

export interface FakeSection {
  dataOffset: number
  rawDataSize: number
  memoryAddress: number
  memoryDataSize: number
  type: number
  attributes: number
}

/** BFV (extended), CFV, then the TD_HOB/TEMP_MEM sections of upstream's witness vector. */
export const FAKE_SECTIONS: FakeSection[] = [
  {
    dataOffset: 0,
    rawDataSize: 0x3000,
    memoryAddress: 0xffc00000,
    memoryDataSize: 0x3000,
    type: 0,
    attributes: 1,
  },
  {
    dataOffset: 0x3000,
    rawDataSize: 0x1000,
    memoryAddress: 0xff000000,
    memoryDataSize: 0x1000,
    type: 1,
    attributes: 0,
  },
  {
    dataOffset: 0,
    rawDataSize: 0,
    memoryAddress: 0x810000,
    memoryDataSize: 0x10000,
    type: 3,
    attributes: 0,
  },
  {
    dataOffset: 0,
    rawDataSize: 0,
    memoryAddress: 0x80b000,
    memoryDataSize: 0x2000,
    type: 3,
    attributes: 2,
  },
  {
    dataOffset: 0,
    rawDataSize: 0,
    memoryAddress: 0x809000,
    memoryDataSize: 0x2000,
    type: 2,
    attributes: 0,
  },
  {
    dataOffset: 0,
    rawDataSize: 0,
    memoryAddress: 0x800000,
    memoryDataSize: 0x6000,
    type: 3,
    attributes: 0,
  },
]

export interface OvmfOptions {
  sections?: FakeSection[]
  /** length field of the unrelated GUID-table entry next to the footer (0 is the upstream hang) */
  otherEntryLength?: number
  seed?: number
}

/** A 64 KiB firmware: data pages, the TDVF descriptor at 0x8000, a GUIDed table at the end. */
export function fakeOvmf(opts: OvmfOptions = {}): Buffer {
  const sections = opts.sections ?? FAKE_SECTIONS
  const fw = Buffer.alloc(0x10000)
  for (let i = 0; i < 0x4000; i++) fw[i] = (i * 31 + (opts.seed ?? 7)) & 0xff
  const meta = 0x8000
  fw.write('TDVF', meta, 'latin1')
  fw.writeUInt32LE(16 + 32 * sections.length, meta + 4)
  fw.writeUInt32LE(1, meta + 8)
  fw.writeUInt32LE(sections.length, meta + 12)
  sections.forEach((s, i) => {
    const o = meta + 16 + 32 * i
    fw.writeUInt32LE(s.dataOffset, o)
    fw.writeUInt32LE(s.rawDataSize, o + 4)
    fw.writeBigUInt64LE(BigInt(s.memoryAddress), o + 8)
    fw.writeBigUInt64LE(BigInt(s.memoryDataSize), o + 16)
    fw.writeUInt32LE(s.type, o + 24)
    fw.writeUInt32LE(s.attributes, o + 28)
  })
  // GUIDed table, as OVMF lays it out: entries end with `u16 length ‖ GUID`; the footer's
  // length counts the whole table including the footer itself.
  const footer = fw.length - 32
  guid('96b582de-1fb2-45f7-baea-a366c55a082d').copy(fw, footer - 16)
  const other = footer - 18 // end of the unrelated entry
  guid('dc886566-984a-4798-a75e-5585a7bf67cc').copy(fw, other - 16)
  fw.writeUInt16LE(opts.otherEntryLength ?? 26, other - 18) // 8 data bytes + 18
  const metaEntry = other - 26
  guid('e47a6535-984a-4798-865e-4685a7bf8ec2').copy(fw, metaEntry - 16)
  fw.writeUInt16LE(22, metaEntry - 18)
  fw.writeUInt32LE(fw.length - meta, metaEntry - 22)
  fw.writeUInt16LE(22 + 26 + 18, footer - 18)
  return fw
}

/** The MRTD as the TDX module defines it, written out as one byte stream (test model). */
export function modelMrtd(fw: Buffer, sections: FakeSection[], twoPass: boolean): Buffer {
  const chunks: Buffer[] = []
  const add = (s: FakeSection, p: number): void => {
    if (s.attributes & 2) return
    const b = Buffer.alloc(128)
    b.write('MEM.PAGE.ADD')
    b.writeBigUInt64LE(BigInt(s.memoryAddress + p * PAGE), 16)
    chunks.push(b)
  }
  const ext = (s: FakeSection, p: number): void => {
    if (!(s.attributes & 1)) return
    for (let i = 0; i < 16; i++) {
      const b = Buffer.alloc(128)
      b.write('MR.EXTEND')
      b.writeBigUInt64LE(BigInt(s.memoryAddress + p * PAGE + i * 256), 16)
      const at = s.dataOffset + p * PAGE + i * 256
      chunks.push(b, fw.subarray(at, at + 256))
    }
  }
  for (const s of sections) {
    const n = s.memoryDataSize / PAGE
    if (twoPass) {
      for (let p = 0; p < n; p++) add(s, p)
      for (let p = 0; p < n; p++) ext(s, p)
    } else {
      for (let p = 0; p < n; p++) {
        add(s, p)
        ext(s, p)
      }
    }
  }
  return createHash('sha384').update(Buffer.concat(chunks)).digest()
}

/** PE32+ header offsets of the fake kernel */
export const KERNEL_LAYOUT = {
  lfanew: 0x40,
  optionalHeader: 0x58,
  checksum: 0x58 + 64,
  certDir: 0x58 + 112 + 32,
  sizeOfHeaders: 0x200,
  sections: [
    [0x200, 0xe00],
    [0x1000, 0x1000],
  ] as Array<[number, number]>,
}

/** An 8 KiB + 3 byte bzImage: setup header protocol 2.15 at 0x1f1, PE32+ at 0x40, two sections. */
export function fakeKernel(
  opts: { protocol?: number; xloadflags?: number; seed?: number } = {},
): Buffer {
  const L = KERNEL_LAYOUT
  const k = Buffer.alloc(0x2003)
  for (let i = 0x200; i < k.length; i++) k[i] = (i * 13 + (opts.seed ?? 1)) & 0xff
  k.write('MZ', 0, 'latin1')
  k.writeUInt32LE(L.lfanew, 0x3c)
  k.writeUInt32LE(0x00004550, L.lfanew)
  const coff = L.lfanew + 4
  k.writeUInt16LE(0x8664, coff) // machine
  k.writeUInt16LE(L.sections.length, coff + 2)
  k.writeUInt16LE(0xf0, coff + 16) // optional header size
  const opt = L.optionalHeader
  k.writeUInt16LE(0x20b, opt)
  k.writeUInt32LE(L.sizeOfHeaders, opt + 60)
  k.writeUInt32LE(0x12345678, L.checksum)
  const table = opt + 0xf0
  L.sections.forEach(([ptr, size], i) => {
    const s = table + 40 * i
    k.write(i === 0 ? '.setup' : '.text', s, 'latin1')
    k.writeUInt32LE(size, s + 16)
    k.writeUInt32LE(ptr, s + 20)
  })
  // Linux boot protocol setup header
  k[0x1f1] = 7 // setup_sects
  k.writeUInt16LE(0xaa55, 0x1fe)
  k.write('HdrS', 0x202, 'latin1')
  k.writeUInt16LE(opts.protocol ?? 0x020f, 0x206)
  k[0x211] = 0x01 // LOADED_HIGH
  k.writeUInt16LE(opts.xloadflags ?? 0x40, 0x236)
  return k
}

export interface SyntheticImage {
  files: Map<string, Buffer>
  sha256sum: Buffer
  /** os_image_hash = SHA-256(sha256sum.txt) */
  osImageHash: Buffer
  hex: string
  cmdline: string
  firmware: Buffer
  kernel: Buffer
  initrd: Buffer
}

export interface ImageOptions {
  initrdBytes?: number
  /** the initrd itself (e.g. incompressible bytes for benchmarks); overrides initrdBytes */
  initrdData?: Buffer
  metadata?: Record<string, unknown>
  /** extra files in the archive that sha256sum.txt does not list */
  unlisted?: Record<string, Buffer>
  seed?: number
}

export function syntheticImage(opts: ImageOptions = {}): SyntheticImage {
  const seed = opts.seed ?? 1
  const firmware = fakeOvmf({ seed })
  const kernel = fakeKernel({ seed })
  let initrd = opts.initrdData
  if (initrd === undefined) {
    initrd = Buffer.alloc(opts.initrdBytes ?? 0x3456)
    for (let i = 0; i < initrd.length; i++) initrd[i] = (i * 7 + seed) & 0xff
  }
  const cmdline =
    'console=ttyS0 init=/init panic=1 dstack.rootfs_hash=' +
    'ab'.repeat(32) +
    ' dstack.rootfs_size=4096'
  const metadata = opts.metadata ?? {
    bios: 'ovmf.fd',
    kernel: 'bzImage',
    cmdline,
    initrd: 'initramfs.cpio.gz',
    rootfs: 'rootfs.img.verity',
    version: '0.5.5',
    is_dev: false,
    ovmf_variant: 'pre202505',
  }
  const listed = new Map<string, Buffer>([
    ['ovmf.fd', firmware],
    ['bzImage', kernel],
    ['initramfs.cpio.gz', initrd],
    ['metadata.json', Buffer.from(JSON.stringify(metadata))],
  ])
  const sha256sum = Buffer.from(
    [...listed].map(([n, d]) => `${createHash('sha256').update(d).digest('hex')}  ${n}\n`).join(''),
  )
  const osImageHash = createHash('sha256').update(sha256sum).digest()
  const files = new Map(listed)
  files.set('sha256sum.txt', sha256sum)
  files.set('digest.txt', Buffer.from(osImageHash.toString('hex')))
  for (const [n, d] of Object.entries(opts.unlisted ?? {})) files.set(n, d)
  return {
    files,
    sha256sum,
    osImageHash,
    hex: osImageHash.toString('hex'),
    cmdline,
    firmware,
    kernel,
    initrd,
  }
}

export interface TarEntry {
  name: string
  data?: Buffer
  /** '0' file (default), '5' directory, '1' hard link, '2' symlink, '3' char device, 'x' pax
   * header, 'g' global pax header, 'L' GNU long name */
  type?: string
  linkname?: string
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0'
}

/** A ustar archive (names up to 100 bytes), ended by two zero blocks. */
export function tar(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = []
  for (const e of entries) {
    const data = e.data ?? Buffer.alloc(0)
    const h = Buffer.alloc(512)
    h.write(e.name, 0, 100, 'utf8')
    h.write(octal(e.type === '5' ? 0o755 : 0o644, 8), 100, 'latin1')
    h.write(octal(0, 8), 108, 'latin1')
    h.write(octal(0, 8), 116, 'latin1')
    const hasData = e.type === undefined || ['0', 'x', 'g', 'L'].includes(e.type)
    h.write(octal(hasData ? data.length : 0, 12), 124, 'latin1')
    h.write(octal(0, 12), 136, 'latin1')
    h.write(e.type ?? '0', 156, 'latin1')
    if (e.linkname !== undefined) h.write(e.linkname, 157, 100, 'utf8')
    h.write('ustar\0', 257, 'latin1')
    h.write('00', 263, 'latin1')
    h.fill(0x20, 148, 156)
    let sum = 0
    for (const b of h) sum += b
    h.write(octal(sum, 7) + ' ', 148, 'latin1')
    blocks.push(h)
    if (hasData) {
      blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512))
    }
  }
  blocks.push(Buffer.alloc(1024))
  return Buffer.concat(blocks)
}

/** The image as a published `mr_<hash>.tar.gz` (files at the root, optionally `./`-prefixed). */
export function imageArchive(
  img: SyntheticImage,
  opts: { dotSlash?: boolean; members?: number } = {},
): Buffer {
  const entries: TarEntry[] = [...img.files].map(([name, data]) => ({
    name: (opts.dotSlash ? './' : '') + name,
    data,
  }))
  if (opts.dotSlash) entries.unshift({ name: './', type: '5' })
  const raw = tar(entries)
  const members = opts.members ?? 1
  if (members === 1) return gzipSync(raw)
  // concatenated gzip members, as `pigz` or `cat a.gz b.gz` produce
  const step = Math.ceil(raw.length / members)
  const parts: Buffer[] = []
  for (let i = 0; i < raw.length; i += step) parts.push(gzipSync(raw.subarray(i, i + step)))
  return Buffer.concat(parts)
}
