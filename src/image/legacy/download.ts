// Fetching one OS image archive and installing it, checked, under `<cacheDir>/<hex>/`. Mirrors
// upstream `verifier/src/verification.rs` `download_image` (URL template, gzip'ed tar with files at
// the root, `sha256sum.txt` check, pruning of unlisted files, `sha256(sha256sum.txt)` == the
// requested hash, `metadata.json` required) and adds what upstream lacks: a byte cap on the
// download and on the unpacked size, in-process hashing instead of `sha256sum -c`, and an
// install that is a single rename of a fully checked directory.
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip } from 'node:zlib'
import { fsyncDir } from '../../fs/atomic-write.js'
import { errnoCode, isNotFound } from '../../fs/errno.js'
import { ImageError } from './errors.js'
import { MANIFEST_NAME, METADATA_NAME, parseManifest, parseMetadata } from './manifest.js'
import { TarExtractor } from './tar.js'

export interface DownloadOptions {
  cacheDir: string
  /** template with `{OS_IMAGE_HASH}` */
  downloadUrl: string
  /** cap on the compressed download and, separately, on the unpacked tar stream */
  maxImageBytes: number
  timeoutMs: number
}

/** in-flight downloads live under `images/tmp/` (upstream's layout), removed by `"all"` */
export const TMP_DIR_NAME = 'tmp'

export function imageUrl(template: string, hex: string): string {
  return template.replaceAll('{OS_IMAGE_HASH}', hex)
}

/** Moves `dir` aside and deletes it, so a reader never sees a half-deleted image directory. */
export async function removeDirAtomically(cacheDir: string, dir: string): Promise<void> {
  const trash = join(cacheDir, TMP_DIR_NAME, `trash-${randomBytes(6).toString('hex')}`)
  await mkdir(join(cacheDir, TMP_DIR_NAME), { recursive: true })
  try {
    await rename(dir, trash)
  } catch (err) {
    if (isNotFound(err)) return
    throw err
  }
  await rm(trash, { recursive: true, force: true })
}

async function unpack(
  body: ReadableStream<Uint8Array>,
  target: string,
  maxBytes: number,
  signal: AbortSignal,
): Promise<Map<string, Buffer>> {
  const tar = new TarExtractor(target)
  let compressed = 0
  let expanded = 0
  try {
    await pipeline(
      Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>),
      async function* cap(source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          compressed += chunk.length
          if (compressed > maxBytes) {
            throw new ImageError(`image archive is larger than ${maxBytes} bytes`)
          }
          yield chunk
        }
      },
      // zlib's gunzip reads concatenated gzip members to the end, like upstream's MultiGzDecoder
      createGunzip(),
      async function (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          expanded += chunk.length
          if (expanded > maxBytes) {
            throw new ImageError(`unpacked image archive is larger than ${maxBytes} bytes`)
          }
          await tar.push(chunk)
        }
      },
      { signal },
    )
    const files = await tar.finish()
    return new Map(files.map((f) => [f.path, f.sha256]))
  } catch (err) {
    await tar.abort()
    throw err
  }
}

