// Differential testing of the node:crypto DCAP verifier against @phala/dcap-qvl: the same quote,
// collateral, root and time go through both, at two levels — the KMS's AttestationVerifier (the
// project's own trust checks, then either engine; outcomes must match in status, advisories,
// error code and error text) and the bare engines (no project checks in front, so the engine
// itself meets malformed chains, unsigned CRLs and the like; accept/refuse, status and
// advisories must match). Cases are the fixture quotes with their collateral, simulator quotes
// with mock collateral, and seeded mutations of both.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import dcap from '@phala/dcap-qvl'
import { type Collateral, parseCollateralJson } from '../../src/attestation/collateral.js'
import { DcapQuoteVerifier } from '../../src/attestation/dcap/quote-verifier.js'
import { parseQuote } from '../../src/attestation/quote.js'
import { AttestationVerifier } from '../../src/attestation/verify.js'
import { INTEL_SGX_ROOT_CA_DER } from '../../src/attestation/trust.js'
import { KmsError, errorMessage } from '../../src/errors.js'
import { issueCrl } from '../../src/x509/crl.js'
import { mockCollateral } from '../../src/tee/simulator/collateral.js'
import {
  MOCK_PKI_NOT_AFTER,
  MOCK_PKI_NOT_BEFORE,
  type MockCertificate,
  type MockIntelPki,
  mockIntelPki,
  pckChainPem,
  signDeterministic,
} from '../../src/tee/simulator/mock-pki.js'
import { SIM_DEBUG_TD_ATTRIBUTES, buildTdxQuote } from '../../src/tee/simulator/quote-builder.js'
import { readVectorFile, readVectorJson } from './crypto-vectors.js'

export interface DiffCase {
  name: string
  quote: Buffer
  collateral: Collateral
  rootCaDer: Buffer
  now: number
}

export type Outcome =
  { ok: true; status: string; advisoryIds: string[] } | { ok: false; code: string; message: string }

// ---------------------------------------------------------------------------------------------
// Seeded randomness (xorshift128+): a failing case is reproduced from its seed and index.

export class Rng {
  private a: bigint
  private b: bigint
  constructor(seed: number) {
    this.a = BigInt(seed) * 0x9e3779b97f4a7c15n + 1n
    this.b = (BigInt(seed) ^ 0xdeadbeefn) * 0xbf58476d1ce4e5b9n + 3n
    for (let i = 0; i < 8; i++) this.next()
  }
  private next(): bigint {
    const M = (1n << 64n) - 1n
    let s1 = this.a
    const s0 = this.b
    this.a = s0
    s1 = (s1 ^ (s1 << 23n)) & M
    this.b = s1 ^ s0 ^ (s1 >> 17n) ^ (s0 >> 26n)
    return (this.b + s0) & M
  }
  int(n: number): number {
    if (n < 1) throw new RangeError(`Rng.int needs a positive bound, got ${n}`)
    return Number(this.next() % BigInt(n))
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T
  }
  bool(): boolean {
    return this.int(2) === 1
  }
}

// ---------------------------------------------------------------------------------------------
// Running both

class SwitchSource {
  current: Collateral | undefined
  async get(): Promise<Collateral> {
    if (this.current === undefined) throw new Error('no collateral set')
    return this.current
  }
}

function outcomeOfError(err: unknown): Outcome {
  return {
    ok: false,
    code: err instanceof KmsError ? err.code : 'plain',
    message: errorMessage(err),
  }
}

/** Both KMS verifiers (and both bare engines) for one root, reused across cases so that the
 * caches are exercised as a long-running KMS exercises them. */
export class DifferentialRunner {
  private readonly kms = new Map<
    string,
    {
      source: SwitchSource
      now: { v: number }
      fast: AttestationVerifier
      oracle: AttestationVerifier
      core: DcapQuoteVerifier
      library: InstanceType<typeof dcap.QuoteVerifier>
    }
  >()
  cases = 0
  accepted = 0

  private forRoot(rootCaDer: Buffer) {
    const key = rootCaDer.toString('hex')
    let v = this.kms.get(key)
    if (v === undefined) {
      const source = new SwitchSource()
      const now = { v: 0 }
      const opts = { rootCaDer, collateral: source, now: () => now.v }
      v = {
        source,
        now,
        fast: new AttestationVerifier({ ...opts, engine: 'node-crypto' }),
        oracle: new AttestationVerifier({ ...opts, engine: 'dcap-qvl' }),
        core: new DcapQuoteVerifier(rootCaDer),
        library: dcap.QuoteVerifier.newWithRootCa(rootCaDer),
      }
      this.kms.set(key, v)
    }
    return v
  }

