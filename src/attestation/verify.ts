// Attestation verification (docs/design.md#trust-model): the DCAP quote through the node:crypto
// verifier (dcap/quote-verifier.ts; @phala/dcap-qvl on request,
// docs/design.md#quote-verification-library), then dstack's own checks in upstream's order and
// with upstream's texts, which reach clients.
import { createHash } from 'node:crypto'
import dcap from '@phala/dcap-qvl'
import { KmsError, errorMessage, withContext } from '../errors.js'
import type { QuoteVerifierEngine } from '../config/types.js'
import type { Collateral, CollateralSource } from './collateral.js'
import {
  type CollateralTrust,
  TrustAnchor,
  type VerifiedChain,
  checkCollateral,
  checkRevocation,
  verifyPckChain,
} from './collateral-trust.js'
import { DcapQuoteVerifier } from './dcap/quote-verifier.js'
import { type PckInfo, pckInfoFromChain } from './dcap/pck-info.js'
import { BoundedCache } from '../util/bounded-cache.js'
import { PCK_CERT_CHAIN_TYPE, type ParsedQuote, parseQuote, tdReportOf } from './quote.js'
import { checkQuoteStructure } from './quote-structure.js'
import { toReportData } from './report-data.js'
import {
  replayRuntimeEvents,
  runtimeEventPreimage,
  tdxEventToRuntimeEvent,
} from './runtime-events.js'
import {
  type Attestation,
  DSTACK_RUNTIME_EVENT_TYPE,
  type TdxEvent,
  type TeeVariant,
} from './types.js'

export interface VerifiedReport {
  /** DCAP TCB status (`UpToDate`, `SWHardeningNeeded`, …) */
  status: string
  advisoryIds: string[]
  quote: ParsedQuote
  /** 16 bytes from the PCK certificate (the library's own value is always empty,
   * docs/design.md#ppid-read-from-the-pck-certificate) */
  ppid: Buffer
}

export interface VerifiedAttestation {
  attestation: Attestation
  report: VerifiedReport
  variant: TeeVariant
}

export interface AttestationVerifierOptions {
  rootCaDer: Buffer
  collateral: CollateralSource
  /** unix seconds; the wall clock by default */
  now?: () => number
  /** `node-crypto` by default */
  engine?: QuoteVerifierEngine
}

function attestationError(message: string, cause?: unknown): KmsError {
  return new KmsError('KMS_ERR_ATTESTATION', message, { cause })
}

export { type PckInfo, pckInfoFromChain } from './dcap/pck-info.js'

function parseQuoteForVerify(quote: Uint8Array): ParsedQuote {
  try {
    return parseQuote(quote)
  } catch (err) {
    throw attestationError(`Failed to decode quote: ${errorMessage(err)}`, err)
  }
}

/** The 16-byte PPID of the quote's PCK certificate
 * (docs/design.md#ppid-read-from-the-pck-certificate). */
export function extractPpid(quote: Buffer): Buffer {
  const q = parseQuoteForVerify(quote)
  // verification refuses other types in checkQuoteStructure; this read runs without it
  if (q.pckCertType !== PCK_CERT_CHAIN_TYPE) {
    throw attestationError(`Unsupported DCAP PCK cert format: ${q.pckCertType}`)
  }
  return pckInfoFromChain(q.pckChainPem).ppid
}

const isZero = (b: Buffer): boolean => b.every((x) => x === 0)

/** dstack's `validate_tcb`, repeated on top of the library's attribute checks so that a change
 * inside the library cannot silently drop them. */
export function validateTcb(q: ParsedQuote): void {
  const report = q.report
  if (report.type === 'sgx') {
    if (((report.attributes[0] ?? 0) & 0x02) !== 0) {
      throw attestationError('Debug mode is not allowed')
    }
    return
  }
  if (report.type === 'td15' && !isZero(report.mrServiceTd)) {
    throw attestationError('Invalid mr service td')
  }
  if (((report.td.tdAttributes[0] ?? 0) & 0x01) !== 0) {
    throw attestationError('Debug mode is not allowed')
  }
  if (!isZero(report.td.mrSignerSeam)) throw attestationError('Invalid mr signer seam')
}

/** Upstream HEAD `validate_v2_preimages`: every V2 runtime event in the TDX log must carry the
 * canonical preimage of its digest. */
export function validateV2Preimages(events: readonly TdxEvent[]): void {
  events.forEach((e, index) => {
    if (e.eventType !== DSTACK_RUNTIME_EVENT_TYPE || e.version !== 2) return
    if (e.preimage === undefined) {
      throw attestationError(`V2 runtime event ${index} is missing its digest preimage`)
    }
    const advertised = createHash('sha384').update(e.preimage).digest()
    if (!advertised.equals(e.digest)) {
      throw attestationError(`V2 runtime event ${index} digest does not match its preimage`)
    }
    const runtime = tdxEventToRuntimeEvent(e)
    if (runtime !== null && !runtimeEventPreimage(runtime).equals(e.preimage)) {
      throw attestationError(
        `V2 runtime event ${index} preimage is not the canonical event representation`,
      )
    }
  })
}

