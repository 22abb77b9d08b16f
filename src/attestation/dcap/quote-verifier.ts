// DCAP quote verification on node:crypto (OpenSSL): the attestation key's signature over the
// quote, the PCK key's signature over the QE report, the QE report's binding of the attestation
// key, the PCK chain to the configured root, the TCB info and QE identity signatures, validity
// windows and CRL lookups, the QE identity policy, TCB level matching and the TD attributes —
// the checks, order, results and messages of @phala/dcap-qvl 0.3.9's `verify`, which the
// differential tests hold it to (docs/design.md#quote-verification-library).
//
// Everything that depends only on the collateral, or only on the PCK chain, is worked out once
// and kept (bounded, by content hash), as an ordered list of checks whose time-dependent members
// are re-evaluated per call. The QE report's PCK signature and its binding of the attestation key
// are the same for every quote of one QE start, so a success is kept too, keyed by every byte
// both checks read (failures are not kept). A warm verification is then one P-256 verification,
// one SHA-256 of the signed quote, and table look-ups.
import {
  type KeyObject,
  X509Certificate,
  createHash,
  createPublicKey,
  verify as cryptoVerify,
} from 'node:crypto'
import { parseCrl } from '../../x509/crl-parse.js'
import {
  COLLATERAL_KEYS,
  type Collateral,
  collateralBytes,
  collateralDigest,
} from '../collateral.js'
import { type ParsedQuote, TEE_TYPE_SGX, TEE_TYPE_TDX } from '../quote.js'
import { BoundedCache } from '../../util/bounded-cache.js'
import {
  type Check,
  certificateSerial,
  chainChecks,
  collectChecks,
  runChecks,
  serialKey,
  stop,
} from './chain-steps.js'
import { intelExtension, sgxCpuSvn, sgxFmspc, sgxPceSvn } from './pck-extension.js'
import { scanPemCertificates } from '../../asn1/pem.js'
import {
  type QeIdentity,
  type TcbInfo,
  type TcbStatus,
  isAcceptableStatus,
  matchPlatformTcb,
  matchQeTcbLevel,
  mergeTcbStatus,
  parseQeIdentity,
  parseTcbInfo,
} from './tcb-documents.js'

export interface DcapResult {
  status: string
  advisoryIds: string[]
}

/** Collateral sets remembered (a KMS sees one per platform type it serves). */
const COLLATERAL_CACHE_SIZE = 64
/** PCK chains remembered (one per platform, i.e. per physical host). */
const PCK_CACHE_SIZE = 1024
/** Attestation keys remembered (one per QE start on a host). */
const ATTESTATION_KEY_CACHE_SIZE = 1024
/** QE reports that passed their two checks (one per QE start on a host). */
const QE_REPORT_CACHE_SIZE = 1024

const ECDSA_P256 = 2

/** A document member decoded once per collateral. What decoding threw is kept and rethrown
 * where the verification reads the member, so a bad member fails where it always did. */
type Decoded<T> = { value: T } | { error: unknown }

function decodeOnce<T>(decode: () => T): Decoded<T> {
  try {
    return { value: decode() }
  } catch (error) {
    return { error }
  }
}

function decoded<T>(d: Decoded<T>): T {
  if ('error' in d) throw d.error
  return d.value
}

/** The hex members of TCB info and QE identity the per-quote checks compare against. */
interface DocumentBytes {
  fmspc: Decoded<Buffer>
  mrsigner: Decoded<Buffer>
  miscselect: Decoded<number>
  miscselectMask: Decoded<number>
  attributes: Decoded<Buffer>
  attributesMask: Decoded<Buffer>
}

function documentBytes(tcbInfo: TcbInfo, qe: QeIdentity): DocumentBytes {
  const bytes = (v: unknown): Buffer => Buffer.from(v as string, 'hex')
  return {
    fmspc: decodeOnce(() => bytes(tcbInfo.fmspc)),
    mrsigner: decodeOnce(() => bytes(qe.mrsigner)),
    miscselect: decodeOnce(() => bytes(qe.miscselect).readUInt32LE(0)),
    miscselectMask: decodeOnce(() => bytes(qe.miscselectMask).readUInt32LE(0)),
    attributes: decodeOnce(() => bytes(qe.attributes)),
    attributesMask: decodeOnce(() => bytes(qe.attributesMask)),
  }
}

