// The PCCS collateral source: asks a PCCS (or Intel's PCS) for quote collateral with
// @phala/dcap-qvl's URL scheme, checks chains, CRLs and signatures against the trusted root
// (collateral-trust.ts) before anything is used or kept, and keeps it in the SQLite cache
// (collateral-cache.ts). The library's own fetcher binds the global fetch at load time and
// re-serialises the signed JSON, so the requests are made here, with the project's HTTP client.
import { createHash } from 'node:crypto'
import dcap from '@phala/dcap-qvl'
import type { Logger } from 'pino'
import type { CacheDb } from '../cache/cache-db.js'
import { ConcurrencyLimit } from '../util/concurrency.js'
import { DEFAULT_PCCS_URL } from '../config/defaults.js'
import { KmsError, asError, errorMessage } from '../errors.js'
import {
  HttpClient,
  HttpReplyTooLargeError,
  HttpTimeoutError,
  type HttpReply,
  headerValue,
} from '../http/http-client.js'
import {
  type Collateral,
  type CollateralSource,
  type CollateralTee,
  collateralNextUpdate,
} from './collateral.js'
import { CollateralCache } from './collateral-cache.js'
import { TrustAnchor, checkCollateral } from './collateral-trust.js'
import { TEE_TYPE_SGX, parseQuote } from './quote.js'
import { rawJsonMember } from './raw-json.js'
import { INTEL_SGX_ROOT_CA_DER } from './trust.js'

export interface PccsCollateralSourceOptions {
  pccsUrl: string
  db: CacheDb
  /** unix seconds */
  now: () => number
  /** the client the documents are fetched with; by default one of the source's own (it is
   * closed with the source only when the source made it) */
  http?: HttpClient
  logger?: Logger
  /** per request, redirects included; default 30 s (ignored when `http` is given) */
  timeoutMs?: number
  /** the root collateral must chain to when `get` is not told one; Intel's by default */
  rootCaDer?: Buffer
}

/** A PCCS states its own `nextUpdate`; the cache never keeps a copy longer than this. */
export const MAX_COLLATERAL_CACHE_SECONDS = 30 * 24 * 3600
/** How long a failed fetch (or refused collateral) is answered from memory instead of asking the
 * PCCS again: quotes of one platform keep arriving, and each would otherwise cost a round trip. */
export const COLLATERAL_FAILURE_TTL_SECONDS = 60
/** Collateral fetches in flight per process (each is four or five requests in a row). */
export const MAX_CONCURRENT_PCCS_FETCHES = 4
/** Every PCCS answer is a few kB to a few hundred kB; larger ones are refused, not buffered. */
export const MAX_PCCS_RESPONSE_BYTES = 1024 * 1024
/** Redirects followed per request: Intel's CRL distribution points and some PCCS front ends
 * redirect. Bounded so a misconfigured server cannot bounce us around until the deadline. */
export const MAX_PCCS_REDIRECTS = 5

// bump when what a cache entry means changes: entries of older versions are never read again
const CACHE_KEY_VERSION = 'v2'

/** The PCCS base URL as dcap-qvl normalises it (a trailing `/sgx|tdx/certification/v4` is
 * tolerated). */
export function normalizePccsUrl(url: string): string {
  const trimmed = url.trim() === '' ? DEFAULT_PCCS_URL : url.trim()
  return trimmed
    .replace(/\/$/, '')
    .replace(/\/sgx\/certification\/v4$/, '')
    .replace(/\/tdx\/certification\/v4$/, '')
}

function teeOfQuote(quote: Buffer): CollateralTee {
  try {
    return parseQuote(quote).teeType === TEE_TYPE_SGX ? 'sgx' : 'tdx'
  } catch (err) {
    throw new KmsError('KMS_ERR_ATTESTATION', `Failed to decode quote: ${errorMessage(err)}`)
  }
}

const pccsSlots = new ConcurrencyLimit(MAX_CONCURRENT_PCCS_FETCHES)

function rootFingerprint(rootCaDer: Buffer): string {
  return createHash('sha256').update(rootCaDer).digest('hex').slice(0, 16)
}

/** What the PCCS answered must be for the platform that was asked about; a mismatch would
 * otherwise sit in the cache and fail every verification until it expires. */
