// An in-memory TDX guest kernel behind the TdxIo interface: configfs-tsm report directories
// (inblob/outblob/generation/provider, mkdir of new reports), the tsm-mr measurement files, the
// /dev/tdx_guest ioctls, the CCEL data file and ordinary files (the runtime event log, its lock).
// It keeps its own RTMRs with its own SHA-384 (node:crypto), so tests compare the code under test
// against an independent model. Faults are injected per operation and path as errno codes.
import { createHash } from 'node:crypto'
import { constants } from 'node:os'
import type { TdxFile, TdxIo, TdxOpenMode } from '../../src/tee/tdx/io.js'

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EBUSY: 'resource busy or locked',
  EINVAL: 'invalid argument',
  EINTR: 'interrupted system call',
  ETIMEDOUT: 'connection timed out',
  EFBIG: 'file too large',
  EIO: 'i/o error',
  ENOTTY: 'inappropriate ioctl for device',
  EEXIST: 'file already exists',
  EISDIR: 'illegal operation on a directory',
  ENOTDIR: 'not a directory',
  ENXIO: 'no such device or address',
  ECONNRESET: 'connection reset by peer',
  ECONNREFUSED: 'connection refused',
  EROFS: 'read-only file system',
}

export interface FakeErrnoError extends Error {
  code: string
  errno: number
  syscall: string
  path?: string
}

/** An error in Node's fs shape, as fs.promises (or the addon) would reject. */
export function errnoError(code: string, syscall: string, path?: string): FakeErrnoError {
  const errno = (constants.errno as Record<string, number | undefined>)[code]
  if (errno === undefined) throw new Error(`unknown errno code ${code}`)
  const where = path === undefined ? '' : ` '${path}'`
  const err = new Error(`${code}: ${ERRNO_TEXT[code] ?? 'error'}, ${syscall}${where}`)
  return Object.assign(err, { code, errno: -errno, syscall }, path === undefined ? {} : { path })
}

/** The host's Quote Generation Service: gets the framed request, returns the framed reply. */
export type FakeQgs = (cid: number, port: number, request: Buffer) => Buffer

interface SpecialFile {
  read?(length: number, offset: number): Buffer
  write?(data: Buffer, offset: number): number
}

type FakeNode =
  | { kind: 'dir' }
  | { kind: 'file'; data: Buffer; mode: number }
  | { kind: 'special'; file: SpecialFile; mode: number }

export type FaultOp = 'open' | 'read' | 'write' | 'flock' | 'mkdir'

export const CONFIGFS_BASE = '/sys/kernel/config/tsm/report'
export const DCAP_REPORT = `${CONFIGFS_BASE}/com.intel.dcap`
export const MEASUREMENTS = '/sys/devices/virtual/misc/tdx_guest/measurements'
export const CCEL_DATA = '/sys/firmware/acpi/tables/data/CCEL'
export const TDX_GUEST = '/dev/tdx_guest'

export interface FakeKernelOptions {
  env?: Record<string, string | undefined>
  /** absent: no configfs at all; mounted: the tsm report base only; dcap: with com.intel.dcap */
  configfs?: 'absent' | 'mounted' | 'dcap'
  /** the provider text of report directories (the kernel writes `tdx_guest\n`) */
  provider?: string
  /** tsm-mr measurement files under the default sysfs path */
  measurements?: boolean
  /** /dev/tdx_guest */
  device?: boolean
  /** the device answers the legacy EXTEND_RTMR ioctl (out-of-tree driver) instead of ENOTTY */
  legacyExtendIoctl?: boolean
  /** the CCEL log area */
  ccel?: Buffer
  /** initial RTMR0..3 (default all zero) */
  rtmrs?: Buffer[]
  /** builds the outblob for the inblob's REPORTDATA; default: a 2000-byte fake quote */
  makeQuote?: (reportData: Buffer, rtmrs: readonly Buffer[]) => Buffer
  qgs?: FakeQgs
}

