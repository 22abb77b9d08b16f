// bootstrap-info.json and the Bootstrap reply share one shape, BootstrapResponse, so both go
// through the pRPC JSON mapping: compact, snake_case, declaration order, hex without 0x
// (docs/design.md#cert-dir-files).
import { readFileSync } from 'node:fs'
import { P256PublicKey } from '../crypto/p256.js'
import { KmsError, errorMessage } from '../errors.js'
import { readOptionalFile } from '../fs/read-file.js'
import { decodeJson, encodeJson } from '../prpc/json.js'
import { BootstrapResponseType, type BootstrapResponse } from '../prpc/messages.js'
import { CERT_DIR_FILES, certPath } from './cert-dir.js'

export interface BootstrapInfo {
  caPubkey: Buffer
  k256Pubkey: Buffer
  attestation: Buffer
}

export function toBootstrapResponse(info: BootstrapInfo): BootstrapResponse {
  return { ca_pubkey: info.caPubkey, k256_pubkey: info.k256Pubkey, attestation: info.attestation }
}

export function bootstrapInfoJson(info: BootstrapInfo): string {
  return encodeJson(BootstrapResponseType, toBootstrapResponse(info))
}

/** Throws on anything that is not a BootstrapResponse in JSON. */
export function parseBootstrapInfoJson(text: string): BootstrapInfo {
  const v = decodeJson(BootstrapResponseType, Buffer.from(text, 'utf8'))
  return { caPubkey: v.ca_pubkey, k256Pubkey: v.k256_pubkey, attestation: v.attestation }
}

/** The cert dir's bootstrap-info.json for GetMeta; null when there is none or it does not parse
 * (upstream's GetMeta reports such a file as null; it holds nothing secret). */
export function readBootstrapInfo(certDir: string): BootstrapInfo | null {
  let text: string
  try {
    text = readFileSync(certPath(certDir, CERT_DIR_FILES.bootstrapInfo), 'utf8')
  } catch {
    return null
  }
  try {
    return parseBootstrapInfoJson(text)
  } catch {
    return null
  }
}

/** Why a parsed record cannot be Bootstrap's, or null. serde fills missing fields with empty
 * bytes and an empty file reads as `{}`, so parsing alone accepts a truncated record. */
function shapeProblem(info: BootstrapInfo): string | null {
  try {
    P256PublicKey.fromSpkiDer(info.caPubkey)
  } catch {
    return `ca_pubkey is not a P-256 SubjectPublicKeyInfo (${info.caPubkey.length} bytes)`
  }
  const k = info.k256Pubkey
  if (k.length !== 33 || (k[0] !== 0x02 && k[0] !== 0x03)) {
    return `k256_pubkey is not a compressed secp256k1 public key (${k.length} bytes)`
  }
  return null
}

/** bootstrap-info.json for the start-up check of the root keys (docs/design.md#faults-on-disk):
 * null only when the file does not exist, which is normal: upstream writes it in Bootstrap and
 * nowhere else, so auto-bootstrapped and onboarded cert dirs never have one. A file that is there
 * but cannot be read, does not parse, or does not hold two public keys is a damaged record, and
 * the keys it should vouch for cannot be checked: KMS_ERR_KEYS naming the file. */
export function readBootstrapRecord(certDir: string): BootstrapInfo | null {
  const path = certPath(certDir, CERT_DIR_FILES.bootstrapInfo)
  const damaged = (what: string, cause?: unknown): KmsError =>
    new KmsError(
      'KMS_ERR_KEYS',
      `${path} is damaged: ${what}; the root keys cannot be checked against it. Restore it from a backup ` +
        '(it holds only public keys and the attestation Bootstrap returned)',
      cause === undefined ? undefined : { cause },
    )
  let bytes: Buffer | null
  try {
    bytes = readOptionalFile(path)
  } catch (err) {
    throw damaged(`cannot be read (${errorMessage(err)})`, err)
  }
  if (bytes === null) return null
  const text = bytes.toString('utf8')
  if (text.trim() === '') throw damaged('it is empty')
  let info: BootstrapInfo
  try {
    info = parseBootstrapInfoJson(text)
  } catch (err) {
    throw damaged(`not a BootstrapResponse in JSON (${errorMessage(err)})`, err)
  }
  const problem = shapeProblem(info)
  if (problem !== null) throw damaged(problem)
  return info
}