/** What is refused before collateral is fetched, on both engines: bytes no signature covers
 * (quote-structure.ts), then dstack's `validate_tcb`, so that a debug TD is refused as one and
 * not as whatever the engine's attribute policy says first
 * (docs/design.md#a-debug-td-is-refused-before-collateral). */
function precheck(parsed: ParsedQuote, raw: Buffer): ParsedQuote {
  checkQuoteStructure(raw, parsed)
  validateTcb(parsed)
  return parsed
}

const unixNow = (): number => Math.floor(Date.now() / 1000)

/** Distinct PCK chains remembered as verified: one per platform (and PCK CA) the KMS talks to. */
const PCK_CHAIN_MEMO_SIZE = 256

// The members whose bytes the collateral trust depends on; a memo entry only counts for a
// collateral object whose members are still these.
const TRUST_FIELDS = [
  'pck_crl_issuer_chain',
  'root_ca_crl',
  'pck_crl',
  'tcb_info_issuer_chain',
  'qe_identity_issuer_chain',
] as const

/** Only the members the library should see: it prefers a `pck_certificate_chain` member over
 * the quote's own chain, which would bypass the PCK chain checked here. */
function collateralForLibrary(c: Collateral): Collateral {
  return {
    pck_crl_issuer_chain: c.pck_crl_issuer_chain,
    root_ca_crl: c.root_ca_crl,
    pck_crl: c.pck_crl,
    tcb_info_issuer_chain: c.tcb_info_issuer_chain,
    tcb_info: c.tcb_info,
    tcb_info_signature: c.tcb_info_signature,
    qe_identity_issuer_chain: c.qe_identity_issuer_chain,
    qe_identity: c.qe_identity,
    qe_identity_signature: c.qe_identity_signature,
  }
}

const within = (w: { validFrom: number; validUntil: number }, now: number): boolean =>
  w.validFrom <= now && now < w.validUntil

export class AttestationVerifier {
  private readonly library: InstanceType<typeof dcap.QuoteVerifier> | null
  private readonly core: DcapQuoteVerifier | null
  private readonly collateral: CollateralSource
  private readonly now: () => number
  private readonly rootCaDer: Buffer
  private readonly anchor: TrustAnchor
  // Chain and CRL checks cost a few milliseconds, as much as the rest of a verification; their
  // results hold for a known time window, so they are remembered.
  // The PCK facts that pick the collateral are kept with the chain they were read from.
  private readonly pckChains = new BoundedCache<{ chain: VerifiedChain; info: PckInfo }>(
    PCK_CHAIN_MEMO_SIZE,
  )
  private readonly trusted = new WeakMap<
    Collateral,
    { fields: unknown[]; trust: CollateralTrust }
  >()

  constructor(opts: AttestationVerifierOptions) {
    this.rootCaDer = Buffer.from(opts.rootCaDer)
    const engine = opts.engine ?? 'node-crypto'
    this.core = engine === 'node-crypto' ? new DcapQuoteVerifier(this.rootCaDer) : null
    this.library = engine === 'dcap-qvl' ? dcap.QuoteVerifier.newWithRootCa(this.rootCaDer) : null
    this.anchor = new TrustAnchor(this.rootCaDer)
    this.collateral = opts.collateral
    this.now = opts.now ?? unixNow
  }

  /** The verified PCK chain and what its leaf says, remembered while the chain is valid. */
  private pckChain(pem: string, now: number): { chain: VerifiedChain; info: PckInfo } {
    const known = this.pckChains.get(pem)
    if (known !== undefined && within(known.chain, now)) return known
    const chain = verifyPckChain(pem, this.anchor, now)
    const entry = { chain, info: pckInfoFromChain(pem) }
    this.pckChains.set(pem, entry)
    return entry
  }

  private collateralTrust(c: Collateral, now: number): CollateralTrust {
    const fields = TRUST_FIELDS.map((k) => c[k])
    const known = this.trusted.get(c)
    if (
      known !== undefined &&
      within(known.trust, now) &&
      known.fields.every((v, i) => v === fields[i])
    ) {
      return known.trust
    }
    const trust = checkCollateral(c, this.anchor, now)
    // the issuer chains' own certificates must not be revoked by the root CA CRL either
    checkRevocation(trust.certs, trust)
    this.trusted.set(c, { fields, trust })
    return trust
  }

