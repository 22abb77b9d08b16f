// The attestation carried by an RA-TLS certificate (upstream `ra-tls/src/attestation.rs`
// `from_ext_getter`): the versioned `.1.8` extension, else the legacy `.1.1` quote + `.1.2` event
// log pair.
import type { Attestation } from '../attestation/types.js'
import { attestationFromTdxQuote } from '../attestation/from-tdx-quote.js'
import { stripAttestation } from '../attestation/stripped.js'
import { decodeVersionedAttestation, encodeVersionedAttestation } from '../attestation/versioned.js'
import { KmsError } from '../errors.js'
import { RATLS_OID } from '../asn1/oids.js'
import { readRaTlsExtension, type ParsedCertificate } from '../x509/parse.js'

/** null when the certificate carries no attestation; throws when it carries a malformed one. */
export function attestationFromCertificate(cert: ParsedCertificate): Attestation | null {
  const versioned = readRaTlsExtension(cert, RATLS_OID.attestation)
  if (versioned !== undefined) return decodeVersionedAttestation(versioned).attestation
  const quote = readRaTlsExtension(cert, RATLS_OID.tdxQuote)
  if (quote === undefined) return null
  const eventLog = readRaTlsExtension(cert, RATLS_OID.eventLog)
  if (eventLog === undefined) throw new KmsError('KMS_ERR_ATTESTATION', 'TDX event log missing')
  return attestationFromTdxQuote(quote, eventLog)
}

/** The form embedded in certificates (`into_stripped().to_bytes()`): same version, stripped log. */
export function strippedAttestationBytes(versioned: Uint8Array): Buffer {
  const { version, attestation } = decodeVersionedAttestation(versioned)
  return encodeVersionedAttestation({ version, attestation: stripAttestation(attestation) })
}
