// SignCert certificate signing requests (upstream `ra-tls/src/cert.rs`): the SCALE layouts of
// upstream's `CertSigningRequestV1/V2` (dstack/ra-tls/src/cert.rs), their signature check, and the
// V1 → V2 upgrade. Error texts are upstream's, since they reach the client verbatim.
import { verify as cryptoVerify } from 'node:crypto'
import { P256PublicKey } from '../crypto/p256.js'
import { KmsError, withContext } from '../errors.js'
import { TAG, expectTag, readBitString, readOid, readTlv, sequenceOf } from '../asn1/der.js'
import { OID } from '../asn1/oids.js'
import { ScaleError, ScaleReader, ScaleWriter } from '../codec/scale.js'
import type { Attestation } from '../attestation/types.js'
import { attestationFromTdxQuote as buildAttestationFromTdxQuote } from '../attestation/from-tdx-quote.js'
import {
  MAX_ATTESTATION_BYTES,
  encodeVersionedAttestation,
  intoVersioned,
} from '../attestation/versioned.js'

export const CSR_CONFIRM = 'please sign cert:'

/** Upstream `CertConfig` (CSR V1). */
export interface CsrCertConfig {
  orgName: string | null
  subject: string
  subjectAltNames: string[]
  usageServerAuth: boolean
  usageClientAuth: boolean
  extQuote: boolean
}

/** Upstream `CertConfigV2`; validity overrides are unix seconds. */
export interface CsrCertConfigV2 extends CsrCertConfig {
  extAppInfo: boolean
  notBefore: bigint | null
  notAfter: bigint | null
}

export interface CertSigningRequestV1 {
  confirm: string
  /** SubjectPublicKeyInfo DER */
  pubkey: Buffer
  config: CsrCertConfig
  /** raw TDX quote */
  quote: Buffer
  /** JSON text of the TDX event log */
  eventLog: Buffer
}

export interface CertSigningRequestV2 {
  confirm: string
  /** SubjectPublicKeyInfo DER */
  pubkey: Buffer
  config: CsrCertConfigV2
  /** `VersionedAttestation` wire bytes (V0 SCALE or V1 msgpack), the rest of the CSR. Only the
   * framing is checked here; the attestation itself is decoded and verified by the
   * attestation step. */
  attestation: Buffer
}

export type CertSigningRequest = CertSigningRequestV1 | CertSigningRequestV2

// ---------------------------------------------------------------------------------------------
// SCALE layouts

/** More names than any workload certificate carries. The count is checked before a single item
 * is decoded: every empty name costs one input byte, so a 10 MiB CSR would otherwise become
 * millions of strings (upstream's decoder has no bound). */
export const MAX_CSR_SUBJECT_ALT_NAMES = 1024

function decodeCertConfigFields(r: ScaleReader, type: string): CsrCertConfig {
  return {
    orgName: r.field(`${type}::org_name`, (x) => x.option((y) => y.string())),
    subject: r.field(`${type}::subject`, (x) => x.string()),
    subjectAltNames: r.field(`${type}::subject_alt_names`, (x) =>
      x.vec((y) => y.string(), MAX_CSR_SUBJECT_ALT_NAMES),
    ),
    usageServerAuth: r.field(`${type}::usage_server_auth`, (x) => x.bool()),
    usageClientAuth: r.field(`${type}::usage_client_auth`, (x) => x.bool()),
    extQuote: r.field(`${type}::ext_quote`, (x) => x.bool()),
  }
}

function decodeCertConfigV2(r: ScaleReader): CsrCertConfigV2 {
  const base = decodeCertConfigFields(r, 'CertConfigV2')
  return {
    ...base,
    extAppInfo: r.field('CertConfigV2::ext_app_info', (x) => x.bool()),
    notBefore: r.field('CertConfigV2::not_before', (x) => x.option((y) => y.u64())),
    notAfter: r.field('CertConfigV2::not_after', (x) => x.option((y) => y.u64())),
  }
}

function encodeCertConfigFields(w: ScaleWriter, c: CsrCertConfig): void {
  w.option(c.orgName, (x, v) => x.string(v))
    .string(c.subject)
    .vec(c.subjectAltNames, (x, v) => x.string(v))
    .bool(c.usageServerAuth)
    .bool(c.usageClientAuth)
    .bool(c.extQuote)
}

