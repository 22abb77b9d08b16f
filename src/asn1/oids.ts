// Object identifiers used by the KMS certificates (upstream `ra-tls`'s RA-TLS OIDs and RFC 5280).

export const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  prime256v1: '1.2.840.10045.3.1.7',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',

  organizationName: '2.5.4.10',
  commonName: '2.5.4.3',

  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',

  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const

/** Phala's RA-TLS extensions (private enterprise number 62397); all non-critical. */
export const RATLS_OID = {
  /** legacy: raw TDX quote (read only; paired with eventLog) */
  tdxQuote: '1.3.6.1.4.1.62397.1.1',
  /** legacy: UTF-8 JSON TDX event log (read only) */
  eventLog: '1.3.6.1.4.1.62397.1.2',
  appId: '1.3.6.1.4.1.62397.1.3',
  certUsage: '1.3.6.1.4.1.62397.1.4',
  attestation: '1.3.6.1.4.1.62397.1.8',
  appInfo: '1.3.6.1.4.1.62397.1.9',
} as const

/** The usage strings written into `RATLS_OID.certUsage`. */
export const CERT_USAGE = {
  kmsRpc: 'kms:rpc',
  appCa: 'app:ca',
  appCustom: 'app:custom',
} as const
