// Our own checks of DCAP collateral (issuer chains, CRL signatures, issuers and windows,
// revocation) and of the quote's PCK chain, on the dcap-qvl fixtures and on the simulator's mock
// Intel PKI.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import dcap from '@phala/dcap-qvl'
import {
  type Collateral,
  type CollateralSource,
  StaticCollateralSource,
} from '../src/attestation/collateral.js'
import {
  TrustAnchor,
  checkCollateral,
  verifyChain,
  verifyPckChain,
} from '../src/attestation/collateral-trust.js'
import { parseQuote } from '../src/attestation/quote.js'
import { INTEL_SGX_ROOT_CA_DER } from '../src/attestation/trust.js'
import { AttestationVerifier } from '../src/attestation/verify.js'
import { KmsError } from '../src/errors.js'
import { mockCollateral } from '../src/tee/simulator/collateral.js'
import {
  type MockIntelPki,
  mockIntelPki,
  pckChainPem,
  signDeterministic,
} from '../src/tee/simulator/mock-pki.js'
import { buildTdxQuote } from '../src/tee/simulator/quote-builder.js'
import { type CrlParams, issueCrl } from '../src/x509/crl.js'
import { crlRevokes, parseCrl } from '../src/x509/crl-parse.js'
import {
  derBitString,
  derBoolean,
  derExplicit,
  derOctetString,
  derOid,
  derSequence,
  derSmallInteger,
  derTime,
} from '../src/asn1/der.js'
import { OID } from '../src/asn1/oids.js'
import { parseCertificate } from '../src/x509/parse.js'
import { pemDecodeAll, pemEncode } from '../src/asn1/pem.js'
import { loadCollateralFixture } from './helpers/collateral-fixtures.js'
import { readVectorFile } from './helpers/crypto-vectors.js'

const NOW = 1751328000 // 2025-07-01T00:00:00Z
const PCK_CRL_NEXT_UPDATE = Date.parse('2025-07-19T10:00:35Z') / 1000
const wallClock = (): number => Math.floor(Date.now() / 1000)

const tdxQuote = readVectorFile('dcap-qvl-tdx_quote')
const sgxQuote = readVectorFile('dcap-qvl-sgx_quote')
const tdx = loadCollateralFixture('tdx')
const sgx = loadCollateralFixture('sgx')
const intel = new TrustAnchor(INTEL_SGX_ROOT_CA_DER)

const SEED = Buffer.alloc(32, 0x5c)
const OTHER_SEED = Buffer.alloc(32, 0x6d)
const pki = mockIntelPki(SEED)

function simQuote(p: MockIntelPki = pki): Buffer {
  return buildTdxQuote(p, {
    mrTd: Buffer.alloc(48, 1),
    rtmr0: Buffer.alloc(48, 2),
    rtmr1: Buffer.alloc(48, 3),
    rtmr2: Buffer.alloc(48, 4),
    rtmr3: Buffer.alloc(48),
    reportData: Buffer.alloc(64, 5),
  })
}

const hexOf = (v: number[] | string): string =>
  typeof v === 'string' ? v : Buffer.from(v).toString('hex')

function flipByte(hex: string, index: number): string {
  const b = Buffer.from(hex, 'hex')
  const i = index < 0 ? b.length + index : index
  b[i] = (b[i] ?? 0) ^ 0x01
  return b.toString('hex')
}

/** A CRL over `params`, signed with `signer` (a mock key, or an attacker's). */
function crlHex(
  params: Partial<CrlParams> & Pick<CrlParams, 'issuerSubjectDer'>,
  signer = pki.pckCa.key,
): string {
  return issueCrl(
    {
      thisUpdate: new Date('2020-01-01T00:00:00Z'),
      nextUpdate: new Date('2100-01-01T00:00:00Z'),
      crlNumber: 7,
      ...params,
    },
    (tbs) => signDeterministic(signer, tbs).der,
  ).toString('hex')
}

function isError(code: string, message: string | RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof KmsError, `expected KmsError, got ${String(e)}`)
    assert.equal(e.code, code)
    if (typeof message === 'string') assert.equal(e.message, message)
    else assert.match(e.message, message)
    return true
  }
}

function verifierOf(c: Collateral | CollateralSource, root: Buffer, now?: number) {
  const collateral = 'get' in c ? c : new StaticCollateralSource(c as Collateral)
  return new AttestationVerifier({
    rootCaDer: root,
    collateral,
    ...(now === undefined ? {} : { now: () => now }),
  })
}

