import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import {
  type Collateral,
  type CollateralSource,
  StaticCollateralSource,
} from '../src/attestation/collateral.js'
import { parseQuote, type ParsedQuote } from '../src/attestation/quote.js'
import { toReportData } from '../src/attestation/report-data.js'
import { runtimeEventPreimage } from '../src/attestation/runtime-events.js'
import { INTEL_SGX_ROOT_CA_DER, resolveTdxRootCa, rootCaDer } from '../src/attestation/trust.js'
import {
  type Attestation,
  DSTACK_RUNTIME_EVENT_TYPE,
  type TdxEvent,
} from '../src/attestation/types.js'
import {
  AttestationVerifier,
  extractPpid,
  pckInfoFromChain,
  validateTcb,
} from '../src/attestation/verify.js'
import { attestationFromTdxQuote } from '../src/attestation/from-tdx-quote.js'
import { decodeVersionedAttestation } from '../src/attestation/versioned.js'
import type { AttestationConfig } from '../src/config/types.js'
import { KmsError } from '../src/errors.js'
import { ensureKeyReleaseAllowed } from '../src/kms/release-policy.js'
import { pemDecode, pemEncode } from '../src/asn1/pem.js'
import { loadCollateralFixture } from './helpers/collateral-fixtures.js'
import { type AppKeysFixture, readVectorFile, readVectorJson } from './helpers/crypto-vectors.js'
import { tempDir } from './helpers/temp-dir.js'

const NOW = 1751328000
const TCB_INFO_NEXT_UPDATE = Date.parse('2025-07-19T10:16:03Z') / 1000
const PCK_CRL_NEXT_UPDATE = Date.parse('2025-07-19T10:00:35Z') / 1000
const REPORT_DATA_OFFSET = 568
const RTMR3_OFFSET = 520

interface DcapSampleCase {
  quote: string
  collateral: string
  now: number
  status: string
  advisory_ids: string[]
  report_type?: string
  mr_td?: string
  rtmr3?: string
  report_data?: string
  ppid_via_workaround?: string
  fmspc?: string
}
const vectors = readVectorJson<{
  dcap_qvl_samples: { cases: DcapSampleCase[] }
  attestation_bin: { ppid: string }
  tdx_lite: { ppid: string }
  ratls_assets_tdx_quote: { ppid: string }
}>('vectors.json')
const tdxCase = vectors.dcap_qvl_samples.cases[0] as DcapSampleCase

const tdxQuote = readVectorFile('dcap-qvl-tdx_quote')
const sgxQuote = readVectorFile('dcap-qvl-sgx_quote')
const tdxCollateral = loadCollateralFixture('tdx')
const sgxCollateral = loadCollateralFixture('sgx')

function verifier(
  collateral: Collateral | CollateralSource = tdxCollateral,
  now = NOW,
  rootCaDer = INTEL_SGX_ROOT_CA_DER,
): AttestationVerifier {
  const source =
    'get' in collateral ? collateral : new StaticCollateralSource(collateral as Collateral)
  return new AttestationVerifier({ rootCaDer, collateral: source, now: () => now })
}

function flip(quote: Buffer, offset: number): Buffer {
  const out = Buffer.from(quote)
  out[offset] = (out[offset] ?? 0) ^ 0x01
  return out
}

/** Asserts a KmsError with this code and exact message. */
function isError(code: string, message: string | RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof KmsError, `expected KmsError, got ${String(e)}`)
    assert.equal(e.code, code)
    if (typeof message === 'string') assert.equal(e.message, message)
    else assert.match(e.message, message)
    return true
  }
}

