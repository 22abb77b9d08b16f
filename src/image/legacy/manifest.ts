// The two files that describe an OS image: `sha256sum.txt` (its identity: the OS image hash is
// SHA-256 of its exact bytes) and `metadata.json` (which files are firmware, kernel and initrd,
// and the kernel command line). Rules from upstream `verifier/src/verification.rs`
// `validate_image_manifest_paths` and `dstack-types` `ImageInfo`; names are additionally required
// to be bare file names listed in the manifest, so nothing unhashed is ever measured.
import { ImageError } from './errors.js'

export interface ManifestEntry {
  sha256: Buffer
  name: string
}

export interface ImageMetadata {
  cmdline: string
  kernel: string
  initrd: string
  bios: string
  version: string
  isDev: boolean
  ovmfVariant: 'pre202505' | null
}

export const MANIFEST_NAME = 'sha256sum.txt'
export const METADATA_NAME = 'metadata.json'

/** A name that is exactly one path component (what upstream's `file_name() == name` accepts). */
export function isBareFileName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0')
}

export function parseManifest(text: string): ManifestEntry[] {
  const entries: ManifestEntry[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').replace(/\r$/, '')
    if (line.trim() === '') continue
    const fields = line.trim().split(/\s+/)
    const [digest, name] = fields
    if (digest === undefined) throw new ImageError('image manifest entry is missing a digest')
    if (name === undefined) throw new ImageError('image manifest entry is missing a path')
    if (fields.length > 2) throw new ImageError(`image manifest line ${i + 1} has extra fields`)
    if (!isBareFileName(name)) {
      throw new ImageError(`image manifest line ${i + 1} has an unsafe path`)
    }
    if (name === MANIFEST_NAME) {
      throw new ImageError('image manifest must not recursively list sha256sum.txt')
    }
    if (!/^[0-9a-fA-F]{64}$/.test(digest)) {
      throw new ImageError(`image manifest line ${i + 1} has a malformed SHA-256 digest`)
    }
    entries.push({ sha256: Buffer.from(digest, 'hex'), name })
  }
  if (entries.length === 0) throw new ImageError('image manifest lists no files')
  return entries
}

function requiredString(obj: Record<string, unknown>, key: string): string {
  const v = obj[key]
  if (typeof v !== 'string') throw new ImageError(`missing field \`${key}\``)
  return v
}

/** Parses `metadata.json`; `listed` are the names in the manifest (every file must be one). */
export function parseMetadata(bytes: Buffer, listed: ReadonlySet<string>): ImageMetadata {
  try {
    let raw: unknown
    try {
      raw = JSON.parse(bytes.toString('utf8'))
    } catch (err) {
      throw new ImageError(`invalid JSON: ${(err as Error).message}`)
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new ImageError('expected a JSON object')
    }
    const obj = raw as Record<string, unknown>
    const meta: ImageMetadata = {
      cmdline: requiredString(obj, 'cmdline'),
      kernel: requiredString(obj, 'kernel'),
      initrd: requiredString(obj, 'initrd'),
      bios: requiredString(obj, 'bios'),
      version: '',
      isDev: false,
      ovmfVariant: null,
    }
    if (obj.version !== undefined) {
      if (typeof obj.version !== 'string') throw new ImageError('`version` must be a string')
      meta.version = obj.version
    }
    if (obj.is_dev !== undefined) {
      if (typeof obj.is_dev !== 'boolean') throw new ImageError('`is_dev` must be a boolean')
      meta.isDev = obj.is_dev
    }
    if (obj.ovmf_variant !== undefined && obj.ovmf_variant !== null) {
      // the only OVMF event layout upstream knows; anything else cannot be measured
      if (obj.ovmf_variant !== 'pre202505') {
        throw new ImageError(
          `unknown variant \`${String(obj.ovmf_variant)}\`, expected \`pre202505\``,
        )
      }
      meta.ovmfVariant = 'pre202505'
    }
    for (const key of ['bios', 'kernel', 'initrd'] as const) {
      const name = meta[key]
      if (!isBareFileName(name)) throw new ImageError(`\`${key}\` is not a bare file name`)
      if (!listed.has(name)) throw new ImageError(`\`${key}\` (${name}) is not in sha256sum.txt`)
    }
    return meta
  } catch (err) {
    throw new ImageError(`Failed to parse image metadata: ${(err as Error).message}`, {
      cause: err,
    })
  }
}
