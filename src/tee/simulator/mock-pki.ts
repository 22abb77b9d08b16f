// A mock Intel DCAP PKI derived from a 32-byte seed (docs/design.md#trust-model): root CA → PCK
// Platform CA → PCK certificate with the Intel SGX extension, a TCB-signing certificate for the TCB
// info and QE identity, and the root and PCK CRLs. Certificates follow the layout of Intel's (names
// aside: every subject says "Mock" and the organisation says it is not Intel), so a DCAP verifier
// walks them exactly as it walks real ones, but only when it is told to trust this root.
//
// Everything is deterministic for one seed: keys use upstream HEAD's derivation
// (`crates/mock-attestation`: SHA-256("dstack-mock-p256-v1" ‖ seed ‖ label ‖ BE32(counter)), so
// the same seed gives upstream's root *key*; the certificates are ours), other values use
// HKDF-SHA256, and signatures are RFC 6979 deterministic ECDSA. Validity of every certificate,
// CRL and collateral document is fixed to 2020-01-01 … 2100-01-01 (upstream's mock PKI window):
// no clock dependence, so a KMS restarted years later with the same seed trusts the same root and
// the same collateral, and tests can verify at any fixed `now`.
import { createHash, hkdfSync } from 'node:crypto'
import { p256 } from '@noble/curves/nist.js'
import { KmsError } from '../../errors.js'
import { P256Key, isValidP256Scalar } from '../../crypto/p256.js'
import {
  derBitString,
  derBoolean,
  derExplicit,
  derImplicitPrimitive,
  derOctetString,
  derOid,
  derSequence,
  derSet,
  derSmallInteger,
  derTime,
  derTlv,
  derUnsignedInteger,
  derUtf8String,
} from '../../asn1/der.js'
import { issueCrl } from '../../x509/crl.js'
import { OID } from '../../asn1/oids.js'
import { encodeExtension } from '../../x509/certificate.js'
import { pemEncode } from '../../asn1/pem.js'

export const MOCK_PKI_NOT_BEFORE = new Date(Date.UTC(2020, 0, 1))
export const MOCK_PKI_NOT_AFTER = new Date(Date.UTC(2100, 0, 1))

export const MOCK_SEED_LENGTH = 32

/** Every subject carries this organisation so that no one mistakes a mock certificate for Intel's. */
export const MOCK_ORGANIZATION = 'dstack-kms-ts TEE simulator (not Intel)'

export const SGX_OID = {
  extension: '1.2.840.113741.1.13.1',
  ppid: '1.2.840.113741.1.13.1.1',
  tcb: '1.2.840.113741.1.13.1.2',
  pceId: '1.2.840.113741.1.13.1.3',
  fmspc: '1.2.840.113741.1.13.1.4',
  sgxType: '1.2.840.113741.1.13.1.5',
  platformInstanceId: '1.2.840.113741.1.13.1.6',
  configuration: '1.2.840.113741.1.13.1.7',
} as const

/** The platform TCB the PCK certificate, the quotes and the TCB info (UpToDate) agree on. Values
 * of a real Sapphire Rapids platform (the dcap-qvl TDX sample), so levels look like Intel's. */
