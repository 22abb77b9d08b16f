// Quotes through configfs-tsm, step for step as upstream's tdx-attest does it:
// flock on inblob across processes, generation checks on both sides of the outblob read, EBUSY
// retries, and the same size rules, errors and texts.
import { errnoCode } from '../../fs/errno.js'
import { ioErrorText, TdxError } from './errors.js'
import { Mutex } from '../../util/concurrency.js'
import { joinPath, readText, writeAll, type TdxFile, type TdxIo } from './io.js'

export const CONFIGFS_BASE = '/sys/kernel/config/tsm/report'
export const CONFIGFS_DEFAULT = '/sys/kernel/config/tsm/report/com.intel.dcap'
export const CONFIGFS_PATH_ENV = 'DCAP_TDX_QUOTE_CONFIGFS_PATH'

export const REPORT_DATA_SIZE = 64
/** one read() of this many bytes from outblob; quotes must be strictly smaller */
export const QUOTE_BUF_SIZE = 8192
/** quotes must be strictly larger */
export const QUOTE_MIN_SIZE = 1020
export const GENERATION_POLL_MS = 10
export const GENERATION_TIMEOUT_MS = 5000
export const BUSY_RETRY_WAIT_MS = 10_000
export const BUSY_MAX_TRIES = 3
/** path overrides at least this long are refused (upstream's C-library buffer limit) */
export const MAX_OVERRIDE_PATH_LENGTH = 240

/** `empty path override from VAR` / `path override from VAR must be absolute: p` */
export function absoluteOverride(variable: string, value: string): string {
  if (value === '') throw TdxError.notSupported(`empty path override from ${variable}`)
  if (!value.startsWith('/')) {
    throw TdxError.notSupported(`path override from ${variable} must be absolute: ${value}`)
  }
  return value
}

/** `provider` trimmed starts with `tdx_guest` (the simulator says `tdx_guest_sim`, SEV guests
 * `sev_guest`). A missing or unreadable provider is an error, as upstream's. */
export async function hasTdxProvider(io: TdxIo, dir: string): Promise<boolean> {
  const path = joinPath(dir, 'provider')
  let provider: string
  try {
    provider = await readText(io, path)
  } catch (err) {
    throw TdxError.unexpected(`read ${path}: ${ioErrorText(err)}`, err)
  }
  return provider.trim().startsWith('tdx_guest')
}

/** configfs is the method when the override is set or either default directory exists; an error
 * then never falls back to another method. */
export async function shouldUseConfigfs(io: TdxIo): Promise<boolean> {
  return (
    io.env[CONFIGFS_PATH_ENV] !== undefined ||
    (await io.isDirectory(CONFIGFS_DEFAULT)) ||
    (await io.isDirectory(CONFIGFS_BASE))
  )
}

/** Quotes through one configfs-tsm report directory. One instance per process: the directory is
 * created at most once, and quotes are serialised in process (flock serialises processes). */
export class ConfigfsTsmQuoter {
  readonly #io: TdxIo
  #mkdirTried = false
  readonly #lock = new Mutex()

  constructor(io: TdxIo) {
    this.#io = io
  }

  /** The report directory to use, creating the default one if needed. */
  async prepare(): Promise<string> {
    const io = this.#io
    const override = io.env[CONFIGFS_PATH_ENV]
    if (override !== undefined) {
      const path = absoluteOverride(CONFIGFS_PATH_ENV, override)
      if (
        path.length < MAX_OVERRIDE_PATH_LENGTH &&
        (await io.isDirectory(path)) &&
        (await hasTdxProvider(io, path))
      ) {
        return path
      }
      throw TdxError.notSupported(`invalid configfs path from env: ${path}`)
    }

    if ((await io.isDirectory(CONFIGFS_DEFAULT)) && (await hasTdxProvider(io, CONFIGFS_DEFAULT))) {
      return CONFIGFS_DEFAULT
    }

    if (this.#mkdirTried) throw TdxError.notSupported('configfs already tried')
    this.#mkdirTried = true

    if (!(await io.isDirectory(CONFIGFS_BASE))) {
      throw TdxError.notSupported(`configfs base not found: ${CONFIGFS_BASE}`)
    }
    let created = true
    try {
      await io.mkdir(CONFIGFS_DEFAULT)
    } catch {
      created = false
    }
    if (created || (await io.isDirectory(CONFIGFS_DEFAULT))) {
      const provider = joinPath(CONFIGFS_DEFAULT, 'provider')
      // configfs populates a new report directory asynchronously; upstream sleeps i µs between
      // its five looks, which rounds to "yield" here.
      for (let i = 0; i < 5; i++) {
        if (await io.exists(provider)) {
          if (await hasTdxProvider(io, CONFIGFS_DEFAULT)) return CONFIGFS_DEFAULT
          break
        }
        await io.sleep(0)
      }
    }
    throw TdxError.notSupported(`failed to prepare configfs: ${CONFIGFS_DEFAULT}`)
  }

  /** A raw TDX quote for exactly 64 bytes of REPORTDATA. */
  getQuote(reportData: Uint8Array): Promise<Buffer> {
    if (reportData.length !== REPORT_DATA_SIZE) {
      return Promise.reject(new TdxError('KMS_ERR_TDX_INVALID_PARAMETER'))
    }
    const data = Buffer.from(reportData)
    return this.#lock.run(() => this.#quote(data))
  }

  async #quote(reportData: Buffer): Promise<Buffer> {
    const io = this.#io
    const dir = await this.prepare()
    const inblob = joinPath(dir, 'inblob')
    const outblob = joinPath(dir, 'outblob')
    const generation = joinPath(dir, 'generation')

    let lock: TdxFile
    try {
      lock = await io.open(inblob, 'write')
    } catch (err) {
      throw TdxError.unexpected(`open ${inblob}: ${ioErrorText(err)}`, err)
    }
    try {
      try {
        await lock.lockExclusive()
      } catch (err) {
        throw TdxError.unexpected(`flock ${inblob}: ${ioErrorText(err)}`, err)
      }

      const gen1 = await this.#readGeneration(generation)
      await this.#writeInblob(inblob, reportData)
      const gen2 = await this.#waitForGeneration(generation, gen1)
      // Anything but exactly one step means another writer got in between.
      if (gen2 !== gen1 + 1n) throw TdxError.busy()

      const quote = await this.#readOutblob(outblob)
      const gen3 = await this.#readGeneration(generation)
      if (gen3 !== gen2) throw TdxError.busy()

      if (quote.length <= QUOTE_MIN_SIZE || quote.length >= QUOTE_BUF_SIZE) {
        throw TdxError.quoteFailure(`invalid quote size: ${quote.length}`)
      }
      return quote
    } finally {
      await lock.close().catch(() => undefined)
    }
  }

