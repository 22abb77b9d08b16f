// The caller's side of an RA-TLS key request (upstream dstack-util
// `request_app_keys_from_kms_url` and kms `Keys::onboard`): a fresh P-256 key, an attestation
// whose report data binds that key, and a certificate for both signed by the temp CA that the
// KMS hands out in GetTempCaCert. The guest's GetAppKey and a replica's GetKmsKey both present it.
import { pemDecode } from '../asn1/pem.js'
import { toReportData } from '../attestation/report-data.js'
import { P256Key } from '../crypto/p256.js'
import type { IssuedCertificate } from '../x509/certificate.js'
import { parseCertificate } from '../x509/parse.js'
import { issueRaTlsClientCert } from '../x509/templates.js'
import { strippedAttestationBytes } from './cert-attestation.js'

export interface RaTlsClientIdentity {
  key: P256Key
  cert: IssuedCertificate
}

/** `attest` returns VersionedAttestation bytes for 64 bytes of report data. */
export async function issueRaTlsClientIdentity(
  tempCa: { certPem: string; keyPem: string },
  attest: (reportData: Buffer) => Promise<Buffer>,
): Promise<RaTlsClientIdentity> {
  const tempCaKey = P256Key.fromPem(tempCa.keyPem)
  const tempCaSubject = parseCertificate(pemDecode(tempCa.certPem, 'CERTIFICATE')).subjectDer
  const key = P256Key.generate()
  const attestation = await attest(toReportData('ratls-cert', key.spkiDer()))
  const cert = issueRaTlsClientCert(
    key,
    { key: tempCaKey, subjectDer: tempCaSubject },
    strippedAttestationBytes(attestation),
  )
  return { key, cert }
}
