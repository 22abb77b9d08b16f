import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import {
  type Collateral,
  StaticCollateralSource,
  collateralNextUpdate,
  crlNextUpdate,
  parseCollateralJson,
} from '../src/attestation/collateral.js'
import {
  MAX_CONCURRENT_PCCS_FETCHES,
  MAX_COLLATERAL_CACHE_SECONDS,
  MAX_PCCS_REDIRECTS,
  MAX_PCCS_RESPONSE_BYTES,
  PccsCollateralSource,
  normalizePccsUrl,
} from '../src/attestation/pccs-source.js'
import { INTEL_SGX_ROOT_CA_DER } from '../src/attestation/trust.js'
import { AttestationVerifier } from '../src/attestation/verify.js'
import { CACHE_DB_FILE, CacheDb } from '../src/cache/cache-db.js'
import { KmsError } from '../src/errors.js'
import { HttpClient, type HttpReply, type HttpRequest } from '../src/http/http-client.js'
import { mockCollateral, mockTcbInfoJson } from '../src/tee/simulator/collateral.js'
import {
  type MockIntelPki,
  mockIntelPki,
  signDeterministic,
} from '../src/tee/simulator/mock-pki.js'
import { buildTdxQuote } from '../src/tee/simulator/quote-builder.js'
import { collateralFixtureJson, loadCollateralFixture } from './helpers/collateral-fixtures.js'
import { readVectorFile } from './helpers/crypto-vectors.js'
import { PccsStub } from './helpers/pccs-stub.js'
import { tempDir } from './helpers/temp-dir.js'

const NOW = 1751328000 // 2025-07-01T00:00:00Z
// earliest nextUpdate of the TDX sample: its PCK CRL, 2025-07-19T10:00:35Z
const TDX_WINDOW_END = Date.parse('2025-07-19T10:00:35Z') / 1000
const TDX_FMSPC = 'B0C06F000000'

const tdxQuote = readVectorFile('dcap-qvl-tdx_quote')
const sgxQuote = readVectorFile('dcap-qvl-sgx_quote')
const tdxCollateral = loadCollateralFixture('tdx')
const sgxCollateral = loadCollateralFixture('sgx')