describe('verifyQuote (dcap-qvl samples)', () => {
  it('TDX sample at 2025-07-01: UpToDate, no advisories, own PPID', async () => {
    const r = await verifier().verifyQuote(tdxQuote)
    assert.equal(r.status, tdxCase.status)
    assert.deepEqual(r.advisoryIds, tdxCase.advisory_ids)
    assert.equal(r.quote.report.type, tdxCase.report_type)
    assert.ok(r.quote.report.type !== 'sgx')
    assert.equal(r.quote.report.td.mrTd.toString('hex'), tdxCase.mr_td)
    assert.equal(r.quote.report.td.rtmr3.toString('hex'), tdxCase.rtmr3)
    assert.equal(r.quote.report.td.reportData.toString('hex'), tdxCase.report_data)
    assert.equal(r.ppid.toString('hex'), tdxCase.ppid_via_workaround)
  })

  it('SGX sample: ConfigurationAndSWHardeningNeeded with its advisories', async () => {
    const r = await verifier(sgxCollateral).verifyQuote(sgxQuote)
    assert.equal(r.status, 'ConfigurationAndSWHardeningNeeded')
    assert.deepEqual(r.advisoryIds, ['INTEL-SA-00289', 'INTEL-SA-00615'])
    assert.equal(r.quote.report.type, 'sgx')
    assert.equal(r.ppid.length, 16)
  })

  it('refuses collateral past its PCK CRL nextUpdate (before the TCB info expires)', async () => {
    // the sample's PCK CRL expires 15 minutes before its TCB info: the CRL check comes first
    await assert.rejects(
      verifier(tdxCollateral, PCK_CRL_NEXT_UPDATE).verifyQuote(tdxQuote),
      isError('KMS_ERR_COLLATERAL', 'PCK CRL expired at 2025-07-19T10:00:35Z'),
    )
    await assert.rejects(
      verifier(tdxCollateral, TCB_INFO_NEXT_UPDATE + 1).verifyQuote(tdxQuote),
      isError('KMS_ERR_COLLATERAL', 'PCK CRL expired at 2025-07-19T10:00:35Z'),
    )
    // one second before it, everything is current
    const r = await verifier(tdxCollateral, PCK_CRL_NEXT_UPDATE - 1).verifyQuote(tdxQuote)
    assert.equal(r.status, 'UpToDate')
  })

  it('refuses collateral that is not yet valid', async () => {
    await assert.rejects(
      verifier(tdxCollateral, Date.parse('2025-06-01T00:00:00Z') / 1000).verifyQuote(tdxQuote),
      isError('KMS_ERR_COLLATERAL', 'PCK CRL is not valid before 2025-06-19T10:00:35Z'),
    )
  })

  it('refuses an expired QE identity', async () => {
    const qe = tdxCollateral.qe_identity.replace(
      '"nextUpdate":"2025-07-19T10:32:27Z"',
      '"nextUpdate":"2025-06-30T00:00:00Z"',
    )
    assert.notEqual(qe, tdxCollateral.qe_identity)
    await assert.rejects(
      verifier({ ...tdxCollateral, qe_identity: qe }).verifyQuote(tdxQuote),
      isError('KMS_ERR_ATTESTATION', 'QE Identity expired'),
    )
  })

  it('tampered REPORT_DATA or RTMR3 breaks the quote signature', async () => {
    for (const offset of [REPORT_DATA_OFFSET, REPORT_DATA_OFFSET + 63, RTMR3_OFFSET]) {
      await assert.rejects(
        verifier().verifyQuote(flip(tdxQuote, offset)),
        isError('KMS_ERR_ATTESTATION', 'ISV enclave report signature is invalid'),
      )
    }
  })

  it('tampered tcb_info breaks its signature', async () => {
    const tcb = tdxCollateral.tcb_info.replace('{"id":"TDX"', '{ "id":"TDX"')
    assert.notEqual(tcb, tdxCollateral.tcb_info)
    await assert.rejects(
      verifier({ ...tdxCollateral, tcb_info: tcb }).verifyQuote(tdxQuote),
      isError('KMS_ERR_ATTESTATION', 'Signature is invalid for tcb_info'),
    )
  })

  it('a different root CA refuses the Intel chain', async () => {
    const appKeys = readVectorJson<AppKeysFixture>('appkeys.json')
    const otherRoot = pemDecode(appKeys.ca_cert, 'CERTIFICATE')
    await assert.rejects(
      verifier(tdxCollateral, NOW, otherRoot).verifyQuote(tdxQuote),
      isError(
        'KMS_ERR_ATTESTATION',
        'Invalid PCK certificate chain: certificate "Intel SGX Root CA" is neither the trusted root CA "Dstack KMS CA" nor issued by it',
      ),
    )
  })

  it("another platform's collateral is refused", async () => {
    // the SGX sample's PCK CRL is the Processor CA's; the TDX quote's PCK is the Platform CA's
    await assert.rejects(
      verifier(sgxCollateral).verifyQuote(tdxQuote),
      isError(
        'KMS_ERR_COLLATERAL',
        'no CRL in the collateral covers certificate "Intel SGX PCK Certificate" (the PCK CRL is issued by "Intel SGX PCK Processor CA")',
      ),
    )
    // with the right PCK CRL, the foreign TCB info and QE identity are the library's to refuse
    const mixed: Collateral = {
      ...sgxCollateral,
      pck_crl_issuer_chain: tdxCollateral.pck_crl_issuer_chain,
      pck_crl: tdxCollateral.pck_crl,
    }
    await assert.rejects(
      verifier(mixed).verifyQuote(tdxQuote),
      isError('KMS_ERR_ATTESTATION', 'Unsupported QE Identity id/version for the quote TEE type'),
    )
  })

  it('a truncated quote fails to decode', async () => {
    await assert.rejects(
      verifier().verifyQuote(tdxQuote.subarray(0, 100)),
      isError('KMS_ERR_ATTESTATION', /^Failed to decode quote: /),
    )
  })

  it('asks the collateral source for the FMSPC and CA of the PCK certificate', async () => {
    const seen: string[] = []
    const source: CollateralSource = {
      async get(_quote, fmspc, ca) {
        seen.push(`${fmspc}/${ca}`)
        return fmspc === 'B0C06F000000' ? tdxCollateral : sgxCollateral
      },
    }
    const v = verifier(source)
    await v.verifyQuote(tdxQuote)
    await v.verifyQuote(sgxQuote)
    assert.deepEqual(seen, ['B0C06F000000/platform', '00A067110000/processor'])
  })
})

