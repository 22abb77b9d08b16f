// SignCert certificate signing requests (spec 04 §15): the SCALE layouts of upstream's
// `CertSigningRequestV1/V2` (dstack/ra-tls/src/cert.rs), their signature check, and the V1 → V2
// upgrade. Error texts are upstream's, since they reach the client verbatim (spec 01 §6.2).
import { verify as cryptoVerify } from 'node:crypto'
import { P256PublicKey } from '../crypto/p256.js'
import { KmsError, errorMessage, withContext } from '../errors.js'
import { TAG, expectTag, readBitString, readOid, readTlv, sequenceOf } from '../x509/der.js'
import { OID } from '../x509/oids.js'
import { ScaleError, ScaleReader, ScaleWriter } from './scale.js'
import { decodeHex } from '../util/hex.js'
import { rustDebugStr } from '../util/rust-text.js'

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
  /** JSON text of the TDX event log (spec 04 §9.2) */
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

const MAX_ATTESTATION_BYTES = 10 * 1024 * 1024

function decodeCertConfigFields(r: ScaleReader, type: string): CsrCertConfig {
  return {
    orgName: r.field(`${type}::org_name`, (x) => x.option((y) => y.string())),
    subject: r.field(`${type}::subject`, (x) => x.string()),
    subjectAltNames: r.field(`${type}::subject_alt_names`, (x) => x.vec((y) => y.string())),
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
  const r = new ScaleReader(bytes)
  return {
    confirm: r.field('CertSigningRequestV1::confirm', (x) => x.string()),
    pubkey: r.field('CertSigningRequestV1::pubkey', (x) => x.vecU8()),
    config: r.field('CertSigningRequestV1::config', (x) => decodeCertConfigFields(x, 'CertConfig')),
    quote: r.field('CertSigningRequestV1::quote', (x) => x.vecU8()),
    eventLog: r.field('CertSigningRequestV1::event_log', (x) => x.vecU8()),
  }
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
 * confirm word is checked last. */
export function verifyCsrSignature(csr: CertSigningRequest, signature: Uint8Array): void {
  const encoded = 'attestation' in csr ? encodeCsrV2(csr) : encodeCsrV1(csr)
  const point = spkiEcPoint(csr.pubkey)
  if (!ecdsaP256Sha256Verify(point, encoded, signature)) throw csrError('Invalid signature')
  if (csr.confirm !== CSR_CONFIRM) throw csrError('Invalid confirm word')
}

// ---------------------------------------------------------------------------------------------
// V1 → V2 upgrade: `Attestation::from_tdx_quote(quote, event_log)` (spec 04 §7)

const DSTACK_RUNTIME_EVENT_TYPE = 0x08000001

interface TdxEvent {
  imr: number
  eventType: number
  digest: Buffer
  event: string
  eventPayload: Buffer
}

function jsonKind(v: unknown): string {
  if (v === null) return 'unit value'
  if (Array.isArray(v)) return 'sequence'
  if (typeof v === 'object') return 'map'
  if (typeof v === 'string') return `string ${rustDebugStr(v)}`
  if (typeof v === 'boolean') return `boolean \`${String(v)}\``
  if (typeof v === 'number') {
    return Number.isInteger(v) ? `integer \`${v}\`` : `floating point \`${v}\``
  }
  return typeof v
}

function hexField(v: unknown): Buffer {
  if (typeof v !== 'string') throw new Error(`invalid type: ${jsonKind(v)}, expected hex string`)
  return decodeHex(v)
}

function u32Field(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new Error(`invalid type: ${jsonKind(v)}, expected u32`)
  }
  if (v < 0 || v > 0xffffffff) throw new Error(`invalid value: integer \`${v}\`, expected u32`)
  return v
}

/** serde_json's view of the legacy JSON event log (unknown keys ignored, `digest` optional). The
 * texts follow serde_json's where they are position-independent; its ` at line L column C` suffix
 * is only reproduced for empty input. */
function parseTdxEventLogJson(bytes: Buffer): TdxEvent[] {
  const text = bytes.toString('utf8')
  if (/^[ \t\r\n]*$/.test(text)) {
    const lines = text.split('\n')
    const column = (lines[lines.length - 1] ?? '').length
    throw new Error(`EOF while parsing a value at line ${lines.length} column ${column}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new Error(errorMessage(err))
  }
  if (!Array.isArray(parsed)) {
    throw new Error(`invalid type: ${jsonKind(parsed)}, expected a sequence`)
  }
  return parsed.map((item: unknown): TdxEvent => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      throw new Error(`invalid type: ${jsonKind(item)}, expected struct TdxEvent`)
    }
    const o = new Map(Object.entries(item))
    const required = (key: string): unknown => {
      if (!o.has(key)) throw new Error(`missing field \`${key}\``)
      return o.get(key)
    }
    const event = required('event')
    if (typeof event !== 'string') {
      throw new Error(`invalid type: ${jsonKind(event)}, expected a string`)
    }
    return {
      imr: u32Field(required('imr')),
      eventType: u32Field(required('event_type')),
      digest: o.has('digest') ? hexField(o.get('digest')) : Buffer.alloc(0),
      event,
      eventPayload: hexField(required('event_payload')),
    }
  })
}