/** The collateral rows of the cache file, read with a separate connection. */
function sqliteRows(cacheDir: string): { key: string; json: string; next_update: number }[] {
  const db = new Database(join(cacheDir, CACHE_DB_FILE), { readonly: true })
  try {
    return db
      .prepare<[], { key: string; json: string; next_update: number }>(
        'SELECT key, json, next_update FROM collateral ORDER BY key',
      )
      .all()
  } finally {
    db.close()
  }
}

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
    const s = StaticCollateralSource.fromJson(collateralFixtureJson('tdx'))
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
    dir = tempDir('kms-collateral-')
    db = CacheDb.open(dir)
    now = NOW
    stub.requests.clear()
    stub.failWith = undefined
    stub.looseJson = false
    stub.intercept = undefined
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

    // the stored copy is exactly the fixture collateral, kept until the PCK CRL's nextUpdate
    assertSameCollateral(await s.get(tdxQuote, TDX_FMSPC, 'platform'), tdxCollateral)
    const rows = sqliteRows(dir)
    assert.equal(rows.length, 1)
    assert.equal(rows[0]?.next_update, TDX_WINDOW_END)

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

  it('refetches once the window has ended (and refuses what the PCCS still serves)', async () => {
    const s = source()
    await s.get(tdxQuote, TDX_FMSPC, 'platform')
    assert.equal(stub.total(), 4)
    now = TDX_WINDOW_END
    await assert.rejects(
      s.get(tdxQuote, TDX_FMSPC, 'platform'),
      /: PCK CRL expired at 2025-07-19T10:00:35Z; the cached copy expired at 2025-07-19T10:00:35\.000Z$/,
    )
    assert.equal(stub.total(), 8)
  })

  it('does not cache collateral that is already expired, and does not ask again at once', async () => {
    now = Date.parse('2025-07-20T00:00:00Z') / 1000
    const v = verifierFor(source())
    await assert.rejects(v.verifyQuote(tdxQuote), (e: unknown) => {
      assert.ok(e instanceof KmsError)
      assert.equal(e.code, 'KMS_ERR_COLLATERAL')
      assert.match(
        e.message,
        /^Failed to get collateral for FMSPC B0C06F000000 \(tdx, platform CA\) from http:\/\/127\.0\.0\.1:\d+: PCK CRL expired at 2025-07-19T10:00:35Z$/,
      )
      return true
    })
    await assert.rejects(
      v.verifyQuote(tdxQuote),
      /PCK CRL expired at 2025-07-19T10:00:35Z \(not retried before 2025-07-20T00:01:00\.000Z\)$/,
    )
    assert.equal(stub.total(), 4)
    assert.equal(sqliteRows(dir).length, 0)
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
    // between the CRL and TCB-info expiry the library alone would still accept the quote;
    // an expired PCK CRL is refused now
    for (const r of reports) {
      assert.equal(r.status, 'rejected')
      assert.match(String(r.reason), /: PCK CRL expired at 2025-07-19T10:00:35Z(;|$)/)
    }
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

  const intelChainHeader = encodeURIComponent(tdxCollateral.pck_crl_issuer_chain)
  const isPckCrl = (path: string) => path.startsWith('/sgx/certification/v4/pckcrl')

  it('refuses a garbage PCK CRL, caches nothing and does not ask again for 60 s', async () => {
    stub.intercept = (path, res) => {
      if (!isPckCrl(path)) return false
      res.writeHead(200, { 'SGX-PCK-CRL-Issuer-Chain': intelChainHeader }).end('garbage')
      return true
    }
    const s = source()
    const failure = (e: unknown): boolean => {
      assert.ok(e instanceof KmsError)
      assert.equal(e.code, 'KMS_ERR_COLLATERAL')
      assert.match(e.message, /: PCK CRL is neither DER nor hex/)
      return true
    }
    await assert.rejects(s.get(tdxQuote, TDX_FMSPC, 'platform'), failure)
    assert.equal(stub.total(), 1)
    // hex that is not a CRL gets further, and is refused by the checks
    stub.intercept = (path, res) => {
      if (!isPckCrl(path)) return false
      res.writeHead(200, { 'SGX-PCK-CRL-Issuer-Chain': intelChainHeader }).end('deadbeef')
      return true
    }
    const s2 = source()
    await assert.rejects(s2.get(tdxQuote, TDX_FMSPC, 'platform'), (e: unknown) => {
      assert.ok(e instanceof KmsError)
      assert.equal(e.code, 'KMS_ERR_COLLATERAL')
      assert.match(
        e.message,
        /^Failed to get collateral for FMSPC B0C06F000000 \(tdx, platform CA\) from http:\/\/127\.0\.0\.1:\d+: PCK CRL does not parse: invalid CRL: /,
      )
      return true
    })
    assert.equal(stub.total(), 5)
    assert.equal(sqliteRows(dir).length, 0)
    // within 60 s the same failure is answered without a request
    now += 59
    await assert.rejects(
      s2.get(tdxQuote, TDX_FMSPC, 'platform'),
      /PCK CRL does not parse: .* \(not retried before 2025-07-01T00:01:00\.000Z\)$/,
    )
    assert.equal(stub.total(), 5)
    // then the PCCS is asked again, and a good answer is taken
    stub.intercept = undefined
    now += 1
    assertSameCollateral(await s2.get(tdxQuote, TDX_FMSPC, 'platform'), tdxCollateral)
    assert.equal(stub.total(), 9)
    assert.equal(sqliteRows(dir).length, 1)
  })

  it('refuses PCCS answers over 1 MiB, declared or streamed', async () => {
    stub.intercept = (path, res) => {
      if (!isPckCrl(path)) return false
      res.writeHead(200, { 'SGX-PCK-CRL-Issuer-Chain': intelChainHeader })
      res.end(Buffer.alloc(MAX_PCCS_RESPONSE_BYTES + 1, 0x30))
      return true
    }
    await assert.rejects(
      source().get(tdxQuote, TDX_FMSPC, 'platform'),
      /pckcrl\?ca=platform&encoding=der is larger than 1048576 bytes$/,
    )
    // no Content-Length: counted while reading
    stub.intercept = (path, res) => {
      if (!path.startsWith('/tdx/certification/v4/tcb')) return false
      res.writeHead(200, {
        'TCB-Info-Issuer-Chain': encodeURIComponent(tdxCollateral.tcb_info_issuer_chain),
        'Transfer-Encoding': 'chunked',
      })
      const chunk = Buffer.alloc(64 * 1024, 0x20)
      for (let i = 0; i <= MAX_PCCS_RESPONSE_BYTES / chunk.length; i++) res.write(chunk)
      res.end()
      return true
    }
    await assert.rejects(
      source().get(tdxQuote, TDX_FMSPC, 'platform'),
      /tcb\?fmspc=B0C06F000000 is larger than 1048576 bytes$/,
    )
    assert.equal(sqliteRows(dir).length, 0)
  })

  it('bounds concurrent PCCS fetches per process', async () => {
    const held: (() => void)[] = []
    let maxHeld = 0
    let arrived: (() => void) | undefined
    stub.intercept = (path, res) => {
      if (!isPckCrl(path)) return false
      held.push(() => {
        res.writeHead(503).end()
      })
      maxHeld = Math.max(maxHeld, held.length)
      arrived?.()
      return true
    }
    const fmspcs = Array.from({ length: 6 }, (_, i) => `B0C06F00000${i}`)
    const s = source()
    const all = Promise.allSettled(fmspcs.map((f) => s.get(tdxQuote, f, 'platform')))
    let released = 0
    while (released < fmspcs.length) {
      // wait until the slots are full (or all that is left has arrived), then let requests
      // that should not exist show up before releasing one
      const want = Math.min(MAX_CONCURRENT_PCCS_FETCHES, fmspcs.length - released)
      while (held.length < want) {
        await new Promise<void>((resolve) => {
          arrived = resolve
        })
      }
      await sleep(20)
      held.shift()?.()
      released++
    }
    const results = await all
    assert.ok(results.every((r) => r.status === 'rejected'))
    assert.equal(maxHeld, MAX_CONCURRENT_PCCS_FETCHES)
    assert.equal(stub.count('/sgx/certification/v4/pckcrl'), fmspcs.length)
  })

  it('drops a cached copy that no longer checks out and fetches a fresh one', async () => {
    await source().get(tdxQuote, TDX_FMSPC, 'platform')
    const [row] = sqliteRows(dir)
    assert.ok(row !== undefined)
    const tampered = JSON.stringify({ ...tdxCollateral, pck_crl: tdxCollateral.root_ca_crl })
    const w = new Database(join(dir, CACHE_DB_FILE))
    w.prepare('UPDATE collateral SET json = ? WHERE key = ?').run(tampered, row.key)
    w.close()
    const c = await source().get(tdxQuote, TDX_FMSPC, 'platform')
    assertSameCollateral(c, tdxCollateral)
    assert.equal(stub.total(), 8)
    assertSameCollateral(parseCollateralJson(sqliteRows(dir)[0]?.json ?? ''), tdxCollateral)
  })

  it('clearCollateral empties the cache, and the next verification fetches again', async () => {
    const s = source()
    await s.get(tdxQuote, TDX_FMSPC, 'platform')
    await s.get(sgxQuote, '00A067110000', 'processor')
    assert.equal(db.clearCollateral(), 2)
    assert.equal(sqliteRows(dir).length, 0)
    await verifierFor(s).verifyQuote(tdxQuote)
    assert.equal(stub.total(), 12)
  })

  it('checks against the root it is given, and keys the cache by it', async () => {
    const s = source()
    await s.get(tdxQuote, TDX_FMSPC, 'platform')
    await assert.rejects(
      s.get(tdxQuote, TDX_FMSPC, 'platform', mockIntelPki(Buffer.alloc(32, 1)).root.der),
      /: pck_crl_issuer_chain: certificate "Intel SGX Root CA" is neither the trusted root CA "Mock Intel SGX Root CA" nor issued by it$/,
    )
    assert.equal(stub.total(), 8)
    assert.equal(sqliteRows(dir).length, 1)
  })

  it("without a rootcacrl endpoint, follows the trusted root's CRL distribution point", async () => {
    // Intel's distribution point is reached on loopback instead, where it redirects (as CDNs
    // do) to the CRL: the source must follow it
    stub.intercept = (path, res) => {
      if (path === '/sgx/certification/v4/rootcacrl') {
        res.writeHead(404).end()
        return true
      }
      if (path === '/IntelSGXRootCA.der') {
        res.writeHead(302, { location: '/intel-root.crl' }).end()
        return true
      }
      if (path !== '/intel-root.crl') return false
      res.writeHead(200).end(Buffer.from(String(tdxCollateral.root_ca_crl), 'hex'))
      return true
    }
    const asked: string[] = []
    const intel = 'https://certificates.trustedservices.intel.com/'
    class IntelOnLoopback extends HttpClient {
      override request(url: string, req: HttpRequest): Promise<HttpReply> {
        asked.push(url)
        return super.request(
          url.startsWith(intel) ? `${stub.url}/${url.slice(intel.length)}` : url,
          req,
        )
      }
    }
    const http = new IntelOnLoopback({
      timeoutMs: 5000,
      maxResponseBytes: MAX_PCCS_RESPONSE_BYTES,
      maxRedirects: MAX_PCCS_REDIRECTS,
    })
    try {
      const s = new PccsCollateralSource({ pccsUrl: stub.url, db, now: () => now, http })
      assertSameCollateral(await s.get(tdxQuote, TDX_FMSPC, 'platform'), tdxCollateral)
    } finally {
      http.close()
    }
    assert.equal(asked.at(-1), `${intel}IntelSGXRootCA.der`)
    assert.equal(stub.count('/IntelSGXRootCA.der'), 1)
    assert.equal(stub.count('/intel-root.crl'), 1)
  })

  it('follows a bounded number of redirects', async () => {
    stub.intercept = (path, res) => {
      if (!isPckCrl(path)) return false
      res.writeHead(307, { location: path }).end()
      return true
    }
    await assert.rejects(
      source().get(tdxQuote, TDX_FMSPC, 'platform'),
      /pckcrl\?ca=platform&encoding=der: HTTP 307$/,
    )
    assert.equal(stub.count('/sgx/certification/v4/pckcrl'), MAX_PCCS_REDIRECTS + 1)
  })

  it('refuses a TCB info for another FMSPC than the one asked for', async () => {
    stub.intercept = (path, res) => {
      if (path !== '/tdx/certification/v4/tcb?fmspc=AABBCCDDEEFF') return false
      res.writeHead(200, {
        'TCB-Info-Issuer-Chain': encodeURIComponent(tdxCollateral.tcb_info_issuer_chain),
      })
      res.end(
        `{"tcbInfo":${tdxCollateral.tcb_info},"signature":"${String(tdxCollateral.tcb_info_signature)}"}`,
      )
      return true
    }
    await assert.rejects(
      source().get(tdxQuote, 'AABBCCDDEEFF', 'platform'),
      /: TCB info is for FMSPC "B0C06F000000", expected AABBCCDDEEFF$/,
    )
    assert.equal(sqliteRows(dir).length, 0)
  })
})

