// A small streaming tar reader for OS image archives (ustar, pax and GNU long names), written for
// one job: unpack a downloaded image into a fresh directory without ever writing outside it.
// Only regular files and directories are accepted; links, devices and FIFOs refuse the whole
// archive, as do `..` components and absolute paths. `.` components (and the `./` prefix many
// published images carry) are stripped, like upstream `verifier/src/verification.rs`
// `is_confined_archive_path` allows. Every file is SHA-256 hashed while it is written, so the
// `sha256sum.txt` check needs no second read.
import { createHash, type Hash } from 'node:crypto'
import { constants } from 'node:fs'
import { mkdir, open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { ImageError } from './errors.js'

const BLOCK = 512
/** pax headers and GNU long names are metadata; anything bigger is not a sane image archive */
const MAX_META_BYTES = 1 << 20

export interface ExtractedFile {
  /** normalised relative path, `/`-separated */
  path: string
  size: number
  sha256: Buffer
}

type Pending =
  | { kind: 'file'; path: string; fh: FileHandle; hash: Hash; size: number }
  | { kind: 'meta'; type: 'pax' | 'global' | 'longname'; chunks: Buffer[]; size: number }
  | { kind: 'skip' }

function readString(block: Buffer, off: number, len: number): string {
  const field = block.subarray(off, off + len)
  const nul = field.indexOf(0)
  return field.subarray(0, nul < 0 ? len : nul).toString('utf8')
}

function readNumber(block: Buffer, off: number, len: number, what: string): number {
  const field = block.subarray(off, off + len)
  const first = field[0] ?? 0
  if (first & 0x80) {
    // GNU base-256: big-endian two's complement with the top bit as the marker
    if (first & 0x40) throw new ImageError(`image archive header has a negative ${what}`)
    let v = BigInt(first & 0x3f)
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(field[i] ?? 0)
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new ImageError(`image archive header ${what} is too large`)
    }
    return Number(v)
  }
  const text = readString(block, off, len).trim()
  if (text === '') return 0
  if (!/^[0-7]+$/.test(text)) throw new ImageError(`image archive header has a bad ${what}`)
  const v = parseInt(text, 8)
  if (!Number.isSafeInteger(v)) throw new ImageError(`image archive header ${what} is too large`)
  return v
}

function checksumOk(block: Buffer): boolean {
  const stored = readNumber(block, 148, 8, 'checksum')
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0)
  return sum === stored
}

/** Splits an archive path into safe components, or throws for anything that could escape. */
export function confinedComponents(raw: string): string[] {
  if (raw.startsWith('/')) throw new ImageError(`image archive contains unsafe path ${raw}`)
  const parts: string[] = []
  for (const c of raw.split('/')) {
    if (c === '' || c === '.') continue
    if (c === '..') throw new ImageError(`image archive contains unsafe path ${raw}`)
    parts.push(c)
  }
  return parts
}

function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>()
  let off = 0
  while (off < data.length) {
    const space = data.indexOf(0x20, off)
    if (space < 0) throw new ImageError('image archive has a malformed pax header')
    const len = Number(data.subarray(off, space).toString('ascii'))
    if (!Number.isSafeInteger(len) || len <= space - off || off + len > data.length) {
      throw new ImageError('image archive has a malformed pax header')
    }
    const record = data.subarray(space + 1, off + len - 1).toString('utf8')
    const eq = record.indexOf('=')
    if (eq < 0) throw new ImageError('image archive has a malformed pax header')
    out.set(record.slice(0, eq), record.slice(eq + 1))
    off += len
  }
  return out
}

/**
 * Writes the entries of a tar stream into `targetDir` (which must exist and be empty). Feed it
 * decompressed bytes with `push`, then call `finish`; it returns every regular file written.
 */
export class TarExtractor {
  readonly #target: string
  readonly #files = new Map<string, ExtractedFile>()
  #buf: Buffer = Buffer.alloc(0)
  #pending: Pending | null = null
  /** bytes of entry data still expected (the entry's size), then padding to the next block */
  #remaining = 0
  #padding = 0
  #ended = false
  #pax: Map<string, string> | null = null
  #longName: string | null = null

  constructor(targetDir: string) {
    this.#target = targetDir
  }