interface CollateralFacts {
  /** the checks up to and including the QE identity signature */
  checks: Check[]
  /** present when `checks` does not end in a failure */
  tcbInfo?: TcbInfo
  qeIdentity?: QeIdentity
  bytes?: DocumentBytes
  /** every serial listed by either CRL (a certificate listed anywhere counts as revoked) */
  revoked: Set<string>
}

interface PckFacts {
  /** SHA-256 of the chain's PEM text, hex (the cache key) */
  id: string
  /** chain length, signatures and validity windows */
  checks: Check[]
  serials: string[]
  leafKey?: KeyObject
  /** CPUSVN, PCESVN and FMSPC, or what reading them threw */
  tcb: { cpuSvn: Buffer; pceSvn: number; fmspc: Buffer } | { error: Error }
}

function p1363Verify(key: KeyObject, data: Uint8Array, sig: Buffer): boolean {
  try {
    return cryptoVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig)
  } catch {
    return false
  }
}

/** Intel's raw r‖s signatures must be 64 bytes before anything is verified. */
function rawSignature(v: number[] | string): Buffer {
  const sig = collateralBytes(v)
  if (sig.length !== 64) stop(`Key length is invalid: expected 64, got ${sig.length}`)
  return sig
}

function decodeFailure(what: string, cause: unknown): Error {
  return new Error(`Failed to decode ${what}`, { cause })
}

const dateSecs = (v: unknown): number => new Date(v as string).getTime() / 1000

export class DcapQuoteVerifier {
  private readonly anchor: X509Certificate
  private readonly anchorSerial: string
  private readonly collaterals = new BoundedCache<CollateralFacts>(COLLATERAL_CACHE_SIZE)
  private readonly byObject = new WeakMap<
    Collateral,
    { fields: unknown[]; facts: CollateralFacts }
  >()
  private readonly pcks = new BoundedCache<PckFacts>(PCK_CACHE_SIZE)
  private readonly attestationKeys = new BoundedCache<KeyObject>(ATTESTATION_KEY_CACHE_SIZE)
  private readonly qeReportsPassed = new BoundedCache<true>(QE_REPORT_CACHE_SIZE)

  constructor(rootCaDer: Uint8Array) {
    this.anchor = new X509Certificate(Buffer.from(rootCaDer))
    this.anchorSerial = serialKey(certificateSerial(this.anchor))
  }

