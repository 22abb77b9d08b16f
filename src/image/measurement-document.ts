// The measurement-document check shared by every no-download scheme (upstream `dstack-types`
// `verify_measurement_material`): `os_image_hash` must be SHA-256 of the exact `sha256sum.txt`
// bytes, and that file must list the measurement file with the SHA-256 of its bytes. This is
// what binds the guest-supplied measurement material to the image identity the auth API sees.
import { createHash } from 'node:crypto'
import { KmsError, errorMessage } from '../errors.js'
import { decodeHex } from '../util/hex.js'

export const TDX_MEASUREMENT_FILENAME = 'measurement.tdx.cbor'

function sha256(b: Uint8Array): Buffer {
  return createHash('sha256').update(b).digest()
}

function fail(message: string): never {
  throw new KmsError('KMS_ERR_ATTESTATION', message)
}

/** The digest `sha256sum.txt` lists for `filename` (upstream `sha256sum_entry_hash`). */
export function sha256sumEntryHash(checksumFile: Uint8Array, filename: string): Buffer {
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(checksumFile)
  } catch (err) {
    fail(`sha256sum.txt is not valid UTF-8: ${errorMessage(err)}`)
  }
  let found: Buffer | null = null
  // Rust's `str::lines` splits on \n and drops one trailing \r; `trim` then removes the rest.
  const lines = text.split('\n')
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
  lines.forEach((raw, index) => {
    const line = raw.trim()
    if (line === '') return
    const parts = line.split(/\s+/)
    const hashHex = parts[0] ?? ''
    const path = parts[1]
    if (path === undefined) fail(`sha256sum.txt line ${index + 1} is missing filename`)
    if (path !== filename) return
    if (found !== null) fail(`sha256sum.txt contains duplicate ${filename} entries`)
    let hash: Buffer
    try {
      hash = decodeHex(hashHex)
    } catch (err) {
      fail(`sha256sum.txt ${filename} hash is not valid hex: ${errorMessage(err)}`)
    }
    if (hash.length !== 32) {
      fail(`sha256sum.txt ${filename} hash has invalid length ${hash.length}, expected 32`)
    }
    found = hash
  })
  if (found === null) fail(`sha256sum.txt is missing ${filename}`)
  return found
}

/** Throws unless the document belongs to `osImageHash` (texts as upstream's). */
export function verifyMeasurementMaterial(
  osImageHash: Uint8Array,
  checksumFile: Uint8Array,
  measurement: Uint8Array,
  filename: string,
): void {
  const imageHash = sha256(checksumFile)
  if (!imageHash.equals(osImageHash)) {
    fail(
      `os_image_hash mismatch: expected sha256(sha256sum.txt)=${Buffer.from(osImageHash).toString('hex')}, actual=${imageHash.toString('hex')}`,
    )
  }
  const expected = sha256sumEntryHash(checksumFile, filename)
  const actual = sha256(measurement)
  if (!expected.equals(actual)) {
    fail(
      `${filename} hash mismatch: sha256sum.txt=${expected.toString('hex')}, actual=${actual.toString('hex')}`,
    )
  }
}