export const MOCK_PLATFORM_TCB = {
  /** SGX TCB components 1–16 = the PCK certificate's CPUSVN */
  sgxComponents: [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
  pceSvn: 11,
  /** TEE_TCB_SVN of the TD report = the TDX TCB components */
  tdxComponents: [6, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
  pceId: Buffer.from('0000', 'hex'),
} as const

/** The TD quoting enclave's identity as Intel's TD_QE identity describes it; the mock QE reports
 * these values and the mock QE identity document vouches for them. */
export const MOCK_TD_QE = {
  mrSigner: Buffer.from('dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5', 'hex'),
  isvProdId: 2,
  isvSvn: 4,
  miscSelect: 0,
  attributes: Buffer.from('1500000000000000e700000000000000', 'hex'),
} as const

export interface MockCertificate {
  der: Buffer
  pem: string
  subjectDer: Buffer
  subjectKeyId: Buffer
  serial: Buffer
  key: P256Key
}

export interface MockIntelPki {
  root: MockCertificate
  pckCa: MockCertificate
  pck: MockCertificate
  tcbSigning: MockCertificate
  rootCrl: Buffer
  pckCrl: Buffer
  /** the PPID in the PCK certificate (16 bytes) */
  ppid: Buffer
  /** 6 bytes; the TCB info is issued for it */
  fmspc: Buffer
  platformInstanceId: Buffer
  /** the quoting enclave's attestation key (signs header ‖ body of every quote) */
  attestationKey: P256Key
  /** QE_ID in the quote header's user_data */
  qeId: Buffer
  /** MRENCLAVE of the mock quoting enclave */
  qeMrEnclave: Buffer
  /** MRSEAM of the mock TDX module */
  mrSeam: Buffer
}

const HKDF_SALT = Buffer.from('dstack-kms-ts-simulator-v1')

export function assertSeed(seed: Uint8Array): void {
  if (seed.length !== MOCK_SEED_LENGTH) {
    throw new KmsError(
      'KMS_ERR_CONFIG',
      `the simulator seed must be ${MOCK_SEED_LENGTH} bytes, got ${seed.length}`,
    )
  }
}

/** Seed-derived bytes for everything that is not a key (identifiers, measurements, serials). */
export function deriveBytes(seed: Uint8Array, label: string, length: number): Buffer {
  return Buffer.from(hkdfSync('sha256', seed, HKDF_SALT, label, length))
}

/** Upstream HEAD's `p256_key(seed, label)`: the first counter whose hash is a valid scalar. */
export function mockP256Key(seed: Uint8Array, label: string): P256Key {
  for (let counter = 0; ; counter++) {
    const be = Buffer.alloc(4)
    be.writeUInt32BE(counter)
    const d = createHash('sha256')
      .update('dstack-mock-p256-v1')
      .update(seed)
      .update(label)
      .update(be)
      .digest()
    if (isValidP256Scalar(d)) return P256Key.fromScalar(d)
  }
}

/** RFC 6979 ECDSA-SHA256, low-S: `raw` is r‖s (64 bytes, DCAP's format), `der` the X.509 form. */
export function signDeterministic(key: P256Key, data: Uint8Array): { raw: Buffer; der: Buffer } {
  const digest = createHash('sha256').update(data).digest()
  const sig = p256.sign(digest, key.scalar, { lowS: true, prehash: false })
  return { raw: Buffer.from(sig.toCompactRawBytes()), der: Buffer.from(sig.toDERRawBytes()) }
}

function encodeName(commonName: string): Buffer {
  const rdn = (oid: string, value: string): Buffer =>
    derSet(derSequence(derOid(oid), derUtf8String(value)))
  return derSequence(rdn(OID.commonName, commonName), rdn(OID.organizationName, MOCK_ORGANIZATION))
}

const ENUMERATED = 0x0a
// KeyUsage bits as Intel sets them: CAs keyCertSign|cRLSign, leaves digitalSignature|nonRepudiation.
const KEY_USAGE_CA = derBitString(Buffer.from([0x06]), 1)
const KEY_USAGE_LEAF = derBitString(Buffer.from([0xc0]), 6)
const ECDSA_WITH_SHA256 = derSequence(derOid(OID.ecdsaWithSha256))

interface CertSpec {
  label: string
  commonName: string
  /** undefined: self-signed */
  issuer?: MockCertificate
  ca?: { pathLen: number }
  extra?: Buffer[]
}

function issue(seed: Uint8Array, spec: CertSpec): MockCertificate {
  const key = mockP256Key(seed, spec.label)
  const subjectDer = encodeName(spec.commonName)
  // RFC 5280 method 1: SHA-1 of the subjectPublicKey bits, as Intel's certificates have it.
  const subjectKeyId = createHash('sha1').update(key.publicPoint).digest()
  const serial = deriveBytes(seed, `serial:${spec.label}`, 20)
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x01
  const issuer = spec.issuer ?? { subjectDer, subjectKeyId, key }
  const basicConstraints =
    spec.ca === undefined
      ? derSequence()
      : derSequence(derBoolean(true), derSmallInteger(spec.ca.pathLen))
  const extensions = [
    encodeExtension(
      OID.authorityKeyIdentifier,
      false,
      derSequence(derImplicitPrimitive(0, issuer.subjectKeyId)),
    ),
    encodeExtension(OID.subjectKeyIdentifier, false, derOctetString(subjectKeyId)),
    encodeExtension(OID.keyUsage, true, spec.ca === undefined ? KEY_USAGE_LEAF : KEY_USAGE_CA),
    encodeExtension(OID.basicConstraints, true, basicConstraints),
    ...(spec.extra ?? []),
  ]
  const tbs = derSequence(
    derExplicit(0, derSmallInteger(2)),
    derUnsignedInteger(serial),
    ECDSA_WITH_SHA256,
    issuer.subjectDer,
    derSequence(derTime(MOCK_PKI_NOT_BEFORE), derTime(MOCK_PKI_NOT_AFTER)),
    subjectDer,
    key.spkiDer(),
    derExplicit(3, derSequence(...extensions)),
  )
  const der = derSequence(
    tbs,
    ECDSA_WITH_SHA256,
    derBitString(signDeterministic(issuer.key, tbs).der),
  )
  return { der, pem: pemEncode('CERTIFICATE', der), subjectDer, subjectKeyId, serial, key }
}

const sgxEntry = (oid: string, value: Buffer): Buffer => derSequence(derOid(oid), value)

/** The Intel SGX extension of a PCK certificate issued by the Platform CA. */
export function encodeSgxExtension(fields: {
  ppid: Buffer
  fmspc: Buffer
  platformInstanceId: Buffer
}): Buffer {
  const tcb = MOCK_PLATFORM_TCB
  const components = tcb.sgxComponents.map((svn, i) =>
    sgxEntry(`${SGX_OID.tcb}.${i + 1}`, derSmallInteger(svn)),
  )
  const flag = (n: number): Buffer => sgxEntry(`${SGX_OID.configuration}.${n}`, derBoolean(true))
  return derSequence(
    sgxEntry(SGX_OID.ppid, derOctetString(fields.ppid)),
    sgxEntry(
      SGX_OID.tcb,
      derSequence(
        ...components,
        sgxEntry(`${SGX_OID.tcb}.17`, derSmallInteger(tcb.pceSvn)),
        sgxEntry(`${SGX_OID.tcb}.18`, derOctetString(Buffer.from(tcb.sgxComponents))),
      ),
    ),
    sgxEntry(SGX_OID.pceId, derOctetString(tcb.pceId)),
    sgxEntry(SGX_OID.fmspc, derOctetString(fields.fmspc)),
    // SGX type 1 = Scalable, what TDX-capable platforms report
    sgxEntry(SGX_OID.sgxType, derTlv(ENUMERATED, Buffer.from([1]))),
    sgxEntry(SGX_OID.platformInstanceId, derOctetString(fields.platformInstanceId)),
    // dynamicPlatform, cachedKeys, smtEnabled
    sgxEntry(SGX_OID.configuration, derSequence(flag(1), flag(2), flag(3))),
  )
}

/** Builds the mock PKI of `seed` from scratch (deterministic; `mockIntelPki` caches it). */
export function createMockIntelPki(seed: Buffer): MockIntelPki {
  assertSeed(seed)
  const ppid = deriveBytes(seed, 'tdx-ppid', 16)
  const fmspc = deriveBytes(seed, 'tdx-fmspc', 6)
  const platformInstanceId = deriveBytes(seed, 'tdx-platform-instance-id', 16)
  const root = issue(seed, {
    label: 'tdx-root',
    commonName: 'Mock Intel SGX Root CA',
    ca: { pathLen: 1 },
  })
  const pckCa = issue(seed, {
    label: 'tdx-pck-ca',
    commonName: 'Mock Intel SGX PCK Platform CA',
    issuer: root,
    ca: { pathLen: 0 },
  })
  const pck = issue(seed, {
    label: 'tdx-pck',
    commonName: 'Mock Intel SGX PCK Certificate',
    issuer: pckCa,
    extra: [
      encodeExtension(
        SGX_OID.extension,
        false,
        encodeSgxExtension({ ppid, fmspc, platformInstanceId }),
      ),
    ],
  })
  const tcbSigning = issue(seed, {
    label: 'tdx-tcb',
    commonName: 'Mock Intel SGX TCB Signing',
    issuer: root,
  })
  const crl = (issuer: MockCertificate): Buffer =>
    issueCrl(
      {
        issuerSubjectDer: issuer.subjectDer,
        thisUpdate: MOCK_PKI_NOT_BEFORE,
        nextUpdate: MOCK_PKI_NOT_AFTER,
        crlNumber: 1,
        authorityKeyId: issuer.subjectKeyId,
      },
      (tbs) => signDeterministic(issuer.key, tbs).der,
    )
  return {
    root,
    pckCa,
    pck,
    tcbSigning,
    rootCrl: crl(root),
    pckCrl: crl(pckCa),
    ppid,
    fmspc,
    platformInstanceId,
    attestationKey: mockP256Key(seed, 'tdx-attestation-key'),
    qeId: deriveBytes(seed, 'tdx-qe-id', 16),
    qeMrEnclave: deriveBytes(seed, 'tdx-qe-mrenclave', 32),
    mrSeam: deriveBytes(seed, 'tdx-mr-seam', 48),
  }
}

const cache = new Map<string, MockIntelPki>()

/** The mock PKI of `seed` (built once per process and seed). */
export function mockIntelPki(seed: Uint8Array): MockIntelPki {
  assertSeed(seed)
  const id = Buffer.from(seed).toString('hex')
  let pki = cache.get(id)
  if (pki === undefined) {
    pki = createMockIntelPki(Buffer.from(seed))
    cache.set(id, pki)
  }
  return pki
}

/** leaf → Platform CA → root, as the quote's certification data (type 5) carries it. */
export function pckChainPem(pki: MockIntelPki): string {
  return pki.pck.pem + pki.pckCa.pem + pki.root.pem
}