  /** Verifies a parsed quote (`raw` is its encoding) against `collateral` at `now` (unix
   * seconds). Throws plain `Error`s with dcap-qvl's messages; the caller adds context. */
  verify(raw: Buffer, quote: ParsedQuote, collateral: Collateral, now: number): DcapResult {
    const tee = quote.teeType
    if (tee !== TEE_TYPE_SGX && tee !== TEE_TYPE_TDX) throw new Error('Unsupported DCAP TEE type')
    if (tee === TEE_TYPE_SGX && quote.version !== 3) {
      throw new Error('SGX TEE quote must have version 3')
    }
    if (tee === TEE_TYPE_TDX && quote.version !== 4 && quote.version !== 5) {
      throw new Error('TDX TEE quote must have version 4 or 5')
    }
    if (quote.attestationKeyType !== ECDSA_P256) {
      throw new Error('Unsupported DCAP attestation key type')
    }

    const facts = this.collateralFacts(collateral)
    runChecks(facts.checks, now)
    const tcbInfo = facts.tcbInfo as TcbInfo
    const qeIdentity = facts.qeIdentity as QeIdentity
    const docBytes = facts.bytes as DocumentBytes
    const expectedQeId = tee === TEE_TYPE_TDX ? 'TD_QE' : 'QE'
    const qeVersions: unknown[] = tee === TEE_TYPE_TDX ? [2, 3] : [2]
    if (qeIdentity.id !== expectedQeId || !qeVersions.includes(qeIdentity.version)) {
      throw new Error('Unsupported QE Identity id/version for the quote TEE type')
    }

    const pck = this.pckFacts(quote.pckChainPem)
    runChecks(pck.checks, now)
    for (const s of pck.serials) {
      if (facts.revoked.has(s)) throw new Error('Certificate is revoked')
    }

    const qeReport = quote.qeReport
    this.checkQeReport(pck, quote)
    const qeStatus = qeIdentityStatus(qeReport, qeIdentity, docBytes)

    const key = this.attestationKey(quote.attestationKey)
    if (!p1363Verify(key, raw.subarray(0, quote.signedLength), quote.ecdsaSignature)) {
      throw new Error('ISV enclave report signature is invalid')
    }

    if ('error' in pck.tcb) throw pck.tcb.error
    const { cpuSvn, pceSvn, fmspc } = pck.tcb
    if (!fmspc.equals(decoded(docBytes.fmspc))) {
      throw new Error('Fmspc mismatch')
    }
    if (tee === TEE_TYPE_TDX) {
      if ((tcbInfo.version as number) < 3 || tcbInfo.id !== 'TDX') {
        throw new Error('TDX quote with non-TDX TCB info in the collateral')
      }
    } else if ((tcbInfo.version as number) < 2 || tcbInfo.id !== 'SGX') {
      throw new Error('SGX quote with non-SGX TCB info in the collateral')
    }
    const tdx =
      tee === TEE_TYPE_TDX
        ? { teeTcbSvn: quote.report.type === 'sgx' ? null : quote.report.td.teeTcbSvn }
        : null
    const platform = matchPlatformTcb(tcbInfo, cpuSvn, pceSvn, tdx)
    const merged = mergeTcbStatus(platform, qeStatus)
    if (!isAcceptableStatus(merged.status)) {
      throw new Error(`TCB status is invalid: ${String(merged.status)}`)
    }
    validateReportAttributes(quote)
    return { status: merged.status, advisoryIds: merged.advisoryIds as string[] }
  }

  /** The PCK key's signature over the QE report, then the report's binding of the attestation
   * key (SHA-256 of the key and the QE auth data in its report data). Both are pure functions of
   * the chain (by its hash), report, signature, key and auth data: a success is remembered by
   * exactly those bytes. Only the auth data varies in length, and it comes last. */
  private checkQeReport(pck: PckFacts, quote: ParsedQuote): void {
    const { qeReport, qeReportSignature, attestationKey, qeAuthData } = quote
    const id =
      pck.id +
      Buffer.concat([qeReport, qeReportSignature, attestationKey, qeAuthData]).toString('latin1')
    if (this.qeReportsPassed.get(id) === true) return
    if (!p1363Verify(pck.leafKey as KeyObject, qeReport, qeReportSignature)) {
      throw new Error('Signature is invalid for qe_report in quote')
    }
    const bound = Buffer.alloc(96)
    attestationKey.copy(bound, 0)
    qeAuthData.copy(bound, 64)
    const qeHash = createHash('sha256').update(bound).digest()
    if (!qeHash.equals(qeReport.subarray(320, 352))) throw new Error('QE report hash mismatch')
    this.qeReportsPassed.set(id, true)
  }

  private collateralFacts(c: Collateral): CollateralFacts {
    const fields = COLLATERAL_KEYS.map((k) => c[k])
    const known = this.byObject.get(c)
    if (known !== undefined && known.fields.every((v, i) => v === fields[i])) return known.facts
    const id = collateralDigest(c)
    let facts = this.collaterals.get(id)
    if (facts === undefined) {
      facts = this.analyseCollateral(c)
      this.collaterals.set(id, facts)
    }
    this.byObject.set(c, { fields, facts })
    return facts
  }

