// Quote collateral: the PCK CRLs, TCB info and QE identity a DCAP verification needs, as
// @phala/dcap-qvl's `verify()` takes them, and the sources the verifier asks for them. Parsing
// and validity arithmetic live here; where collateral comes from is pccs-source.ts (fetched and
// cached) or StaticCollateralSource (a fixed document). Upstream fetches it on every
// verification through dcap-qvl's `get_collateral`.
import { createHash } from 'node:crypto'
import { KmsError, errorMessage } from '../errors.js'
import { parseCrl } from '../x509/crl-parse.js'

export type Collateral = import('@phala/dcap-qvl').Collateral

export type CollateralTee = 'sgx' | 'tdx'

export interface CollateralSource {
  /** `fmspc`: 12 hex digits from the PCK certificate; `ca`: `processor` or `platform`;
   * `rootCaDer`: the root the caller trusts (a source that checks collateral before keeping it
   * checks it against this one) */
  get(quote: Buffer, fmspc: string, ca: string, rootCaDer?: Buffer): Promise<Collateral>
}

/** The collateral document's fields, in the order dcap-qvl lists them. */
export const COLLATERAL_KEYS = [
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
  const out: Record<string, unknown> = {}
  for (const key of COLLATERAL_KEYS) {
    const v = obj[key]
    const ok = STRING_KEYS.has(key)
      ? typeof v === 'string'
      : typeof v === 'string' ||
        (Array.isArray(v) && v.every((b) => Number.isInteger(b) && b >= 0 && b <= 255))
    if (!ok) {
      throw new KmsError('KMS_ERR_COLLATERAL', `invalid collateral JSON: bad or missing ${key}`)
    }
    out[key] = v
  }
  // other members are dropped: the library would use a `pck_certificate_chain` instead of the
  // quote's own chain
  return out as unknown as Collateral
}

/** SHA-256 (hex) over every member, each tagged with its form and length: what memos of work
 * that depends only on the collateral are keyed by. */
export function collateralDigest(c: Collateral): string {
  const h = createHash('sha256')
  for (const key of COLLATERAL_KEYS) {
    const f = c[key]
    h.update(typeof f === 'string' ? `s${f.length}:` : `b${f.length}:`)
    h.update(typeof f === 'string' ? f : Buffer.from(f))
  }
  return h.digest('hex')
}

/** The bytes of a binary collateral member (CRLs, signatures), which dcap-qvl's type allows as
 * hex text or as a byte array. */
export function collateralBytes(v: number[] | string): Buffer {
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

/** `nextUpdate` of a DER CRL (unix seconds), or undefined when the CRL does not carry one;
 * throws when it does not parse. */
export function crlNextUpdate(der: Buffer): number | undefined {
  const next = parseCrl(der).nextUpdate
  return next === undefined ? undefined : Math.floor(next.getTime() / 1000)
}

/** The end of the collateral's validity: the earliest `nextUpdate` of TCB info, QE identity
 * and the two CRLs, in unix seconds. A CRL that does not parse or has no `nextUpdate` is an
 * error (collateral-trust refuses such CRLs anyway). */
export function collateralNextUpdate(c: Collateral): number {
  const times = [
    jsonDateSeconds(c.tcb_info, 'tcb_info'),
    jsonDateSeconds(c.qe_identity, 'qe_identity'),
  ]
  for (const [crl, what] of [
    [c.pck_crl, 'PCK CRL'],
    [c.root_ca_crl, 'root CA CRL'],
  ] as const) {
    let t: number | undefined
    try {
      t = crlNextUpdate(collateralBytes(crl))
    } catch (err) {
      throw new KmsError('KMS_ERR_COLLATERAL', `${what} does not parse: ${errorMessage(err)}`)
    }
    if (t === undefined) throw new KmsError('KMS_ERR_COLLATERAL', `${what} has no nextUpdate`)
    times.push(t)
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
