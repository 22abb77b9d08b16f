// Per-request client-certificate processing on the main listener (spec 01 §2.2 step 2, §9).
// The TLS layer already refused certificates that do not chain to tmp-ca.crt; here we look at the
// leaf's RA-TLS extensions.
import type { TLSSocket } from 'node:tls'
import { KmsError } from '../errors.js'
import { RATLS_OID } from '../x509/oids.js'
import { parseCertificate, readRaTlsExtension, type ParsedCertificate } from '../x509/parse.js'

export interface ClientCertContext {
  /** the attestation verified against the leaf's SPKI; always null until attestation lands */
  attestation: null
  /** whether the request carried a certificate that parsed */
  hasCertificate: boolean
}

export const NO_CLIENT_CERT: ClientCertContext = { attestation: null, hasCertificate: false }

function peerLeafDer(socket: unknown): Buffer | undefined {
  const tls = socket as Partial<TLSSocket> | null
  if (tls === null || typeof tls.getPeerX509Certificate !== 'function') return undefined
  return tls.getPeerX509Certificate()?.raw
}

export function clientCertContext(socket: unknown): ClientCertContext {
  const der = peerLeafDer(socket)
  if (der === undefined) return NO_CLIENT_CERT
  let cert: ParsedCertificate
  try {
    cert = parseCertificate(der)
  } catch {
    // Upstream's x509 parser failing means "no certificate", not an error.
    return NO_CLIENT_CERT
  }
  try {
    readRaTlsExtension(cert, RATLS_OID.appId)
    readRaTlsExtension(cert, RATLS_OID.appInfo)
  } catch (err) {
    throw new KmsError(
      'KMS_ERR_BAD_REQUEST',
      `Failed to parse client certificate: ${String(err instanceof Error ? err.message : err)}`,
    )
  }
  const hasAttestation =
    cert.extensions.has(RATLS_OID.attestation) || cert.extensions.has(RATLS_OID.tdxQuote)
  if (hasAttestation) {
    // Fail closed: an attestation we cannot verify must never be treated as verified.
    throw new KmsError(
      'KMS_ERR_BAD_REQUEST',
      'invalid quote: attestation verification is not implemented yet in dstack-kms-ts',
    )
  }
  return { attestation: null, hasCertificate: true }
}