function normalize(path: string): string {
  if (!path.startsWith('/')) throw new Error(`fake kernel paths are absolute: ${path}`)
  const parts = path.split('/').filter((p) => p !== '' && p !== '.')
  return '/' + parts.join('/')
}

function parentOf(path: string): string {
  const i = path.lastIndexOf('/')
  return i <= 0 ? '/' : path.slice(0, i)
}

export class FakeTdxKernel implements TdxIo {
  readonly env: Record<string, string | undefined>
  readonly rtmrs: Buffer[]
  /** every sleep the code asked for, in ms (sleeps advance the fake clock instantly) */
  readonly sleeps: number[] = []
  /** every extend that reached the registers, in order */
  readonly extends: { index: number; digest: Buffer; via: 'sysfs' | 'ioctl' }[] = []
  /** every REPORTDATA written to an inblob */
  readonly inblobWrites: Buffer[] = []
  /** hooks to model other processes: run after the inblob write / before the outblob read */
  afterInblobWrite: ((dir: string) => void) | undefined
  beforeOutblobRead: ((dir: string) => void) | undefined
  /** false: writes to inblob do not advance the generation (a stuck kernel) */
  generationAdvances = true
  provider: string
  legacyExtendIoctl: boolean
  makeQuote: (reportData: Buffer, rtmrs: readonly Buffer[]) => Buffer
  /** the QGS on the host; undefined: nothing listens (connect is reset) */
  qgs: FakeQgs | undefined
  /** every framed request sent over vsock */
  readonly vsockRequests: { cid: number; port: number; request: Buffer }[] = []

  readonly #nodes = new Map<string, FakeNode>()
  readonly #faults = new Map<string, string[]>()
  readonly #locks = new Map<string, Promise<void>>()
  readonly #reports = new Map<string, { generation: bigint; inblob: Buffer | null }>()
  #clock = 0

  constructor(options: FakeKernelOptions = {}) {
    this.env = { ...(options.env ?? {}) }
    this.provider = options.provider ?? 'tdx_guest\n'
    this.legacyExtendIoctl = options.legacyExtendIoctl ?? false
    this.rtmrs = (options.rtmrs ?? [0, 1, 2, 3].map(() => Buffer.alloc(48))).map((r) =>
      Buffer.from(r),
    )
    this.makeQuote = options.makeQuote ?? defaultQuote
    this.qgs = options.qgs
    this.#nodes.set('/', { kind: 'dir' })
    const configfs = options.configfs ?? 'dcap'
    if (configfs !== 'absent') this.mkdirp(CONFIGFS_BASE)
    if (configfs === 'dcap') this.addReportDir(DCAP_REPORT)
    if (options.measurements ?? true) this.addMeasurements(MEASUREMENTS)
    if (options.device ?? true) this.addDevice()
    if (options.ccel !== undefined) this.writeFileSync(CCEL_DATA, options.ccel)
  }

  // ---- building the tree ---------------------------------------------------------------------

  mkdirp(path: string): void {
    const p = normalize(path)
    if (p === '/') return
    this.mkdirp(parentOf(p))
    const node = this.#nodes.get(p)
    if (node === undefined) this.#nodes.set(p, { kind: 'dir' })
    else if (node.kind !== 'dir') throw new Error(`${p} exists and is not a directory`)
  }

  writeFileSync(path: string, data: Uint8Array | string, mode = 0o644): void {
    const p = normalize(path)
    this.mkdirp(parentOf(p))
    this.#nodes.set(p, { kind: 'file', data: Buffer.from(data), mode })
  }

  fileContent(path: string): Buffer | undefined {
    const node = this.#nodes.get(normalize(path))
    return node?.kind === 'file' ? node.data : undefined
  }

  fileMode(path: string): number | undefined {
    const node = this.#nodes.get(normalize(path))
    return node === undefined || node.kind === 'dir' ? undefined : node.mode
  }