  private analyseCollateral(c: Collateral): CollateralFacts {
    const revoked = new Set<string>()
    for (const raw of [c.root_ca_crl, c.pck_crl]) {
      try {
        for (const r of parseCrl(collateralBytes(raw)).revoked) revoked.add(serialKey(r.serial))
      } catch {
        // dcap-qvl looks serials up only in the CRLs it can read; the trust checks that run
        // before this verifier refuse collateral whose CRLs do not parse
      }
    }
    const out: CollateralFacts = { checks: [], revoked }
    out.checks = collectChecks((checks) => {
      let tcbInfo: TcbInfo
      try {
        tcbInfo = parseTcbInfo(c.tcb_info)
      } catch (err) {
        throw decodeFailure('TcbInfo', err)
      }
      const tcbIssue = dateSecs(tcbInfo.issueDate)
      checks.push({
        kind: 'not-before',
        secs: tcbIssue,
        message: 'TCBInfo issue date is in the future',
      })
      checks.push({
        kind: 'not-after',
        secs: dateSecs(tcbInfo.nextUpdate),
        message: 'TCBInfo expired',
      })
      if (revoked.has(this.anchorSerial)) stop('Certificate is revoked')
      this.documentChecks(checks, c.tcb_info_issuer_chain, 'TCB Info', revoked, () => {
        const sig = rawSignature(c.tcb_info_signature)
        return { text: c.tcb_info, sig, what: 'tcb_info' }
      })
      let qeIdentity: QeIdentity
      try {
        qeIdentity = parseQeIdentity(c.qe_identity)
      } catch (err) {
        throw decodeFailure('QeIdentity', err)
      }
      checks.push({
        kind: 'not-before',
        secs: dateSecs(qeIdentity.issueDate),
        message: 'QE Identity issue date is in the future',
      })
      checks.push({
        kind: 'not-after',
        secs: dateSecs(qeIdentity.nextUpdate),
        message: 'QE Identity expired',
      })
      this.documentChecks(checks, c.qe_identity_issuer_chain, 'QE Identity', revoked, () => {
        const sig = rawSignature(c.qe_identity_signature)
        return { text: c.qe_identity, sig, what: 'qe_identity' }
      })
      out.tcbInfo = tcbInfo
      out.qeIdentity = qeIdentity
      out.bytes = documentBytes(tcbInfo, qeIdentity)
    })
    return out
  }

  /** The issuer chain of a signed document, then the document's signature by its leaf. */
  private documentChecks(
    checks: Check[],
    chainPem: string,
    name: string,
    revoked: Set<string>,
    doc: () => { text: string; sig: Buffer; what: string },
  ): void {
    const certs = scanPemCertificates(chainPem)
    const [leafDer, ...rest] = certs
    if (leafDer === undefined || rest.length === 0) {
      stop(`Certificate chain is too short for ${name}`)
    }
    const chain = chainChecks(checks, leafDer, rest, this.anchor)
    if (chain.serials.some((s) => revoked.has(s))) stop('Certificate is revoked')
    const { text, sig, what } = doc()
    if (!p1363Verify(chain.leaf.publicKey, Buffer.from(text, 'utf8'), sig)) {
      stop(`Signature is invalid for ${what}`)
    }
  }

  private pckFacts(chainPem: string): PckFacts {
    const id = createHash('sha256').update(chainPem).digest('hex')
    let facts = this.pcks.get(id)
    if (facts === undefined) {
      facts = this.analysePck(id, chainPem)
      this.pcks.set(id, facts)
    }
    return facts
  }

  private analysePck(id: string, chainPem: string): PckFacts {
    const out: PckFacts = {
      id,
      checks: [],
      serials: [],
      tcb: { error: new Error('unreachable') },
    }
    out.checks = collectChecks((checks) => {
      const certs = scanPemCertificates(chainPem)
      const [leafDer, ...rest] = certs
      if (leafDer === undefined) stop('Failed to extract PCK certificates from quote')
      if (rest.length === 0) stop('Certificate chain is too short in quote')
      const chain = chainChecks(checks, leafDer, rest, this.anchor)
      out.serials = chain.serials
      out.leafKey = chain.leaf.publicKey
      try {
        const ext = intelExtension(leafDer)
        const cpuSvn = sgxCpuSvn(ext)
        const pceSvn = sgxPceSvn(ext)
        out.tcb = { cpuSvn, pceSvn, fmspc: sgxFmspc(ext) }
      } catch (err) {
        out.tcb = { error: err instanceof Error ? err : new Error(String(err)) }
      }
    })
    return out
  }