// dcap-qvl 0.5.2 `Quote::parse`: field names and sizes of the derived decoders, so that a
// malformed quote fails with the same codec chain as upstream's.
const HEADER_FIELDS: ReadonlyArray<readonly [string, number]> = [
  ['version', 2],
  ['attestation_key_type', 2],
  ['tee_type', 4],
  ['qe_svn', 2],
  ['pce_svn', 2],
  ['qe_vendor_id', 16],
  ['user_data', 20],
]
const ENCLAVE_REPORT_FIELDS: ReadonlyArray<readonly [string, number]> = [
  ['cpu_svn', 16],
  ['misc_select', 4],
  ['reserved1', 28],
  ['attributes', 16],
  ['mr_enclave', 32],
  ['reserved2', 32],
  ['mr_signer', 32],
  ['reserved3', 96],
  ['isv_prod_id', 2],
  ['isv_svn', 2],
  ['reserved4', 60],
  ['report_data', 64],
]
const TD_REPORT10_FIELDS: ReadonlyArray<readonly [string, number]> = [
  ['tee_tcb_svn', 16],
  ['mr_seam', 48],
  ['mr_signer_seam', 48],
  ['seam_attributes', 8],
  ['td_attributes', 8],
  ['xfam', 8],
  ['mr_td', 48],
  ['mr_config_id', 48],
  ['mr_owner', 48],
  ['mr_owner_config', 48],
  ['rt_mr0', 48],
  ['rt_mr1', 48],
  ['rt_mr2', 48],
  ['rt_mr3', 48],
  ['report_data', 64],
]
const TEE_TYPE_SGX = 0
const TEE_TYPE_TDX = 0x81
const MAX_QUOTE_DATA_LEN = 1_048_576

function readStruct(
  r: ScaleReader,
  type: string,
  fields: ReadonlyArray<readonly [string, number]>,
): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  for (const [name, size] of fields) {
    out.set(
      name,
      r.field(`${type}::${name}`, (x) => x.bytes(size)),
    )
  }
  return out
}

function readQuoteData(r: ScaleReader, lenBytes: 2 | 4): Buffer {
  const len = lenBytes === 2 ? r.u16() : r.u32()
  if (len > MAX_QUOTE_DATA_LEN) throw new ScaleError('Data length exceeds maximum')
  return r.bytes(len)
}

function readCertificationData(r: ScaleReader): Buffer {
  r.field('CertificationData::cert_type', (x) => x.u16())
  return r.field('CertificationData::body', (x) => readQuoteData(x, 4))
}

function readAuthData(version: number, data: Buffer): void {
  const r = new ScaleReader(data)
  if (version === 3) {
    readStruct(r, 'AuthDataV3', [
      ['ecdsa_signature', 64],
      ['ecdsa_attestation_key', 64],
      ['qe_report', 384],
      ['qe_report_signature', 64],
    ])
    r.field('AuthDataV3::qe_auth_data', (x) => readQuoteData(x, 2))
    r.field('AuthDataV3::certification_data', readCertificationData)
    return
  }
  // AuthDataV4 has a hand-written decoder: its own fields are not chained
  r.bytes(64)
  r.bytes(64)
  const body = readCertificationData(r)
  const q = new ScaleReader(body)
  readStruct(q, 'QEReportCertificationData', [
    ['qe_report', 384],
    ['qe_report_signature', 64],
  ])
  q.field('QEReportCertificationData::qe_auth_data', (x) => readQuoteData(x, 2))
  q.field('QEReportCertificationData::certification_data', readCertificationData)
}