  remove(path: string): void {
    const p = normalize(path)
    for (const key of [...this.#nodes.keys()]) {
      if (key === p || key.startsWith(p + '/')) this.#nodes.delete(key)
    }
  }

  /** A configfs-tsm report directory as the kernel populates it after `mkdir`. */
  addReportDir(path: string): void {
    const dir = normalize(path)
    this.mkdirp(dir)
    const state = { generation: 0n, inblob: null as Buffer | null }
    this.#reports.set(dir, state)
    this.#special(`${dir}/provider`, 0o444, {
      read: (len, off) => slice(Buffer.from(this.provider), len, off),
    })
    this.#special(`${dir}/generation`, 0o444, {
      read: (len, off) => slice(Buffer.from(`${state.generation}\n`), len, off),
    })
    this.#special(`${dir}/inblob`, 0o200, {
      write: (data, off) => {
        // the kernel stores up to 64 bytes and bumps the generation on every write
        if (off + data.length > 64) throw errnoError('EFBIG', 'write', `${dir}/inblob`)
        const next = Buffer.alloc(off + data.length)
        if (state.inblob !== null && off > 0) state.inblob.copy(next, 0, 0, off)
        data.copy(next, off)
        state.inblob = next
        if (this.generationAdvances) state.generation += 1n
        this.inblobWrites.push(Buffer.from(data))
        this.afterInblobWrite?.(dir)
        return data.length
      },
    })
    this.#special(`${dir}/outblob`, 0o444, {
      read: (len, off) => {
        this.beforeOutblobRead?.(dir)
        if (state.inblob === null || state.inblob.length !== 64) {
          throw errnoError('EINVAL', 'read', `${dir}/outblob`)
        }
        return slice(this.makeQuote(state.inblob, this.rtmrs), len, off)
      },
    })
  }

  /** Bumps a report directory's generation, as a write by another process would. */
  bumpGeneration(dir: string = DCAP_REPORT): void {
    const state = this.#reports.get(normalize(dir))
    if (state === undefined) throw new Error(`no report directory ${dir}`)
    state.generation += 1n
  }

  generation(dir: string = DCAP_REPORT): bigint {
    const state = this.#reports.get(normalize(dir))
    if (state === undefined) throw new Error(`no report directory ${dir}`)
    return state.generation
  }

  /** tsm-mr measurement attributes: RTMR2/3 writable (48 bytes at offset 0), like the simulator. */
  addMeasurements(path: string): void {
    const dir = normalize(path)
    this.mkdirp(dir)
    for (let i = 0; i < 4; i++) {
      const file = `${dir}/rtmr${i}:sha384`
      this.#special(file, 0o600, {
        read: (len, off) => slice(this.rtmrs[i] ?? Buffer.alloc(48), len, off),
        write: (data, off) => {
          if (i < 2 || off !== 0 || data.length !== 48) throw errnoError('EINVAL', 'write', file)
          this.#extend(i, data, 'sysfs')
          return 48
        },
      })
    }
  }

  addDevice(): void {
    this.#special(TDX_GUEST, 0o600, {})
  }

  #special(path: string, mode: number, file: SpecialFile): void {
    const p = normalize(path)
    this.mkdirp(parentOf(p))
    this.#nodes.set(p, { kind: 'special', file, mode })
  }

  #extend(index: number, digest: Buffer, via: 'sysfs' | 'ioctl'): void {
    const current = this.rtmrs[index] ?? Buffer.alloc(48)
    this.rtmrs[index] = createHash('sha384').update(current).update(digest).digest()
    this.extends.push({ index, digest: Buffer.from(digest), via })
  }

  // ---- faults --------------------------------------------------------------------------------

  /** The next `codes.length` `op`s on `path` fail with these errno codes, in order. */
  inject(op: FaultOp, path: string, ...codes: string[]): void {
    const key = `${op} ${normalize(path)}`
    this.#faults.set(key, [...(this.#faults.get(key) ?? []), ...codes])
  }

  #fault(op: FaultOp, path: string, syscall: string = op): void {
    const key = `${op} ${path}`
    const queue = this.#faults.get(key)
    const code = queue?.shift()
    if (code !== undefined) throw errnoError(code, syscall, path)
  }

  // ---- TdxIo ---------------------------------------------------------------------------------

  async isDirectory(path: string): Promise<boolean> {
    return this.#nodes.get(normalize(path))?.kind === 'dir'
  }

  async exists(path: string): Promise<boolean> {
    return this.#nodes.has(normalize(path))
  }

  async readFile(path: string): Promise<Buffer> {
    const p = normalize(path)
    this.#fault('open', p)
    const node = this.#nodes.get(p)
    if (node === undefined) throw errnoError('ENOENT', 'open', p)
    if (node.kind === 'dir') throw errnoError('EISDIR', 'read', p)
    this.#fault('read', p)
    if (node.kind === 'file') return Buffer.from(node.data)
    if (node.file.read === undefined) throw errnoError('EACCES', 'open', p)
    return node.file.read(1 << 20, 0)
  }

  async readdir(path: string): Promise<string[]> {
    const p = normalize(path)
    const node = this.#nodes.get(p)
    if (node === undefined) throw errnoError('ENOENT', 'scandir', p)
    if (node.kind !== 'dir') throw errnoError('ENOTDIR', 'scandir', p)
    const prefix = p === '/' ? '/' : p + '/'
    return [...this.#nodes.keys()]
      .filter((k) => k.startsWith(prefix) && k !== p && !k.slice(prefix.length).includes('/'))
      .map((k) => k.slice(prefix.length))
  }

  async mkdir(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    const p = normalize(path)
    this.#fault('mkdir', p)
    const node = this.#nodes.get(p)
    if (node !== undefined) {
      if (options.recursive === true && node.kind === 'dir') return
      throw errnoError('EEXIST', 'mkdir', p)
    }
    const parent = this.#nodes.get(parentOf(p))
    if (parent === undefined) {
      if (options.recursive !== true) throw errnoError('ENOENT', 'mkdir', p)
      await this.mkdir(parentOf(p), options)
    } else if (parent.kind !== 'dir') {
      throw errnoError('ENOTDIR', 'mkdir', p)
    }
    // configfs: a new directory under the tsm report base is a new report instance
    if (parentOf(p) === CONFIGFS_BASE) this.addReportDir(p)
    else this.#nodes.set(p, { kind: 'dir' })
  }

  async open(path: string, mode: TdxOpenMode): Promise<TdxFile> {
    const p = normalize(path)
    this.#fault('open', p)
    let node = this.#nodes.get(p)
    if (node === undefined) {
      if (mode !== 'append' && mode !== 'lock') throw errnoError('ENOENT', 'open', p)
      const parent = this.#nodes.get(parentOf(p))
      if (parent?.kind !== 'dir') throw errnoError('ENOENT', 'open', p)
      node = { kind: 'file', data: Buffer.alloc(0), mode: 0o600 }
      this.#nodes.set(p, node)
    }
    if (node.kind === 'dir') {
      if (mode === 'read') return new FakeFile(this, p, node)
      throw errnoError('EISDIR', 'open', p)
    }
    if (node.kind === 'special') {
      if (mode === 'read' && node.file.read === undefined) throw errnoError('EACCES', 'open', p)
      if (mode !== 'read' && node.file.write === undefined) throw errnoError('EACCES', 'open', p)
    }
    return new FakeFile(this, p, node, mode === 'append')
  }

  async getTdReport(devicePath: string, reportData: Uint8Array): Promise<Buffer> {
    const p = normalize(devicePath)
    if (!this.#nodes.has(p)) throw errnoError('ENOENT', 'open', p)
    this.#fault('open', p)
    const report = Buffer.alloc(1024)
    report[0] = 0x81
    Buffer.from(reportData).copy(report, 128)
    this.rtmrs.forEach((r, i) => r.copy(report, 720 + 48 * i))
    return report
  }

  async extendRtmrIoctl(devicePath: string, index: number, digest: Uint8Array): Promise<void> {
    const p = normalize(devicePath)
    if (!this.#nodes.has(p)) throw errnoError('ENOENT', 'open', p)
    if (!this.legacyExtendIoctl) throw errnoError('ENOTTY', 'ioctl', p)
    if (index > 3) throw errnoError('EINVAL', 'ioctl', p)
    this.#extend(index, Buffer.from(digest), 'ioctl')
  }

  async vsockRoundTrip(
    cid: number,
    port: number,
    request: Uint8Array,
    maxResponse: number,
  ): Promise<Buffer> {
    this.vsockRequests.push({ cid, port, request: Buffer.from(request) })
    if (this.qgs === undefined) throw errnoError('ECONNRESET', 'connect')
    const reply = this.qgs(cid, port, Buffer.from(request))
    if (reply.length < 4) throw Object.assign(new Error('EOF: end of file, read'), { code: 'EOF' })
    const length = reply.readUInt32BE(0)
    // the addon stops after the length when it is over the limit
    if (length > maxResponse) return Buffer.from(reply.subarray(0, 4))
    if (reply.length < 4 + length) {
      throw Object.assign(new Error('EOF: end of file, read'), {
        code: 'EOF',
        errno: -4095,
        syscall: 'read',
      })
    }
    return Buffer.from(reply.subarray(0, 4 + length))
  }

  async sleep(ms: number): Promise<void> {
    this.sleeps.push(ms)
    this.#clock += ms
    await Promise.resolve()
  }

  now(): number {
    return this.#clock
  }

  // ---- used by FakeFile ----------------------------------------------------------------------

  faultFor(op: FaultOp, path: string): void {
    this.#fault(op, path)
  }

  async lock(path: string): Promise<() => void> {
    this.#fault('flock', path)
    const previous = this.#locks.get(path) ?? Promise.resolve()
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    this.#locks.set(
      path,
      previous.then(() => held),
    )
    await previous
    return release
  }
}

class FakeFile implements TdxFile {
  #offset = 0
  #release: (() => void) | undefined
  readonly #kernel: FakeTdxKernel
  readonly #path: string
  readonly #node: FakeNode
  readonly #append: boolean

  constructor(kernel: FakeTdxKernel, path: string, node: FakeNode, append = false) {
    this.#kernel = kernel
    this.#path = path
    this.#node = node
    this.#append = append
  }

  async read(length: number): Promise<Buffer> {
    this.#kernel.faultFor('read', this.#path)
    const node = this.#node
    if (node.kind === 'dir') throw errnoError('EISDIR', 'read', this.#path)
    const out =
      node.kind === 'file'
        ? slice(node.data, length, this.#offset)
        : (node.file.read?.(length, this.#offset) ?? Buffer.alloc(0))
    this.#offset += out.length
    return out
  }

  async write(data: Uint8Array): Promise<number> {
    this.#kernel.faultFor('write', this.#path)
    const node = this.#node
    const bytes = Buffer.from(data)
    if (node.kind === 'dir') throw errnoError('EISDIR', 'write', this.#path)
    if (node.kind === 'special') {
      const n = node.file.write?.(bytes, this.#offset) ?? 0
      this.#offset += n
      return n
    }
    if (this.#append) {
      node.data = Buffer.concat([node.data, bytes])
      return bytes.length
    }
    const end = this.#offset + bytes.length
    const next = Buffer.alloc(Math.max(end, node.data.length))
    node.data.copy(next)
    bytes.copy(next, this.#offset)
    node.data = next
    this.#offset = end
    return bytes.length
  }

  async lockExclusive(): Promise<void> {
    this.#release = await this.#kernel.lock(this.#path)
  }

  async close(): Promise<void> {
    this.#release?.()
    this.#release = undefined
  }
}

function slice(data: Buffer, length: number, offset: number): Buffer {
  return Buffer.from(data.subarray(offset, offset + length))
}

/** A quote-shaped blob: REPORTDATA at the v4 offset 568 and RTMR0..3 at 376..520. */
function defaultQuote(reportData: Buffer, rtmrs: readonly Buffer[]): Buffer {
  const quote = Buffer.alloc(2000, 0x5a)
  rtmrs.forEach((r, i) => r.copy(quote, 376 + 48 * i))
  reportData.copy(quote, 568)
  return quote
}