const intelPckPlatformCa = parseCertificate(
  pemDecodeAll(tdx.pck_crl_issuer_chain, 'CERTIFICATE')[0] as Buffer,
)

describe('collateral checks on the dcap-qvl fixtures', () => {
  it('both samples check out at 2025-07-01 (documents included), hex or byte arrays', () => {
    for (const c of [tdx, sgx]) {
      const t = checkCollateral(c, intel, NOW, { documents: true })
      assert.ok(t.validFrom <= NOW && NOW < t.validUntil)
      const arrays: Collateral = {
        ...c,
        pck_crl: [...Buffer.from(hexOf(c.pck_crl), 'hex')],
        root_ca_crl: [...Buffer.from(hexOf(c.root_ca_crl), 'hex')],
        tcb_info_signature: [...Buffer.from(hexOf(c.tcb_info_signature), 'hex')],
        qe_identity_signature: [...Buffer.from(hexOf(c.qe_identity_signature), 'hex')],
      }
      checkCollateral(arrays, intel, NOW, { documents: true })
    }
    // the window ends with the PCK CRL
    assert.equal(checkCollateral(tdx, intel, NOW).validUntil, PCK_CRL_NEXT_UPDATE)
  })

  it('checks a collateral once per root: the same members again are the remembered result', () => {
    const documents = { documents: true }
    const first = checkCollateral({ ...sgx }, intel, NOW, documents)
    // another object with the same members, another anchor object for the same root
    const again = new TrustAnchor(INTEL_SGX_ROOT_CA_DER)
    assert.equal(checkCollateral({ ...sgx }, again, NOW + 1), first)
    assert.equal(checkCollateral({ ...sgx }, again, NOW, documents), first)
    // other members, or a time outside the window, are checked anew
    const arrays = { ...sgx, pck_crl: [...Buffer.from(hexOf(sgx.pck_crl), 'hex')] }
    assert.notEqual(checkCollateral(arrays, intel, NOW, documents), first)
    assert.throws(
      () => checkCollateral({ ...sgx }, intel, first.validUntil),
      isError('KMS_ERR_COLLATERAL', /expired at/),
    )
  })

  it('byte-array CRLs verify through the verifier too', async () => {
    const arrays: Collateral = {
      ...tdx,
      pck_crl: [...Buffer.from(hexOf(tdx.pck_crl), 'hex')],
      root_ca_crl: [...Buffer.from(hexOf(tdx.root_ca_crl), 'hex')],
    }
    const r = await verifierOf(arrays, INTEL_SGX_ROOT_CA_DER, NOW).verifyQuote(tdxQuote)
    assert.equal(r.status, 'UpToDate')
  })

  it('the library alone accepts a garbage PCK CRL; the verifier refuses it', async () => {
    const garbage: Collateral = { ...tdx, pck_crl: 'deadbeef' }
    const lib = dcap.QuoteVerifier.newWithRootCa(INTEL_SGX_ROOT_CA_DER).verify(
      tdxQuote,
      garbage,
      NOW,
    )
    assert.equal(lib.status, 'UpToDate')
    await assert.rejects(
      verifierOf(garbage, INTEL_SGX_ROOT_CA_DER, NOW).verifyQuote(tdxQuote),
      isError('KMS_ERR_COLLATERAL', /^PCK CRL does not parse: invalid CRL: /),
    )
  })

  it('refuses empty, non-hex and unparsable CRLs', () => {
    const cases: [Partial<Collateral>, string | RegExp][] = [
      [{ pck_crl: '' }, 'PCK CRL does not parse: invalid CRL: empty'],
      [{ pck_crl: [] }, 'PCK CRL does not parse: invalid CRL: empty'],
      [{ pck_crl: 'zz' }, 'PCK CRL is not hex'],
      [{ root_ca_crl: '300100' }, /^root CA CRL does not parse: invalid CRL: /],
      [{ root_ca_crl: hexOf(tdx.root_ca_crl) + '00' }, /^root CA CRL does not parse: .*trailing/],
    ]
    for (const [patch, message] of cases) {
      assert.throws(
        () => checkCollateral({ ...tdx, ...patch }, intel, NOW),
        isError('KMS_ERR_COLLATERAL', message),
      )
    }
  })

  it('refuses a CRL from the wrong issuer', () => {
    // the root CA CRL is genuine and signed by the root, but it is not the PCK CA's list
    assert.throws(
      () => checkCollateral({ ...tdx, pck_crl: tdx.root_ca_crl }, intel, NOW),
      isError('KMS_ERR_COLLATERAL', 'PCK CRL is not issued by "Intel SGX PCK Platform CA"'),
    )
    assert.throws(
      () => checkCollateral({ ...tdx, root_ca_crl: tdx.pck_crl }, intel, NOW),
      isError('KMS_ERR_COLLATERAL', 'root CA CRL is not issued by "Intel SGX Root CA"'),
    )
    // the Processor CA's CRL with the Platform CA's chain
    assert.throws(
      () => checkCollateral({ ...tdx, pck_crl: sgx.pck_crl }, intel, NOW),
      isError('KMS_ERR_COLLATERAL', 'PCK CRL is not issued by "Intel SGX PCK Platform CA"'),
    )
  })

  it('refuses a CRL whose signature does not verify', () => {
    // a forged empty list in the PCK CA's name
    const forged = crlHex(
      { issuerSubjectDer: intelPckPlatformCa.subjectDer },
      mockIntelPki(OTHER_SEED).pckCa.key,
    )
    assert.throws(
      () => checkCollateral({ ...tdx, pck_crl: forged }, intel, NOW),
      isError('KMS_ERR_COLLATERAL', 'PCK CRL signature is invalid'),
    )
    // a revoked serial edited out of the genuine list
    const pckCrl = hexOf(tdx.pck_crl)
    const serialAt = Buffer.from(pckCrl, 'hex').indexOf(
      Buffer.from('6FC34E5023E728923435D61AA4B83C618166AD35', 'hex'),
    )
    assert.ok(serialAt > 0)
    assert.throws(
      () => checkCollateral({ ...tdx, pck_crl: flipByte(pckCrl, serialAt + 3) }, intel, NOW),
      isError('KMS_ERR_COLLATERAL', 'PCK CRL signature is invalid'),
    )
    // the last byte of the signature itself
    assert.throws(
      () =>
        checkCollateral({ ...tdx, root_ca_crl: flipByte(hexOf(tdx.root_ca_crl), -1) }, intel, NOW),
      isError('KMS_ERR_COLLATERAL', 'root CA CRL signature is invalid'),
    )
  })

  it('refuses a CRL outside thisUpdate ≤ now < nextUpdate', () => {
    assert.throws(
      () => checkCollateral(tdx, intel, PCK_CRL_NEXT_UPDATE),
      isError('KMS_ERR_COLLATERAL', 'PCK CRL expired at 2025-07-19T10:00:35Z'),
    )
    checkCollateral(tdx, intel, PCK_CRL_NEXT_UPDATE - 1)
    assert.throws(
      () => checkCollateral(tdx, intel, Date.parse('2025-06-19T10:00:34Z') / 1000),
      isError('KMS_ERR_COLLATERAL', 'PCK CRL is not valid before 2025-06-19T10:00:35Z'),
    )
  })

  it('refuses issuer chains that do not end at the trusted root', () => {
    const mockChain = pki.pckCa.pem + pki.root.pem
    for (const field of [
      'pck_crl_issuer_chain',
      'tcb_info_issuer_chain',
      'qe_identity_issuer_chain',
    ] as const) {
      assert.throws(
        () => checkCollateral({ ...tdx, [field]: mockChain }, intel, NOW),
        isError(
          'KMS_ERR_COLLATERAL',
          `${field}: certificate "Mock Intel SGX Root CA" is neither the trusted root CA "Intel SGX Root CA" nor issued by it`,
        ),
      )
    }
    assert.throws(
      () => checkCollateral({ ...tdx, tcb_info_issuer_chain: 'no PEM here' }, intel, NOW),
      isError('KMS_ERR_COLLATERAL', 'tcb_info_issuer_chain: no certificates'),
    )
    // the root alone: nothing below it signed anything
    const rootOnly = pemEncode(
      'CERTIFICATE',
      pemDecodeAll(tdx.tcb_info_issuer_chain, 'CERTIFICATE')[1] as Buffer,
    )
    assert.throws(
      () =>
        checkCollateral(
          {
            ...tdx,
            tcb_info_issuer_chain: rootOnly,
          },
          intel,
          NOW,
        ),
      isError('KMS_ERR_COLLATERAL', 'tcb_info_issuer_chain: no certificate below the root CA'),
    )
    // reversed order
    const [leaf, root] = pemDecodeAll(tdx.qe_identity_issuer_chain, 'CERTIFICATE').map((d) =>
      pemEncode('CERTIFICATE', d),
    )
    assert.throws(
      () =>
        checkCollateral(
          { ...tdx, qe_identity_issuer_chain: `${root ?? ''}\n${leaf ?? ''}` },
          intel,
          NOW,
        ),
      isError('KMS_ERR_COLLATERAL', 'qe_identity_issuer_chain: certificates follow the root CA'),
    )
    // the leaf alone is fine: the root is the configured one
    checkCollateral({ ...tdx, tcb_info_issuer_chain: leaf ?? '' }, intel, NOW)
  })

  it('with documents, refuses a TCB info or QE identity whose signature does not verify', () => {
    const tcb = tdx.tcb_info.replace('{"id":"TDX"', '{ "id":"TDX"')
    assert.throws(
      () => checkCollateral({ ...tdx, tcb_info: tcb }, intel, NOW, { documents: true }),
      isError('KMS_ERR_COLLATERAL', 'Signature is invalid for tcb_info'),
    )
    assert.throws(
      () =>
        checkCollateral({ ...tdx, qe_identity_signature: sgx.qe_identity_signature }, intel, NOW, {
          documents: true,
        }),
      isError('KMS_ERR_COLLATERAL', 'Signature is invalid for qe_identity'),
    )
  })
})