/** REPORT_DATA of a TD report; throws `ScaleError` (quote) or a plain Error (not a TD report). */
function tdxQuoteReportData(quote: Buffer): Buffer {
  const r = new ScaleReader(quote)
  const header = readStruct(r, 'Header', HEADER_FIELDS)
  const version = header.get('version')?.readUInt16LE(0) ?? 0
  const teeType = header.get('tee_type')?.readUInt32LE(0) ?? 0
  let reportData: Buffer | null = null
  const td10 = (): Buffer =>
    readStruct(r, 'TDReport10', TD_REPORT10_FIELDS).get('report_data') ?? Buffer.alloc(64)
  if (version === 3 || version === 4) {
    if (teeType === TEE_TYPE_SGX) readStruct(r, 'EnclaveReport', ENCLAVE_REPORT_FIELDS)
    else if (version === 4 && teeType === TEE_TYPE_TDX) reportData = td10()
    else throw new ScaleError('Invalid TEE type')
  } else if (version === 5) {
    const bodyType = r.field('Body::body_type', (x) => x.u16())
    r.field('Body::size', (x) => x.u32())
    if (bodyType === 1) {
      readStruct(r, 'EnclaveReport', ENCLAVE_REPORT_FIELDS)
    } else if (bodyType === 2) {
      reportData = td10()
    } else if (bodyType === 3) {
      reportData = r.field('TDReport15::base', td10)
      readStruct(r, 'TDReport15', [
        ['tee_tcb_svn2', 16],
        ['mr_service_td', 48],
      ])
    } else {
      throw new ScaleError('Unsupported body type')
    }
  } else {
    throw new ScaleError('Unsupported quote version')
  }
  readAuthData(version === 5 ? 4 : version, readQuoteData(r, 4))
  if (reportData === null) throw new Error('Invalid TDX report')
  return reportData
}

function encodeV0TdxAttestation(
  quote: Buffer,
  events: readonly TdxEvent[],
  reportData: Buffer,
): Buffer {
  const runtime = events.filter((e) => e.eventType === DSTACK_RUNTIME_EVENT_TYPE)
  return new ScaleWriter()
    .u8(0) // VersionedAttestation::V0
    .u8(0) // AttestationQuote::DstackTdx
    .vecU8(quote)
    .vec(events, (w, e) =>
      w.u32(e.imr).u32(e.eventType).vecU8(e.digest).string(e.event).vecU8(e.eventPayload),
    )
    .vec(runtime, (w, e) => w.string(e.event).vecU8(e.eventPayload))
    .raw(reportData)
    .string('') // config
    .toBuffer()
}

/** `Attestation::from_tdx_quote(quote, event_log).into_versioned()` as V0 SCALE bytes. */
export function attestationFromTdxQuote(quote: Buffer, eventLogJson: Buffer): Buffer {
  let events: TdxEvent[]
  try {
    events = parseTdxEventLogJson(eventLogJson)
  } catch (err) {
    throw withContext('Failed to parse tdx_event_log', err, 'KMS_ERR_BAD_REQUEST')
  }
  let reportData: Buffer
  try {
    reportData = tdxQuoteReportData(quote)
  } catch (err) {
    if (err instanceof ScaleError) throw withContext('Invalid TDX quote', err)
    throw new KmsError('KMS_ERR_BAD_REQUEST', errorMessage(err))
  }
  return encodeV0TdxAttestation(quote, events, reportData)
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
  if (apiVersion === 1) {
    const csr = inContext('Failed to parse csr', () => decodeCsrV1(csrBytes))
    inContext('Failed to verify csr signature', () => verifyCsrSignature(csr, signature))
    return inContext('Failed to upgrade csr v1 to v2', () => upgradeCsrV1(csr))
  }
  if (apiVersion === 2) {
    const csr = inContext('Failed to parse csr', () => decodeCsrV2(csrBytes))
    inContext('Failed to verify csr signature', () => verifyCsrSignature(csr, signature))
    return csr
  }
  throw new KmsError('KMS_ERR_RPC', `Unsupported API version: ${apiVersion}`)
}