function isMsgpackMapPrefix(b: number): boolean {
  return (b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf
}

/** Upstream's `VersionedAttestation` decoder takes the rest of the input. Every failure of its inner
 * decoding is reported through an `io::Error` whose text the codec drops, hence the fixed
 * `io error: InvalidData`. */
function readVersionedAttestation(r: ScaleReader): Buffer {
  if (r.remaining > MAX_ATTESTATION_BYTES) {
    throw new ScaleError('attestation bytes exceed maximum allowed size')
  }
  const bytes = r.rest()
  const first = bytes[0]
  if (first === undefined || (first !== 0x00 && !isMsgpackMapPrefix(first))) {
    throw new ScaleError('io error: InvalidData')
  }
  return bytes
}

/** Decodes a V1 CSR; trailing bytes are ignored, as upstream does. Throws `ScaleError`. */
export function decodeCsrV1(bytes: Uint8Array): CertSigningRequestV1 {
  return decodeCsrV1Consumed(bytes).csr
}

/** decodeCsrV1 and the number of bytes the CSR took (the rest is ignored trailing data). */
function decodeCsrV1Consumed(bytes: Uint8Array): { csr: CertSigningRequestV1; consumed: number } {
  const r = new ScaleReader(bytes)
  const csr = {
    confirm: r.field('CertSigningRequestV1::confirm', (x) => x.string()),
    pubkey: r.field('CertSigningRequestV1::pubkey', (x) => x.vecU8()),
    config: r.field('CertSigningRequestV1::config', (x) => decodeCertConfigFields(x, 'CertConfig')),
    quote: r.field('CertSigningRequestV1::quote', (x) => x.vecU8()),
    eventLog: r.field('CertSigningRequestV1::event_log', (x) => x.vecU8()),
  }
  return { csr, consumed: r.offset }
}

/** Decodes a V2 CSR (the attestation runs to the end of the input). Throws `ScaleError`. */
export function decodeCsrV2(bytes: Uint8Array): CertSigningRequestV2 {
  const r = new ScaleReader(bytes)
  return {
    confirm: r.field('CertSigningRequestV2::confirm', (x) => x.string()),
    pubkey: r.field('CertSigningRequestV2::pubkey', (x) => x.vecU8()),
    config: r.field('CertSigningRequestV2::config', decodeCertConfigV2),
    attestation: r.field('CertSigningRequestV2::attestation', readVersionedAttestation),
  }
}

export function encodeCsrV1(csr: CertSigningRequestV1): Buffer {
  const w = new ScaleWriter().string(csr.confirm).vecU8(csr.pubkey)
  encodeCertConfigFields(w, csr.config)
  return w.vecU8(csr.quote).vecU8(csr.eventLog).toBuffer()
}

export function encodeCsrV2(csr: CertSigningRequestV2): Buffer {
  const w = new ScaleWriter().string(csr.confirm).vecU8(csr.pubkey)
  encodeCertConfigFields(w, csr.config)
  w.bool(csr.config.extAppInfo)
    .option(csr.config.notBefore, (x, v) => x.u64(v))
    .option(csr.config.notAfter, (x, v) => x.u64(v))
  // no length prefix: the attestation is the last field and runs to the end
  return w.raw(csr.attestation).toBuffer()
}

// ---------------------------------------------------------------------------------------------
// Signature (`Csr::verify`)

function csrError(message: string): KmsError {
  return new KmsError('KMS_ERR_CRYPTO', message)
}

/** The EC point inside the CSR's SubjectPublicKeyInfo. Like x509-parser, bytes after the SPKI are
 * ignored; like ring, the curve parameter is not consulted (a non-P-256 point fails to verify). */
function spkiEcPoint(spkiDer: Buffer): Buffer {
  let oid: string
  let point: Buffer
  try {
    const { node } = readTlv(spkiDer, 0)
    const [alg, bits] = sequenceOf(node, 'SubjectPublicKeyInfo', 2, 2)
    oid = readOid(sequenceOf(alg, 'AlgorithmIdentifier', 1, 2)[0], 'algorithm')
    point = readBitString(
      expectTag(bits, TAG.BIT_STRING, 'subjectPublicKey'),
      'subjectPublicKey',
    ).bytes
  } catch (err) {
    throw new KmsError('KMS_ERR_CRYPTO', 'Failed to parse pubkey', { cause: err })
  }
  if (oid !== OID.ecPublicKey) throw csrError('Unsupported algorithm')
  return point
}

function ecdsaP256Sha256Verify(point: Buffer, data: Buffer, signature: Uint8Array): boolean {
  try {
    // OpenSSL, like ring, accepts only strict DER and both S forms (no low-S rule)
    return cryptoVerify('sha256', data, P256PublicKey.fromPoint(point).keyObject(), signature)
  } catch {
    return false
  }
}

/** Upstream `Csr::verify`: the signature covers the SCALE re-encoding of the decoded CSR; the
 * confirm word is checked last. `signed` may pass the received bytes the CSR was decoded from
 * instead: our decoder accepts only canonical encodings (minimal compact lengths, 0/1 booleans
 * and option tags, valid UTF-8), so for a CSR that decoded they are the re-encoding, byte for
 * byte, without the cost of building it again. */
export function verifyCsrSignature(
  csr: CertSigningRequest,
  signature: Uint8Array,
  signed?: Buffer,
): void {
  const encoded = signed ?? ('attestation' in csr ? encodeCsrV2(csr) : encodeCsrV1(csr))
  const point = spkiEcPoint(csr.pubkey)
  if (!ecdsaP256Sha256Verify(point, encoded, signature)) throw csrError('Invalid signature')
  if (csr.confirm !== CSR_CONFIRM) throw csrError('Invalid confirm word')
}

// ---------------------------------------------------------------------------------------------
// V1 → V2 upgrade: upstream `Attestation::from_tdx_quote(quote, event_log)`

/** `Attestation::from_tdx_quote(quote, event_log).into_versioned()` as wire bytes (V0 SCALE unless
 * the log carries V2 events). Failures are client errors (`KMS_ERR_BAD_REQUEST`) with upstream's
 * texts. */
export function attestationFromTdxQuote(quote: Buffer, eventLogJson: Buffer): Buffer {
  let attestation: Attestation
  try {
    attestation = buildAttestationFromTdxQuote(quote, eventLogJson)
  } catch (err) {
    if (err instanceof KmsError) {
      throw new KmsError('KMS_ERR_BAD_REQUEST', err.message, { cause: err })
    }
    throw err
  }
  return encodeVersionedAttestation(intoVersioned(attestation))
}

/** `TryFrom<CertSigningRequestV1> for CertSigningRequestV2`. */
export function upgradeCsrV1(csr: CertSigningRequestV1): CertSigningRequestV2 {
  return {
    confirm: csr.confirm,
    pubkey: csr.pubkey,
    config: { ...csr.config, extAppInfo: false, notBefore: null, notAfter: null },
    attestation: attestationFromTdxQuote(csr.quote, csr.eventLog),
  }
}

// ---------------------------------------------------------------------------------------------
// SignCert request handling up to the attestation step

function inContext<T>(context: string, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw withContext(context, err)
  }
}

