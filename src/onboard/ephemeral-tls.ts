// docs/design.md#onboarding-over-https-with-an-ephemeral-certificate: the onboarding listener
// speaks HTTPS with a certificate made at start and never stored. It authenticates nothing by
// itself; its SHA-256 fingerprint is logged so an operator can compare it with what the browser
// shows before typing anything into the page.
import { createHash } from 'node:crypto'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { validateDomain } from '../config/validate.js'
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

/** A name this host may be reached by that can go into a SAN: an IP, or a valid DNS name (an
 * odd hostname() must not stop the onboarding listener from starting). */
function isSanName(name: string): boolean {
  if (isIP(name) !== 0) return true
  try {
    validateDomain(name)
    return true
  } catch {
    return false
  }
}

export function createEphemeralTls(): EphemeralTls {
  const key = P256Key.generate()
  const names = [...new Set(['localhost', '127.0.0.1', '::1', hostname()])].filter(isSanName)
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
