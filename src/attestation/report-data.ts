// `QuoteContentType::to_report_data_with_hash` (upstream `ra-tls/src/attestation.rs`): what a guest
// puts into REPORT_DATA so that a verifier can tell which key or payload the quote vouches for.
import { createHash } from 'node:crypto'
import {
  keccak_256 as keccak256,
  keccak_384 as keccak384,
  keccak_512 as keccak512,
} from '@noble/hashes/sha3.js'
import { KmsError } from '../errors.js'

export type QuoteContentType = 'kms-root-ca' | 'ratls-cert' | 'app-data' | { custom: string }

export const REPORT_DATA_HASHES = [
  'sha256',
  'sha384',
  'sha512',
  'sha3-256',
  'sha3-384',
  'sha3-512',
  'keccak256',
  'keccak384',
  'keccak512',
  'raw',
] as const
export type ReportDataHash = (typeof REPORT_DATA_HASHES)[number]

export const DEFAULT_REPORT_DATA_HASH: ReportDataHash = 'sha512'

/** The tag before `:` (a custom type's name is used verbatim, e.g. the gateway's `zt-cert`). */
export function contentTypeTag(kind: QuoteContentType): string {
  return typeof kind === 'string' ? kind : kind.custom
}

const KECCAK: Record<string, (m: Uint8Array) => Uint8Array> = {
  keccak256,
  keccak384,
  keccak512,
}

/** `H(tag ‖ ":" ‖ content)` left-aligned in 64 zero bytes. `hash` '' means the default (SHA-512);
 * `raw` takes exactly 64 content bytes as they are (tag ignored). Errors use upstream's texts:
 * `invalid content length`, `invalid hash algorithm`. */
export function toReportData(
  kind: QuoteContentType,
  content: Uint8Array | string,
  hash: string = DEFAULT_REPORT_DATA_HASH,
): Buffer {
  const body = typeof content === 'string' ? Buffer.from(content, 'utf8') : Buffer.from(content)
  const alg = hash === '' ? DEFAULT_REPORT_DATA_HASH : hash
  if (alg === 'raw') {
    if (body.length !== 64) throw new KmsError('KMS_ERR_ATTESTATION', 'invalid content length')
    return body
  }
  const input = Buffer.concat([Buffer.from(contentTypeTag(kind), 'utf8'), Buffer.from(':'), body])
  let digest: Uint8Array
  const keccak = KECCAK[alg]
  if (keccak !== undefined) {
    digest = keccak(input)
  } else if ((REPORT_DATA_HASHES as readonly string[]).includes(alg)) {
    // node names SHA-3 'sha3-256' etc., exactly upstream's spelling
    digest = createHash(alg).update(input).digest()
  } else {
    throw new KmsError('KMS_ERR_ATTESTATION', 'invalid hash algorithm')
  }
  const out = Buffer.alloc(64)
  out.set(digest)
  return out
}