  async push(chunk: Buffer): Promise<void> {
    let data = this.#buf.length > 0 ? Buffer.concat([this.#buf, chunk]) : chunk
    this.#buf = Buffer.alloc(0)
    while (data.length > 0 && !this.#ended) {
      if (this.#pending !== null) {
        const take = Math.min(this.#remaining, data.length)
        if (take > 0) {
          await this.#consume(data.subarray(0, take))
          this.#remaining -= take
          data = data.subarray(take)
        }
        if (this.#remaining === 0) {
          const skip = Math.min(this.#padding, data.length)
          this.#padding -= skip
          data = data.subarray(skip)
          if (this.#padding === 0) await this.#complete()
        }
        continue
      }
      if (data.length < BLOCK) {
        this.#buf = Buffer.from(data)
        return
      }
      const header = data.subarray(0, BLOCK)
      data = data.subarray(BLOCK)
      await this.#header(header)
    }
  }

  /** Returns the written files; a stream that stops inside an entry is an error. */
  async finish(): Promise<ExtractedFile[]> {
    if (this.#pending !== null || this.#buf.length > 0 || this.#pax || this.#longName) {
      await this.abort()
      throw new ImageError('image archive is truncated')
    }
    return [...this.#files.values()]
  }

  /** Closes an open output file after a failure elsewhere in the pipeline. */
  async abort(): Promise<void> {
    const p = this.#pending
    this.#pending = null
    if (p?.kind === 'file') await p.fh.close().catch(() => {})
  }

  async #header(header: Buffer): Promise<void> {
    if (header.every((b) => b === 0)) {
      // end of archive; what follows (a second zero block, record padding) carries no entries
      this.#ended = true
      return
    }
    if (!checksumOk(header)) throw new ImageError('image archive has a corrupt header checksum')
    const type = String.fromCharCode(header[156] ?? 0)
    const magic = header.subarray(257, 263).toString('latin1')
    let name = readString(header, 0, 100)
    // the POSIX prefix field; GNU archives ("ustar  ") use those bytes for other things
    if (magic === 'ustar\0') {
      const prefix = readString(header, 345, 155)
      if (prefix !== '') name = `${prefix}/${name}`
    }
    let size = readNumber(header, 124, 12, 'size')
    const pax = this.#pax
    this.#pax = null
    if (pax !== null) {
      const p = pax.get('path')
      if (p !== undefined) name = p
      const s = pax.get('size')
      if (s !== undefined) {
        if (!/^[0-9]+$/.test(s) || !Number.isSafeInteger(Number(s))) {
          throw new ImageError('image archive has a malformed pax size')
        }
        size = Number(s)
      }
    }
    if (this.#longName !== null) {
      name = this.#longName
      this.#longName = null
    }
    this.#remaining = size
    this.#padding = (BLOCK - (size % BLOCK)) % BLOCK

    if (type === 'x' || type === 'g' || type === 'L') {
      if (size > MAX_META_BYTES) throw new ImageError('image archive has an oversized header')
      const kind = type === 'x' ? 'pax' : type === 'g' ? 'global' : 'longname'
      this.#pending = { kind: 'meta', type: kind, chunks: [], size }
    } else if (type === '0' || type === '\0' || type === '7') {
      const parts = confinedComponents(name)
      if (parts.length === 0) throw new ImageError(`image archive contains unsafe path ${name}`)
      const rel = parts.join('/')
      if (this.#files.has(rel)) {
        throw new ImageError(`image archive contains the file ${rel} twice`)
      }
      if (parts.length > 1) {
        await mkdir(join(this.#target, ...parts.slice(0, -1)), { recursive: true })
      }
      // O_EXCL + O_NOFOLLOW: never write through anything already there
      const fh = await open(
        join(this.#target, ...parts),
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o644,
      )
      this.#pending = { kind: 'file', path: rel, fh, hash: createHash('sha256'), size }
    } else if (type === '5') {
      const parts = confinedComponents(name)
      if (parts.length > 0) await mkdir(join(this.#target, ...parts), { recursive: true })
      this.#pending = { kind: 'skip' }
    } else {
      const what =
        type === '1'
          ? 'hard link'
          : type === '2'
            ? 'symbolic link'
            : type === '3' || type === '4'
              ? 'device'
              : type === '6'
                ? 'FIFO'
                : `entry of type ${JSON.stringify(type)}`
      throw new ImageError(`image archive contains unsupported entry ${name} (${what})`)
    }
    if (this.#remaining === 0 && this.#padding === 0) await this.#complete()
  }

  async #consume(data: Buffer): Promise<void> {
    const p = this.#pending
    if (p === null || p.kind === 'skip') return
    if (p.kind === 'meta') {
      p.chunks.push(Buffer.from(data))
      return
    }
    p.hash.update(data)
    let off = 0
    while (off < data.length) {
      const { bytesWritten } = await p.fh.write(data, off, data.length - off)
      off += bytesWritten
    }
  }

  async #complete(): Promise<void> {
    const p = this.#pending
    this.#pending = null
    if (p === null || p.kind === 'skip') return
    if (p.kind === 'file') {
      // durable before the directory is renamed into place: a later hit trusts the files
      await p.fh.sync()
      await p.fh.close()
      this.#files.set(p.path, { path: p.path, size: p.size, sha256: p.hash.digest() })
      return
    }
    const data = Buffer.concat(p.chunks)
    if (p.type === 'pax') this.#pax = parsePax(data)
    else if (p.type === 'longname') {
      const nul = data.indexOf(0)
      this.#longName = data.subarray(0, nul < 0 ? data.length : nul).toString('utf8')
    }
  }
}