  async #readGeneration(path: string): Promise<bigint> {
    let text: string
    try {
      text = await readText(this.#io, path)
    } catch (err) {
      throw TdxError.unexpected(`read ${path}: ${ioErrorText(err)}`, err)
    }
    const trimmed = text.trim()
    // Rust's i64 parse: an optional sign, then decimal digits only.
    if (!/^[+-]?[0-9]+$/.test(trimmed)) {
      const why =
        trimmed === '' ? 'cannot parse integer from empty string' : 'invalid digit found in string'
      throw TdxError.unexpected(`parse generation: ${why}`)
    }
    const value = BigInt(trimmed)
    if (value > 0x7fffffffffffffffn || value < -0x8000000000000000n) {
      const why =
        value > 0n
          ? 'number too large to fit in target type'
          : 'number too small to fit in target type'
      throw TdxError.unexpected(`parse generation: ${why}`)
    }
    return value
  }

  /** One write of the 64 bytes on a fresh descriptor; EBUSY waits 10 s and retries (3 tries). */
  async #writeInblob(path: string, data: Buffer): Promise<void> {
    const io = this.#io
    let lastErr: unknown
    for (let attempt = 0; attempt < BUSY_MAX_TRIES; attempt++) {
      let file: TdxFile
      try {
        file = await io.open(path, 'write')
      } catch (err) {
        lastErr = err
        continue
      }
      try {
        await writeAll(file, data)
        return
      } catch (err) {
        if (errnoCode(err) !== 'EBUSY') {
          throw TdxError.unexpected(`write ${path}: ${ioErrorText(err)}`, err)
        }
        lastErr = err
      } finally {
        await file.close().catch(() => undefined)
      }
      await io.sleep(BUSY_RETRY_WAIT_MS)
    }
    if (errnoCode(lastErr) === 'EBUSY') throw TdxError.busy(lastErr)
    throw TdxError.unexpected(`write ${path}: ${ioErrorText(lastErr)}`, lastErr)
  }

  async #waitForGeneration(path: string, current: bigint): Promise<bigint> {
    const io = this.#io
    const deadline = io.now() + GENERATION_TIMEOUT_MS
    for (;;) {
      const gen = await this.#readGeneration(path)
      if (gen !== current) return gen
      if (io.now() >= deadline) {
        throw TdxError.quoteFailure('timed out waiting for configfs generation to advance')
      }
      await io.sleep(GENERATION_POLL_MS)
    }
  }

  /** One read of up to 8192 bytes: reading outblob is what makes the kernel fetch the quote. */
  async #readOutblob(path: string): Promise<Buffer> {
    const io = this.#io
    let lastErr: unknown
    for (let attempt = 0; attempt < BUSY_MAX_TRIES; attempt++) {
      let file: TdxFile
      try {
        file = await io.open(path, 'read')
      } catch (err) {
        lastErr = err
        continue
      }
      try {
        const data = await file.read(QUOTE_BUF_SIZE)
        if (data.length === 0) throw TdxError.quoteFailure('empty outblob')
        return data
      } catch (err) {
        if (err instanceof TdxError) throw err
        const code = errnoCode(err)
        if (code !== 'EBUSY' && code !== 'EINTR' && code !== 'ETIMEDOUT') {
          throw TdxError.quoteFailure(`read ${path}: ${ioErrorText(err)}`, err)
        }
        lastErr = err
      } finally {
        await file.close().catch(() => undefined)
      }
      await io.sleep(BUSY_RETRY_WAIT_MS)
    }
    if (errnoCode(lastErr) === 'EBUSY') throw TdxError.busy(lastErr)
    throw TdxError.quoteFailure(`read ${path}: ${ioErrorText(lastErr)}`, lastErr)
  }
}