describe('the quote PCK chain is checked before any collateral is asked for', () => {
  const counting = (c: Collateral) => {
    const seen: string[] = []
    const source: CollateralSource = {
      async get(_q, fmspc, ca) {
        seen.push(`${fmspc}/${ca}`)
        return c
      },
    }
    return { source, seen }
  }

  it('accepts the fixture chains', () => {
    for (const q of [tdxQuote, sgxQuote]) {
      const chain = verifyPckChain(parseQuote(q).pckChainPem, intel, NOW)
      assert.equal(chain.certs.length, 3)
      assert.ok(chain.validFrom <= NOW && NOW < chain.validUntil)
    }
  })

  it('a chain to another root never reaches the collateral source', async () => {
    const { source, seen } = counting(tdx)
    await assert.rejects(
      verifierOf(source, pki.root.der, NOW).verifyQuote(tdxQuote),
      isError(
        'KMS_ERR_ATTESTATION',
        'Invalid PCK certificate chain: certificate "Intel SGX Root CA" is neither the trusted root CA "Mock Intel SGX Root CA" nor issued by it',
      ),
    )
    // a simulated platform of another seed: same names, other keys
    await assert.rejects(
      verifierOf(source, pki.root.der, NOW).verifyQuote(simQuote(mockIntelPki(OTHER_SEED))),
      isError(
        'KMS_ERR_ATTESTATION',
        'Invalid PCK certificate chain: certificate "Mock Intel SGX Root CA" is neither the trusted root CA "Mock Intel SGX Root CA" nor issued by it',
      ),
    )
    assert.deepEqual(seen, [])
  })

  it('an expired or not yet valid PCK certificate never reaches the collateral source', async () => {
    const { source, seen } = counting(mockCollateral(pki))
    await assert.rejects(
      verifierOf(source, pki.root.der, Date.UTC(2101, 0, 1) / 1000).verifyQuote(simQuote()),
      isError(
        'KMS_ERR_ATTESTATION',
        'Invalid PCK certificate chain: certificate "Mock Intel SGX PCK Certificate" expired at 2100-01-01T00:00:00Z',
      ),
    )
    await assert.rejects(
      verifierOf(source, INTEL_SGX_ROOT_CA_DER, 1).verifyQuote(tdxQuote),
      isError(
        'KMS_ERR_ATTESTATION',
        /^Invalid PCK certificate chain: certificate "Intel SGX PCK Certificate" is not valid before /,
      ),
    )
    assert.deepEqual(seen, [])
    // inside the window the source is asked, with the FMSPC of the verified leaf
    const r = await verifierOf(source, pki.root.der, NOW).verifyQuote(simQuote())
    assert.equal(r.status, 'UpToDate')
    assert.deepEqual(seen, [`${pki.fmspc.toString('hex').toUpperCase()}/platform`])
  })

  it('a chain whose leaf is a CA is refused', () => {
    assert.throws(
      () => verifyPckChain(pki.pckCa.pem + pki.root.pem, new TrustAnchor(pki.root.der), NOW),
      isError('KMS_ERR_ATTESTATION', 'Invalid PCK certificate chain: the leaf is a CA certificate'),
    )
    // the generic walk accepts it (the CRL issuer chains have a CA as their leaf)
    verifyChain(pckChainPem(pki), new TrustAnchor(pki.root.der), NOW, 'x')
  })
})