  /** Runs one case through both paths at both levels; throws on any disagreement. Returns the
   * KMS-level outcome. */
  async check(c: DiffCase): Promise<Outcome> {
    const v = this.forRoot(c.rootCaDer)
    v.source.current = c.collateral
    v.now.v = c.now
    const kms = async (which: AttestationVerifier): Promise<Outcome> => {
      try {
        const r = await which.verifyQuote(c.quote)
        return { ok: true, status: r.status, advisoryIds: r.advisoryIds }
      } catch (err) {
        return outcomeOfError(err)
      }
    }
    const fast = await kms(v.fast)
    const oracle = await kms(v.oracle)
    assert.deepEqual(fast, oracle, `KMS-level disagreement on ${c.name}`)

    let bareFast: Outcome
    try {
      const parsed = parseQuote(c.quote)
      const r = v.core.verify(c.quote, parsed, c.collateral, c.now)
      bareFast = { ok: true, status: r.status, advisoryIds: r.advisoryIds }
    } catch (err) {
      bareFast = outcomeOfError(err)
    }
    let bareOracle: Outcome
    try {
      const r = v.library.verify(c.quote, c.collateral, c.now)
      bareOracle = { ok: true, status: r.status, advisoryIds: [...r.advisory_ids] }
    } catch (err) {
      bareOracle = outcomeOfError(err)
    }
    assert.equal(
      bareFast.ok,
      bareOracle.ok,
      `engine accept/refuse disagreement on ${c.name}: ${JSON.stringify({ bareFast, bareOracle })}`,
    )
    if (bareFast.ok && bareOracle.ok) {
      assert.deepEqual(bareFast, bareOracle, `engine status disagreement on ${c.name}`)
    }
    this.cases++
    if (fast.ok) this.accepted++
    return fast
  }
}

// ---------------------------------------------------------------------------------------------
// Base cases

interface SampleCase {
  quote: string
  now: number
  status: string
  advisory_ids: string[]
}
/** The dcap-qvl samples with the time they verify at and their expected result. */
export const SAMPLES = readVectorJson<{ dcap_qvl_samples: { cases: SampleCase[] } }>('vectors.json')
  .dcap_qvl_samples.cases
const SAMPLE_NOW = (SAMPLES[0] as SampleCase).now
const SGX_SAMPLE_NOW = (SAMPLES[1] as SampleCase).now

export function fixtureCases(): DiffCase[] {
  const collateral = (name: string): Collateral =>
    parseCollateralJson(readVectorFile(name).toString('utf8'))
  const tdx = collateral('dcap-qvl-tdx_quote_collateral.json')
  const sgx = collateral('dcap-qvl-sgx_quote_collateral.json')
  const root = INTEL_SGX_ROOT_CA_DER
  return [
    {
      name: 'dcap-qvl TDX sample',
      quote: readVectorFile('dcap-qvl-tdx_quote'),
      collateral: tdx,
      rootCaDer: root,
      now: SAMPLE_NOW,
    },
    {
      name: 'dcap-qvl SGX sample',
      quote: readVectorFile('dcap-qvl-sgx_quote'),
      collateral: sgx,
      rootCaDer: root,
      now: SGX_SAMPLE_NOW,
    },
    {
      name: 'ratls-assets TDX quote (other FMSPC)',
      quote: readVectorFile('ratls-assets-tdx_quote'),
      collateral: tdx,
      rootCaDer: root,
      now: SAMPLE_NOW,
    },
    {
      name: 'TDX sample, SGX collateral',
      quote: readVectorFile('dcap-qvl-tdx_quote'),
      collateral: sgx,
      rootCaDer: root,
      now: SAMPLE_NOW,
    },
    {
      name: 'TDX sample, collateral expired',
      quote: readVectorFile('dcap-qvl-tdx_quote'),
      collateral: tdx,
      rootCaDer: root,
      now: SAMPLE_NOW + 40 * 86400,
    },
    {
      name: 'TDX sample, before collateral issue',
      quote: readVectorFile('dcap-qvl-tdx_quote'),
      collateral: tdx,
      rootCaDer: root,
      now: SAMPLE_NOW - 20 * 86400,
    },
  ]
}

