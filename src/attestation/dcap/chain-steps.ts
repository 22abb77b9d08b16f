// DCAP verification as an ordered list of checks, split into the part that depends only on its
// input (signatures, parsing: decided once, then cached) and the part that depends on the
// verification time (validity windows: re-evaluated on every call). Walking the list in order
// gives the first failure exactly where a straight-line verifier would have hit it, so caching
// does not change which error a client sees.
import { X509Certificate } from 'node:crypto'
import { readTlv } from '../../asn1/der.js'
import { OID } from '../../asn1/oids.js'
import { parseCertificate } from '../../x509/parse.js'

export type Check =
  /** decided when the list was built: verification stops here */
  | { kind: 'fail'; error: () => Error }
  /** fails when `now < secs` */
  | { kind: 'not-before'; secs: number; message: string }
  /** fails when `now > secs` */
  | { kind: 'not-after'; secs: number; message: string }
  /** a certificate's window in milliseconds (NaN never fails, as with an unparsable date) */
  | { kind: 'certificate'; fromMs: number; toMs: number }

export function runChecks(checks: readonly Check[], now: number): void {
  for (const c of checks) {
    switch (c.kind) {
      case 'fail':
        throw c.error()
      case 'not-before':
        if (now < c.secs) throw new Error(c.message)
        break
      case 'not-after':
        if (now > c.secs) throw new Error(c.message)
        break
      case 'certificate': {
        const ms = now * 1000
        if (c.fromMs > ms || c.toMs < ms) {
          throw new Error('Certificate is expired or not yet valid')
        }
        break
      }
    }
  }
}

/** Runs `build` and turns what it throws into a final `fail` check. */
export function collectChecks(build: (checks: Check[]) => void): Check[] {
  const checks: Check[] = []
  try {
    build(checks)
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err))
    checks.push({ kind: 'fail', error: () => e })
  }
  return checks
}

/** Thrown inside `collectChecks` builders to end the list with a plain message. */
export function stop(message: string): never {
  throw new Error(message)
}

/** Serial numbers compared by value (leading zero octets dropped), as big integers compare. */
export function serialKey(serial: Buffer): string {
  let i = 0
  while (i < serial.length - 1 && serial[i] === 0) i++
  return serial.subarray(i).toString('hex')
}

/** basicConstraints says cA, read the way dcap-qvl reads it (an unreadable certificate is not a
 * CA there either). */
function isCaCertificate(der: Buffer): boolean {
  let v: Buffer | undefined
  try {
    v = parseCertificate(der).extensions.get(OID.basicConstraints)?.value
  } catch {
    return false
  }
  if (v === undefined || v.length < 2 || v[0] !== 0x30) return false
  if (v[1] === 0) return false
  return v.length >= 5 && v[2] === 0x01 && v[3] === 0x01 && v[4] !== 0x00
}

function windowOf(c: X509Certificate): Check {
  return {
    kind: 'certificate',
    fromMs: new Date(c.validFrom).getTime(),
    toMs: new Date(c.validTo).getTime(),
  }
}

/**
 * A chain certificate as dcap-qvl reads one: it hands OpenSSL each certificate as PEM, whose reader
 * takes bytes after the certificate for an auxiliary trust block and fails on anything that is not
 * one ("header too long" for a stray byte). Given DER, OpenSSL would ignore them, so they are
 * refused here first. A well-formed auxiliary block after a certificate, which dcap-qvl would let
 * through, is refused too: no quote carries one.
 */
function readCertificate(der: Buffer): X509Certificate {
  let end: number | undefined
  try {
    end = readTlv(der, 0).end
  } catch {
    // not ours to judge: OpenSSL's parser below says what is wrong with it
  }
  if (end !== undefined && end !== der.length) {
    stop(`Failed to parse certificate: ${der.length - end} bytes after it`)
  }
  return new X509Certificate(der)
}

export interface CheckedChain {
  leaf: X509Certificate
  /** serials of the leaf, the given intermediates and the anchor, for the CRL lookup */
  serials: string[]
}

/** Signature and window checks of `leaf ← intermediates… ← anchor` (dcap-qvl's
 * `verify_certificate_chain` without the CRL lookup, which the caller adds). */
export function chainChecks(
  checks: Check[],
  leafDer: Buffer,
  intermediates: readonly Buffer[],
  anchor: X509Certificate,
): CheckedChain {
  const leaf = readCertificate(leafDer)
  if (isCaCertificate(leafDer)) stop('CaUsedAsEndEntity')
  // certificates are read as the walk reaches them, so that an unreadable one fails where it
  // fails today
  const certs: X509Certificate[] = []
  const at = (i: number): X509Certificate => {
    const der = intermediates[i]
    if (der === undefined) return anchor
    certs[i] ??= readCertificate(der)
    return certs[i]
  }
  if (!leaf.verify(at(0).publicKey)) {
    stop('Failed to verify certificate chain - leaf signature invalid')
  }
  checks.push(windowOf(leaf))
  for (let i = 0; i < intermediates.length; i++) {
    const c = at(i)
    if (!c.verify(at(i + 1).publicKey)) {
      stop('Failed to verify certificate chain - intermediate signature invalid')
    }
    checks.push(windowOf(c))
  }
  return { leaf, serials: [leaf, ...certs, anchor].map((c) => serialKey(certificateSerial(c))) }
}

export function certificateSerial(c: X509Certificate): Buffer {
  return Buffer.from(c.serialNumber.length % 2 === 1 ? `0${c.serialNumber}` : c.serialNumber, 'hex')
}
