// DCAP quote parsing, as dcap-qvl does it: headers v3/v4/v5, SGX enclave reports and TD reports
// 1.0/1.5, and the ECDSA signature data down to the PEM PCK chain. The walk follows dcap-qvl
// 0.5.2's `Quote::parse` field by field, so that a malformed quote fails with the same codec chain
// as upstream's (CSR V1 upgrades show it to clients: `Invalid TDX quote: Could not decode …`).
// Everything is read through the length fields; trailing bytes (zero padding) are ignored.
import { KmsError } from '../errors.js'
import { ScaleError, ScaleReader } from '../codec/scale.js'

export interface TdReport10 {
  teeTcbSvn: Buffer
  mrSeam: Buffer
  mrSignerSeam: Buffer
  seamAttributes: Buffer
  tdAttributes: Buffer
  xfam: Buffer
  mrTd: Buffer
  mrConfigId: Buffer
  mrOwner: Buffer
  mrOwnerConfig: Buffer
  rtmr0: Buffer
  rtmr1: Buffer
  rtmr2: Buffer
  rtmr3: Buffer
  reportData: Buffer
}

export type QuoteReport =
  | { type: 'td10'; td: TdReport10 }
  | { type: 'td15'; td: TdReport10; teeTcbSvn2: Buffer; mrServiceTd: Buffer }
  | {
      type: 'sgx'
      reportData: Buffer
      attributes: Buffer
      mrEnclave: Buffer
      mrSigner: Buffer
      /** the 384-byte enclave report */
      raw: Buffer
    }

export interface ParsedQuote {
  version: 4 | 5 | 3
  attestationKeyType: number
  teeType: number
  qeSvn: number
  pceSvn: number
  qeVendorId: Buffer
  userData: Buffer
  report: QuoteReport
  /** header ‖ body: the bytes the attestation key signs */
  signedLength: number
  ecdsaSignature: Buffer
  attestationKey: Buffer
  qeReport: Buffer
  qeReportSignature: Buffer
  qeAuthData: Buffer
  /** type of the certification data in the signature data (6 = QE report certification data for
   * v4/v5; for v3 the PCK data type itself) */
  certificationDataType: number
  /** type of the PCK certification data (5 = PEM chain) */
  pckCertType: number
  /** certification data type 5 body: the PEM PCK chain ('' when the quote carries another type) */
  pckChainPem: string
  /** meaningful length (trailing zero padding excluded) */
  length: number
  /** bytes the length fields declare but no field reads (quote-structure.ts refuses them):
   * inside the signature data after its certification data, and (v4/v5) inside the QE report
   * certification data after the PCK certification data */
  unreadSignatureData: number
  unreadQeCertificationData: number
  /** v5 `Body::size` as declared (null for v3/v4, which have no such field) */
  declaredBodySize: number | null
  /** size of the report body actually read (the header excluded, v5's type and size excluded) */
  bodySize: number
}

/** REPORT_DATA offset inside a v4 TD quote (48-byte header + 520 into the TD report body). */
export const QUOTE_V4_REPORT_DATA_OFFSET = 568
export const QUOTE_HEADER_LENGTH = 48
export const TD_REPORT10_LENGTH = 584
export const TD_REPORT15_LENGTH = 648
export const ENCLAVE_REPORT_LENGTH = 384
export const TEE_TYPE_SGX = 0
export const TEE_TYPE_TDX = 0x81
export const PCK_CERT_CHAIN_TYPE = 5
export const QE_REPORT_CERTIFICATION_DATA_TYPE = 6

const MAX_QUOTE_DATA_LEN = 1_048_576

type Fields = ReadonlyArray<readonly [string, number]>