async function downloadInto(
  hex: string,
  extracted: string,
  opts: DownloadOptions,
  signal: AbortSignal,
): Promise<void> {
  const url = imageUrl(opts.downloadUrl, hex)
  let res: Response
  try {
    // identity: the archive is gzip'ed already, and fetch would silently undo a gzip
    // Content-Encoding, handing the tar reader bytes it cannot tell from the archive's
    res = await fetch(url, {
      signal,
      redirect: 'follow',
      headers: { 'accept-encoding': 'identity' },
    })
  } catch (err) {
    if (signal.aborted) throw err
    throw new ImageError(`Failed to download image: ${(err as Error).message}`, { cause: err })
  }
  if (!res.ok || res.body === null) {
    await res.body?.cancel().catch(() => {})
    throw new ImageError(
      `Failed to download image: HTTP status ${res.status} ${res.statusText}, url: ${url}`,
    )
  }
  const declared = Number(res.headers.get('content-length') ?? NaN)
  if (Number.isFinite(declared) && declared > opts.maxImageBytes) {
    await res.body.cancel().catch(() => {})
    throw new ImageError(
      `image archive is larger than ${opts.maxImageBytes} bytes (Content-Length ${declared})`,
    )
  }
  const hashes = await unpack(res.body, extracted, opts.maxImageBytes, signal)

  const manifestBytes = await readFile(join(extracted, MANIFEST_NAME)).catch((err: unknown) => {
    throw new ImageError('Failed to read sha256sum.txt', { cause: err })
  })
  const entries = parseManifest(manifestBytes.toString('utf8'))
  for (const e of entries) {
    const actual = hashes.get(e.name)
    if (actual === undefined) {
      throw new ImageError(`Checksum verification failed: ${e.name}: No such file`)
    }
    if (!actual.equals(e.sha256)) {
      throw new ImageError(`Checksum verification failed: ${e.name}: FAILED`)
    }
  }
  const listed = new Set(entries.map((e) => e.name))
  for (const name of await readdir(extracted)) {
    if (name !== MANIFEST_NAME && !listed.has(name)) {
      await rm(join(extracted, name), { recursive: true, force: true })
    }
  }
  const digest = createHash('sha256').update(manifestBytes).digest('hex')
  if (digest !== hex) throw new ImageError('os_image_hash does not match sha256(sha256sum.txt)')
  if (!listed.has(METADATA_NAME)) {
    throw new ImageError('metadata.json not found in the extracted archive')
  }
  parseMetadata(await readFile(join(extracted, METADATA_NAME)), listed)
}

/**
 * Renames a checked directory into place. Another process (a second RPC worker) may have
 * installed the same image meanwhile: its copy passed the same checks, so it stays and is never
 * pulled from under a reader. Only a directory without `metadata.json`, which no installer
 * leaves, is replaced.
 */
async function install(extracted: string, dst: string): Promise<void> {
  try {
    await rename(extracted, dst)
    return
  } catch (err) {
    const code = errnoCode(err)
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err
  }
  const complete = await stat(join(dst, METADATA_NAME)).then(
    () => true,
    () => false,
  )
  if (complete) return
  await removeDirAtomically(dirname(dst), dst)
  await rename(extracted, dst)
}

/** Removes staging leftovers of crashed runs; young ones may belong to another live process. */
export async function sweepStaging(cacheDir: string, olderThanMs: number): Promise<void> {
  const tmp = join(cacheDir, TMP_DIR_NAME)
  let names: string[]
  try {
    names = await readdir(tmp)
  } catch {
    return
  }
  const cutoff = Date.now() - olderThanMs
  for (const name of names) {
    const path = join(tmp, name)
    const st = await stat(path).catch(() => null)
    if (st !== null && st.mtimeMs < cutoff) await rm(path, { recursive: true, force: true })
  }
}

/**
 * Downloads the image `hex` and installs it as `<cacheDir>/<hex>/`; on failure nothing is left
 * behind.
 */
export async function downloadImage(hex: string, opts: DownloadOptions): Promise<void> {
  const tmpRoot = join(opts.cacheDir, TMP_DIR_NAME)
  await mkdir(tmpRoot, { recursive: true, mode: 0o700 })
  const work = await mkdtemp(join(tmpRoot, 'tmp-download-'))
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), opts.timeoutMs)
  try {
    const extracted = join(work, 'extracted')
    await mkdir(extracted)
    try {
      await downloadInto(hex, extracted, opts, controller.signal)
    } catch (err) {
      if (controller.signal.aborted) {
        throw new ImageError(
          `Download image timeout: no complete image within ${opts.timeoutMs} ms`,
          {
            cause: err,
          },
        )
      }
      throw new ImageError(`Failed to download image ${hex}: ${(err as Error).message}`, {
        cause: err,
      })
    }
    await install(extracted, join(opts.cacheDir, hex))
    fsyncDir(opts.cacheDir)
  } finally {
    clearTimeout(timer)
    await rm(work, { recursive: true, force: true })
  }
}