describe('PPID extraction (the library returns none)', () => {
  const attestationBin = decodeVersionedAttestation(readVectorFile('attestation.bin')).attestation
  const lite = decodeVersionedAttestation(
    Buffer.from(
      readVectorJson<{ attestation: string }>('tdx-lite-attestation.json').attestation,
      'hex',
    ),
  ).attestation
  const quoteOf = (a: Attestation): Buffer => {
    assert.equal(a.quote.kind, 'dstack-tdx')
    return a.quote.kind === 'dstack-tdx' ? a.quote.quote : Buffer.alloc(0)
  }

  it('reads the 16-byte PPID from the PCK leaf of every fixture quote', () => {
    assert.equal(extractPpid(tdxQuote).toString('hex'), tdxCase.ppid_via_workaround)
    assert.equal(extractPpid(quoteOf(attestationBin)).toString('hex'), vectors.attestation_bin.ppid)
    assert.equal(extractPpid(quoteOf(lite)).toString('hex'), vectors.tdx_lite.ppid)
    assert.equal(
      extractPpid(readVectorFile('ratls-assets-tdx_quote')).toString('hex'),
      vectors.ratls_assets_tdx_quote.ppid,
    )
  })

  it('refuses a PCK certification data type other than a PEM chain, read or verified', async () => {
    // the type field sits after the QE authentication data and no signature covers it
    const q = parseQuote(tdxQuote)
    const authLenAt = q.signedLength + 4 + 128 + 6 + 384 + 64
    const pckTypeAt = authLenAt + 2 + tdxQuote.readUInt16LE(authLenAt)
    assert.equal(tdxQuote.readUInt16LE(pckTypeAt), 5)
    const other = Buffer.from(tdxQuote)
    other.writeUInt16LE(3, pckTypeAt)
    const refusal = isError('KMS_ERR_ATTESTATION', /^Unsupported DCAP PCK cert format: 3$/)
    assert.throws(() => extractPpid(other), refusal)
    await assert.rejects(verifier().verifyQuote(other), refusal)
  })

  it('reads FMSPC and CA next to it', () => {
    const info = pckInfoFromChain(parseQuote(tdxQuote).pckChainPem)
    assert.equal(info.fmspc, tdxCase.fmspc)
    assert.equal(info.ca, 'platform')
    assert.equal(pckInfoFromChain(parseQuote(sgxQuote).pckChainPem).ca, 'processor')
  })

  it('refuses a chain without an Intel SGX extension', () => {
    const appKeys = readVectorJson<AppKeysFixture>('appkeys.json')
    assert.throws(
      () => pckInfoFromChain(appKeys.ca_cert),
      isError('KMS_ERR_ATTESTATION', /^Invalid PCK certificate: Intel extension not found$/),
    )
    assert.throws(
      () => pckInfoFromChain(''),
      isError('KMS_ERR_ATTESTATION', 'Failed to extract PCK certificates from quote'),
    )
  })
})

