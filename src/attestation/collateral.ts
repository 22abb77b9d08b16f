// Quote collateral (D13, spec 04 §6 step 3.1): the PCK CRLs, TCB info and QE identity a DCAP
// verification needs. Fetched from the PCCS with @phala/dcap-qvl's URL scheme and kept in the
// SQLite cache until the earliest `nextUpdate` among them, so that one platform costs one PCCS
// round trip per collateral period and a PCCS outage does not stop a KMS whose copy is fresh.
// The library's own fetcher binds the global fetch at load time and re-serialises the signed JSON,
// so the requests are made here.
import dcap from '@phala/dcap-qvl'
import type { Logger } from 'pino'
import type { CacheDb } from '../cache/cache-db.js'
import { DEFAULT_PCCS_URL } from '../config/defaults.js'
import { KmsError, errorMessage } from '../errors.js'
import { TAG, derChildren, parseDer, readTime } from '../x509/der.js'
import { TEE_TYPE_SGX, parseQuote } from './quote.js'

export type Collateral = import('@phala/dcap-qvl').Collateral

export type CollateralTee = 'sgx' | 'tdx'

export interface CollateralSource {
  /** `fmspc`: 12 hex digits from the PCK certificate; `ca`: `processor` or `platform` */
  get(quote: Buffer, fmspc: string, ca: string): Promise<Collateral>
}

const COLLATERAL_KEYS = [
  'pck_crl_issuer_chain',
  'root_ca_crl',
  'pck_crl',
  'tcb_info_issuer_chain',
  'tcb_info',
  'tcb_info_signature',
  'qe_identity_issuer_chain',
  'qe_identity',
  'qe_identity_signature',
] as const

const STRING_KEYS = new Set<string>([
  'pck_crl_issuer_chain',
  'tcb_info_issuer_chain',
  'tcb_info',
  'qe_identity_issuer_chain',
  'qe_identity',
])

/** Parses a collateral JSON document (the shape `verify()` takes, as dcap-qvl's samples and
 * `getCollateral` produce it). Binary fields may be hex strings or byte arrays. */
