// Advisory whole-file locks with flock(2): held per open file description, released by the
// kernel when the holder dies, so a crashed KMS never leaves a stale lock behind.
import { constants } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { KmsError, withContext } from '../errors.js'
import { type FlockOperation, isNativeErrnoError, loadNativeBinding } from './binding.js'

export type { FlockOperation } from './binding.js'

/** flock(2) on `fd`. Arguments are checked here so the addon only ever sees valid input. */
export function flock(
  fd: number,
  operation: FlockOperation,
  options: { nonBlocking?: boolean } = {},
): Promise<void> {
  if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw new RangeError(`fd must be a non-negative 32-bit integer, got ${fd}`)
  }
  if (operation !== 'exclusive' && operation !== 'shared' && operation !== 'unlock') {
    throw new RangeError(`unknown flock operation ${String(operation)}`)
  }
  return loadNativeBinding().flock(fd, operation, options.nonBlocking ?? false)
}

/** flock reports a held lock as EWOULDBLOCK, which is EAGAIN on Linux (Node names it EAGAIN). */
export function isLockHeldError(err: unknown): boolean {
  return isNativeErrnoError(err) && (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK')
}

export interface FileLock {
  readonly path: string
  readonly fd: number
  /** Unlocks and closes the file; calling it again does nothing. */
  release(): Promise<void>
}

/** Opens (creating with mode 0600) `path` and takes an exclusive lock without waiting. */
export async function lockFileExclusive(path: string): Promise<FileLock> {
  let handle: FileHandle
  try {
    // O_NOFOLLOW: a planted symlink must not make us create or lock a file elsewhere. Read-only:
    // flock needs no write access, and an existing lock file then opens on a read-only file
    // system too (a KMS whose cert_dir is mounted read-only still starts).
    handle = await open(path, constants.O_RDONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600)
  } catch (err) {
    throw withContext(`failed to open lock file ${path}`, err, 'KMS_ERR_LOCKED')
  }
  try {
    await flock(handle.fd, 'exclusive', { nonBlocking: true })
  } catch (err) {
    await handle.close()
    if (isLockHeldError(err)) {
      throw new KmsError('KMS_ERR_LOCKED', `another dstack-kms instance holds ${path}`, {
        cause: err,
      })
    }
    throw withContext(`failed to lock ${path}`, err, 'KMS_ERR_NATIVE')
  }
  return new HeldFileLock(path, handle)
}

class HeldFileLock implements FileLock {
  readonly path: string
  readonly fd: number
  #handle: FileHandle | undefined

  constructor(path: string, handle: FileHandle) {
    this.path = path
    this.fd = handle.fd
    this.#handle = handle
  }

  async release(): Promise<void> {
    const handle = this.#handle
    if (handle === undefined) return
    this.#handle = undefined
    try {
      await flock(handle.fd, 'unlock')
    } finally {
      // Closing drops the lock too; the explicit unlock covers descriptors inherited elsewhere.
      await handle.close()
    }
  }
}
