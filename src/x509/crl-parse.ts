// X.509 CRL reader (RFC 5280 §5), the counterpart of crl.ts. DCAP collateral carries two CRLs
// (Intel's root CA CRL and a PCK CA CRL) that a PCCS, a third party, hands us; their signatures,
// issuers and validity windows are checked by the caller, so this only has to turn the DER into
// fields strictly and refuse anything it cannot interpret (an unreadable CRL must never be
// mistaken for "nothing is revoked").
import { KmsError, errorMessage } from '../errors.js'
import {
  type DerNode,
  TAG,
  derChildren,
  expectTag,
  parseDer,
  readBoolean,
  readOctetAlignedBitString,
  readOctetString,
  readOid,
  readSmallInteger,
  readTime,
  readUnsignedInteger,
  sequenceOf,
} from '../asn1/der.js'

export interface CrlExtension {
  critical: boolean
  value: Buffer
}

export interface ParsedRevokedEntry {
  /** INTEGER content bytes (minimal, positive), comparable with ParsedCertificate.serial */
  serial: Buffer
  revocationDate: Date
}

export interface ParsedCrl {
  der: Buffer
  /** the signed TBSCertList, whole TLV */
  tbsDer: Buffer
  /** 1 (v1, no version field) or 2 */
  version: number
  /** dotted OID of the signature algorithm (outer and inner are checked equal) */
  signatureAlgorithm: string
  /** the issuer Name, whole TLV */
  issuerDer: Buffer
  thisUpdate: Date
  nextUpdate: Date | undefined
  revoked: ParsedRevokedEntry[]
  extensions: ReadonlyMap<string, CrlExtension>
  /** the signatureValue BIT STRING content (DER Ecdsa-Sig-Value for ECDSA) */
  signatureValue: Buffer
}

function crlError(message: string, cause?: unknown): KmsError {
  return new KmsError('KMS_ERR_CERT', `invalid CRL: ${message}`, { cause })
}

function isTime(node: DerNode | undefined): boolean {
  return node?.tag === TAG.UTC_TIME || node?.tag === TAG.GENERALIZED_TIME
}

function parseExtensionList(node: DerNode, what: string): Map<string, CrlExtension> {
  const map = new Map<string, CrlExtension>()
  for (const ext of sequenceOf(node, what, 1, Number.MAX_SAFE_INTEGER)) {
    const parts = sequenceOf(ext, `${what} entry`, 2, 3)
    const oid = readOid(parts[0], `${what} id`)
    let critical = false
    let valueNode = parts[1]
    if (parts.length === 3) {
      critical = readBoolean(parts[1], `${what} ${oid} critical`)
      valueNode = parts[2]
    }
    if (map.has(oid)) throw crlError(`duplicate ${what} ${oid}`)
    map.set(oid, { critical, value: readOctetString(valueNode, `${what} ${oid} value`) })
  }
  return map
}

/** No critical extension is understood: each known one (delta CRL indicator, issuing
 * distribution point, certificate issuer of indirect CRLs) would narrow what the CRL covers, so
 * treating such a CRL as a complete list could let a revoked certificate through. */
function refuseCritical(extensions: ReadonlyMap<string, CrlExtension>, what: string): void {
  for (const [oid, ext] of extensions) {
    if (ext.critical) throw crlError(`unsupported critical ${what} ${oid}`)
  }
}

function parseRevoked(node: DerNode): ParsedRevokedEntry[] {
  // RFC 5280 omits an empty list instead of writing an empty SEQUENCE; accept both
  return sequenceOf(node, 'revokedCertificates', 0, Number.MAX_SAFE_INTEGER).map((entry) => {
    const parts = sequenceOf(entry, 'revoked certificate', 2, 3)
    const serial = readUnsignedInteger(parts[0], 'revoked certificate serial')
    const revocationDate = readTime(parts[1], 'revocationDate')
    if (parts[2] !== undefined) {
      refuseCritical(parseExtensionList(parts[2], 'CRL entry extension'), 'CRL entry extension')
    }
    return { serial: Buffer.from(serial), revocationDate }
  })
}

function parseCrlInner(der: Buffer): ParsedCrl {
  const [tbs, sigAlg, sigValue] = sequenceOf(parseDer(der), 'CertificateList', 3)
  const outerAlg = sequenceOf(sigAlg, 'signatureAlgorithm', 1, 2)
  const fields = derChildren(expectTag(tbs, TAG.SEQUENCE, 'tbsCertList'))
  let i = 0
  let version = 1
  if (fields[i]?.tag === TAG.INTEGER) {
    const v = readSmallInteger(fields[i], 'CRL version')
    if (v !== 1) throw crlError(`unsupported version ${v + 1}`)
    version = 2
    i++
  }
  const innerAlg = expectTag(fields[i++], TAG.SEQUENCE, 'tbsCertList signature')
  if (sigAlg === undefined || !innerAlg.raw.equals(sigAlg.raw)) {
    throw crlError('signature algorithm differs between tbsCertList and CertificateList')
  }
  const issuer = expectTag(fields[i++], TAG.SEQUENCE, 'issuer')
  const thisUpdate = readTime(fields[i++], 'thisUpdate')
  let nextUpdate: Date | undefined
  if (isTime(fields[i])) nextUpdate = readTime(fields[i++], 'nextUpdate')
  let revoked: ParsedRevokedEntry[] = []
  if (fields[i]?.tag === TAG.SEQUENCE) revoked = parseRevoked(fields[i++] as DerNode)
  let extensions = new Map<string, CrlExtension>()
  if (fields[i]?.tag === 0xa0) {
    if (version !== 2) throw crlError('extensions in a v1 CRL')
    const wrapped = derChildren(fields[i++] as DerNode)
    if (wrapped.length !== 1) throw crlError('crlExtensions: expected one SEQUENCE')
    extensions = parseExtensionList(wrapped[0] as DerNode, 'CRL extension')
  }
  if (i !== fields.length) throw crlError('unexpected data after the tbsCertList fields')
  refuseCritical(extensions, 'CRL extension')
  return {
    der,
    tbsDer: (tbs as DerNode).raw,
    version,
    signatureAlgorithm: readOid(outerAlg[0], 'signatureAlgorithm'),
    issuerDer: issuer.raw,
    thisUpdate,
    nextUpdate,
    revoked,
    extensions,
    signatureValue: readOctetAlignedBitString(sigValue, 'CRL signatureValue'),
  }
}

/** Parses a DER CRL; every structural problem is a `KMS_ERR_CERT` "invalid CRL: …". */
export function parseCrl(der: Uint8Array): ParsedCrl {
  const buf = Buffer.from(der)
  if (buf.length === 0) throw crlError('empty')
  try {
    return parseCrlInner(buf)
  } catch (err) {
    if (err instanceof KmsError && err.message.startsWith('invalid CRL: ')) throw err
    throw crlError(errorMessage(err), err)
  }
}

/** Whether `serial` (INTEGER content bytes) is listed. */
export function crlRevokes(crl: ParsedCrl, serial: Uint8Array): boolean {
  const s = Buffer.from(serial)
  return crl.revoked.some((r) => r.serial.equals(s))
}
