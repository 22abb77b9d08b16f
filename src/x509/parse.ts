// Strict X.509 certificate parsing and RA-TLS extension extraction (upstream
// `ra-tls/src/attestation.rs`). node:crypto's X509Certificate offers no extension access, and
// certificates reach us from untrusted guests, so every malformed input must fail with a clear
// KMS_ERR_CERT instead of being re-interpreted.
import { KmsError, errorMessage } from '../errors.js'
import {
  type DerNode,
  TAG,
  decodeUtf8Strict,
  derChildren,
  expectTag,
  parseDer,
  readBoolean,
  readDirectoryString,
  readOctetAlignedBitString,
  readOctetString,
  readOid,
  readSmallInteger,
  readTime,
  readUnsignedInteger,
  sequenceOf,
} from '../asn1/der.js'
import { OID, RATLS_OID } from '../asn1/oids.js'

export interface CertificateExtension {
  critical: boolean
  /** the extnValue OCTET STRING's content */
  value: Buffer
}

export interface ParsedCertificate {
  der: Buffer
  tbsDer: Buffer
  /** INTEGER content bytes (minimal two's complement, positive) */
  serial: Buffer
  issuerDer: Buffer
  subjectDer: Buffer
  notBefore: Date
  notAfter: Date
  spkiDer: Buffer
  /** the subjectPublicKey BIT STRING content: for EC keys the point (65 bytes 04‖X‖Y for P-256) */
  publicPoint: Buffer
  /** dotted OIDs of the SPKI algorithm and, for EC keys, its named curve */
  publicKeyAlgorithm: string
  publicKeyCurve: string | undefined
  /** dotted OID of the outer signatureAlgorithm (checked equal to the TBS one) */
  signatureAlgorithm: string
  /** the signatureValue BIT STRING content (DER Ecdsa-Sig-Value for ECDSA) */
  signatureValue: Buffer
  subjectCommonName: string | undefined
  /** dNSName entries as text and iPAddress entries in their usual notation; others are skipped */
  subjectAltNames: string[]
  extensions: ReadonlyMap<string, CertificateExtension>
}

function certError(message: string, cause?: unknown): KmsError {
  return new KmsError('KMS_ERR_CERT', `invalid certificate: ${message}`, { cause })
}

function parseAlgorithm(node: DerNode | undefined, what: string): { oid: string; raw: Buffer } {
  const seq = expectTag(node, TAG.SEQUENCE, what)
  const parts = sequenceOf(seq, what, 1, 2)
  return { oid: readOid(parts[0], `${what} algorithm`), raw: seq.raw }
}

/** Validates the Name structure and returns the first CN (the one x509-parser would report). */
function parseName(node: DerNode | undefined, what: string): { raw: Buffer; cn?: string } {
  const seq = expectTag(node, TAG.SEQUENCE, what)
  const rdns = derChildren(seq)
  let cn: string | undefined
  for (const rdn of rdns) {
    const attrs = derChildren(expectTag(rdn, TAG.SET, `${what} RDN`))
    if (attrs.length === 0) throw new KmsError('KMS_ERR_CERT', `${what}: empty RDN`)
    for (const attr of attrs) {
      const [type, value] = sequenceOf(attr, `${what} attribute`, 2)
      const oid = readOid(type, `${what} attribute type`)
      if (value === undefined) throw new KmsError('KMS_ERR_CERT', `${what}: attribute value`)
      if (oid === OID.commonName && cn === undefined) {
        cn = readDirectoryString(value, `${what} CN`)
      }
    }
  }
  return { raw: seq.raw, cn }
}

const IPV4_MAPPED_PREFIX = Buffer.from('00000000000000000000ffff', 'hex')

function formatIp(bytes: Buffer): string {
  if (bytes.length === 4) return Array.from(bytes).join('.')
  if (bytes.length !== 16) throw new KmsError('KMS_ERR_CERT', 'iPAddress must be 4 or 16 bytes')
  if (bytes.subarray(0, 12).equals(IPV4_MAPPED_PREFIX)) {
    return '::ffff:' + Array.from(bytes.subarray(12)).join('.')
  }
  const groups: number[] = []
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i))
  // RFC 5952: compress the longest run (≥ 2) of zero groups, the first one on ties
  let bestStart = -1
  let bestLen = 0
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (bestStart < 0) return hex.join(':')
  return hex.slice(0, bestStart).join(':') + '::' + hex.slice(bestStart + bestLen).join(':')
}

function parseSubjectAltNames(value: Buffer): string[] {
  const names: string[] = []
  for (const gn of sequenceOf(parseDer(value), 'SubjectAltName', 1, Number.MAX_SAFE_INTEGER)) {
    if (gn.tag === 0x82) {
      if (!gn.content.every((b) => b < 0x80)) {
        throw new KmsError('KMS_ERR_CERT', 'SubjectAltName: non-ASCII dNSName')
      }
      names.push(gn.content.toString('latin1'))
    } else if (gn.tag === 0x87) {
      names.push(formatIp(gn.content))
    }
  }
  return names
}

function parseExtensions(node: DerNode): Map<string, CertificateExtension> {
  const inner = derChildren(node)
  if (inner.length !== 1) throw new KmsError('KMS_ERR_CERT', 'extensions: expected one SEQUENCE')
  const list = sequenceOf(inner[0], 'extensions', 1, Number.MAX_SAFE_INTEGER)
  const map = new Map<string, CertificateExtension>()
  for (const ext of list) {
    const parts = sequenceOf(ext, 'extension', 2, 3)
    const oid = readOid(parts[0], 'extension id')
    let critical = false
    let valueNode = parts[1]
    if (parts.length === 3) {
      critical = readBoolean(parts[1], `extension ${oid} critical`)
      valueNode = parts[2]
    }
    const value = readOctetString(valueNode, `extension ${oid} value`)
    if (map.has(oid)) throw new KmsError('KMS_ERR_CERT', `duplicate extension ${oid}`)
    map.set(oid, { critical, value })
  }
  return map
}