  private dcapVerify(
    quote: Buffer,
    parsed: ParsedQuote,
    collateral: Collateral,
    now: number,
  ): { status: string; advisoryIds: string[] } {
    if (this.core !== null) return this.core.verify(quote, parsed, collateral, now)
    const library = this.library as InstanceType<typeof dcap.QuoteVerifier>
    const r = library.verify(quote, collateralForLibrary(collateral), now)
    return { status: r.status, advisoryIds: [...r.advisory_ids] }
  }

  /** Collateral plus the DCAP verification (upstream `fetch_and_verify`) of a quote that passed
   * `precheck`. */
  private async fetchAndVerify(quote: Buffer, parsed: ParsedQuote): Promise<VerifiedReport> {
    // the FMSPC and CA decide what is fetched from the PCCS: only from a chain to our root
    // (`precheck` refused every PCK cert type but a PEM chain)
    const { chain: pckChain, info: pck } = this.pckChain(parsed.pckChainPem, this.now())
    const collateral = await this.collateral.get(quote, pck.fmspc, pck.ca, this.rootCaDer)
    const now = this.now()
    const trust = this.collateralTrust(collateral, now)
    checkRevocation(pckChain.certs, trust)
    let result: { status: string; advisoryIds: string[] }
    try {
      result = this.dcapVerify(quote, parsed, collateral, now)
    } catch (err) {
      // the library's text is the diagnosis ("TCBInfo expired", "ISV enclave report signature
      // is invalid"); a wrapped decoding failure adds its cause
      const cause = (err as { cause?: unknown }).cause
      const detail = cause === undefined ? '' : `: ${errorMessage(cause)}`
      throw attestationError(`${errorMessage(err)}${detail}`, err)
    }
    // Rust dcap-qvl refuses Revoked; the JS library does too, and this keeps it so
    if (result.status === 'Revoked') throw attestationError('TCB status is invalid: Revoked')
    return {
      status: result.status,
      advisoryIds: [...result.advisoryIds],
      quote: parsed,
      // the memo keeps its own
      ppid: Buffer.from(pck.ppid),
    }
  }

  /** DCAP verification (signatures, chain to the configured root, CRLs, TCB level) plus
   * dstack's TD attribute checks. */
  async verifyQuote(quote: Buffer): Promise<VerifiedReport> {
    return this.fetchAndVerify(quote, precheck(parseQuoteForVerify(quote), quote))
  }

  /** Every check but the key binding, in upstream's order (docs/design.md#trust-model). */
  async verify(a: Attestation): Promise<VerifiedAttestation> {
    if (a.stack.kind === 'dstack-pod') {
      const expected = toReportData('app-data', Buffer.from(a.stack.reportDataPayload, 'utf8'))
      if (!expected.equals(a.reportData)) {
        throw attestationError('report_data does not match report_data_payload')
      }
    }
    if (a.reportData.length !== 64) throw attestationError('stack.report_data must be 64 bytes')

    const q = a.quote
    if (q.kind !== 'dstack-tdx') {
      throw attestationError(
        `${q.kind} attestations are not supported by this KMS (only dstack-tdx is verified)`,
      )
    }

    // KMS_ERR_COLLATERAL (no usable collateral) stays distinguishable from a bad quote
    const collateralContext = (err: unknown): KmsError =>
      withContext(
        'Failed to get collateral',
        err,
        err instanceof KmsError ? err.code : 'KMS_ERR_ATTESTATION',
      )
    let parsed: ParsedQuote
    try {
      parsed = parseQuoteForVerify(q.quote)
    } catch (err) {
      throw collateralContext(err)
    }
    // before any collateral: a debug TD or an unbound byte is refused for what it is
    precheck(parsed, q.quote)
    let report: VerifiedReport
    try {
      report = await this.fetchAndVerify(q.quote, parsed)
    } catch (err) {
      throw collateralContext(err)
    }

    const td = tdReportOf(report.quote)
    if (td === null) throw attestationError('no td report')
    const replayed = replayRuntimeEvents(a.runtimeEvents)
    if (!replayed.equals(td.rtmr3)) {
      throw attestationError(
        `RTMR3 mismatch, quoted: ${td.rtmr3.toString('hex')}, replayed: ${replayed.toString('hex')}`,
      )
    }
    if (!td.reportData.equals(a.reportData)) throw attestationError('tdx report_data mismatch')

    try {
      validateV2Preimages(q.eventLog)
    } catch (err) {
      throw withContext('Failed to validate TDX V2 event digest preimages', err)
    }
    return { attestation: a, report, variant: q.kind }
  }

  /** The key binding (the attestation must vouch for this certificate or CSR key), then
   * `verify`. */
  async verifyWithRaPubkey(a: Attestation, spkiDer: Uint8Array): Promise<VerifiedAttestation> {
    if (a.reportData.length !== 64) throw attestationError('stack.report_data must be 64 bytes')
    const expected = toReportData('ratls-cert', spkiDer)
    if (!expected.equals(a.reportData)) throw attestationError('report data mismatch')
    return this.verify(a)
  }
}
