// Our own checks of the DCAP trust material, done before collateral is used or cached. A PCCS is
// a third party (the default one is Phala's), and @phala/dcap-qvl 0.3.9 only looks serial
// numbers up in the CRLs: it never checks their signatures, issuers or validity windows, skips
// CRLs it cannot parse, and ignores `pck_crl_issuer_chain`. Without these checks a PCCS could
// switch revocation off by serving an empty or garbage CRL. The quote's PCK chain is checked here
// too, before its FMSPC picks the collateral to fetch, so that unauthenticated input cannot make
// the KMS query the PCCS.
import { X509Certificate, createHash, verify as cryptoVerify } from 'node:crypto'
import { KmsError, errorMessage } from '../errors.js'
import { type ParsedCrl, parseCrl } from '../x509/crl-parse.js'
import { OID } from '../asn1/oids.js'
import { type ParsedCertificate, parseCertificate } from '../x509/parse.js'
import { pemDecodeAll } from '../asn1/pem.js'
import { BoundedCache } from '../util/bounded-cache.js'
import { type Collateral, collateralBytes, collateralDigest } from './collateral.js'

/** Intel's chains are leaf → intermediate → root; anything much longer is not DCAP. */
const MAX_CHAIN_LENGTH = 6

export interface ChainCert {
  x509: X509Certificate
  parsed: ParsedCertificate
}

/** The configured root CA, parsed once. */
export class TrustAnchor {
  readonly cert: ChainCert
  /** SHA-256 (hex) of the root's DER */
  readonly fingerprint: string
  constructor(rootCaDer: Uint8Array) {
    this.cert = loadCert(Buffer.from(rootCaDer), 'root CA')
    this.fingerprint = createHash('sha256').update(rootCaDer).digest('hex')
  }
}

/** A verified chain, leaf first and the trust anchor last, with the time window (unix seconds,
 * `validFrom ≤ now < validUntil`) in which every certificate in it is valid. */
export interface VerifiedChain {
  certs: ChainCert[]
  validFrom: number
  validUntil: number
}

export interface CollateralTrust {
  rootCrl: ParsedCrl
  pckCrl: ParsedCrl
  /** the CA that signed the PCK CRL (leaf of `pck_crl_issuer_chain`) */
  pckCrlIssuer: ChainCert
  /** every certificate of the three issuer chains, the anchor included */
  certs: ChainCert[]
  /** when every certificate and both CRLs are within their validity (unix seconds) */
  validFrom: number
  validUntil: number
}

const seconds = (d: Date): number => Math.floor(d.getTime() / 1000)
const iso = (unix: number): string => new Date(unix * 1000).toISOString().replace('.000Z', 'Z')

function loadCert(der: Buffer, what: string): ChainCert {
  try {
    return { x509: new X509Certificate(der), parsed: parseCertificate(der) }
  } catch (err) {
    throw new Error(`${what}: unparsable certificate: ${errorMessage(err)}`, { cause: err })
  }
}

/** The subject's CN for messages (the full DN when there is none). */
function nameOf(c: ChainCert): string {
  return c.parsed.subjectCommonName ?? c.x509.subject.replace(/\n/g, ', ')
}

function isAnchor(c: ChainCert, anchor: ChainCert): boolean {
  if (c.parsed.der.equals(anchor.parsed.der)) return true
  // a re-encoding of the same root (same name and key) is the same trust
  return (
    c.parsed.subjectDer.equals(anchor.parsed.subjectDer) &&
    c.x509.publicKey.equals(anchor.x509.publicKey)
  )
}

function checkValidity(c: ChainCert, now: number, what: string): void {
  const from = seconds(c.parsed.notBefore)
  const to = seconds(c.parsed.notAfter)
  if (now < from) {
    throw new Error(`${what}: certificate "${nameOf(c)}" is not valid before ${iso(from)}`)
  }
  if (now > to) throw new Error(`${what}: certificate "${nameOf(c)}" expired at ${iso(to)}`)
}

/** Walks `pem` (leaf first) up to the anchor: each certificate must be issued (names, key
 * identifiers, CA flag) and signed by the next one, the last one by the anchor, and every one
 * must be valid at `now`. Plain `Error`s; the callers choose the error code. */
