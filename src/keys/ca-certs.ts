// root-ca.crt and tmp-ca.crt as start-up finds them. Every replica of a KMS serves the same CA
// certificates (onboarding copies the source's byte for byte), so a file that is there is kept
// or refused, never silently replaced (docs/design.md#faults-on-disk).
import { errorMessage, KmsError } from '../errors.js'
import { readOptionalFile } from '../fs/read-file.js'
import { pemDecode } from '../asn1/pem.js'
import { parseCertificate, type ParsedCertificate } from '../x509/parse.js'
import { CERT_DIR_FILES, certPath } from './cert-dir.js'

/** The CA certificate `file` of `certDir`, or null when it does not exist (update_certs mints
 * it from its key, as upstream). A file that exists but cannot be read or is not a PEM
 * certificate is a KMS_ERR_KEYS error naming it: minting a new one here would give this KMS a CA
 * certificate no other replica serves. */
export function readCaCert(
  certDir: string,
  file: typeof CERT_DIR_FILES.rootCaCert | typeof CERT_DIR_FILES.tmpCaCert,
): ParsedCertificate | null {
  const path = certPath(certDir, file)
  const key =
    file === CERT_DIR_FILES.rootCaCert ? CERT_DIR_FILES.rootCaKey : CERT_DIR_FILES.tmpCaKey
  const refuse = (what: string, cause: unknown): KmsError =>
    new KmsError(
      'KMS_ERR_KEYS',
      `${path} ${what} (${errorMessage(cause)}); refusing to replace it, since a new one would differ ` +
        `from the certificate the other replicas of this KMS serve. Restore it from a backup or another ` +
        `replica, or delete it to have a new one minted from ${key}`,
      { cause },
    )
  let pem: Buffer | null
  try {
    pem = readOptionalFile(path)
  } catch (err) {
    throw refuse('cannot be read', err)
  }
  if (pem === null) return null
  try {
    return parseCertificate(pemDecode(pem.toString('utf8'), 'CERTIFICATE'))
  } catch (err) {
    throw refuse('is not a PEM certificate', err)
  }
}
