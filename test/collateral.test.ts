import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import {
  type Collateral,
  PccsCollateralSource,
  StaticCollateralSource,
  collateralNextUpdate,
  crlNextUpdate,
  normalizePccsUrl,
  parseCollateralJson,
} from '../src/attestation/collateral.js'
import { INTEL_SGX_ROOT_CA_DER } from '../src/attestation/trust.js'
import { AttestationVerifier } from '../src/attestation/verify.js'
import { CacheDb } from '../src/cache/cache-db.js'
import { KmsError } from '../src/errors.js'
import { readVectorFile } from './helpers/crypto-vectors.js'
import { PccsStub } from './helpers/pccs-stub.js'

const NOW = 1751328000 // 2025-07-01T00:00:00Z
// earliest nextUpdate of the TDX sample: its PCK CRL, 2025-07-19T10:00:35Z
const TDX_WINDOW_END = Date.parse('2025-07-19T10:00:35Z') / 1000
const TDX_FMSPC = 'B0C06F000000'

const tdxQuote = readVectorFile('dcap-qvl-tdx_quote')
const sgxQuote = readVectorFile('dcap-qvl-sgx_quote')
const tdxCollateral = parseCollateralJson(
  readVectorFile('dcap-qvl-tdx_quote_collateral.json').toString('utf8'),
)
const sgxCollateral = parseCollateralJson(
  readVectorFile('dcap-qvl-sgx_quote_collateral.json').toString('utf8'),
)

function hexField(v: number[] | string): string {
  return typeof v === 'string' ? v.toLowerCase() : Buffer.from(v).toString('hex')
}

function assertSameCollateral(a: Collateral, b: Collateral): void {
  for (const k of [
    'pck_crl_issuer_chain',
    'tcb_info_issuer_chain',
    'tcb_info',
    'qe_identity_issuer_chain',
    'qe_identity',
  ] as const) {
    assert.equal(a[k], b[k], k)
  }
  for (const k of [
    'root_ca_crl',
    'pck_crl',
    'tcb_info_signature',
    'qe_identity_signature',
  ] as const) {
    assert.equal(hexField(a[k]), hexField(b[k]), k)
  }
}

describe('collateral documents', () => {
  it('computes the cache window as the earliest nextUpdate (the PCK CRL here)', () => {
    assert.equal(collateralNextUpdate(tdxCollateral), TDX_WINDOW_END)
    const pckCrl = Buffer.from(tdxCollateral.pck_crl as string, 'hex')
    assert.equal(crlNextUpdate(pckCrl), TDX_WINDOW_END)
    // TCB info expires later than the CRL
    const tcbNext = (JSON.parse(tdxCollateral.tcb_info) as { nextUpdate: string }).nextUpdate
    assert.equal(tcbNext, '2025-07-19T10:16:03Z')
  })

  it('rejects collateral JSON with missing or mistyped members', () => {
    assert.throws(
      () => parseCollateralJson('{}'),
      (e: unknown) => e instanceof KmsError && e.code === 'KMS_ERR_COLLATERAL',
    )
    const bad = { ...tdxCollateral, tcb_info_signature: [1, 2, 300] }
    assert.throws(
      () => parseCollateralJson(JSON.stringify(bad)),
      /bad or missing tcb_info_signature/,
    )
    assert.throws(() => parseCollateralJson('not json'), /invalid collateral JSON/)
  })

  it('normalises PCCS URLs like dcap-qvl', () => {
    assert.equal(normalizePccsUrl('https://p.example/'), 'https://p.example')
    assert.equal(normalizePccsUrl('https://p.example/sgx/certification/v4'), 'https://p.example')
    assert.equal(normalizePccsUrl(''), 'https://pccs.phala.network')
  })

  it('a static source hands out its document', async () => {
    const s = StaticCollateralSource.fromJson(
      readVectorFile('dcap-qvl-tdx_quote_collateral.json').toString('utf8'),
    )
    assert.equal(await s.get(), s.collateral)
  })
})

