// The certificates the KMS issues (upstream `kms/src/main_service.rs`, `ra-tls/src/cert.rs`).
// Subjects, CA levels and extension sets are checked by guests and verifiers, so each template is
// fixed here rather than at call sites.
import type { P256Key } from '../crypto/p256.js'
import {
  type IssuedCertificate,
  type Issuer,
  type SubjectPublicKey,
  issueCertificate,
} from './certificate.js'
import { CERT_USAGE } from '../asn1/oids.js'

const ORG = 'Dstack'

/** `tmp-ca.crt`: self-signed, CA pathLen 0. */
export function issueTempCaCert(key: P256Key, notAfter?: Date): IssuedCertificate {
  return issueCertificate(key, {
    subject: { organization: ORG, commonName: 'Dstack Client Temp CA' },
    ca: { pathLen: 0 },
    notAfter,
  })
}

/** `root-ca.crt`: self-signed, CA pathLen 1. */
export function issueRootCaCert(key: P256Key, notAfter?: Date): IssuedCertificate {
  return issueCertificate(key, {
    subject: { organization: ORG, commonName: 'Dstack KMS CA' },
    ca: { pathLen: 1 },
    notAfter,
  })
}

/** `rpc.crt`: CN and SAN = the domain (an IP SAN when it is an IP literal), usage `kms:rpc`, no
 * EKU; the attestation is omitted when the KMS cannot attest. */
export function issueRpcCert(
  domain: string,
  key: P256Key,
  rootCa: Issuer,
  attestation?: Uint8Array,
): IssuedCertificate {
  return issueCertificate(
    key,
    {
      subject: { commonName: domain },
      subjectAltNames: [domain],
      usage: CERT_USAGE.kmsRpc,
      attestation,
    },
    rootCa,
  )
}

/** The per-app CA for SignCert (never stored): CA pathLen 0, app_id and usage `app:ca`. */
export function issueAppCaCert(appId: Uint8Array, key: P256Key, rootCa: Issuer): IssuedCertificate {
  return issueCertificate(
    key,
    {
      subject: { organization: ORG, commonName: 'Dstack App CA' },
      ca: { pathLen: 0 },
      appId,
      usage: CERT_USAGE.appCa,
    },
    rootCa,
  )
}

/** The `RA-TLS TEMP Cert` client certificate a KMS presents when onboarding from another KMS
 * (the shape guests use too). */
export function issueRaTlsClientCert(
  key: P256Key,
  tempCa: Issuer,
  attestation: Uint8Array,
): IssuedCertificate {
  return issueCertificate(key, { subject: { commonName: 'RA-TLS TEMP Cert' }, attestation }, tempCa)
}

/** The requester's part of a SignCert leaf (upstream CertConfigV2, validity already converted). */
export interface SignCertLeafConfig {
  orgName?: string
  subject: string
  subjectAltNames: readonly string[]
  usageServerAuth: boolean
  usageClientAuth: boolean
  notBefore?: Date
  notAfter?: Date
}

/** A SignCert leaf signed by the App CA: app_id, [app_info], usage `app:custom`, [attestation]. */
export function issueSignCertLeaf(
  publicKey: SubjectPublicKey,
  cfg: SignCertLeafConfig,
  appCa: Issuer,
  appId: Uint8Array,
  extras: { appInfo?: Uint8Array; attestation?: Uint8Array } = {},
): IssuedCertificate {
  return issueCertificate(
    publicKey,
    {
      subject: { organization: cfg.orgName, commonName: cfg.subject },
      subjectAltNames: cfg.subjectAltNames,
      extendedKeyUsage: { serverAuth: cfg.usageServerAuth, clientAuth: cfg.usageClientAuth },
      appId,
      appInfo: extras.appInfo,
      usage: CERT_USAGE.appCustom,
      attestation: extras.attestation,
      notBefore: cfg.notBefore,
      notAfter: cfg.notAfter,
    },
    appCa,
  )
}
