// QEMU-version-dependent defaults (upstream `dstack-mr/src/machine.rs` `versioned_options`):
// QEMU 8.x adds TDVF pages in two passes and has a PIC; the other supported versions do neither.
import { ImageError } from './errors.js'

export interface VersionedOptions {
  version: [number, number, number]
  pic: boolean
  twoPassAddPages: boolean
}

export function versionedOptions(
  qemuVersion: string | undefined,
  pic: boolean | undefined,
  twoPassAddPages: boolean | undefined,
): VersionedOptions {
  let version: [number, number, number] = [9, 1, 0]
  if (qemuVersion !== undefined) {
    const parts = qemuVersion.split('.')
    if (
      parts.length !== 3 ||
      !parts.every((p) => /^\+?[0-9]+$/.test(p) && Number(p) <= 0xffffffff)
    ) {
      throw new ImageError(`Failed to parse QEMU version: ${qemuVersion}`)
    }
    version = parts.map(Number) as [number, number, number]
  }
  const [maj] = version
  if (maj < 8) throw new ImageError(`Unsupported QEMU version: (${version.join(', ')})`)
  const eight = maj === 8
  return { version, pic: pic ?? eight, twoPassAddPages: twoPassAddPages ?? eight }
}