export function parseCertificate(der: Uint8Array): ParsedCertificate {
  try {
    return parseCertificateInner(Buffer.from(der))
  } catch (err) {
    if (err instanceof KmsError && err.message.startsWith('invalid certificate: ')) throw err
    throw certError(errorMessage(err), err)
  }
}

function parseCertificateInner(buf: Buffer): ParsedCertificate {
  const root = parseDer(buf)
  const [tbsNode, sigAlgNode, sigNode] = sequenceOf(root, 'Certificate', 3)
  const tbsSeq = expectTag(tbsNode, TAG.SEQUENCE, 'TBSCertificate')
  const signatureAlgorithm = parseAlgorithm(sigAlgNode, 'signatureAlgorithm')
  const signatureValue = readOctetAlignedBitString(sigNode, 'signatureValue')

  const tbs = sequenceOf(tbsSeq, 'TBSCertificate', 6, 10)
  let i = 0
  let version = 0
  if (tbs[0]?.tag === 0xa0) {
    const v = derChildren(tbs[0])
    if (v.length !== 1) throw new KmsError('KMS_ERR_CERT', 'version: expected one INTEGER')
    version = readSmallInteger(v[0], 'version')
    // DER forbids encoding the DEFAULT v1 explicitly
    if (version !== 1 && version !== 2) {
      throw new KmsError('KMS_ERR_CERT', `unsupported version ${version}`)
    }
    i++
  }
  const serial = readUnsignedInteger(tbs[i++], 'serialNumber')
  const tbsSigAlg = parseAlgorithm(tbs[i++], 'signature')
  if (!tbsSigAlg.raw.equals(signatureAlgorithm.raw)) {
    throw new KmsError('KMS_ERR_CERT', 'signature algorithm differs from the TBS one')
  }
  const issuer = parseName(tbs[i++], 'issuer')
  const [nbNode, naNode] = sequenceOf(tbs[i++], 'validity', 2)
  const notBefore = readTime(nbNode, 'notBefore')
  const notAfter = readTime(naNode, 'notAfter')
  const subject = parseName(tbs[i++], 'subject')

  const spkiSeq = expectTag(tbs[i++], TAG.SEQUENCE, 'subjectPublicKeyInfo')
  const [spkiAlg, spkiKey] = sequenceOf(spkiSeq, 'subjectPublicKeyInfo', 2)
  const algParts = sequenceOf(spkiAlg, 'subjectPublicKeyInfo algorithm', 1, 2)
  const publicKeyAlgorithm = readOid(algParts[0], 'public key algorithm')
  const publicKeyCurve =
    publicKeyAlgorithm === OID.ecPublicKey ? readOid(algParts[1], 'named curve') : undefined
  const publicPoint = readOctetAlignedBitString(spkiKey, 'subjectPublicKey')

  let extensions = new Map<string, CertificateExtension>()
  let lastTag = 0
  for (const node of tbs.slice(i)) {
    if (node.tag <= lastTag) throw new KmsError('KMS_ERR_CERT', 'TBSCertificate: unexpected order')
    lastTag = node.tag
    if (node.tag === 0x81 || node.tag === 0x82) {
      if (version < 1) throw new KmsError('KMS_ERR_CERT', 'unique identifiers need v2 or later')
    } else if (node.tag === 0xa3) {
      if (version !== 2) throw new KmsError('KMS_ERR_CERT', 'extensions need v3')
      extensions = parseExtensions(node)
    } else {
      throw new KmsError(
        'KMS_ERR_CERT',
        `TBSCertificate: unexpected tag 0x${node.tag.toString(16)}`,
      )
    }
  }

  const san = extensions.get(OID.subjectAltName)
  return {
    der: root.raw,
    tbsDer: tbsSeq.raw,
    serial,
    issuerDer: issuer.raw,
    subjectDer: subject.raw,
    notBefore,
    notAfter,
    spkiDer: spkiSeq.raw,
    publicPoint,
    publicKeyAlgorithm,
    publicKeyCurve,
    signatureAlgorithm: signatureAlgorithm.oid,
    signatureValue,
    subjectCommonName: subject.cn,
    subjectAltNames: san === undefined ? [] : parseSubjectAltNames(san.value),
    extensions,
  }
}

/** A dstack custom extension's raw bytes: the extnValue must hold exactly one DER OCTET STRING,
 * whose content is returned. Undefined when the certificate does not carry `oid`. */
export function readRaTlsExtension(cert: ParsedCertificate, oid: string): Buffer | undefined {
  const ext = cert.extensions.get(oid)
  if (ext === undefined) return undefined
  try {
    return readOctetString(parseDer(ext.value), `extension ${oid}`)
  } catch (err) {
    throw new KmsError('KMS_ERR_CERT', `invalid certificate: ${errorMessage(err)}`, { cause: err })
  }
}

/** The `kms:rpc` / `app:ca` / `app:custom` usage string (raw UTF-8, strictly decoded). */
export function readCertUsage(cert: ParsedCertificate): string | undefined {
  const raw = readRaTlsExtension(cert, RATLS_OID.certUsage)
  if (raw === undefined) return undefined
  try {
    return decodeUtf8Strict(raw, 'certificate usage')
  } catch (err) {
    throw new KmsError('KMS_ERR_CERT', `invalid certificate: ${errorMessage(err)}`, { cause: err })
  }
}