// ---------------------------------------------------------------------------------------------
// The simulator's platform, and quotes and collateral built or re-signed with its keys

export const SIM_SEEDS = [1, 2].map((n) => Buffer.alloc(32, n))
const SIM_NOW = Math.floor(Date.UTC(2026, 0, 1) / 1000)

export interface QuoteParts {
  signed: Buffer
  signature: Buffer
  attestationKey: Buffer
  qeReport: Buffer
  qeReportSignature: Buffer
  qeAuthData: Buffer
  pckChain: Buffer
}

export function quoteParts(quote: Buffer): QuoteParts {
  const q = parseQuote(quote)
  const chainStart = quote.indexOf(Buffer.from('-----BEGIN'), q.signedLength)
  return {
    signed: quote.subarray(0, q.signedLength),
    signature: q.ecdsaSignature,
    attestationKey: q.attestationKey,
    qeReport: q.qeReport,
    qeReportSignature: q.qeReportSignature,
    qeAuthData: q.qeAuthData,
    pckChain: quote.subarray(chainStart, q.length),
  }
}

/** A v4/v5 quote from its parts (certification data type 6 around type 5). */
export function assembleQuote(p: QuoteParts): Buffer {
  const u16 = (n: number): Buffer => {
    const b = Buffer.alloc(2)
    b.writeUInt16LE(n)
    return b
  }
  const certHeader = (type: number, len: number): Buffer => {
    const b = Buffer.alloc(6)
    b.writeUInt16LE(type, 0)
    b.writeUInt32LE(len, 2)
    return b
  }
  const inner = Buffer.concat([
    p.qeReport,
    p.qeReportSignature,
    u16(p.qeAuthData.length),
    p.qeAuthData,
    certHeader(5, p.pckChain.length),
    p.pckChain,
  ])
  const sigData = Buffer.concat([p.signature, p.attestationKey, certHeader(6, inner.length), inner])
  const len = Buffer.alloc(4)
  len.writeUInt32LE(sigData.length)
  return Buffer.concat([p.signed, len, sigData])
}

/** Re-signs the parts that changed with the mock platform's keys. */
export function resign(pki: MockIntelPki, p: QuoteParts): QuoteParts {
  return {
    ...p,
    signature: signDeterministic(pki.attestationKey, p.signed).raw,
    qeReportSignature: signDeterministic(pki.pck.key, p.qeReport).raw,
  }
}

function simBase(pki: MockIntelPki): Buffer {
  return buildTdxQuote(pki, {
    mrTd: Buffer.alloc(48, 1),
    rtmr0: Buffer.alloc(48, 2),
    rtmr1: Buffer.alloc(48, 3),
    rtmr2: Buffer.alloc(48, 4),
    rtmr3: Buffer.alloc(48, 5),
    reportData: Buffer.alloc(64, 6),
  })
}

export function simulatorCases(): DiffCase[] {
  return SIM_SEEDS.flatMap((seed, i) => {
    const pki = mockIntelPki(seed)
    const base = { collateral: mockCollateral(pki), rootCaDer: pki.root.der, now: SIM_NOW }
    return [
      { ...base, name: `simulator ${i}`, quote: simBase(pki) },
      {
        ...base,
        name: `simulator ${i} debug TD`,
        quote: buildTdxQuote(pki, {
          mrTd: Buffer.alloc(48),
          rtmr0: Buffer.alloc(48),
          rtmr1: Buffer.alloc(48),
          rtmr2: Buffer.alloc(48),
          rtmr3: Buffer.alloc(48),
          reportData: Buffer.alloc(64),
          tdAttributes: SIM_DEBUG_TD_ATTRIBUTES,
        }),
      },
    ]
  })
}

// ---------------------------------------------------------------------------------------------
// Mutations

