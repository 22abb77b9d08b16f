// Everything the TDX protocols (configfs-tsm quotes, sysfs RTMRs, CCEL, the runtime event log)
// need from the operating system, behind one injectable interface: the real implementation
// below uses node:fs and the native addon; tests use an in-memory fake kernel, so EBUSY retries,
// generation races and size limits are exercised without TDX hardware.
//
// Failures are Node-style errno errors (`{code, errno, syscall, path}`), whichever side made them.
import { constants } from 'node:fs'
import { mkdir, open, readdir, readFile, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as delay } from 'node:timers/promises'
import { errnoCode } from '../../fs/errno.js'
import { flock } from '../../native/flock.js'
import { loadNativeTdx, type NativeTdx } from '../../native/tdx.js'

/**
 * `read`: O_RDONLY. `write`: O_WRONLY, never creating (configfs and sysfs attributes).
 * `append`: O_WRONLY|O_APPEND|O_CREAT with mode 0600 (the runtime event log).
 * `lock`: O_WRONLY|O_CREAT with mode 0600, not truncating (a lock file).
 */
export type TdxOpenMode = 'read' | 'write' | 'append' | 'lock'

export interface TdxFile {
  /** one read(2) of at most `length` bytes at the current offset */
  read(length: number): Promise<Buffer>
  /** one write(2) at the current offset; returns the bytes written (may be fewer) */
  write(data: Uint8Array): Promise<number>
  /** flock(2) LOCK_EX, waiting as long as another holder keeps it */
  lockExclusive(): Promise<void>
  /** closes the descriptor, which also drops a flock */
  close(): Promise<void>
}

export interface TdxIo {
  /** the environment the overrides come from (DCAP_TDX_QUOTE_CONFIGFS_PATH, …) */
  readonly env: Readonly<Record<string, string | undefined>>
  /** stat(2) follows symlinks; false when missing, unreadable or not a directory */
  isDirectory(path: string): Promise<boolean>
  exists(path: string): Promise<boolean>
  readFile(path: string): Promise<Buffer>
  readdir(path: string): Promise<string[]>
  mkdir(path: string, options?: { recursive?: boolean }): Promise<void>
  open(path: string, mode: TdxOpenMode): Promise<TdxFile>
  /** ioctl(TDX_CMD_GET_REPORT0) on `devicePath` */
  getTdReport(devicePath: string, reportData: Uint8Array): Promise<Buffer>
  /** the legacy ioctl(TDX_CMD_EXTEND_RTMR) on `devicePath` */
  extendRtmrIoctl(devicePath: string, index: number, digest: Uint8Array): Promise<void>
  /** QGS transport: send `request` to vsock (cid, port), read a big-endian length-framed reply
   * (length ‖ body; the length alone when it exceeds `maxResponse`) */
  vsockRoundTrip(
    cid: number,
    port: number,
    request: Uint8Array,
    maxResponse: number,
  ): Promise<Buffer>
  sleep(ms: number): Promise<void>
  /** a monotonic clock in milliseconds, for deadlines */
  now(): number
}

const OPEN_FLAGS: Record<TdxOpenMode, number> = {
  read: constants.O_RDONLY,
  write: constants.O_WRONLY,
  append: constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT,
  lock: constants.O_WRONLY | constants.O_CREAT,
}

class NodeTdxFile implements TdxFile {
  readonly #handle: FileHandle
  constructor(handle: FileHandle) {
    this.#handle = handle
  }

  async read(length: number): Promise<Buffer> {
    const buffer = Buffer.alloc(length)
    const { bytesRead } = await this.#handle.read(buffer, 0, length, null)
    return buffer.subarray(0, bytesRead)
  }

  async write(data: Uint8Array): Promise<number> {
    const { bytesWritten } = await this.#handle.write(data, 0, data.length, null)
    return bytesWritten
  }

  lockExclusive(): Promise<void> {
    return flock(this.#handle.fd, 'exclusive')
  }

  close(): Promise<void> {
    return this.#handle.close()
  }
}

/** The real thing: node:fs for files, the addon for ioctls and flock (loaded on first use). */
export class NodeTdxIo implements TdxIo {
  readonly env: Readonly<Record<string, string | undefined>>
  #native: NativeTdx | undefined
  readonly #root: string

  /** `root`: a directory laid out like / that every file path is read under (tests of the TDX
   * presence check); ioctls and vsock are not affected. */
  constructor(options: { env?: NodeJS.ProcessEnv; native?: NativeTdx; root?: string } = {}) {
    this.env = options.env ?? process.env
    this.#native = options.native
    this.#root = options.root ?? '/'
  }

  #at(path: string): string {
    return this.#root === '/' ? path : join(this.#root, path)
  }

  async isDirectory(path: string): Promise<boolean> {
    try {
      return (await stat(this.#at(path))).isDirectory()
    } catch {
      return false
    }
  }

  async exists(path: string): Promise<boolean> {
    try {
      await stat(this.#at(path))
      return true
    } catch {
      return false
    }
  }

  readFile(path: string): Promise<Buffer> {
    return readFile(this.#at(path))
  }

  readdir(path: string): Promise<string[]> {
    return readdir(this.#at(path))
  }

  async mkdir(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    await mkdir(this.#at(path), { recursive: options.recursive ?? false })
  }

  async open(path: string, mode: TdxOpenMode): Promise<TdxFile> {
    return new NodeTdxFile(await open(this.#at(path), OPEN_FLAGS[mode], 0o600))
  }

  getTdReport(devicePath: string, reportData: Uint8Array): Promise<Buffer> {
    return this.#nativeTdx().tdxGetReport0(devicePath, reportData)
  }

  extendRtmrIoctl(devicePath: string, index: number, digest: Uint8Array): Promise<void> {
    return this.#nativeTdx().tdxExtendRtmr(devicePath, index, digest)
  }

  vsockRoundTrip(
    cid: number,
    port: number,
    request: Uint8Array,
    maxResponse: number,
  ): Promise<Buffer> {
    // upstream waits without limit; a minute is far beyond QGS's own 30 s quote budget
    return this.#nativeTdx().vsockRoundTrip(cid, port, request, maxResponse, 60_000)
  }

  async sleep(ms: number): Promise<void> {
    await delay(ms)
  }

  now(): number {
    return performance.now()
  }

  #nativeTdx(): NativeTdx {
    this.#native ??= loadNativeTdx()
    return this.#native
  }
}

/** Writes all of `data` the way Rust's `write_all` does: partial writes continue, EINTR retries. */
export async function writeAll(file: TdxFile, data: Uint8Array): Promise<void> {
  let offset = 0
  while (offset < data.length) {
    let n: number
    try {
      n = await file.write(data.subarray(offset))
    } catch (err) {
      if (errnoCode(err) === 'EINTR') continue
      throw err
    }
    if (n === 0) {
      throw Object.assign(new Error('failed to write whole buffer'), { code: 'WRITE_ZERO' })
    }
    offset += n
  }
}

/** Reads a whole small text file (sysfs/configfs attributes, the version file). */
export async function readText(io: TdxIo, path: string): Promise<string> {
  return (await io.readFile(path)).toString('utf8')
}

/** Joins path segments with `/` (paths here are Linux paths whatever the build host). */
export function joinPath(base: string, name: string): string {
  return base.endsWith('/') ? base + name : `${base}/${name}`
}
