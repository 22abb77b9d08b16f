// D5: the onboarding listener speaks HTTPS with a certificate made at start and never stored. It
// authenticates nothing by itself; its SHA-256 fingerprint is logged so an operator can compare it
// with what the browser shows before typing anything into the page.
import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import { P256Key } from '../crypto/p256.js'
import { issueCertificate } from '../x509/certificate.js'

export interface EphemeralTls {
  key: string
  cert: string
  /** SHA-256 of the certificate DER, uppercase hex pairs joined by ':' (as browsers show it) */
  fingerprint: string
}

export function fingerprintOf(der: Uint8Array): string {
  const hex = createHash('sha256').update(der).digest('hex').toUpperCase()
  return hex.match(/../g)?.join(':') ?? ''
}

function isDnsName(name: string): boolean {
  return /^[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*$/.test(name)
}

export function createEphemeralTls(extraNames: readonly string[] = []): EphemeralTls {
  const key = P256Key.generate()
  const names = ['localhost', '127.0.0.1', '::1', hostname(), ...extraNames].filter(
    (n, i, all) =>
      n !== '' && all.indexOf(n) === i && (isDnsName(n) || n.includes(':') || /^[0-9.]+$/.test(n)),
  )
  const now = Date.now()
  const cert = issueCertificate(key, {
    subject: { commonName: 'dstack-kms onboarding' },
    subjectAltNames: names,
    extendedKeyUsage: { serverAuth: true, clientAuth: false },
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 30 * 24 * 3600_000),
  })
  return { key: key.pkcs8Pem(), cert: cert.pem, fingerprint: fingerprintOf(cert.der) }
}