/** One byte of a signed region (or of the data binding them) changed. */
export function flipSignedByte(rng: Rng, c: DiffCase): DiffCase {
  const p = quoteParts(c.quote)
  const regions: Array<[string, Buffer]> = [
    ['header', p.signed.subarray(0, 48)],
    ['body', p.signed.subarray(48)],
    ['signature', p.signature],
    ['attestation key', p.attestationKey],
    ['QE report', p.qeReport],
    ['QE report signature', p.qeReportSignature],
    ['QE auth data', p.qeAuthData],
    ['PCK chain', p.pckChain],
  ]
  const [what, region] = rng.pick(regions.filter(([, r]) => r.length > 0))
  // parseQuote hands out copies, so a region's place in the quote is found by its bytes (each
  // occurs once: the signed part is a prefix, the rest are keys, signatures, a report, a PEM)
  const at = c.quote.indexOf(region)
  if (at < 0 || c.quote.lastIndexOf(region) !== at) {
    throw new Error(`${c.name}: the ${what} is not found exactly once in the quote`)
  }
  const offset = at + rng.int(region.length)
  const quote = Buffer.from(c.quote)
  quote[offset] = (quote[offset] ?? 0) ^ (1 << rng.int(8))
  return { ...c, name: `${c.name} / flip ${what} @${offset}`, quote }
}

type Json = Record<string, unknown>

interface SimDocs {
  tcb: Json
  qe: Json
}

const STATUSES = [
  'UpToDate',
  'SWHardeningNeeded',
  'ConfigurationNeeded',
  'ConfigurationAndSWHardeningNeeded',
  'OutOfDate',
  'OutOfDateConfigurationNeeded',
  'Revoked',
  'Unknown',
]

const intelDate = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')

/** Semantic edits of the simulator's TCB info / QE identity (the collateral is re-signed). */
const DOC_EDITS: Array<(rng: Rng, d: SimDocs) => string> = [
  (rng, d) => {
    d.tcb.fmspc = rng.pick(['00906ED50000', 'FFFFFFFFFFFF', String(d.tcb.fmspc).toLowerCase()])
    return 'fmspc'
  },
  (rng, d) => {
    const levels = d.tcb.tcbLevels as Json[]
    const level = levels[0] as Json
    level.tcbStatus = rng.pick(STATUSES)
    if (rng.bool()) level.advisoryIDs = ['INTEL-SA-00001', 'INTEL-SA-00002'].slice(rng.int(3))
    return 'platform status'
  },
  (rng, d) => {
    // a newer level the platform does not reach, above the existing one
    const levels = d.tcb.tcbLevels as Json[]
    const first = JSON.parse(JSON.stringify(levels[0])) as Json
    const tcb = first.tcb as Json
    const which = rng.pick(['sgxtcbcomponents', 'tdxtcbcomponents', 'pcesvn'])
    const comps = which === 'pcesvn' ? [] : (tcb[which] as Json[])
    // an earlier mutation of the same case may have emptied the component list
    if (comps.length === 0) tcb.pcesvn = (tcb.pcesvn as number) + 1
    else {
      const i = rng.int(comps.length)
      ;(comps[i] as Json).svn = ((comps[i] as Json).svn as number) + 1
    }
    first.tcbStatus = 'UpToDate'
    ;(levels[0] as Json).tcbStatus = rng.pick(STATUSES.slice(1, 6))
    ;(levels[0] as Json).advisoryIDs = ['INTEL-SA-00837']
    if (rng.bool()) levels.unshift(first)
    else levels.push(first)
    return `extra level (${which})`
  },
  (rng, d) => {
    // the only level above the platform: no match
    const tcb = ((d.tcb.tcbLevels as Json[])[0] as Json).tcb as Json
    const which = rng.pick(['sgxtcbcomponents', 'tdxtcbcomponents'])
    const comps = tcb[which] as Json[]
    // an earlier mutation of the same case may have emptied the component list
    if (comps.length === 0) comps.push({ svn: 255 })
    else (comps[rng.int(comps.length)] as Json).svn = 255
    if (rng.int(4) === 0) tcb[which] = []
    return `level above platform (${which})`
  },
  (rng, d) => {
    d.tcb.id = rng.pick(['SGX', 'TDX', 'tdx'])
    d.tcb.version = rng.pick([2, 3, 4])
    return 'tcb info id/version'
  },
  (rng, d) => {
    const now = Date.UTC(2026, 0, 1)
    if (rng.bool()) d.tcb.issueDate = intelDate(now + 86400_000)
    else d.tcb.nextUpdate = intelDate(now - 86400_000)
    return 'tcb info dates'
  },
  (rng, d) => {
    const now = Date.UTC(2026, 0, 1)
    if (rng.bool()) d.qe.issueDate = intelDate(now + 86400_000)
    else d.qe.nextUpdate = intelDate(now - 86400_000)
    return 'qe identity dates'
  },
  (rng, d) => {
    d.qe.id = rng.pick(['QE', 'TD_QE', 'QVE'])
    d.qe.version = rng.pick([1, 2, 3])
    return 'qe identity id/version'
  },
  (rng, d) => {
    const which = rng.int(5)
    if (which === 0) d.qe.mrsigner = '00'.repeat(32)
    if (which === 1) d.qe.isvprodid = 1
    if (which === 2) d.qe.miscselect = 'FFFFFFFF'
    if (which === 3) d.qe.attributes = 'FF000000000000000000000000000000'
    if (which === 4) d.qe.attributesMask = '00000000000000000000000000000000'
    return `qe identity policy ${which}`
  },
  (rng, d) => {
    const levels = d.qe.tcbLevels as Json[]
    const first = levels[0] as Json
    const tcb = first.tcb as Json
    if (rng.bool()) {
      levels.unshift({
        tcb: { isvsvn: (tcb.isvsvn as number) + 1 },
        tcbDate: first.tcbDate,
        tcbStatus: 'UpToDate',
      })
      first.tcbStatus = rng.pick(STATUSES.slice(1))
      first.advisoryIDs = ['INTEL-SA-00615', 'INTEL-SA-00837']
    } else {
      tcb.isvsvn = (tcb.isvsvn as number) + 1
    }
    return 'qe tcb levels'
  },
]