describe("dstack's TD attribute checks (validate_tcb)", () => {
  const base = parseQuote(tdxQuote)
  const withTd = (patch: (td: Extract<ParsedQuote['report'], { type: 'td10' }>['td']) => void) => {
    assert.equal(base.report.type, 'td10')
    if (base.report.type !== 'td10') throw new Error('unreachable')
    const td = { ...base.report.td, tdAttributes: Buffer.from(base.report.td.tdAttributes) }
    patch(td)
    return { ...base, report: { type: 'td10' as const, td } }
  }

  it('accepts the sample report', () => {
    validateTcb(base)
  })

  it('refuses debug TDs', () => {
    const q = withTd((td) => {
      td.tdAttributes[0] = 0x01
    })
    assert.throws(() => validateTcb(q), isError('KMS_ERR_ATTESTATION', 'Debug mode is not allowed'))
  })

  it('refuses a non-zero MRSIGNERSEAM', () => {
    const q = withTd((td) => {
      td.mrSignerSeam = Buffer.alloc(48, 1)
    })
    assert.throws(() => validateTcb(q), isError('KMS_ERR_ATTESTATION', 'Invalid mr signer seam'))
  })

  it('refuses a TD 1.5 report with a service TD', () => {
    if (base.report.type !== 'td10') throw new Error('unreachable')
    const td15: ParsedQuote = {
      ...base,
      report: {
        type: 'td15',
        td: base.report.td,
        teeTcbSvn2: Buffer.alloc(16),
        mrServiceTd: Buffer.alloc(48, 2),
      },
    }
    assert.throws(() => validateTcb(td15), isError('KMS_ERR_ATTESTATION', 'Invalid mr service td'))
    validateTcb({
      ...td15,
      report: { ...td15.report, mrServiceTd: Buffer.alloc(48) } as ParsedQuote['report'],
    })
  })

  it('refuses debug SGX enclaves', () => {
    const sgx = parseQuote(sgxQuote)
    validateTcb(sgx)
    const report = sgx.report
    if (report.type !== 'sgx') throw new Error('expected an SGX report')
    const attributes = Buffer.from(report.attributes)
    attributes[0] = (attributes[0] ?? 0) | 0x02
    assert.throws(
      () => validateTcb({ ...sgx, report: { ...report, attributes } }),
      isError('KMS_ERR_ATTESTATION', 'Debug mode is not allowed'),
    )
  })
})