/** Upstream `sign_cert` after self-authorization: decode by `api_version`, verify the signature,
 * upgrade V1. Throws with upstream's exact context chain. */
export function decodeVerifiedCsr(
  apiVersion: number,
  csrBytes: Uint8Array,
  signature: Uint8Array,
): CertSigningRequestV2 {
  const received = Buffer.from(csrBytes.buffer, csrBytes.byteOffset, csrBytes.byteLength)
  if (apiVersion === 1) {
    const { csr, consumed } = inContext('Failed to parse csr', () => decodeCsrV1Consumed(received))
    inContext('Failed to verify csr signature', () =>
      verifyCsrSignature(csr, signature, received.subarray(0, consumed)),
    )
    checkLeafConfig(csr.config, null, null)
    return inContext('Failed to upgrade csr v1 to v2', () => upgradeCsrV1(csr))
  }
  if (apiVersion === 2) {
    const csr = inContext('Failed to parse csr', () => decodeCsrV2(received))
    // the attestation runs to the end of the input: the CSR is all of the received bytes
    inContext('Failed to verify csr signature', () => verifyCsrSignature(csr, signature, received))
    checkLeafConfig(csr.config, csr.config.notBefore, csr.config.notAfter)
    return csr
  }
  throw new KmsError('KMS_ERR_RPC', `Unsupported API version: ${apiVersion}`)
}

// ---------------------------------------------------------------------------------------------
// What a signed CSR may ask for. Upstream copies these fields into the leaf unchecked; each rule
// refuses a request that no workload needs and that would make the issued certificate
// misleading to whoever trusts the App CA.

function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return true
  }
  return false
}

/** Refuses an impossible validity, control characters in names (a newline in a CN forges extra
 * lines in every log and `openssl x509 -text` that shows it), and wildcard SANs broader than one
 * label under a registrable-looking domain (`*`, `*.com`, `a.*.example.com`). */
export function checkLeafConfig(
  cfg: CsrCertConfig,
  notBefore: bigint | null,
  notAfter: bigint | null,
): void {
  const refuse = (why: string): never => {
    throw new KmsError('KMS_ERR_BAD_REQUEST', `Invalid certificate config: ${why}`)
  }
  if (notBefore !== null && notAfter !== null && notBefore > notAfter) {
    refuse(`not_before (${notBefore}) is after not_after (${notAfter})`)
  }
  if (hasControlChar(cfg.subject)) refuse('the subject contains a control character')
  if (cfg.orgName !== null && hasControlChar(cfg.orgName)) {
    refuse('the organization name contains a control character')
  }
  for (const san of cfg.subjectAltNames) {
    if (hasControlChar(san)) refuse('a subject alternative name contains a control character')
    if (!san.includes('*')) continue
    const labels = san.split('.')
    const wildcardOnlyLeftmost = labels[0] === '*' && labels.slice(1).every((l) => !l.includes('*'))
    if (!wildcardOnlyLeftmost || labels.length < 3 || labels.slice(1).some((l) => l === '')) {
      refuse(`wildcard subject alternative name ${JSON.stringify(san)} is too broad`)
    }
  }
}
