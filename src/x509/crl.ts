// X.509 v2 certificate revocation lists (RFC 5280 §5), written with our DER writer. The
// simulator's mock Intel PKI needs the two CRLs a DCAP verifier expects in the collateral (root CA
// CRL and PCK CRL); the layout follows Intel's: v2, ecdsa-with-SHA256, CRL number and authority
// key identifier extensions.
import {
  derExplicit,
  derImplicitPrimitive,
  derOctetString,
  derOid,
  derSequence,
  derSmallInteger,
  derTime,
  derUnsignedInteger,
  derBitString,
} from '../asn1/der.js'
import { OID } from '../asn1/oids.js'

const CRL_NUMBER_OID = '2.5.29.20'

export interface RevokedEntry {
  /** the certificate serial, unsigned big-endian */
  serial: Uint8Array
  revocationDate: Date
}

export interface CrlParams {
  /** the issuing CA's subject Name DER, copied verbatim */
  issuerSubjectDer: Buffer
  thisUpdate: Date
  nextUpdate: Date
  crlNumber: number
  /** the issuing CA's subject key identifier, written as the authority key identifier */
  authorityKeyId?: Uint8Array
  revoked?: readonly RevokedEntry[]
}

const ECDSA_WITH_SHA256 = derSequence(derOid(OID.ecdsaWithSha256))

/** The TBSCertList DER. */
export function buildTbsCertList(p: CrlParams): Buffer {
  const extensions: Buffer[] = [
    derSequence(derOid(CRL_NUMBER_OID), derOctetString(derSmallInteger(p.crlNumber))),
  ]
  if (p.authorityKeyId !== undefined) {
    extensions.push(
      derSequence(
        derOid(OID.authorityKeyIdentifier),
        derOctetString(derSequence(derImplicitPrimitive(0, p.authorityKeyId))),
      ),
    )
  }
  const fields: Buffer[] = [
    derSmallInteger(1),
    ECDSA_WITH_SHA256,
    p.issuerSubjectDer,
    derTime(p.thisUpdate),
    derTime(p.nextUpdate),
  ]
  const revoked = p.revoked ?? []
  // RFC 5280: an empty revokedCertificates list is omitted, not written as an empty SEQUENCE.
  if (revoked.length > 0) {
    fields.push(
      derSequence(
        ...revoked.map((r) => derSequence(derUnsignedInteger(r.serial), derTime(r.revocationDate))),
      ),
    )
  }
  fields.push(derExplicit(0, derSequence(...extensions)))
  return derSequence(...fields)
}

/** Builds and signs a CRL; `sign` returns the DER ECDSA-SHA256 signature of its input. */
export function issueCrl(p: CrlParams, sign: (tbs: Buffer) => Uint8Array): Buffer {
  const tbs = buildTbsCertList(p)
  return derSequence(tbs, ECDSA_WITH_SHA256, derBitString(sign(tbs)))
}