describe('verify(attestation)', () => {
  const base = (): Attestation => attestationFromTdxQuote(tdxQuote, Buffer.from('[]'))

  it('verifies the sample quote with no runtime events', async () => {
    const a = base()
    const v = await verifier().verify(a)
    assert.equal(v.variant, 'dstack-tdx')
    assert.equal(v.report.status, 'UpToDate')
    assert.equal(v.attestation, a)
    assert.equal(v.report.ppid.toString('hex'), tdxCase.ppid_via_workaround)
  })

  it('RTMR3 must equal the replay of the runtime events', async () => {
    const a = base()
    a.runtimeEvents = [{ event: 'app-id', payload: Buffer.alloc(20, 7) }]
    const err = await verifier()
      .verify(a)
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    assert.ok(err instanceof KmsError)
    const replayed = createHash('sha384')
      .update(Buffer.alloc(48))
      .update(createHash('sha384').update(runtimeEventPreimage(a.runtimeEvents[0]!)).digest())
      .digest('hex')
    assert.equal(err.message, `RTMR3 mismatch, quoted: ${'00'.repeat(48)}, replayed: ${replayed}`)
    assert.equal(err.code, 'KMS_ERR_ATTESTATION')
  })

  it('the attestation report_data must be the quoted one', async () => {
    const a = base()
    a.reportData = Buffer.alloc(64, 9)
    await assert.rejects(
      verifier().verify(a),
      isError('KMS_ERR_ATTESTATION', 'tdx report_data mismatch'),
    )
    a.reportData = Buffer.alloc(32)
    await assert.rejects(
      verifier().verify(a),
      isError('KMS_ERR_ATTESTATION', 'stack.report_data must be 64 bytes'),
    )
  })

  it('quote failures carry the spec revision context', async () => {
    const a = attestationFromTdxQuote(flip(tdxQuote, RTMR3_OFFSET), Buffer.from('[]'))
    await assert.rejects(
      verifier().verify(a),
      isError(
        'KMS_ERR_ATTESTATION',
        'Failed to get collateral: ISV enclave report signature is invalid',
      ),
    )
    await assert.rejects(
      verifier(tdxCollateral, TCB_INFO_NEXT_UPDATE + 1).verify(base()),
      isError(
        'KMS_ERR_COLLATERAL',
        'Failed to get collateral: PCK CRL expired at 2025-07-19T10:00:35Z',
      ),
    )
  })

  it('collateral failures keep their code under the context', async () => {
    const failing: CollateralSource = {
      async get() {
        throw new KmsError('KMS_ERR_COLLATERAL', 'PCCS down')
      },
    }
    await assert.rejects(
      verifier(failing).verify(base()),
      isError('KMS_ERR_COLLATERAL', 'Failed to get collateral: PCCS down'),
    )
    const broken: CollateralSource = {
      async get() {
        throw new Error('boom')
      },
    }
    await assert.rejects(
      verifier(broken).verify(base()),
      isError('KMS_ERR_ATTESTATION', 'Failed to get collateral: boom'),
    )
  })

  it('a dstack-pod payload must produce report_data', async () => {
    const a = base()
    a.stack = { kind: 'dstack-pod', reportDataPayload: 'hello' }
    await assert.rejects(
      verifier().verify(a),
      isError('KMS_ERR_ATTESTATION', 'report_data does not match report_data_payload'),
    )
    // a matching payload passes step 2 and meets the quote's own report_data at step 5
    a.reportData = toReportData('app-data', Buffer.from('hello'))
    await assert.rejects(
      verifier().verify(a),
      isError('KMS_ERR_ATTESTATION', 'tdx report_data mismatch'),
    )
  })

  it('non-TDX platforms are refused as not supported', async () => {
    const a = base()
    a.quote = { kind: 'dstack-nitro-enclave', nsmQuote: Buffer.alloc(4) }
    await assert.rejects(verifier().verify(a), isError('KMS_ERR_ATTESTATION', /not supported/))
    a.quote = {
      kind: 'dstack-amd-sev-snp',
      report: Buffer.alloc(4),
      certChain: [],
      mrConfig: '',
    }
    await assert.rejects(
      verifier().verify(a),
      isError('KMS_ERR_ATTESTATION', /dstack-amd-sev-snp.*not supported/),
    )
  })

  it('V2 runtime events in the event log must carry their canonical preimage', async () => {
    const payload = Buffer.from('abc')
    const preimage = runtimeEventPreimage({ event: 'x', payload, version: 2 })
    const good: TdxEvent = {
      imr: 3,
      eventType: DSTACK_RUNTIME_EVENT_TYPE,
      digest: createHash('sha384').update(preimage).digest(),
      event: 'x',
      eventPayload: payload,
      version: 2,
      preimage,
    }
    const run = (e: TdxEvent) => {
      const a = base()
      if (a.quote.kind !== 'dstack-tdx') throw new Error('unreachable')
      a.quote.eventLog = [{ ...good, version: undefined, preimage: undefined }, e]
      return verifier().verify(a)
    }
    await run(good)
    const ctx = 'Failed to validate TDX V2 event digest preimages: '
    await assert.rejects(
      run({ ...good, preimage: undefined }),
      isError('KMS_ERR_ATTESTATION', `${ctx}V2 runtime event 1 is missing its digest preimage`),
    )
    await assert.rejects(
      run({ ...good, digest: Buffer.alloc(48) }),
      isError('KMS_ERR_ATTESTATION', `${ctx}V2 runtime event 1 digest does not match its preimage`),
    )
    const other = Buffer.from(`${preimage.toString('utf8')} `)
    await assert.rejects(
      run({ ...good, preimage: other, digest: createHash('sha384').update(other).digest() }),
      isError(
        'KMS_ERR_ATTESTATION',
        `${ctx}V2 runtime event 1 preimage is not the canonical event representation`,
      ),
    )
  })

  it('verifyWithRaPubkey checks the key binding before anything else', async () => {
    let fetched = 0
    const source: CollateralSource = {
      async get() {
        fetched++
        return tdxCollateral
      },
    }
    const appKeys = readVectorJson<AppKeysFixture>('appkeys.json')
    const { parseCertificate } = await import('../src/x509/parse.js')
    const spki = parseCertificate(pemDecode(appKeys.ca_cert, 'CERTIFICATE')).spkiDer
    await assert.rejects(
      verifier(source).verifyWithRaPubkey(base(), spki),
      isError('KMS_ERR_ATTESTATION', 'report data mismatch'),
    )
    assert.equal(fetched, 0)
  })
})

