// RTMR1 and RTMR2 inputs from the kernel, initrd and command line, as upstream
// `dstack-mr/src/kernel.rs`: QEMU patches the bzImage setup header (loader type, heap end,
// command-line address, initrd address and size) before OVMF measures the kernel's PE
// Authenticode SHA-384, so the digest depends on the initrd size and, below 2816 MiB (except
// exactly 2 GiB), on the guest memory size. Every read is bounds-checked (upstream slices panic).
import { createHash } from 'node:crypto'
import { sha384 } from '../tdx-registers.js'
import { ImageError } from './errors.js'

/** QEMU's ACPI data reservation below 4 GiB, which caps the initrd address */
export const ACPI_DATA_SIZE = 0x28000
const STABLE_MIN_MEMORY = 0xb0000000
const U32_MAX = 0xffffffff

/** Returns a copy of `kernel` patched the way QEMU's x86 loader patches it for TDX guests. */
export function patchKernel(
  kernel: Buffer,
  initrdSize: number,
  memSize: number,
  acpiDataSize: number,
): Buffer {
  if (kernel.length < 0x1000) throw new ImageError('the kernel image is too short')
  const kd = Buffer.from(kernel)
  const protocol = kd.readUInt16LE(0x206)
  const [real, cmd] =
    protocol < 0x200 || ((kd[0x211] ?? 0) & 1) === 0 ? [0x90000, 0x9a000] : [0x10000, 0x20000]
  if (protocol >= 0x200) kd[0x210] = 0xb0
  if (protocol >= 0x201) {
    kd[0x211] = (kd[0x211] ?? 0) | 0x80
    kd.writeUInt32LE(Math.max(0, cmd - real - 0x200), 0x224)
  }
  if (protocol >= 0x202) {
    kd.writeUInt32LE(cmd, 0x228)
  } else {
    kd.writeUInt16LE(0xa33f, 0x20)
    kd.writeUInt16LE((cmd - real) & 0xffff, 0x22)
  }
  if (initrdSize > 0) {
    if (protocol < 0x200) throw new ImageError('the kernel image is too old for ramdisk')
    if (initrdSize > U32_MAX) throw new ImageError('initrd is too large')
    let max: number
    if (protocol >= 0x20c) {
      max = kd.readUInt16LE(0x236) & 0x40 ? U32_MAX : 0x37ffffff
    } else if (protocol >= 0x203) {
      max = kd.readUInt32LE(0x22c) || 0x37ffffff
    } else {
      max = 0x37ffffff
    }
    const lowmem = memSize < STABLE_MIN_MEMORY ? STABLE_MIN_MEMORY : 0x80000000
    const below4g = memSize >= lowmem ? lowmem : memSize
    if (below4g < acpiDataSize) {
      throw new ImageError(`ACPI data size (${acpiDataSize}) exceeds available memory (${below4g})`)
    }
    const available = below4g - acpiDataSize
    if (max >= available) max = Math.max(0, available - 1)
    if (initrdSize >= max) throw new ImageError('initrd is too large')
    // `& ~4095` on a u32: keep the arithmetic unsigned
    kd.writeUInt32LE(max - initrdSize - ((max - initrdSize) % 4096), 0x218)
    kd.writeUInt32LE(initrdSize, 0x21c)
  }
  return kd
}

function u16(b: Buffer, off: number, what: string): number {
  if (off < 0 || off + 2 > b.length) throw new ImageError(`kernel PE image is truncated (${what})`)
  return b.readUInt16LE(off)
}
function u32(b: Buffer, off: number, what: string): number {
  if (off < 0 || off + 4 > b.length) throw new ImageError(`kernel PE image is truncated (${what})`)
  return b.readUInt32LE(off)
}

/** PE/COFF Authenticode SHA-384 (the digest OVMF extends for the kernel). */
export function authenticodeSha384(b: Buffer): Buffer {
  const lfanew = u32(b, 0x3c, 'DOS header')
  if (u32(b, lfanew, 'PE signature') !== 0x00004550) throw new ImageError('Invalid PE signature')
  const coff = lfanew + 4
  const optSize = u16(b, coff + 16, 'COFF header size')
  const opt = coff + 20
  const pe32plus = u16(b, opt, 'header magic') === 0x20b
  const checksum = opt + 64
  const certDir = opt + (pe32plus ? 112 : 96) + 4 * 8
  const headersEnd = u32(b, opt + 60, 'size_of_headers')
  if (!(checksum + 4 <= certDir && certDir + 8 <= headersEnd && headersEnd <= b.length)) {
    throw new ImageError('kernel PE headers are inconsistent')
  }
  const h = createHash('sha384')
  h.update(b.subarray(0, checksum))
  h.update(b.subarray(checksum + 4, certDir))
  h.update(b.subarray(certDir + 8, headersEnd))
  let hashed = headersEnd

  const count = u16(b, coff + 2, 'number of sections')
  const table = opt + optSize
  const sections: Array<[number, number]> = []
  for (let i = 0; i < count; i++) {
    const s = table + 40 * i
    const size = u32(b, s + 16, 'size_of_raw_data')
    const ptr = u32(b, s + 20, 'pointer_to_raw_data')
    if (size > 0) sections.push([ptr, size])
  }
  sections.sort((x, y) => x[0] - y[0])
  for (const [ptr, size] of sections) {
    // a section running past the end is hashed as far as the file goes, its full size counted
    if (ptr < b.length) h.update(b.subarray(ptr, Math.min(ptr + size, b.length)))
    hashed += size
  }
  const certAddr = u32(b, certDir, 'certificate table address')
  const certSize = u32(b, certDir + 4, 'certificate table size')
  if (certAddr > 0 && certSize > 0 && b.length > hashed && b.length - hashed > certSize) {
    h.update(b.subarray(hashed, hashed + (b.length - hashed - certSize)))
  }
  if (b.length % 8 !== 0) h.update(Buffer.alloc(8 - (b.length % 8)))
  return h.digest()
}

export function patchedKernelAuthenticode(
  kernel: Buffer,
  initrdSize: number,
  memSize: number,
): Buffer {
  let patched: Buffer
  try {
    patched = patchKernel(kernel, initrdSize, memSize, ACPI_DATA_SIZE)
  } catch (err) {
    throw new ImageError(`Failed to patch kernel: ${(err as Error).message}`, { cause: err })
  }
  try {
    return authenticodeSha384(patched)
  } catch (err) {
    throw new ImageError(`Failed to compute kernel hash: ${(err as Error).message}`, { cause: err })
  }
}

/** True when the patched kernel digest is the same as for any memory ≥ 2816 MiB. */
export const kernelHashIsMemoryIndependent = (memSize: number): boolean =>
  memSize === 0x80000000 || memSize >= STABLE_MIN_MEMORY

/** RTMR2 event 0: the UTF-16LE command line with its NUL terminator. */
export const measureCmdline = (cmdline: string): Buffer =>
  sha384(Buffer.from(cmdline, 'utf16le'), Buffer.alloc(2))
