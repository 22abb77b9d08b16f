// Certificate issuance reproducing rcgen 0.13.2's encoding: guests and verifiers
// compare serials, SKIs and DNs of re-issued certificates, and rcgen must be able to re-parse our
// CA certificates, so the TBSCertificate layout has to be the one rcgen writes.
import { createHash } from 'node:crypto'
import { isIPv4, isIPv6 } from 'node:net'
import { KmsError } from '../errors.js'
import { P256Key } from '../crypto/p256.js'
import {
  TAG,
  parseDer,
  derBitString,
  derBoolean,
  derExplicit,
  derIa5String,
  derImplicitPrimitive,
  derOctetString,
  derOid,
  derSequence,
  derSet,
  derSmallInteger,
  derTime,
  derUnsignedInteger,
  derUtf8String,
} from '../asn1/der.js'
import { OID, RATLS_OID } from '../asn1/oids.js'
import { pemEncode } from '../asn1/pem.js'

export interface SubjectName {
  organization?: string
  commonName: string
}

export interface CertificateParams {
  subject: SubjectName
  /** IP literal → iPAddress, otherwise dNSName (must be ASCII) */
  subjectAltNames?: readonly string[]
  /** CA: KeyUsage DS|keyCertSign|cRLSign, SKI and BasicConstraints; leaf: KeyUsage DS */
  ca?: { pathLen: number }
  extendedKeyUsage?: { serverAuth: boolean; clientAuth: boolean }
  /** RA-TLS custom extensions, double-wrapped, written in this order */
  appId?: Uint8Array
  appInfo?: Uint8Array
  usage?: string
  attestation?: Uint8Array
  /** default 1975-01-01T00:00:00Z (rcgen's default) */
  notBefore?: Date
  /** default now + 3650 days (dstack's default), truncated to whole seconds */
  notAfter?: Date
}

/** The subject's public key; a P256Key, or a P256PublicKey for keys we do not hold (CSRs). */
export interface SubjectPublicKey {
  readonly publicPoint: Buffer
  spkiDer(): Buffer
}

export interface Issuer {
  key: P256Key
  /** the issuing certificate's subject Name DER, copied verbatim as our issuer */
  subjectDer: Buffer
}

export interface IssuedCertificate {
  der: Buffer
  pem: string
  subjectDer: Buffer
}

export const DEFAULT_NOT_BEFORE = new Date(Date.UTC(1975, 0, 1, 0, 0, 0))
const DEFAULT_VALIDITY_MS = 3650 * 86_400_000

const ECDSA_WITH_SHA256 = derSequence(derOid(OID.ecdsaWithSha256))
const KEY_USAGE_LEAF = Buffer.from('0303078000', 'hex')
const KEY_USAGE_CA = Buffer.from('0303078600', 'hex')

function truncateToSeconds(date: Date): Date {
  const t = date.getTime()
  if (Number.isNaN(t)) throw new KmsError('KMS_ERR_CERT', 'invalid certificate validity date')
  return new Date(Math.floor(t / 1000) * 1000)
}

/** rcgen's serial: SHA-256 of the raw public key bits (04‖X‖Y), first 20 bytes, top bit clear. */
export function certificateSerial(publicPoint: Uint8Array): Buffer {
  const serial = createHash('sha256').update(publicPoint).digest().subarray(0, 20)
  serial[0] = (serial[0] ?? 0) & 0x7f
  return serial
}

/** rcgen's KeyIdMethod::Sha256: first 20 bytes of SHA-256 over the full SPKI DER. */
export function subjectKeyIdentifier(spkiDer: Uint8Array): Buffer {
  return createHash('sha256').update(spkiDer).digest().subarray(0, 20)
}

/** Name: one single-attribute RDN per attribute, UTF8String, O before CN. */
export function encodeSubjectName(subject: SubjectName): Buffer {
  const rdn = (oid: string, value: string): Buffer =>
    derSet(derSequence(derOid(oid), derUtf8String(value)))
  const rdns: Buffer[] = []
  if (subject.organization !== undefined) rdns.push(rdn(OID.organizationName, subject.organization))
  rdns.push(rdn(OID.commonName, subject.commonName))
  return derSequence(...rdns)
}

/** The 4 or 16 address bytes when `name` is an IP literal as Rust's `IpAddr::from_str` reads it
 * (no zone ids, no IPv4 shorthand), otherwise undefined. */
export function parseIpLiteral(name: string): Buffer | undefined {
  if (isIPv4(name)) return Buffer.from(name.split('.').map((p) => Number(p)))
  if (!isIPv6(name) || name.includes('%')) return undefined
  let head = name
  let v4Tail: number[] = []
  const lastColon = name.lastIndexOf(':')
  const tail = name.slice(lastColon + 1)
  if (tail.includes('.')) {
    v4Tail = tail.split('.').map((p) => Number(p))
    head = name.slice(0, lastColon + 1)
    if (!head.endsWith('::')) head = head.slice(0, -1)
  }
  const groupsNeeded = v4Tail.length > 0 ? 6 : 8
  const halves = head.split('::')
  const parse = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((g) => parseInt(g, 16))
  let groups: number[]
  if (halves.length === 2) {
    const left = parse(halves[0] ?? '')
    const right = parse(halves[1] ?? '')
    groups = [
      ...left,
      ...new Array<number>(groupsNeeded - left.length - right.length).fill(0),
      ...right,
    ]
  } else {
    groups = parse(head)
  }
  if (groups.length !== groupsNeeded) return undefined
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2))
  v4Tail.forEach((b, i) => (out[12 + i] = b))
  return out
}