export function parseCollateralJson(text: string): Collateral {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new KmsError('KMS_ERR_COLLATERAL', `invalid collateral JSON: ${errorMessage(err)}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new KmsError('KMS_ERR_COLLATERAL', 'invalid collateral JSON: expected an object')
  }
  const obj = value as Record<string, unknown>
  for (const key of COLLATERAL_KEYS) {
    const v = obj[key]
    const ok = STRING_KEYS.has(key)
      ? typeof v === 'string'
      : typeof v === 'string' ||
        (Array.isArray(v) && v.every((b) => Number.isInteger(b) && b >= 0 && b <= 255))
    if (!ok) {
      throw new KmsError('KMS_ERR_COLLATERAL', `invalid collateral JSON: bad or missing ${key}`)
    }
  }
  return obj as unknown as Collateral
}

function bytesOf(v: number[] | string): Buffer {
  return typeof v === 'string' ? Buffer.from(v, 'hex') : Buffer.from(v)
}

function jsonDateSeconds(json: string, what: string): number {
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch (err) {
    throw new KmsError('KMS_ERR_COLLATERAL', `${what} is not JSON: ${errorMessage(err)}`)
  }
  const next = (parsed as { nextUpdate?: unknown } | null)?.nextUpdate
  const ms = typeof next === 'string' ? Date.parse(next) : NaN
  if (!Number.isFinite(ms)) throw new KmsError('KMS_ERR_COLLATERAL', `${what} has no nextUpdate`)
  return Math.floor(ms / 1000)
}

/** `nextUpdate` of a DER CRL (unix seconds), or undefined when the CRL does not carry one. */
export function crlNextUpdate(der: Buffer): number | undefined {
  const [tbs] = derChildren(parseDer(der))
  if (tbs === undefined) return undefined
  const fields = derChildren(tbs)
  // version is OPTIONAL: skip it when present, then signature, issuer, thisUpdate
  const start = fields[0]?.tag === TAG.INTEGER ? 1 : 0
  const next = fields[start + 3]
  if (next === undefined || (next.tag !== TAG.UTC_TIME && next.tag !== TAG.GENERALIZED_TIME)) {
    return undefined
  }
  return Math.floor(readTime(next, 'CRL nextUpdate').getTime() / 1000)
}

/** The end of the collateral's validity: the earliest `nextUpdate` of TCB info, QE identity
 * and (where they carry one) the two CRLs, in unix seconds. */
export function collateralNextUpdate(c: Collateral): number {
  const times = [
    jsonDateSeconds(c.tcb_info, 'tcb_info'),
    jsonDateSeconds(c.qe_identity, 'qe_identity'),
  ]
  for (const crl of [c.pck_crl, c.root_ca_crl]) {
    try {
      const t = crlNextUpdate(bytesOf(crl))
      if (t !== undefined) times.push(t)
    } catch {
      // an unparsable CRL is the verifier's to reject; it only loses its say in the cache window
    }
  }
  return Math.min(...times)
}

/** A fixed collateral document (CLI `--collateral`, the simulator's mock PCCS data). */
export class StaticCollateralSource implements CollateralSource {
  readonly collateral: Collateral
  constructor(collateral: Collateral) {
    this.collateral = collateral
  }

  static fromJson(text: string): StaticCollateralSource {
    return new StaticCollateralSource(parseCollateralJson(text))
  }

  async get(): Promise<Collateral> {
    return this.collateral
  }
}

export interface PccsCollateralSourceOptions {
  pccsUrl: string
  db: CacheDb
  /** unix seconds */
  now: () => number
  fetch?: typeof fetch
  logger?: Logger
  /** per request; default 30 s */
  timeoutMs?: number
}

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

export class PccsCollateralSource implements CollateralSource {
  readonly pccsUrl: string
  private readonly db: CacheDb
  private readonly now: () => number
  private readonly fetchFn: typeof fetch
  private readonly logger: Logger | undefined
  private readonly timeoutMs: number
  private readonly inFlight = new Map<string, Promise<Collateral>>()

  constructor(opts: PccsCollateralSourceOptions) {
    this.pccsUrl = normalizePccsUrl(opts.pccsUrl)
    this.db = opts.db
    this.now = opts.now
    this.fetchFn = opts.fetch ?? fetch
    this.logger = opts.logger
    this.timeoutMs = opts.timeoutMs ?? 30_000
  }

  async get(quote: Buffer, fmspc: string, ca: string): Promise<Collateral> {
    const tee = teeOfQuote(quote)
    const fmspcHex = fmspc.toUpperCase()
    if (!/^[0-9A-F]{12}$/.test(fmspcHex)) {
      throw new KmsError('KMS_ERR_ATTESTATION', `invalid FMSPC ${JSON.stringify(fmspc)}`)
    }
    if (ca !== 'processor' && ca !== 'platform') {
      throw new KmsError('KMS_ERR_ATTESTATION', `invalid PCK CA ${JSON.stringify(ca)}`)
    }
    const key = `${this.pccsUrl}|${tee}|${fmspcHex}|${ca}`
    const cached = this.db.getCollateral(key, this.now())
    if (cached !== undefined) return parseCollateralJson(cached)

    // concurrent verifications of quotes from one platform share a single fetch
    const pending = this.inFlight.get(key)
    if (pending !== undefined) return pending
    const p = this.refresh(key, tee, fmspcHex, ca).finally(() => this.inFlight.delete(key))
    this.inFlight.set(key, p)
    return p
  }

  private async refresh(
    key: string,
    tee: CollateralTee,
    fmspc: string,
    ca: string,
  ): Promise<Collateral> {
    let collateral: Collateral
    try {
      collateral = await this.fetchCollateral(tee, fmspc, ca)
    } catch (err) {
      const stale = this.db.getCollateralEntry(key)
      const staleNote =
        stale === undefined
          ? ''
          : `; the cached copy expired at ${new Date(stale.nextUpdate * 1000).toISOString()}`
      this.logger?.warn(
        { pccs: this.pccsUrl, fmspc, ca, tee, err: errorMessage(err) },
        'PCCS fetch failed',
      )
      throw new KmsError(
        'KMS_ERR_COLLATERAL',
        `Failed to get collateral for FMSPC ${fmspc} (${tee}, ${ca} CA) from ${this.pccsUrl}: ${errorMessage(err)}${staleNote}`,
        { cause: err },
      )
    }
    const nextUpdate = collateralNextUpdate(collateral)
    if (nextUpdate > this.now()) {
      this.db.putCollateral(key, JSON.stringify(collateral), nextUpdate)
      this.logger?.info(
        {
          pccs: this.pccsUrl,
          fmspc,
          ca,
          tee,
          nextUpdate: new Date(nextUpdate * 1000).toISOString(),
        },
        'quote collateral fetched',
      )
    } else {
      // not cached: the verifier rejects it with the library's expiry text
      this.logger?.warn(
        {
          pccs: this.pccsUrl,
          fmspc,
          ca,
          tee,
          nextUpdate: new Date(nextUpdate * 1000).toISOString(),
        },
        'PCCS served collateral that has already expired',
      )
    }
    return collateral
  }

  private async httpGet(url: string): Promise<Response> {
    let response: Response
    try {
      response = await this.fetchFn(url, { signal: AbortSignal.timeout(this.timeoutMs) })
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause
      const detail = cause === undefined ? '' : ` (${errorMessage(cause)})`
      throw new Error(`Failed to fetch ${url}: ${errorMessage(err)}${detail}`, { cause: err })
    }
    if (!response.ok) {
      await response.body?.cancel()
      throw new Error(`Failed to fetch ${url}: HTTP ${response.status}`)
    }
    return response
  }

  private async fetchCollateral(
    tee: CollateralTee,
    fmspc: string,
    ca: string,
  ): Promise<Collateral> {
    const url = (t: CollateralTee, path: string) => `${this.pccsUrl}/${t}/certification/v4/${path}`

    const crlRes = await this.httpGet(url('sgx', `pckcrl?ca=${ca}&encoding=der`))
    const pckCrlIssuerChain = header(crlRes, 'SGX-PCK-CRL-Issuer-Chain')
    const pckCrl = derOrHex(Buffer.from(await crlRes.arrayBuffer()), 'PCK CRL')

    const tcbRes = await this.httpGet(url(tee, `tcb?fmspc=${fmspc}`))
    const tcbInfoIssuerChain =
      optionalHeader(tcbRes, 'SGX-TCB-Info-Issuer-Chain') ?? header(tcbRes, 'TCB-Info-Issuer-Chain')
    const tcb = signedMember(await tcbRes.text(), 'tcbInfo', 'TCB Info')

    const qeRes = await this.httpGet(url(tee, 'qe/identity?update=standard'))
    const qeIdentityIssuerChain = header(qeRes, 'SGX-Enclave-Identity-Issuer-Chain')
    const qe = signedMember(await qeRes.text(), 'enclaveIdentity', 'QE Identity')

    let rootCaCrl: Buffer | undefined
    try {
      const res = await this.httpGet(url('sgx', 'rootcacrl'))
      rootCaCrl = derOrHex(Buffer.from(await res.arrayBuffer()), 'root CA CRL')
    } catch (err) {
      this.logger?.debug(
        { err: errorMessage(err) },
        'PCCS rootcacrl unavailable; using the CRL distribution point',
      )
    }
    if (rootCaCrl === undefined) {
      // Intel's PCS has no rootcacrl endpoint: follow the root certificate's distribution point
      const certs = dcap.utils.extractCerts(Buffer.from(qeIdentityIssuerChain))
      const root = certs[certs.length - 1]
      const crlUrl = root === undefined ? null : dcap.utils.extractCrlUrl(root)
      if (crlUrl === null) {
        throw new Error('Could not find CRL distribution point in root certificate')
      }
      const res = await this.httpGet(crlUrl)
      rootCaCrl = derOrHex(Buffer.from(await res.arrayBuffer()), 'root CA CRL')
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

function optionalHeader(res: Response, name: string): string | undefined {
  const v = res.headers.get(name)
  return v === null || v === '' ? undefined : decodeURIComponent(v)
}

function header(res: Response, name: string): string {
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

// A scanner over text already accepted by JSON.parse, so it only has to find value boundaries.
function skipWs(s: string, i: number): number {
  while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r')) i++
  return i
}

function skipString(s: string, i: number): number {
  for (i++; i < s.length; i++) {
    if (s[i] === '\\') i++
    else if (s[i] === '"') return i + 1
  }
  return s.length
}

function skipValue(s: string, i: number): number {
  const c = s[i]
  if (c === '"') return skipString(s, i)
  if (c === '{' || c === '[') {
    let depth = 0
    while (i < s.length) {
      const d = s[i]
      if (d === '"') {
        i = skipString(s, i)
        continue
      }
      if (d === '{' || d === '[') depth++
      else if (d === '}' || d === ']') {
        depth--
        if (depth === 0) return i + 1
      }
      i++
    }
    return s.length
  }
  while (i < s.length && !',}] \t\n\r'.includes(s[i] ?? '')) i++
  return i
}

function rawJsonMember(s: string, member: string): string | undefined {
  let i = skipWs(s, 0)
  if (s[i] !== '{') return undefined
  i = skipWs(s, i + 1)
  while (i < s.length && s[i] !== '}') {
    const keyEnd = skipString(s, i)
    const key = JSON.parse(s.slice(i, keyEnd)) as string
    i = skipWs(s, skipWs(s, keyEnd) + 1)
    const end = skipValue(s, i)
    if (key === member) return s.slice(i, end)
    i = skipWs(s, end)
    if (s[i] === ',') i = skipWs(s, i + 1)
  }
  return undefined
}