describe('ensureKeyReleaseAllowed', () => {
  it('gates SEV-SNP and NitroTPM behind their switches', () => {
    const off = { sevSnpKeyRelease: false, awsNitroTpmKeyRelease: false }
    ensureKeyReleaseAllowed('dstack-tdx', off)
    assert.throws(
      () => ensureKeyReleaseAllowed('dstack-amd-sev-snp', off),
      isError('KMS_ERR_DENIED', 'amd sev-snp key release is not enabled'),
    )
    assert.throws(
      () => ensureKeyReleaseAllowed('dstack-aws-nitro-tpm', off),
      isError('KMS_ERR_DENIED', 'aws nitro-tpm key release is not enabled'),
    )
    ensureKeyReleaseAllowed('dstack-amd-sev-snp', { ...off, sevSnpKeyRelease: true })
    ensureKeyReleaseAllowed('dstack-aws-nitro-tpm', { ...off, awsNitroTpmKeyRelease: true })
  })
})

describe('trust anchors', () => {
  const dir = tempDir('kms-trust-')
  after(() => rmSync(dir, { recursive: true, force: true }))
  const cfg = (tdx: string, allow: boolean): AttestationConfig => ({
    insecureAllowExternalTrustAnchors: allow,
    quoteVerifier: 'node-crypto',
    urls: { pccs: '', amdKds: '' },
    rootCa: {
      tdx,
      gcpTpm: '',
      awsNitroEnclave: '',
      awsNitroTpm: '',
      sevSnpMilan: '',
      sevSnpGenoa: '',
      sevSnpTurin: '',
    },
  })

  it('is the built-in Intel SGX root by default', () => {
    assert.equal(createHash('sha256').update(INTEL_SGX_ROOT_CA_DER).digest('hex').length, 64)
    // the root of the sample PCK chain is this very certificate
    const chain = parseQuote(tdxQuote).pckChainPem
    const certs = chain.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []
    const last = certs[certs.length - 1] ?? ''
    assert.ok(pemDecode(last, 'CERTIFICATE').equals(INTEL_SGX_ROOT_CA_DER))
    assert.equal(resolveTdxRootCa(cfg('', false)), INTEL_SGX_ROOT_CA_DER)
  })

  it('refuses root_ca.tdx without insecure_allow_external_trust_anchors', () => {
    assert.throws(
      () => resolveTdxRootCa(cfg('/nonexistent/root.pem', false)),
      isError(
        'KMS_ERR_CONFIG',
        /core\.attestation\.root_ca\.tdx.*core\.attestation\.insecure_allow_external_trust_anchors/,
      ),
    )
  })

  it('reads a configured PEM or DER root when allowed', () => {
    const pem = join(dir, 'root.pem')
    const der = join(dir, 'root.der')
    writeFileSync(pem, pemEncode('CERTIFICATE', INTEL_SGX_ROOT_CA_DER))
    writeFileSync(der, INTEL_SGX_ROOT_CA_DER)
    assert.ok(resolveTdxRootCa(cfg(pem, true)).equals(INTEL_SGX_ROOT_CA_DER))
    assert.ok(resolveTdxRootCa(cfg(der, true)).equals(INTEL_SGX_ROOT_CA_DER))
  })

  it('refuses unreadable, malformed and non-CA roots', () => {
    assert.throws(
      () => resolveTdxRootCa(cfg(join(dir, 'missing.pem'), true)),
      isError('KMS_ERR_CONFIG', /^failed to read TDX root CA from .*missing\.pem: /),
    )
    assert.throws(
      () => rootCaDer(Buffer.from('garbage')),
      isError('KMS_ERR_CONFIG', /^failed to parse TDX root CA certificate: /),
    )
    assert.throws(
      () => rootCaDer(Buffer.concat([INTEL_SGX_ROOT_CA_DER, Buffer.from([0])])),
      isError('KMS_ERR_CONFIG', 'trailing data in TDX root CA'),
    )
    const leafPem = parseQuote(tdxQuote).pckChainPem
    assert.throws(
      () => rootCaDer(Buffer.from(leafPem)),
      isError('KMS_ERR_CONFIG', 'TDX root certificate is not a CA'),
    )
  })
})