describe('PccsCollateralSource against a PCCS on loopback', () => {
  const stub = new PccsStub([
    { tee: 'tdx', ca: 'platform', collateral: tdxCollateral },
    { tee: 'sgx', ca: 'processor', collateral: sgxCollateral },
  ])
  let dir: string
  let db: CacheDb
  let now = NOW

  before(async () => {
    await stub.start()
  })
  after(async () => {
    await stub.stop()
  })
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kms-collateral-'))
    db = CacheDb.open(dir)
    now = NOW
    stub.requests.clear()
    stub.failWith = undefined
    stub.looseJson = false
  })
  afterEach(() => {
    db.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const source = (url = stub.url, cacheDb = db) =>
    new PccsCollateralSource({ pccsUrl: url, db: cacheDb, now: () => now, timeoutMs: 5000 })
  const verifierFor = (s: PccsCollateralSource) =>
    new AttestationVerifier({ rootCaDer: INTEL_SGX_ROOT_CA_DER, collateral: s, now: () => now })

  it('fetches the four documents once, verifies, and serves later calls from SQLite', async () => {
    const s = source()
    const v = verifierFor(s)
    const r = await v.verifyQuote(tdxQuote)
    assert.equal(r.status, 'UpToDate')
    assert.deepEqual(r.advisoryIds, [])
    assert.equal(stub.count('/sgx/certification/v4/pckcrl?ca=platform&encoding=der'), 1)
    assert.equal(stub.count(`/tdx/certification/v4/tcb?fmspc=${TDX_FMSPC}`), 1)
    assert.equal(stub.count('/tdx/certification/v4/qe/identity?update=standard'), 1)
    assert.equal(stub.count('/sgx/certification/v4/rootcacrl'), 1)
    assert.equal(stub.total(), 4)

    // the stored copy is exactly the fixture collateral
    assertSameCollateral(await s.get(tdxQuote, TDX_FMSPC, 'platform'), tdxCollateral)

    // a later verification inside the window fetches nothing
    now = TDX_WINDOW_END - 1
    assert.equal((await v.verifyQuote(tdxQuote)).status, 'UpToDate')
    assert.equal(stub.total(), 4)

    // nor does a fresh source on a reopened database file (the cache survives restarts)
    db.close()
    db = CacheDb.open(dir)
    const v2 = verifierFor(source(stub.url, db))
    assert.equal((await v2.verifyQuote(tdxQuote)).status, 'UpToDate')
    assert.equal(stub.total(), 4)
  })

  it('keys the cache by tee type, FMSPC and CA (the SGX sample is a separate entry)', async () => {
    const v = verifierFor(source())
    await v.verifyQuote(tdxQuote)
    const r = await v.verifyQuote(sgxQuote)
    assert.equal(r.status, 'ConfigurationAndSWHardeningNeeded')
    assert.deepEqual(r.advisoryIds, ['INTEL-SA-00289', 'INTEL-SA-00615'])
    assert.equal(stub.count('/sgx/certification/v4/pckcrl?ca=processor&encoding=der'), 1)
    assert.equal(stub.count('/sgx/certification/v4/tcb?fmspc=00A067110000'), 1)
    assert.equal(stub.count('/sgx/certification/v4/qe/identity?update=standard'), 1)
    assert.equal(stub.total(), 8)
  })

  it('refetches once the window has ended', async () => {
    const s = source()
    await s.get(tdxQuote, TDX_FMSPC, 'platform')
    assert.equal(stub.total(), 4)
    now = TDX_WINDOW_END
    await s.get(tdxQuote, TDX_FMSPC, 'platform')
    assert.equal(stub.total(), 8)
  })

  it('does not cache collateral that is already expired, and the verifier refuses it', async () => {
    now = Date.parse('2025-07-20T00:00:00Z') / 1000
    const v = verifierFor(source())
    await assert.rejects(v.verifyQuote(tdxQuote), /^KmsError: TCBInfo expired$/)
    await assert.rejects(v.verifyQuote(tdxQuote), /TCBInfo expired/)
    assert.equal(stub.total(), 8)
  })

  it('verifies with a fresh cached copy while the PCCS is down', async () => {
    await source().get(tdxQuote, TDX_FMSPC, 'platform')
    stub.requests.clear()
    const deadUrl = stub.url // same key: the cache is per PCCS URL
    stub.failWith = 503
    now = TDX_WINDOW_END - 60
    const r = await verifierFor(source(deadUrl)).verifyQuote(tdxQuote)
    assert.equal(r.status, 'UpToDate')
    assert.equal(stub.total(), 0)
  })

  it('fails closed with KMS_ERR_COLLATERAL when the PCCS is down and the copy expired', async () => {
    await source().get(tdxQuote, TDX_FMSPC, 'platform')
    stub.failWith = 503
    now = TDX_WINDOW_END + 10
    await assert.rejects(source().get(tdxQuote, TDX_FMSPC, 'platform'), (e: unknown) => {
      assert.ok(e instanceof KmsError)
      assert.equal(e.code, 'KMS_ERR_COLLATERAL')
      assert.match(
        e.message,
        /^Failed to get collateral for FMSPC B0C06F000000 \(tdx, platform CA\) from http:\/\/127\.0\.0\.1:\d+: Failed to fetch http:\/\/127\.0\.0\.1:\d+\/sgx\/certification\/v4\/pckcrl\?ca=platform&encoding=der: HTTP 503; the cached copy expired at 2025-07-19T10:00:35\.000Z$/,
      )
      return true
    })
    // through the verifier the code stays KMS_ERR_COLLATERAL
    await assert.rejects(verifierFor(source()).verifyQuote(tdxQuote), (e: unknown) => {
      assert.ok(e instanceof KmsError)
      assert.equal(e.code, 'KMS_ERR_COLLATERAL')
      return true
    })
  })

  it('fails closed when nothing is cached and the PCCS is unreachable', async () => {
    const url = stub.url
    await stub.stop()
    try {
      await assert.rejects(source(url).get(tdxQuote, TDX_FMSPC, 'platform'), (e: unknown) => {
        assert.ok(e instanceof KmsError)
        assert.equal(e.code, 'KMS_ERR_COLLATERAL')
        assert.match(e.message, /^Failed to get collateral for FMSPC B0C06F000000 .*fetch failed/)
        assert.doesNotMatch(e.message, /cached copy/)
        return true
      })
    } finally {
      await stub.start()
    }
  })

  it('shares one fetch between concurrent requests for the same platform', async () => {
    const s = source()
    const results = await Promise.all(
      Array.from({ length: 6 }, () => s.get(tdxQuote, TDX_FMSPC, 'platform')),
    )
    assert.equal(stub.total(), 4)
    for (const c of results) assertSameCollateral(c, tdxCollateral)
    // and concurrent verifications too
    stub.requests.clear()
    now = TDX_WINDOW_END + 1 // expired: all of them need a refresh
    const v = verifierFor(source())
    const reports = await Promise.allSettled([v.verifyQuote(tdxQuote), v.verifyQuote(tdxQuote)])
    assert.equal(stub.total(), 4)
    // the library still accepts the quote between the CRL and TCB-info expiry (spec 04 §17.4)
    for (const r of reports) assert.equal(r.status, 'fulfilled')
  })

  it('keeps the exact signed bytes of the JSON members (whitespace, member order)', async () => {
    stub.looseJson = true
    const r = await verifierFor(source()).verifyQuote(tdxQuote)
    assert.equal(r.status, 'UpToDate')
  })

  it('names the failing document and HTTP status', async () => {
    const other = Buffer.from(tdxQuote)
    await assert.rejects(source().get(other, 'AABBCCDDEEFF', 'platform'), (e: unknown) => {
      assert.ok(e instanceof KmsError)
      assert.match(e.message, /tcb\?fmspc=AABBCCDDEEFF: HTTP 404$/)
      return true
    })
    await assert.rejects(source().get(tdxQuote, 'xyz', 'platform'), /invalid FMSPC/)
    await assert.rejects(source().get(tdxQuote, TDX_FMSPC, 'other'), /invalid PCK CA/)
  })
})
