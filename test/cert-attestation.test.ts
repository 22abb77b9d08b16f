// The attestation inside an RA-TLS certificate (upstream `from_ext_getter`): the versioned `.1.8`
// extension, or the legacy `.1.1` quote + `.1.2` JSON event log pair that 0.3/0.4 guests still
// send, which becomes a V0 attestation through from_tdx_quote and verifies like any other.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { StaticCollateralSource } from '../src/attestation/collateral.js'
import { encodeTdxEventLogJson } from '../src/attestation/event-log.js'
import { toReportData } from '../src/attestation/report-data.js'
import { AttestationVerifier } from '../src/attestation/verify.js'
import { decodeVersionedAttestation } from '../src/attestation/versioned.js'
import { P256Key } from '../src/crypto/p256.js'
import { attestationFromCertificate } from '../src/ratls/cert-attestation.js'
import { mockCollateral } from '../src/tee/simulator/collateral.js'
import { simulateGuestAttestation } from '../src/tee/simulator/guest.js'
import { mockIntelPki } from '../src/tee/simulator/mock-pki.js'
import { derOctetString } from '../src/asn1/der.js'
import { RATLS_OID } from '../src/asn1/oids.js'
import { parseCertificate, type ParsedCertificate } from '../src/x509/parse.js'
import { issueRaTlsClientCert, issueTempCaCert } from '../src/x509/templates.js'

describe('attestationFromCertificate', () => {
  const seed = randomBytes(32)
  const pki = mockIntelPki(seed)
  const verifier = new AttestationVerifier({
    rootCaDer: pki.root.der,
    collateral: new StaticCollateralSource(mockCollateral(pki)),
  })
  const tempKey = P256Key.generate()
  const tempCa = { key: tempKey, subjectDer: issueTempCaCert(tempKey).subjectDer }

  /** A real RA-TLS certificate, its versioned extension swapped for the given extensions (what an
   * old guest's rcgen writes: each value a DER OCTET STRING inside extnValue). */
  function legacyCert(key: P256Key, exts: Record<string, Buffer>): ParsedCertificate {
    const att = simulateGuestAttestation({
      seed,
      reportData: toReportData('ratls-cert', key.spkiDer()),
    })
    const cert = parseCertificate(issueRaTlsClientCert(key, tempCa, att).der)
    const extensions = new Map(cert.extensions)
    extensions.delete(RATLS_OID.attestation)
    for (const [oid, raw] of Object.entries(exts)) {
      extensions.set(oid, { critical: false, value: derOctetString(raw) })
    }
    return { ...cert, extensions }
  }

  it('legacy .1.1 + .1.2: from_tdx_quote, verified bound to the certificate key', async () => {
    const key = P256Key.generate()
    const { attestation } = decodeVersionedAttestation(
      simulateGuestAttestation({ seed, reportData: toReportData('ratls-cert', key.spkiDer()) }),
    )
    assert.ok(attestation.quote.kind === 'dstack-tdx')
    const cert = legacyCert(key, {
      [RATLS_OID.tdxQuote]: attestation.quote.quote,
      [RATLS_OID.eventLog]: Buffer.from(encodeTdxEventLogJson(attestation.quote.eventLog)),
    })
    const fromCert = attestationFromCertificate(cert)
    assert.ok(fromCert !== null)
    assert.deepEqual(
      fromCert.runtimeEvents.map((e) => e.event),
      attestation.runtimeEvents.map((e) => e.event),
    )
    assert.equal(fromCert.config, '')
    const verified = await verifier.verifyWithRaPubkey(fromCert, cert.spkiDer)
    assert.equal(verified.variant, 'dstack-tdx')
    await assert.rejects(
      verifier.verifyWithRaPubkey(fromCert, P256Key.generate().spkiDer()),
      /report data mismatch/,
    )
  })

  it('a legacy quote without its event log is refused; no extension means no attestation', () => {
    const key = P256Key.generate()
    assert.throws(
      () =>
        attestationFromCertificate(
          legacyCert(key, { [RATLS_OID.tdxQuote]: Buffer.from('00', 'hex') }),
        ),
      { message: 'TDX event log missing' },
    )
    assert.equal(attestationFromCertificate(legacyCert(key, {})), null)
  })

  it('the versioned extension wins over a legacy pair', () => {
    const key = P256Key.generate()
    const att = simulateGuestAttestation({
      seed,
      reportData: toReportData('ratls-cert', key.spkiDer()),
    })
    const cert = parseCertificate(issueRaTlsClientCert(key, tempCa, att).der)
    const extensions = new Map(cert.extensions)
    extensions.set(RATLS_OID.tdxQuote, {
      critical: false,
      value: derOctetString(Buffer.from('garbage')),
    })
    const fromCert = attestationFromCertificate({ ...cert, extensions })
    assert.ok(fromCert !== null)
    assert.deepEqual(fromCert.reportData, toReportData('ratls-cert', key.spkiDer()))
  })
})