export function verifyChain(
  pem: string,
  anchor: TrustAnchor,
  now: number,
  what: string,
): VerifiedChain {
  let ders: Buffer[]
  try {
    ders = pemDecodeAll(pem, 'CERTIFICATE')
  } catch (err) {
    throw new Error(`${what}: ${errorMessage(err)}`, { cause: err })
  }
  if (ders.length === 0) throw new Error(`${what}: no certificates`)
  if (ders.length > MAX_CHAIN_LENGTH) throw new Error(`${what}: too many certificates`)
  const given = ders.map((der, i) => loadCert(der, `${what} certificate ${i}`))
  const root = anchor.cert
  const certs: ChainCert[] = []
  for (let i = 0; i < given.length; i++) {
    const c = given[i] as ChainCert
    if (isAnchor(c, root)) {
      if (i !== given.length - 1) throw new Error(`${what}: certificates follow the root CA`)
      break
    }
    const issuer = given[i + 1] ?? root
    const issuerIsRoot = given[i + 1] === undefined || isAnchor(issuer, root)
    const signer = issuerIsRoot ? root : issuer
    if (
      !signer.x509.ca ||
      !c.x509.checkIssued(signer.x509) ||
      !c.x509.verify(signer.x509.publicKey)
    ) {
      throw new Error(
        issuerIsRoot
          ? `${what}: certificate "${nameOf(c)}" is neither the trusted root CA "${nameOf(root)}" nor issued by it`
          : `${what}: certificate "${nameOf(c)}" is not issued by "${nameOf(signer)}"`,
      )
    }
    checkValidity(c, now, what)
    certs.push(c)
  }
  if (certs.length === 0) throw new Error(`${what}: no certificate below the root CA`)
  checkValidity(root, now, what)
  certs.push(root)
  return {
    certs,
    validFrom: Math.max(...certs.map((c) => seconds(c.parsed.notBefore))),
    validUntil: Math.min(...certs.map((c) => seconds(c.parsed.notAfter) + 1)),
  }
}

/** The quote's PCK chain (leaf → PCK CA → root). Failures are `KMS_ERR_ATTESTATION`. */
export function verifyPckChain(pem: string, anchor: TrustAnchor, now: number): VerifiedChain {
  try {
    const chain = verifyChain(pem, anchor, now, 'PCK certificate chain')
    if ((chain.certs[0] as ChainCert).x509.ca) {
      throw new Error('PCK certificate chain: the leaf is a CA certificate')
    }
    return chain
  } catch (err) {
    throw new KmsError('KMS_ERR_ATTESTATION', `Invalid ${errorMessage(err)}`, { cause: err })
  }
}

/** Parses a CRL and checks it was signed by `issuer`, names it as issuer, and is current. */
function verifyCrl(
  raw: number[] | string,
  issuer: ChainCert,
  now: number,
  what: string,
): ParsedCrl {
  if (typeof raw === 'string' && !/^([0-9a-fA-F]{2})*$/.test(raw)) {
    throw new Error(`${what} is not hex`)
  }
  let crl: ParsedCrl
  try {
    crl = parseCrl(collateralBytes(raw))
  } catch (err) {
    throw new Error(`${what} does not parse: ${errorMessage(err)}`, { cause: err })
  }
  if (!crl.issuerDer.equals(issuer.parsed.subjectDer)) {
    throw new Error(`${what} is not issued by "${nameOf(issuer)}"`)
  }
  if (crl.signatureAlgorithm !== OID.ecdsaWithSha256) {
    throw new Error(`${what} uses an unsupported signature algorithm ${crl.signatureAlgorithm}`)
  }
  let ok: boolean
  try {
    ok = cryptoVerify('sha256', crl.tbsDer, issuer.x509.publicKey, crl.signatureValue)
  } catch {
    ok = false
  }
  if (!ok) throw new Error(`${what} signature is invalid`)
  const thisUpdate = seconds(crl.thisUpdate)
  if (now < thisUpdate) throw new Error(`${what} is not valid before ${iso(thisUpdate)}`)
  if (crl.nextUpdate === undefined) throw new Error(`${what} has no nextUpdate`)
  const nextUpdate = seconds(crl.nextUpdate)
  if (now >= nextUpdate) throw new Error(`${what} expired at ${iso(nextUpdate)}`)
  return crl
}

/** Intel signs TCB info and QE identity with raw r‖s over the exact JSON text. */
function verifyDocument(
  text: string,
  sig: number[] | string,
  signer: ChainCert,
  what: string,
): void {
  let ok: boolean
  try {
    ok = cryptoVerify(
      'sha256',
      Buffer.from(text, 'utf8'),
      { key: signer.x509.publicKey, dsaEncoding: 'ieee-p1363' },
      collateralBytes(sig),
    )
  } catch {
    ok = false
  }
  if (!ok) throw new Error(`Signature is invalid for ${what}`)
}