function crl(issuer: MockCertificate, revoked: MockCertificate[], nextUpdate: Date): Buffer {
  return issueCrl(
    {
      issuerSubjectDer: issuer.subjectDer,
      thisUpdate: MOCK_PKI_NOT_BEFORE,
      nextUpdate,
      crlNumber: 2,
      authorityKeyId: issuer.subjectKeyId,
      revoked: revoked.map((c) => ({ serial: c.serial, revocationDate: MOCK_PKI_NOT_BEFORE })),
    },
    (tbs) => signDeterministic(issuer.key, tbs).der,
  )
}

/** Certificate-level edits: revocations (issuer-matched and cross-CRL), swapped and shortened
 * chains, damaged signatures, expired CRLs. */
const TRUST_EDITS: Array<(rng: Rng, pki: MockIntelPki, c: Collateral) => string> = [
  (rng, pki, c) => {
    const victim = rng.pick([pki.pck, pki.pckCa, pki.tcbSigning, pki.root])
    const inPckCrl = rng.bool()
    if (inPckCrl) c.pck_crl = crl(pki.pckCa, [victim], MOCK_PKI_NOT_AFTER).toString('hex')
    else c.root_ca_crl = crl(pki.root, [victim], MOCK_PKI_NOT_AFTER).toString('hex')
    return `revoked in ${inPckCrl ? 'PCK' : 'root'} CRL`
  },
  (rng, pki, c) => {
    const chains = [
      pki.tcbSigning.pem,
      pki.pckCa.pem + pki.root.pem,
      pki.root.pem + pki.tcbSigning.pem,
      pki.pck.pem + pki.pckCa.pem + pki.root.pem,
    ]
    const which = rng.pick([
      'tcb_info_issuer_chain',
      'qe_identity_issuer_chain',
      'pck_crl_issuer_chain',
    ] as const)
    c[which] = rng.pick(chains)
    return `swapped ${which}`
  },
  (rng, _pki, c) => {
    const which = rng.pick(['tcb_info_signature', 'qe_identity_signature'] as const)
    const sig = Buffer.from(c[which] as string, 'hex')
    if (rng.bool()) {
      const i = rng.int(sig.length)
      sig[i] = (sig[i] ?? 0) ^ 1
    }
    c[which] = (rng.int(4) === 0 ? sig.subarray(0, 63) : sig).toString('hex')
    return `damaged ${which}`
  },
  (rng, pki, c) => {
    const soon = new Date(Date.UTC(2025, 0, 1))
    if (rng.bool()) c.pck_crl = crl(pki.pckCa, [], soon).toString('hex')
    else c.root_ca_crl = crl(pki.root, [], soon).toString('hex')
    return 'expired CRL'
  },
]

function resignDocs(pki: MockIntelPki, c: Collateral, d: SimDocs): void {
  c.tcb_info = JSON.stringify(d.tcb)
  c.tcb_info_signature = signDeterministic(
    pki.tcbSigning.key,
    Buffer.from(c.tcb_info),
  ).raw.toString('hex')
  c.qe_identity = JSON.stringify(d.qe)
  c.qe_identity_signature = signDeterministic(
    pki.tcbSigning.key,
    Buffer.from(c.qe_identity),
  ).raw.toString('hex')
}