function generalName(name: string): Buffer {
  const ip = parseIpLiteral(name)
  if (ip !== undefined) return derImplicitPrimitive(7, ip)
  // dNSName [2] IMPLICIT IA5String
  const ia5 = derIa5String(name)
  return Buffer.concat([Buffer.from([0x82]), ia5.subarray(1)])
}

/** An X.509 `Extension` (the critical flag written only when true, as DER requires). */
export function encodeExtension(oid: string, critical: boolean, valueDer: Uint8Array): Buffer {
  return critical
    ? derSequence(derOid(oid), derBoolean(true), derOctetString(valueDer))
    : derSequence(derOid(oid), derOctetString(valueDer))
}

/** A dstack custom extension: the raw bytes are DER-encoded as an OCTET STRING first, and that
 * DER becomes the extnValue, as upstream `ra-tls/src/cert.rs`. */
export function raTlsExtension(oid: string, raw: Uint8Array): Buffer {
  return encodeExtension(oid, false, derOctetString(raw))
}

function encodeExtensions(subject: SubjectPublicKey, params: CertificateParams): Buffer[] {
  const exts: Buffer[] = []
  const sans = params.subjectAltNames ?? []
  if (sans.length > 0) {
    exts.push(encodeExtension(OID.subjectAltName, false, derSequence(...sans.map(generalName))))
  }
  exts.push(
    encodeExtension(OID.keyUsage, true, params.ca !== undefined ? KEY_USAGE_CA : KEY_USAGE_LEAF),
  )
  const eku = params.extendedKeyUsage
  const ekuOids: Buffer[] = []
  if (eku?.serverAuth === true) ekuOids.push(derOid(OID.serverAuth))
  if (eku?.clientAuth === true) ekuOids.push(derOid(OID.clientAuth))
  if (ekuOids.length > 0) {
    exts.push(encodeExtension(OID.extKeyUsage, false, derSequence(...ekuOids)))
  }
  if (params.ca !== undefined) {
    const { pathLen } = params.ca
    if (!Number.isInteger(pathLen) || pathLen < 0 || pathLen > 255) {
      throw new KmsError('KMS_ERR_CERT', `pathLen must be 0..255, got ${pathLen}`)
    }
    const ski = subjectKeyIdentifier(subject.spkiDer())
    exts.push(encodeExtension(OID.subjectKeyIdentifier, false, derOctetString(ski)))
    exts.push(
      encodeExtension(
        OID.basicConstraints,
        true,
        derSequence(derBoolean(true), derSmallInteger(pathLen)),
      ),
    )
  }
  if (params.appId !== undefined) exts.push(raTlsExtension(RATLS_OID.appId, params.appId))
  if (params.appInfo !== undefined) exts.push(raTlsExtension(RATLS_OID.appInfo, params.appInfo))
  if (params.usage !== undefined) {
    exts.push(raTlsExtension(RATLS_OID.certUsage, Buffer.from(params.usage, 'utf8')))
  }
  if (params.attestation !== undefined) {
    exts.push(raTlsExtension(RATLS_OID.attestation, params.attestation))
  }
  return exts
}

/** rcgen writes `[3]` only when one of these is present (KeyUsage alone does not trigger it). */
function hasExtensions(params: CertificateParams): boolean {
  return (
    (params.subjectAltNames?.length ?? 0) > 0 ||
    params.extendedKeyUsage?.serverAuth === true ||
    params.extendedKeyUsage?.clientAuth === true ||
    params.ca !== undefined ||
    params.appId !== undefined ||
    params.appInfo !== undefined ||
    params.usage !== undefined ||
    params.attestation !== undefined
  )
}

/** The TBSCertificate DER; deterministic (the signature is the only random part). */
export function buildTbsCertificate(
  subjectKey: SubjectPublicKey,
  params: CertificateParams,
  issuerSubjectDer: Uint8Array,
  now: Date = new Date(),
): Buffer {
  const notBefore = truncateToSeconds(params.notBefore ?? DEFAULT_NOT_BEFORE)
  const notAfter = truncateToSeconds(
    params.notAfter ?? new Date(now.getTime() + DEFAULT_VALIDITY_MS),
  )
  const fields: Buffer[] = [
    derExplicit(0, derSmallInteger(2)),
    derUnsignedInteger(certificateSerial(subjectKey.publicPoint)),
    ECDSA_WITH_SHA256,
    Buffer.from(issuerSubjectDer),
    derSequence(derTime(notBefore), derTime(notAfter)),
    encodeSubjectName(params.subject),
    subjectKey.spkiDer(),
  ]
  if (hasExtensions(params)) {
    fields.push(derExplicit(3, derSequence(...encodeExtensions(subjectKey, params))))
  }
  return derSequence(...fields)
}

/** Issues a certificate for `subjectKey`, signed by `issuer` or self-signed when omitted. */
export function issueCertificate(
  subjectKey: P256Key | SubjectPublicKey,
  params: CertificateParams,
  issuer?: Issuer,
): IssuedCertificate {
  const subjectDer = encodeSubjectName(params.subject)
  let signer: Issuer
  if (issuer !== undefined) {
    if (issuer.subjectDer[0] !== TAG.SEQUENCE) {
      throw new KmsError('KMS_ERR_CERT', 'issuer subject must be a DER Name (SEQUENCE)')
    }
    parseDer(issuer.subjectDer)
    signer = issuer
  } else if (subjectKey instanceof P256Key) {
    signer = { key: subjectKey, subjectDer }
  } else {
    throw new KmsError('KMS_ERR_CERT', 'a self-signed certificate needs the subject private key')
  }
  const tbs = buildTbsCertificate(subjectKey, params, signer.subjectDer)
  const signature = signer.key.sign(tbs)
  const der = derSequence(tbs, ECDSA_WITH_SHA256, derBitString(signature))
  return { der, pem: pemEncode('CERTIFICATE', der), subjectDer }
}