const HEADER_FIELDS: Fields = [
  ['version', 2],
  ['attestation_key_type', 2],
  ['tee_type', 4],
  ['qe_svn', 2],
  ['pce_svn', 2],
  ['qe_vendor_id', 16],
  ['user_data', 20],
]
const ENCLAVE_REPORT_FIELDS: Fields = [
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
const TD_REPORT10_FIELDS: Fields = [
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

function readStruct(r: ScaleReader, type: string, fields: Fields): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  for (const [name, size] of fields) {
    out.set(
      name,
      r.field(`${type}::${name}`, (x) => x.bytes(size)),
    )
  }
  return out
}

function get(m: Map<string, Buffer>, name: string): Buffer {
  const v = m.get(name)
  if (v === undefined) throw new KmsError('KMS_ERR_INTERNAL', `quote field ${name} missing`)
  return v
}

function readQuoteData(r: ScaleReader, lenBytes: 2 | 4): Buffer {
  const len = lenBytes === 2 ? r.u16() : r.u32()
  if (len > MAX_QUOTE_DATA_LEN) throw new ScaleError('Data length exceeds maximum')
  return r.bytes(len)
}

interface CertificationData {
  type: number
  body: Buffer
}

function readCertificationData(r: ScaleReader): CertificationData {
  const type = r.field('CertificationData::cert_type', (x) => x.u16())
  const body = r.field('CertificationData::body', (x) => readQuoteData(x, 4))
  return { type, body }
}

interface AuthData {
  unreadSignatureData: number
  unreadQeCertificationData: number
  ecdsaSignature: Buffer
  attestationKey: Buffer
  qeReport: Buffer
  qeReportSignature: Buffer
  qeAuthData: Buffer
  certificationDataType: number
  pck: CertificationData
}

function readAuthData(version: 3 | 4, data: Buffer): AuthData {
  const r = new ScaleReader(data)
  if (version === 3) {
    const f = readStruct(r, 'AuthDataV3', [
      ['ecdsa_signature', 64],
      ['ecdsa_attestation_key', 64],
      ['qe_report', 384],
      ['qe_report_signature', 64],
    ])
    const qeAuthData = r.field('AuthDataV3::qe_auth_data', (x) => readQuoteData(x, 2))
    const pck = r.field('AuthDataV3::certification_data', readCertificationData)
    return {
      unreadSignatureData: r.remaining,
      unreadQeCertificationData: 0,
      ecdsaSignature: get(f, 'ecdsa_signature'),
      attestationKey: get(f, 'ecdsa_attestation_key'),
      qeReport: get(f, 'qe_report'),
      qeReportSignature: get(f, 'qe_report_signature'),
      qeAuthData,
      certificationDataType: pck.type,
      pck,
    }
  }
  // AuthDataV4 has a hand-written decoder upstream: its own fields are not chained
  const ecdsaSignature = r.bytes(64)
  const attestationKey = r.bytes(64)
  const outer = readCertificationData(r)
  const q = new ScaleReader(outer.body)
  const f = readStruct(q, 'QEReportCertificationData', [
    ['qe_report', 384],
    ['qe_report_signature', 64],
  ])
  const qeAuthData = q.field('QEReportCertificationData::qe_auth_data', (x) => readQuoteData(x, 2))
  const pck = q.field('QEReportCertificationData::certification_data', readCertificationData)
  return {
    unreadSignatureData: r.remaining,
    unreadQeCertificationData: q.remaining,
    ecdsaSignature,
    attestationKey,
    qeReport: get(f, 'qe_report'),
    qeReportSignature: get(f, 'qe_report_signature'),
    qeAuthData,
    certificationDataType: outer.type,
    pck,
  }
}

function td10FromFields(f: Map<string, Buffer>): TdReport10 {
  return {
    teeTcbSvn: get(f, 'tee_tcb_svn'),
    mrSeam: get(f, 'mr_seam'),
    mrSignerSeam: get(f, 'mr_signer_seam'),
    seamAttributes: get(f, 'seam_attributes'),
    tdAttributes: get(f, 'td_attributes'),
    xfam: get(f, 'xfam'),
    mrTd: get(f, 'mr_td'),
    mrConfigId: get(f, 'mr_config_id'),
    mrOwner: get(f, 'mr_owner'),
    mrOwnerConfig: get(f, 'mr_owner_config'),
    rtmr0: get(f, 'rt_mr0'),
    rtmr1: get(f, 'rt_mr1'),
    rtmr2: get(f, 'rt_mr2'),
    rtmr3: get(f, 'rt_mr3'),
    reportData: get(f, 'report_data'),
  }
}

function readTd10(r: ScaleReader): TdReport10 {
  return td10FromFields(readStruct(r, 'TDReport10', TD_REPORT10_FIELDS))
}

function readSgx(r: ScaleReader): QuoteReport {
  const raw: Buffer[] = []
  const f = new Map<string, Buffer>()
  for (const [name, size] of ENCLAVE_REPORT_FIELDS) {
    const v = r.field(`EnclaveReport::${name}`, (x) => x.bytes(size))
    f.set(name, v)
    raw.push(v)
  }
  return {
    type: 'sgx',
    reportData: get(f, 'report_data'),
    attributes: get(f, 'attributes'),
    mrEnclave: get(f, 'mr_enclave'),
    mrSigner: get(f, 'mr_signer'),
    raw: Buffer.concat(raw),
  }
}

/** Parses a DCAP quote. SCALE-level failures throw `ScaleError` with dcap-qvl's codec chain
 * (`Could not decode \`Header::version\`…`, `Unsupported quote version`, `Invalid TEE type`,
 * `Unsupported body type`); callers add upstream's context (`Invalid TDX quote`). */
export function parseQuote(bytes: Uint8Array): ParsedQuote {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const r = new ScaleReader(buf)
  const header = readStruct(r, 'Header', HEADER_FIELDS)
  const version = get(header, 'version').readUInt16LE(0)
  const teeType = get(header, 'tee_type').readUInt32LE(0)
  let report: QuoteReport
  let declaredBodySize: number | null = null
  let bodyStart = QUOTE_HEADER_LENGTH
  if (version === 3 || version === 4) {
    if (teeType === TEE_TYPE_SGX) report = readSgx(r)
    else if (version === 4 && teeType === TEE_TYPE_TDX) report = { type: 'td10', td: readTd10(r) }
    else throw new ScaleError('Invalid TEE type')
  } else if (version === 5) {
    const bodyType = r.field('Body::body_type', (x) => x.u16())
    declaredBodySize = r.field('Body::size', (x) => x.u32())
    bodyStart = buf.length - r.remaining
    if (bodyType === 1) {
      report = readSgx(r)
    } else if (bodyType === 2) {
      report = { type: 'td10', td: readTd10(r) }
    } else if (bodyType === 3) {
      const td = r.field('TDReport15::base', readTd10)
      const ext = readStruct(r, 'TDReport15', [
        ['tee_tcb_svn2', 16],
        ['mr_service_td', 48],
      ])
      report = {
        type: 'td15',
        td,
        teeTcbSvn2: get(ext, 'tee_tcb_svn2'),
        mrServiceTd: get(ext, 'mr_service_td'),
      }
    } else {
      throw new ScaleError('Unsupported body type')
    }
  } else {
    throw new ScaleError('Unsupported quote version')
  }
  const signedLength = buf.length - r.remaining
  const bodySize = signedLength - bodyStart
  const auth = readAuthData(version === 3 ? 3 : 4, readQuoteData(r, 4))
  const length = buf.length - r.remaining
  const pckChainPem = auth.pck.type === PCK_CERT_CHAIN_TYPE ? auth.pck.body.toString('utf8') : ''
  return {
    version,
    attestationKeyType: get(header, 'attestation_key_type').readUInt16LE(0),
    teeType,
    qeSvn: get(header, 'qe_svn').readUInt16LE(0),
    pceSvn: get(header, 'pce_svn').readUInt16LE(0),
    qeVendorId: get(header, 'qe_vendor_id'),
    userData: get(header, 'user_data'),
    report,
    signedLength,
    ecdsaSignature: auth.ecdsaSignature,
    attestationKey: auth.attestationKey,
    qeReport: auth.qeReport,
    qeReportSignature: auth.qeReportSignature,
    qeAuthData: auth.qeAuthData,
    certificationDataType: auth.certificationDataType,
    pckCertType: auth.pck.type,
    pckChainPem,
    length,
    unreadSignatureData: auth.unreadSignatureData,
    unreadQeCertificationData: auth.unreadQeCertificationData,
    declaredBodySize,
    bodySize,
  }
}

/** The TD report of a parsed quote (dcap-qvl `as_td10`: a TD 1.5 report yields its 1.0 base), or
 * null for SGX. */
export function tdReportOf(q: ParsedQuote): TdReport10 | null {
  return q.report.type === 'sgx' ? null : q.report.td
}

/** REPORT_DATA of a TD quote: `ScaleError` if the quote does not parse, `Invalid TDX report` if it
 * is an SGX quote. */
export function quoteReportData(bytes: Uint8Array): Buffer {
  const td = tdReportOf(parseQuote(bytes))
  if (td === null) throw new KmsError('KMS_ERR_ATTESTATION', 'Invalid TDX report')
  return td.reportData
}