/** Quote edits the mock platform re-signs: TD attributes, TEE TCB SVN, header fields, the QE
 * report, the PCK chain (swapped, shortened, another platform's). */
const QUOTE_EDITS: Array<(rng: Rng, pki: MockIntelPki, p: QuoteParts) => string> = [
  (rng, _pki, p) => {
    const attrs = rng.pick([
      '0100001000000000',
      '0000000000000000',
      '0000003000000000',
      '0000001000000080',
      '0000001000000001',
      '0002001000000000',
      '0000001001000000',
    ])
    Buffer.from(attrs, 'hex').copy(p.signed, 48 + 120)
    return `TD attributes ${attrs}`
  },
  (rng, _pki, p) => {
    p.signed[48 + rng.int(16)] = rng.pick([0, 1, 255])
    return 'TEE_TCB_SVN'
  },
  (rng, _pki, p) => {
    const field = rng.pick([
      [2, 3],
      [4, 0],
      [8, 0],
      [10, 0],
    ] as const)
    if (field[0] === 4) p.signed.writeUInt32LE(rng.pick([0, 0x81, 0x82]), 4)
    else p.signed.writeUInt16LE(field[1] === 0 ? rng.int(20) : field[1], field[0])
    return `header field @${field[0]}`
  },
  (rng, _pki, p) => {
    const at = rng.pick([0, 16, 48, 256, 258, 128])
    p.qeReport[at] = (p.qeReport[at] ?? 0) ^ (1 << rng.int(8))
    return `QE report byte ${at}`
  },
  (rng, pki, p) => {
    const other = mockIntelPki(Buffer.alloc(32, 99))
    const chains = [
      pki.pck.pem,
      pki.pck.pem + pki.root.pem,
      pki.pckCa.pem + pki.pck.pem + pki.root.pem,
      pki.pck.pem + pki.pckCa.pem,
      pckChainPem(other),
      pki.tcbSigning.pem + pki.pckCa.pem + pki.root.pem,
    ]
    p.pckChain = Buffer.from(rng.pick(chains) + '\0')
    return 'PCK chain swapped'
  },
  (rng, _pki, p) => {
    p.qeAuthData = rng.pick([
      Buffer.alloc(0),
      Buffer.alloc(33, 7),
      Buffer.from(p.qeAuthData.subarray(0, 16)),
    ])
    const rebind = rng.bool()
    if (rebind) {
      // dcap-qvl hashes the key and the first 32 bytes of auth data, zero-padded
      const bound = Buffer.alloc(96)
      p.attestationKey.copy(bound, 0)
      p.qeAuthData.copy(bound, 64)
      createHash('sha256').update(bound).digest().copy(p.qeReport, 320)
    }
    return `QE auth data length ${p.qeAuthData.length}${rebind ? ' (re-bound)' : ''}`
  },
]

/** A mutated simulator case: edits of the documents, the trust material, the quote and the
 * clock, each applied with some probability (at least one). */
export function mutateSimulator(rng: Rng, seedIndex: number): DiffCase {
  const pki = mockIntelPki(SIM_SEEDS[seedIndex % SIM_SEEDS.length] as Buffer)
  const collateral = { ...mockCollateral(pki) }
  const docs: SimDocs = {
    tcb: JSON.parse(collateral.tcb_info) as Json,
    qe: JSON.parse(collateral.qe_identity) as Json,
  }
  const names: string[] = []
  let parts = quoteParts(simBase(pki))
  parts = { ...parts, signed: Buffer.from(parts.signed), qeReport: Buffer.from(parts.qeReport) }
  let plan = { docs: 0, trust: false, quote: false, clock: false }
  while (!plan.trust && !plan.quote && !plan.clock && plan.docs === 0) {
    plan = {
      docs: rng.int(3) === 0 ? 1 + rng.int(2) : 0,
      trust: rng.int(4) === 0,
      quote: rng.int(3) === 0,
      clock: rng.int(10) === 0,
    }
  }
  for (let i = 0; i < plan.docs; i++) names.push(rng.pick(DOC_EDITS)(rng, docs))
  if (plan.docs > 0) resignDocs(pki, collateral, docs)
  if (plan.trust) names.push(rng.pick(TRUST_EDITS)(rng, pki, collateral))
  if (plan.quote) names.push(rng.pick(QUOTE_EDITS)(rng, pki, parts))
  let now = SIM_NOW
  if (plan.clock) {
    now = rng.pick([
      Math.floor(MOCK_PKI_NOT_BEFORE.getTime() / 1000) - 10,
      Math.floor(MOCK_PKI_NOT_AFTER.getTime() / 1000) + 10,
    ])
    names.push('clock outside the PKI window')
  }
  const quote = assembleQuote(resign(pki, parts))
  return {
    name: `simulator ${seedIndex} / ${names.join(' + ')}`,
    quote,
    collateral,
    rootCaDer: pki.root.der,
    now,
  }
}

