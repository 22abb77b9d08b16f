// Atomic, durable file replacement (docs/design.md#private-keys-0600-every-write-atomic): a crash
// at any point leaves either the old content or the new content under `path`, never a torn file.
// The temp name is unique so a stale temp file from an earlier crash never blocks a later write
// (upstream's fixed `.tmp` name does).
import { randomBytes } from 'node:crypto'
import {
  closeSync,
  fsyncSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
  constants,
} from 'node:fs'
import { basename, dirname, join } from 'node:path'

export interface AtomicWriteOptions {
  /** file mode; private keys use 0o600 */
  mode: number
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

function writeAllAndSync(path: string, data: Uint8Array, mode: number): void {
  // O_EXCL: the unique name must not exist; O_NOFOLLOW: never write through a planted symlink.
  const fd = openSync(
    path,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    mode,
  )
  try {
    let off = 0
    while (off < data.length) off += writeSync(fd, data, off, data.length - off)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
}

/** Writes `data` to `path` atomically: unique temp file, write, fsync, rename, fsync(dir). */
export function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  opts: AtomicWriteOptions,
): void {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
  const tmp = tempPathFor(path)
  try {
    writeAllAndSync(tmp, bytes, opts.mode)
    renameSync(tmp, path)
  } catch (err) {
    try {
      unlinkSync(tmp)
    } catch {
      // the temp file may not exist; the original error is what matters
    }
    throw err
  }
  fsyncDir(dirname(path))
}

/** Writes a file (no rename) and fsyncs it; used to fill a staging directory. */
export function writeFileDurable(path: string, data: Uint8Array | string, mode: number): void {
  writeAllAndSync(path, typeof data === 'string' ? Buffer.from(data, 'utf8') : data, mode)
}