function checkSubject(c: Collateral, tee: CollateralTee, fmspc: string): void {
  const tcb = JSON.parse(c.tcb_info) as { id?: unknown; fmspc?: unknown }
  const id = tee === 'tdx' ? 'TDX' : 'SGX'
  if (tcb.id !== id) {
    throw new Error(`TCB info is for ${JSON.stringify(tcb.id)}, expected ${JSON.stringify(id)}`)
  }
  if (typeof tcb.fmspc !== 'string' || tcb.fmspc.toUpperCase() !== fmspc) {
    throw new Error(`TCB info is for FMSPC ${JSON.stringify(tcb.fmspc)}, expected ${fmspc}`)
  }
  const qe = JSON.parse(c.qe_identity) as { id?: unknown }
  const qeId = tee === 'tdx' ? 'TD_QE' : 'QE'
  if (qe.id !== qeId) {
    throw new Error(`QE identity is for ${JSON.stringify(qe.id)}, expected ${JSON.stringify(qeId)}`)
  }
}

type RecentOutcome = { until: number } & ({ error: KmsError } | { collateral: Collateral })

export class PccsCollateralSource implements CollateralSource {
  readonly pccsUrl: string
  private readonly cache: CollateralCache
  private readonly now: () => number
  private readonly http: HttpClient
  private readonly ownsHttp: boolean
  private readonly logger: Logger | undefined
  private readonly defaultRoot: Buffer
  private readonly anchors = new Map<string, TrustAnchor>()
  private readonly inFlight = new Map<string, Promise<Collateral>>()
  // outcomes that are not cached in SQLite but must not cost a PCCS round trip per quote either:
  // failures, and collateral that checked out but has already expired (the verifier refuses it)
  private readonly recent = new Map<string, RecentOutcome>()

  constructor(opts: PccsCollateralSourceOptions) {
    this.pccsUrl = normalizePccsUrl(opts.pccsUrl)
    this.now = opts.now
    this.ownsHttp = opts.http === undefined
    this.http =
      opts.http ??
      new HttpClient({
        timeoutMs: opts.timeoutMs ?? 30_000,
        maxResponseBytes: MAX_PCCS_RESPONSE_BYTES,
        maxRedirects: MAX_PCCS_REDIRECTS,
      })
    this.logger = opts.logger
    this.cache = new CollateralCache(opts.db, this.pccsUrl, opts.logger)
    this.defaultRoot = Buffer.from(opts.rootCaDer ?? INTEL_SGX_ROOT_CA_DER)
  }

  private anchor(rootCaDer: Buffer, fp: string): TrustAnchor {
    let a = this.anchors.get(fp)
    if (a === undefined) {
      a = new TrustAnchor(rootCaDer)
      this.anchors.set(fp, a)
    }
    return a
  }

  async get(quote: Buffer, fmspc: string, ca: string, rootCaDer?: Buffer): Promise<Collateral> {
    const tee = teeOfQuote(quote)
    const fmspcHex = fmspc.toUpperCase()
    if (!/^[0-9A-F]{12}$/.test(fmspcHex)) {
      throw new KmsError('KMS_ERR_ATTESTATION', `invalid FMSPC ${JSON.stringify(fmspc)}`)
    }
    if (ca !== 'processor' && ca !== 'platform') {
      throw new KmsError('KMS_ERR_ATTESTATION', `invalid PCK CA ${JSON.stringify(ca)}`)
    }
    const root = rootCaDer ?? this.defaultRoot
    const fp = rootFingerprint(root)
    const anchor = this.anchor(root, fp)
    // collateral checked against one root says nothing about another: the root is in the key
    const key = `${CACHE_KEY_VERSION}|${this.pccsUrl}|${tee}|${fmspcHex}|${ca}|${fp}`
    const now = this.now()
    const cached = this.cache.get(key, anchor, now)
    if (cached !== undefined) return cached

    const recent = this.recent.get(key)
    if (recent !== undefined && now < recent.until) {
      if ('collateral' in recent) return recent.collateral
      throw new KmsError(
        recent.error.code,
        `${recent.error.message} (not retried before ${new Date(recent.until * 1000).toISOString()})`,
        { cause: recent.error },
      )
    }
    this.recent.delete(key)

    // concurrent verifications of quotes from one platform share a single fetch
    const pending = this.inFlight.get(key)
    if (pending !== undefined) return pending
    const p = pccsSlots
      .run(() => this.refresh(key, anchor, tee, fmspcHex, ca))
      .catch((err: unknown) => {
        const error =
          err instanceof KmsError ? err : new KmsError('KMS_ERR_COLLATERAL', errorMessage(err))
        this.remember(key, { until: this.now() + COLLATERAL_FAILURE_TTL_SECONDS, error })
        throw err
      })
      .finally(() => this.inFlight.delete(key))
    this.inFlight.set(key, p)
    return p
  }