// ---------------------------------------------------------------------------------------------
// Unbound bytes: the deliberate exceptions to agreement with dcap-qvl

/** Variants of a genuine quote whose every signature still verifies but which carry bytes no
 * signature, hash or chain covers. Both bare engines accept them (they read through the length
 * fields, as Rust dcap-qvl does); the KMS refuses them on both engines before verification
 * (docs/design.md#what-binds-each-attestation-byte), with `refusal` as the message. */
export function unboundByteCases(base: DiffCase): Array<DiffCase & { refusal: string }> {
  const q = parseQuote(base.quote)
  const meaningful = base.quote.subarray(0, q.length)
  const sigLenAt = q.signedLength
  const outerTypeAt = sigLenAt + 4 + 128
  /** `extra` appended inside the signature data; with `insideQe` the QE report certification
   * data's own size grows too, so the bytes sit after the PCK certification data */
  const grow = (extra: Buffer, insideQe: boolean): Buffer => {
    const out = Buffer.concat([meaningful, extra])
    out.writeUInt32LE(out.readUInt32LE(sigLenAt) + extra.length, sigLenAt)
    if (insideQe) {
      out.writeUInt32LE(out.readUInt32LE(outerTypeAt + 2) + extra.length, outerTypeAt + 2)
    }
    return out
  }
  const outerType7 = Buffer.from(meaningful)
  outerType7.writeUInt16LE(7, outerTypeAt)
  const parts = quoteParts(base.quote)
  return [
    {
      ...base,
      name: `${base.name}, a non-zero byte after the quote`,
      quote: Buffer.concat([base.quote, Buffer.from([0x01])]),
      refusal: `Non-zero byte after the quote's signature data at offset ${base.quote.length} (only zero padding may follow a quote)`,
    },
    {
      ...base,
      name: `${base.name}, unread bytes at the end of the signature data`,
      quote: grow(Buffer.from('unbound'), false),
      refusal: '7 unread bytes at the end of the quote signature data',
    },
    {
      ...base,
      name: `${base.name}, unread bytes inside the QE report certification data`,
      quote: grow(Buffer.from('unbound'), true),
      refusal:
        '7 unread bytes after the PCK certification data inside the QE report certification data',
    },
    {
      ...base,
      name: `${base.name}, certification data type 7`,
      quote: outerType7,
      refusal: 'Unsupported certification data type: 7 (expected 6, QE report certification data)',
    },
    {
      ...base,
      name: `${base.name}, text after the PCK chain`,
      quote: assembleQuote({
        ...parts,
        pckChain: Buffer.concat([parts.pckChain, Buffer.from('unbound')]),
      }),
      refusal: 'PCK certificate chain has content outside its PEM certificates',
    },
  ]
}

/** A simulator quote rewritten as v5 with a TD 1.0 body, re-signed, whose `Body::size` field says
 * `declaredSize` (584 is the truth). */
export function simulatorV5(declaredSize: number): DiffCase {
  const [base] = simulatorCases()
  if (base === undefined) throw new Error('no simulator case')
  const pki = mockIntelPki(SIM_SEEDS[0] as Buffer)
  const p = quoteParts(base.quote)
  const header = Buffer.from(p.signed.subarray(0, 48))
  header.writeUInt16LE(5, 0)
  const bodyHead = Buffer.alloc(6)
  bodyHead.writeUInt16LE(2, 0)
  bodyHead.writeUInt32LE(declaredSize, 2)
  const signed = Buffer.concat([header, bodyHead, p.signed.subarray(48)])
  return {
    ...base,
    name: `simulator 0 as v5, body size field ${declaredSize}`,
    quote: assembleQuote(resign(pki, { ...p, signed })),
  }
}