describe('the simulator mock collateral', () => {
  const root = pki.root.der

  it('verifies against the mock root at the current time', async () => {
    const t = checkCollateral(mockCollateral(pki), new TrustAnchor(root), wallClock(), {
      documents: true,
    })
    assert.equal(t.validUntil, Date.UTC(2100, 0, 1) / 1000)
    const r = await verifierOf(mockCollateral(pki), root).verifyQuote(simQuote())
    assert.equal(r.status, 'UpToDate')
    // and not against Intel's
    assert.throws(
      () => checkCollateral(mockCollateral(pki), intel, wallClock()),
      isError('KMS_ERR_COLLATERAL', /^pck_crl_issuer_chain: certificate "Mock Intel SGX Root CA" /),
    )
  })

  it('a PCK CRL that lists the PCK certificate makes the quote fail', async () => {
    const revoked = crlHex({
      issuerSubjectDer: pki.pckCa.subjectDer,
      authorityKeyId: pki.pckCa.subjectKeyId,
      revoked: [{ serial: pki.pck.serial, revocationDate: new Date('2024-01-01T00:00:00Z') }],
    })
    assert.ok(crlRevokes(parseCrl(Buffer.from(revoked, 'hex')), pki.pck.serial))
    await assert.rejects(
      verifierOf({ ...mockCollateral(pki), pck_crl: revoked }, root, NOW).verifyQuote(simQuote()),
      isError(
        'KMS_ERR_ATTESTATION',
        `Certificate is revoked: "Mock Intel SGX PCK Certificate" (serial ${pki.pck.serial.toString('hex')})`,
      ),
    )
  })

  it('a root CA CRL that lists the PCK CA makes the quote fail', async () => {
    const revoked = crlHex(
      {
        issuerSubjectDer: pki.root.subjectDer,
        revoked: [{ serial: pki.pckCa.serial, revocationDate: new Date('2024-01-01T00:00:00Z') }],
      },
      pki.root.key,
    )
    await assert.rejects(
      verifierOf({ ...mockCollateral(pki), root_ca_crl: revoked }, root, NOW).verifyQuote(
        simQuote(),
      ),
      isError('KMS_ERR_ATTESTATION', /^Certificate is revoked: "Mock Intel SGX PCK Platform CA"/),
    )
  })

  it('an expired root CA CRL is refused', async () => {
    const old = crlHex(
      {
        issuerSubjectDer: pki.root.subjectDer,
        thisUpdate: new Date('2020-01-01T00:00:00Z'),
        nextUpdate: new Date('2021-01-01T00:00:00Z'),
      },
      pki.root.key,
    )
    await assert.rejects(
      verifierOf({ ...mockCollateral(pki), root_ca_crl: old }, root, NOW).verifyQuote(simQuote()),
      isError('KMS_ERR_COLLATERAL', 'root CA CRL expired at 2021-01-01T00:00:00Z'),
    )
    // through verify() the context is the existing one
    const a = (await import('../src/attestation/from-tdx-quote.js')).attestationFromTdxQuote(
      simQuote(),
      Buffer.from('[]'),
    )
    await assert.rejects(
      verifierOf({ ...mockCollateral(pki), root_ca_crl: old }, root, NOW).verify(a),
      isError(
        'KMS_ERR_COLLATERAL',
        'Failed to get collateral: root CA CRL expired at 2021-01-01T00:00:00Z',
      ),
    )
  })

  it('remembers checked collateral per object, but not across a changed member', async () => {
    const c = mockCollateral(pki)
    const v = verifierOf(c, root, NOW)
    assert.equal((await v.verifyQuote(simQuote())).status, 'UpToDate')
    c.pck_crl = 'deadbeef'
    await assert.rejects(
      v.verifyQuote(simQuote()),
      isError('KMS_ERR_COLLATERAL', /^PCK CRL does not parse/),
    )
  })
})