  private remember(key: string, outcome: RecentOutcome): void {
    if (this.recent.size >= 1024) {
      const now = this.now()
      for (const [k, v] of this.recent) if (v.until <= now) this.recent.delete(k)
    }
    this.recent.set(key, outcome)
  }

  private async refresh(
    key: string,
    anchor: TrustAnchor,
    tee: CollateralTee,
    fmspc: string,
    ca: string,
  ): Promise<Collateral> {
    const fail = (err: unknown): KmsError => {
      const expiredAt = this.cache.expiredAt(key)
      const staleNote =
        expiredAt === undefined
          ? ''
          : `; the cached copy expired at ${new Date(expiredAt * 1000).toISOString()}`
      this.logger?.warn(
        { pccs: this.pccsUrl, fmspc, ca, tee, err: asError(err) },
        'PCCS fetch failed',
      )
      return new KmsError(
        'KMS_ERR_COLLATERAL',
        `Failed to get collateral for FMSPC ${fmspc} (${tee}, ${ca} CA) from ${this.pccsUrl}: ${errorMessage(err)}${staleNote}`,
        { cause: err },
      )
    }
    let collateral: Collateral
    let validUntil: number
    let now: number
    try {
      collateral = await this.fetchCollateral(anchor, tee, fmspc, ca)
      now = this.now()
      checkSubject(collateral, tee, fmspc)
      // nothing unchecked reaches the cache (or the caller)
      const trust = checkCollateral(collateral, anchor, now, { documents: true })
      validUntil = Math.min(
        collateralNextUpdate(collateral),
        trust.validUntil,
        now + MAX_COLLATERAL_CACHE_SECONDS,
      )
    } catch (err) {
      throw fail(err)
    }
    if (validUntil > now) {
      this.cache.put(key, collateral, validUntil, now)
      this.logger?.info(
        {
          pccs: this.pccsUrl,
          fmspc,
          ca,
          tee,
          cachedUntil: new Date(validUntil * 1000).toISOString(),
        },
        'quote collateral fetched',
      )
    } else {
      // not cached: the verifier rejects it with the library's expiry text
      this.remember(key, { until: now + COLLATERAL_FAILURE_TTL_SECONDS, collateral })
      this.logger?.warn(
        {
          pccs: this.pccsUrl,
          fmspc,
          ca,
          tee,
          nextUpdate: new Date(validUntil * 1000).toISOString(),
        },
        'PCCS served collateral that has already expired',
      )
    }
    return collateral
  }

  /** Closes the keep-alive connections of the client the source made itself. */
  close(): void {
    if (this.ownsHttp) this.http.close()
  }

  private async httpGet(url: string): Promise<HttpReply> {
    let reply: HttpReply
    try {
      reply = await this.http.request(url, { method: 'GET' })
    } catch (err) {
      if (err instanceof HttpReplyTooLargeError) {
        throw new Error(`${url} is larger than ${err.limit} bytes`, { cause: err })
      }
      // the texts operators have seen since the source used fetch: `fetch failed (<cause>)`
      const detail =
        err instanceof HttpTimeoutError ? errorMessage(err) : `fetch failed (${errorMessage(err)})`
      throw new Error(`Failed to fetch ${url}: ${detail}`, { cause: err })
    }
    if (reply.status < 200 || reply.status > 299) {
      throw new Error(`Failed to fetch ${url}: HTTP ${reply.status}`)
    }
    return reply
  }