  private attestationKey(raw: Buffer): KeyObject {
    const id = raw.toString('hex')
    let key = this.attestationKeys.get(id)
    if (key === undefined) {
      key = createPublicKey({
        key: {
          kty: 'EC',
          crv: 'P-256',
          x: raw.subarray(0, 32).toString('base64url'),
          y: raw.subarray(32, 64).toString('base64url'),
        },
        format: 'jwk',
      })
      this.attestationKeys.set(id, key)
    }
    return key
  }
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0').toUpperCase()
const hex8 = (n: number): string => n.toString(16).padStart(8, '0').toUpperCase()

/** The QE report against the QE identity (signer, product, debug bit, masked MISCSELECT and
 * ATTRIBUTES), then the QE's TCB level. */
function qeIdentityStatus(qeReport: Buffer, id: QeIdentity, bytes: DocumentBytes): TcbStatus {
  const mrSigner = qeReport.subarray(128, 160)
  if (!mrSigner.equals(decoded(bytes.mrsigner))) {
    throw new Error(
      `QE MRSIGNER mismatch: expected ${String(id.mrsigner)}, got ${mrSigner.toString('hex').toUpperCase()}`,
    )
  }
  const isvProdId = qeReport.readUInt16LE(256)
  if (isvProdId !== id.isvprodid) {
    throw new Error(`QE ISVPRODID mismatch: expected ${String(id.isvprodid)}, got ${isvProdId}`)
  }
  const attributes = qeReport.subarray(48, 64)
  if (((attributes[0] ?? 0) & 0x02) !== 0) throw new Error('Debug mode is enabled')
  const expectedMisc = decoded(bytes.miscselect)
  const miscMask = decoded(bytes.miscselectMask)
  const misc = qeReport.readUInt32LE(16) & miscMask
  const expected = expectedMisc & miscMask
  if (misc !== expected) {
    throw new Error(
      `QE MISCSELECT mismatch: expected ${hex8(expected)} (masked), got ${hex8(misc)} (masked)`,
    )
  }
  const expectedAttributes = decoded(bytes.attributes)
  const attributesMask = decoded(bytes.attributesMask)
  for (let i = 0; i < 16; i++) {
    const m = attributesMask[i] as number
    const want = (expectedAttributes[i] as number) & m
    const got = (attributes[i] as number) & m
    if (want !== got) {
      throw new Error(
        `QE ATTRIBUTES mismatch at byte ${i}: expected ${hex2(want)} (masked), got ${hex2(got)} (masked)`,
      )
    }
  }
  return matchQeTcbLevel(qeReport.readUInt16LE(258), id.levels)
}

/** dcap-qvl's attribute policy: no debug enclave or TD, no reserved TD attribute bits, and
 * SEPT_VE_DISABLE set; a TD 1.5 report must not name a service TD. */
function validateReportAttributes(q: ParsedQuote): void {
  const r = q.report
  if (r.type === 'sgx') {
    if (((r.attributes[0] ?? 0) & 0x02) !== 0) throw new Error('Debug mode is enabled')
    return
  }
  if (r.type === 'td15' && !r.mrServiceTd.every((b) => b === 0)) {
    throw new Error('Invalid mr service td')
  }
  const a = r.td.tdAttributes
  const at = (i: number): number => a[i] ?? 0
  if (at(0) !== 0) throw new Error('Debug mode is enabled')
  const reservedSec = ((at(3) & 0x0f) << 16) | (at(2) << 8) | at(1)
  const reservedBit29 = (at(3) & 0x20) !== 0
  const reservedOther = ((at(7) & 0x7f) << 24) | (at(6) << 16) | (at(5) << 8) | at(4)
  if (reservedSec !== 0 || reservedBit29 || reservedOther !== 0) {
    throw new Error('Reserved bits in TD attributes are set')
  }
  if ((at(3) & 0x10) === 0) throw new Error('SEPT_VE_DISABLE is not enabled')
}