describe('CRL reader', () => {
  const ecdsa = derSequence(derOid(OID.ecdsaWithSha256))
  const signed = (tbs: Buffer, alg = ecdsa): Buffer =>
    derSequence(tbs, alg, derBitString(signDeterministic(pki.root.key, tbs).der))
  const t0 = derTime(new Date('2024-01-01T00:00:00Z'))
  const t1 = derTime(new Date('2030-01-01T00:00:00Z'))

  it('reads the fixture PCK CRL', () => {
    const crl = parseCrl(Buffer.from(hexOf(tdx.pck_crl), 'hex'))
    assert.equal(crl.version, 2)
    assert.equal(crl.signatureAlgorithm, OID.ecdsaWithSha256)
    assert.ok(crl.issuerDer.equals(intelPckPlatformCa.subjectDer))
    assert.equal(crl.thisUpdate.toISOString(), '2025-06-19T10:00:35.000Z')
    assert.equal(crl.nextUpdate?.toISOString(), '2025-07-19T10:00:35.000Z')
    assert.equal(crl.revoked.length, 44)
    assert.equal(
      crl.revoked[0]?.serial.toString('hex').toUpperCase(),
      '6FC34E5023E728923435D61AA4B83C618166AD35',
    )
    assert.equal(crl.extensions.size, 2)
  })

  it('round-trips the writer', () => {
    const der = Buffer.from(
      crlHex({
        issuerSubjectDer: pki.pckCa.subjectDer,
        authorityKeyId: pki.pckCa.subjectKeyId,
        revoked: [
          { serial: Buffer.from([0x80, 1]), revocationDate: new Date('2024-02-02T00:00:00Z') },
        ],
      }),
      'hex',
    )
    const crl = parseCrl(der)
    assert.ok(crl.issuerDer.equals(pki.pckCa.subjectDer))
    assert.equal(crl.nextUpdate?.toISOString(), '2100-01-01T00:00:00.000Z')
    // the serial as INTEGER content: a sign byte before a top-bit-set magnitude
    assert.equal(crl.revoked[0]?.serial.toString('hex'), '008001')
    assert.equal(crl.revoked[0]?.revocationDate.toISOString(), '2024-02-02T00:00:00.000Z')
  })

  it('reads a v1 CRL without nextUpdate, which the collateral check then refuses', () => {
    const tbs = derSequence(ecdsa, pki.root.subjectDer, t0)
    const crl = parseCrl(signed(tbs))
    assert.equal(crl.version, 1)
    assert.equal(crl.nextUpdate, undefined)
    assert.throws(
      () =>
        checkCollateral(
          { ...mockCollateral(pki), root_ca_crl: signed(tbs).toString('hex') },
          new TrustAnchor(pki.root.der),
          NOW,
        ),
      isError('KMS_ERR_COLLATERAL', 'root CA CRL has no nextUpdate'),
    )
  })

  it('refuses critical extensions, algorithm mismatches and stray fields', () => {
    const critical = derExplicit(
      0,
      derSequence(
        derSequence(derOid('2.5.29.27'), derBoolean(true), derOctetString(derSmallInteger(1))),
      ),
    )
    const v2 = derSmallInteger(1)
    assert.throws(
      () => parseCrl(signed(derSequence(v2, ecdsa, pki.root.subjectDer, t0, t1, critical))),
      isError('KMS_ERR_CERT', 'invalid CRL: unsupported critical CRL extension 2.5.29.27'),
    )
    assert.throws(
      () =>
        parseCrl(
          signed(
            derSequence(v2, ecdsa, pki.root.subjectDer, t0, t1),
            derSequence(derOid('1.2.840.10045.4.3.3')),
          ),
        ),
      isError(
        'KMS_ERR_CERT',
        'invalid CRL: signature algorithm differs between tbsCertList and CertificateList',
      ),
    )
    assert.throws(
      () =>
        parseCrl(signed(derSequence(v2, ecdsa, pki.root.subjectDer, t0, t1, derSmallInteger(9)))),
      isError('KMS_ERR_CERT', 'invalid CRL: unexpected data after the tbsCertList fields'),
    )
    assert.throws(
      () => parseCrl(signed(derSequence(derSmallInteger(2), ecdsa, pki.root.subjectDer, t0))),
      isError('KMS_ERR_CERT', 'invalid CRL: unsupported version 3'),
    )
    const entryCritical = derSequence(
      derSequence(
        derSmallInteger(5),
        t0,
        derSequence(
          derSequence(derOid('2.5.29.29'), derBoolean(true), derOctetString(derSequence())),
        ),
      ),
    )
    assert.throws(
      () => parseCrl(signed(derSequence(v2, ecdsa, pki.root.subjectDer, t0, t1, entryCritical))),
      isError('KMS_ERR_CERT', 'invalid CRL: unsupported critical CRL entry extension 2.5.29.29'),
    )
  })
})