  private async fetchCollateral(
    anchor: TrustAnchor,
    tee: CollateralTee,
    fmspc: string,
    ca: string,
  ): Promise<Collateral> {
    const url = (t: CollateralTee, path: string) => `${this.pccsUrl}/${t}/certification/v4/${path}`

    const crlUrl = url('sgx', `pckcrl?ca=${ca}&encoding=der`)
    const crlRes = await this.httpGet(crlUrl)
    const pckCrlIssuerChain = header(crlRes, 'SGX-PCK-CRL-Issuer-Chain')
    const pckCrl = derOrHex(crlRes.body, 'PCK CRL')

    const tcbUrl = url(tee, `tcb?fmspc=${fmspc}`)
    const tcbRes = await this.httpGet(tcbUrl)
    const tcbInfoIssuerChain =
      optionalHeader(tcbRes, 'SGX-TCB-Info-Issuer-Chain') ?? header(tcbRes, 'TCB-Info-Issuer-Chain')
    const tcb = signedMember(tcbRes.body.toString('utf8'), 'tcbInfo', 'TCB Info')

    const qeUrl = url(tee, 'qe/identity?update=standard')
    const qeRes = await this.httpGet(qeUrl)
    const qeIdentityIssuerChain = header(qeRes, 'SGX-Enclave-Identity-Issuer-Chain')
    const qe = signedMember(qeRes.body.toString('utf8'), 'enclaveIdentity', 'QE Identity')

    let rootCaCrl: Buffer | undefined
    try {
      const rootUrl = url('sgx', 'rootcacrl')
      rootCaCrl = derOrHex((await this.httpGet(rootUrl)).body, 'root CA CRL')
    } catch (err) {
      this.logger?.debug(
        { err: asError(err) },
        'PCCS rootcacrl unavailable; using the CRL distribution point',
      )
    }
    if (rootCaCrl === undefined) {
      // Intel's PCS has no rootcacrl endpoint: follow the distribution point of the trusted
      // root (not of the root in the PCCS's chain, which would let a PCCS pick any URL)
      const crlUrl = dcap.utils.extractCrlUrl(anchor.cert.parsed.der)
      if (crlUrl === null) {
        throw new Error('Could not find CRL distribution point in root certificate')
      }
      rootCaCrl = derOrHex((await this.httpGet(crlUrl)).body, 'root CA CRL')
    }

    return {
      pck_crl_issuer_chain: pckCrlIssuerChain,
      root_ca_crl: rootCaCrl.toString('hex'),
      pck_crl: pckCrl.toString('hex'),
      tcb_info_issuer_chain: tcbInfoIssuerChain,
      tcb_info: tcb.body,
      tcb_info_signature: tcb.signature,
      qe_identity_issuer_chain: qeIdentityIssuerChain,
      qe_identity: qe.body,
      qe_identity_signature: qe.signature,
    }
  }
}

function optionalHeader(res: HttpReply, name: string): string | undefined {
  const v = headerValue(res.headers, name)
  return v === undefined || v === '' ? undefined : decodeURIComponent(v)
}

function header(res: HttpReply, name: string): string {
  const v = optionalHeader(res, name)
  if (v === undefined) throw new Error(`Missing ${name}`)
  return v
}

/** PCCS answers CRLs as DER or as hex text depending on endpoint and version. */
function derOrHex(body: Buffer, what: string): Buffer {
  if (body[0] === 0x30) return body
  const text = body.toString('latin1').trim()
  if (text.length > 0 && text.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(text)) {
    return Buffer.from(text, 'hex')
  }
  throw new Error(`${what} is neither DER nor hex`)
}

/** `{"<member>": {...}, "signature": "<hex>"}`: returns the member's exact text, because the
 * signature covers Intel's bytes and a re-serialisation could differ from them. */
function signedMember(
  text: string,
  member: string,
  what: string,
): { body: string; signature: string } {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new Error(`${what} should be valid JSON`)
  }
  const signature = (parsed as { signature?: unknown } | null)?.signature
  if (typeof signature !== 'string' || !/^([0-9a-fA-F]{2})+$/.test(signature)) {
    throw new Error(`${what} signature must be valid hex`)
  }
  const body = rawJsonMember(text, member)
  if (body === undefined || !body.startsWith('{')) {
    throw new Error(`${what} has no ${member} object`)
  }
  return { body, signature: signature.toLowerCase() }
}
