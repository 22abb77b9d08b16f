// report_data constructions that bind keys to attestations (upstream `kms/src/onboard_service.rs`,
// `ra-tls/src/attestation.rs`).
import { createHash } from 'node:crypto'
import { keccak256 } from '../crypto/secp256k1.js'

/** RaTlsCert(SPKI): sha512("ratls-cert:" ‖ SPKI DER), 64 bytes. */
export function ratlsCertReportData(spkiDer: Uint8Array): Buffer {
  return createHash('sha512').update('ratls-cert:').update(spkiDer).digest()
}

/** attest_keys: keccak256 of the generated-keys statement (typo "genereted" kept,
 * docs/design.md#legacy-quirks-kept-byte-for-byte), then 32 zero bytes. */
export function bootstrapKeysReportData(caPubkey: Uint8Array, k256Pubkey: Uint8Array): Buffer {
  const content = `dstack-kms-genereted-keys-v1:${Buffer.from(caPubkey).toString('hex')};${Buffer.from(k256Pubkey).toString('hex')};`
  return Buffer.concat([keccak256(Buffer.from(content, 'utf8')), Buffer.alloc(32)])
}