export interface CollateralCheckOptions {
  /** also verify the TCB info and QE identity signatures (the library does that when it
   * verifies a quote; a cache must not store a document it has not seen signed) */
  documents?: boolean
}

/** Collateral contents remembered as checked (one per platform type and root in use). */
const CHECKED_COLLATERAL_SIZE = 64

// The same collateral is checked by the source that fetches or reads it and again by the verifier
// that uses it, often as another object parsed from the same JSON. A result depends only on the
// root, the members and whether the documents were checked, and holds within its window.
const checkedCollateral = new BoundedCache<{ documents: boolean; trust: CollateralTrust }>(
  CHECKED_COLLATERAL_SIZE,
)

/** Checks the issuer chains against the anchor and both CRLs against their issuers at `now`.
 * Failures are `KMS_ERR_COLLATERAL`. A collateral already checked against the same root (by
 * content) is not checked again while `now` is within the result's window. */
export function checkCollateral(
  c: Collateral,
  anchor: TrustAnchor,
  now: number,
  opts: CollateralCheckOptions = {},
): CollateralTrust {
  const documents = opts.documents === true
  const key = `${anchor.fingerprint}|${collateralDigest(c)}`
  const known = checkedCollateral.get(key)
  if (
    known !== undefined &&
    (known.documents || !documents) &&
    known.trust.validFrom <= now &&
    now < known.trust.validUntil
  ) {
    return known.trust
  }
  const trust = checkCollateralNow(c, anchor, now, documents)
  checkedCollateral.set(key, { documents, trust })
  return trust
}

function checkCollateralNow(
  c: Collateral,
  anchor: TrustAnchor,
  now: number,
  documents: boolean,
): CollateralTrust {
  try {
    const pckIssuer = verifyChain(c.pck_crl_issuer_chain, anchor, now, 'pck_crl_issuer_chain')
    const tcb = verifyChain(c.tcb_info_issuer_chain, anchor, now, 'tcb_info_issuer_chain')
    const qe = verifyChain(c.qe_identity_issuer_chain, anchor, now, 'qe_identity_issuer_chain')
    const pckCrlIssuer = pckIssuer.certs[0] as ChainCert
    const rootCrl = verifyCrl(c.root_ca_crl, anchor.cert, now, 'root CA CRL')
    const pckCrl = verifyCrl(c.pck_crl, pckCrlIssuer, now, 'PCK CRL')
    if (documents) {
      verifyDocument(c.tcb_info, c.tcb_info_signature, tcb.certs[0] as ChainCert, 'tcb_info')
      verifyDocument(
        c.qe_identity,
        c.qe_identity_signature,
        qe.certs[0] as ChainCert,
        'qe_identity',
      )
    }
    const crls = [rootCrl, pckCrl]
    return {
      rootCrl,
      pckCrl,
      pckCrlIssuer,
      certs: [...pckIssuer.certs, ...tcb.certs, ...qe.certs],
      validFrom: Math.max(
        pckIssuer.validFrom,
        tcb.validFrom,
        qe.validFrom,
        ...crls.map((x) => seconds(x.thisUpdate)),
      ),
      validUntil: Math.min(
        pckIssuer.validUntil,
        tcb.validUntil,
        qe.validUntil,
        ...crls.map((x) => seconds(x.nextUpdate as Date)),
      ),
    }
  } catch (err) {
    throw new KmsError('KMS_ERR_COLLATERAL', errorMessage(err), { cause: err })
  }
}

/** Every certificate must be covered by the CRL of its issuer (the root CA CRL for the root and
 * the certificates it signs, the PCK CRL for the PCK leaf) and not be listed in it. This is what
 * makes the PCK CRL count: it must be the CRL of the CA that issued the quote's PCK certificate,
 * not a valid but unrelated one. */
export function checkRevocation(certs: readonly ChainCert[], trust: CollateralTrust): void {
  const crls = [trust.rootCrl, trust.pckCrl]
  for (const c of certs) {
    const crl = crls.find((x) => x.issuerDer.equals(c.parsed.issuerDer))
    if (crl === undefined) {
      throw new KmsError(
        'KMS_ERR_COLLATERAL',
        `no CRL in the collateral covers certificate "${nameOf(c)}" (the PCK CRL is issued by "${nameOf(trust.pckCrlIssuer)}")`,
      )
    }
    if (crl.revoked.some((r) => r.serial.equals(c.parsed.serial))) {
      throw new KmsError(
        'KMS_ERR_ATTESTATION',
        `Certificate is revoked: "${nameOf(c)}" (serial ${c.parsed.serial.toString('hex')})`,
      )
    }
  }
}
