// bootstrap-info.json and the Bootstrap reply share one shape, BootstrapResponse, so both go
// through the pRPC JSON mapping: compact, snake_case, declaration order, hex without 0x
// (docs/design.md#cert-dir-files).
import { readFileSync } from 'node:fs'
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

/** The cert dir's bootstrap-info.json; null when there is none or it does not parse (upstream's
 * GetMeta reports such a file as null; it holds nothing secret). */
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