describe('PccsCollateralSource with the simulator collateral', () => {
  const pki: MockIntelPki = mockIntelPki(Buffer.alloc(32, 0x3e))
  const quote = buildTdxQuote(pki, {
    mrTd: Buffer.alloc(48, 1),
    rtmr0: Buffer.alloc(48, 2),
    rtmr1: Buffer.alloc(48, 3),
    rtmr2: Buffer.alloc(48, 4),
    rtmr3: Buffer.alloc(48),
    reportData: Buffer.alloc(64, 5),
  })
  const stub = new PccsStub([{ tee: 'tdx', ca: 'platform', collateral: mockCollateral(pki) }])
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
    dir = tempDir('kms-collateral-sim-')
    db = CacheDb.open(dir)
    now = NOW
    stub.requests.clear()
    stub.intercept = undefined
  })
  afterEach(() => {
    db.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const verifier = () =>
    new AttestationVerifier({
      rootCaDer: pki.root.der,
      collateral: new PccsCollateralSource({ pccsUrl: stub.url, db, now: () => now }),
      now: () => now,
    })

  it('keeps collateral valid until 2100 for 30 days at most', async () => {
    const v = verifier()
    assert.equal((await v.verifyQuote(quote)).status, 'UpToDate')
    assert.equal(stub.total(), 4)
    assert.equal(sqliteRows(dir)[0]?.next_update, NOW + MAX_COLLATERAL_CACHE_SECONDS)
    now = NOW + MAX_COLLATERAL_CACHE_SECONDS - 1
    await v.verifyQuote(quote)
    assert.equal(stub.total(), 4)
    now = NOW + MAX_COLLATERAL_CACHE_SECONDS
    await v.verifyQuote(quote)
    assert.equal(stub.total(), 8)
    assert.equal(sqliteRows(dir)[0]?.next_update, now + MAX_COLLATERAL_CACHE_SECONDS)
  })

  it('an expired TCB info is handed to the library, not cached, and not fetched again at once', async () => {
    const expired = mockTcbInfoJson(pki).replace(
      '"nextUpdate":"2100-01-01T00:00:00Z"',
      '"nextUpdate":"2021-01-01T00:00:00Z"',
    )
    assert.notEqual(expired, mockTcbInfoJson(pki))
    const signature = signDeterministic(pki.tcbSigning.key, Buffer.from(expired)).raw
    stub.intercept = (path, res) => {
      if (!path.startsWith('/tdx/certification/v4/tcb')) return false
      res.writeHead(200, {
        'TCB-Info-Issuer-Chain': encodeURIComponent(pki.tcbSigning.pem + pki.root.pem),
      })
      res.end(`{"tcbInfo":${expired},"signature":"${signature.toString('hex')}"}`)
      return true
    }
    const v = verifier()
    for (let i = 0; i < 2; i++) {
      await assert.rejects(v.verifyQuote(quote), (e: unknown) => {
        assert.ok(e instanceof KmsError)
        assert.equal(e.code, 'KMS_ERR_ATTESTATION')
        assert.equal(e.message, 'TCBInfo expired')
        return true
      })
    }
    assert.equal(stub.total(), 4)
    assert.equal(sqliteRows(dir).length, 0)
  })
})
