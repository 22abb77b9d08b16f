// Real-format TDX quotes (v4, TD report 1.0) signed by the mock platform: the
// attestation key signs header ‖ body, the QE report binds that key through
// report_data[0..32] = SHA-256(attestation_key ‖ qe_auth_data), the PCK key signs the QE report,
// and the certification data carries the PCK chain PEM (type 5 inside type 6), as Intel's QE does.
import { createHash } from 'node:crypto'
import { KmsError } from '../../errors.js'
import {
  MOCK_PLATFORM_TCB,
  MOCK_TD_QE,
  type MockIntelPki,
  pckChainPem,
  signDeterministic,
} from './mock-pki.js'

export const INTEL_QE_VENDOR_ID = Buffer.from('939a7233f79c4ca9940a0db3957f0607', 'hex')
export const TEE_TYPE_TDX = 0x81
const HEADER_LENGTH = 48
const TD_REPORT10_LENGTH = 584
const QE_REPORT_LENGTH = 384

/** TD attributes: SEPT_VE_DISABLE (bit 28) only — no debug, nothing reserved. */
export const SIM_TD_ATTRIBUTES = Buffer.from('0000001000000000', 'hex')
/** SIM_TD_ATTRIBUTES with TUD.DEBUG (bit 0) set: what a debug TD reports */
export const SIM_DEBUG_TD_ATTRIBUTES = Buffer.from('0100001000000000', 'hex')
/** XFAM of a typical dstack CVM (x87, SSE, AVX, AVX-512, PKRU, AMX state components). */
export const SIM_XFAM = Buffer.from('e702060000000000', 'hex')

/** The measurement registers a simulated TD reports. 48 bytes each, report_data 64. */
export interface TdRegisters {
  mrTd: Buffer
  rtmr0: Buffer
  rtmr1: Buffer
  rtmr2: Buffer
  rtmr3: Buffer
  reportData: Buffer
  /** default zero (dstack guests without a config-id) */
  mrConfigId?: Buffer
  mrOwner?: Buffer
  mrOwnerConfig?: Buffer
  /** default SIM_TD_ATTRIBUTES (SEPT_VE_DISABLE only); tests set the debug bit to see it refused */
  tdAttributes?: Buffer
}

function fixed(value: Buffer | undefined, length: number, what: string): Buffer {
  if (value === undefined) return Buffer.alloc(length)
  if (value.length !== length) {
    throw new KmsError(
      'KMS_ERR_TEE',
      `simulated ${what} must be ${length} bytes, got ${value.length}`,
    )
  }
  return value
}

function header(): Buffer {
  const h = Buffer.alloc(HEADER_LENGTH)
  h.writeUInt16LE(4, 0)
  h.writeUInt16LE(2, 2) // ECDSA-256 with P-256
  h.writeUInt32LE(TEE_TYPE_TDX, 4)
  h.writeUInt16LE(MOCK_TD_QE.isvSvn, 8)
  h.writeUInt16LE(MOCK_PLATFORM_TCB.pceSvn, 10)
  INTEL_QE_VENDOR_ID.copy(h, 12)
  return h
}

function tdReport(pki: MockIntelPki, r: TdRegisters): Buffer {
  return Buffer.concat([
    Buffer.from(MOCK_PLATFORM_TCB.tdxComponents),
    pki.mrSeam,
    Buffer.alloc(48), // MRSIGNER_SEAM: zero for Intel's own TDX module
    Buffer.alloc(8), // SEAM attributes
    r.tdAttributes === undefined ? SIM_TD_ATTRIBUTES : fixed(r.tdAttributes, 8, 'TD attributes'),
    SIM_XFAM,
    fixed(r.mrTd, 48, 'MRTD'),
    fixed(r.mrConfigId, 48, 'MRCONFIGID'),
    fixed(r.mrOwner, 48, 'MROWNER'),
    fixed(r.mrOwnerConfig, 48, 'MROWNERCONFIG'),
    fixed(r.rtmr0, 48, 'RTMR0'),
    fixed(r.rtmr1, 48, 'RTMR1'),
    fixed(r.rtmr2, 48, 'RTMR2'),
    fixed(r.rtmr3, 48, 'RTMR3'),
    fixed(r.reportData, 64, 'report_data'),
  ])
}

/** QE authentication data as Intel's QE fills it (0x00..0x1f). dcap-qvl hashes exactly 32 bytes
 * of it after the attestation key, so longer data would not verify there. */
const QE_AUTH_DATA = Buffer.from(Array.from({ length: 32 }, (_, i) => i))

interface QeCertification {
  /** QE report ‖ its signature ‖ auth data ‖ PCK chain: the body of certification data type 6 */
  body: Buffer
  attestationPublicKey: Buffer
}

const qeCache = new WeakMap<MockIntelPki, QeCertification>()

/** The QE's certification data: constant for one platform (one attestation key per "boot"). */
function qeCertification(pki: MockIntelPki): QeCertification {
  const cached = qeCache.get(pki)
  if (cached !== undefined) return cached
  const attestationPublicKey = pki.attestationKey.publicPoint.subarray(1)
  const report = Buffer.alloc(QE_REPORT_LENGTH)
  Buffer.from(MOCK_PLATFORM_TCB.sgxComponents).copy(report, 0) // CPUSVN
  report.writeUInt32LE(MOCK_TD_QE.miscSelect, 16)
  MOCK_TD_QE.attributes.copy(report, 48)
  pki.qeMrEnclave.copy(report, 64)
  MOCK_TD_QE.mrSigner.copy(report, 128)
  report.writeUInt16LE(MOCK_TD_QE.isvProdId, 256)
  report.writeUInt16LE(MOCK_TD_QE.isvSvn, 258)
  createHash('sha256').update(attestationPublicKey).update(QE_AUTH_DATA).digest().copy(report, 320)
  const reportSignature = signDeterministic(pki.pck.key, report).raw
  // Intel's QE writes the chain as a C string: the trailing NUL is part of the body.
  const chain = Buffer.from(pckChainPem(pki) + '\0', 'latin1')
  const authLength = Buffer.alloc(2)
  authLength.writeUInt16LE(QE_AUTH_DATA.length)
  const certHeader = Buffer.alloc(6)
  certHeader.writeUInt16LE(5, 0)
  certHeader.writeUInt32LE(chain.length, 2)
  const body = Buffer.concat([report, reportSignature, authLength, QE_AUTH_DATA, certHeader, chain])
  const result = { body, attestationPublicKey }
  qeCache.set(pki, result)
  return result
}

/** A v4 TDX quote over `registers`, signed by the mock platform of `pki`. */
export function buildTdxQuote(pki: MockIntelPki, registers: TdRegisters): Buffer {
  const signed = Buffer.concat([header(), tdReport(pki, registers)])
  const qe = qeCertification(pki)
  const signature = signDeterministic(pki.attestationKey, signed).raw
  const certHeader = Buffer.alloc(6)
  certHeader.writeUInt16LE(6, 0)
  certHeader.writeUInt32LE(qe.body.length, 2)
  const sigData = Buffer.concat([signature, qe.attestationPublicKey, certHeader, qe.body])
  const sigLength = Buffer.alloc(4)
  sigLength.writeUInt32LE(sigData.length)
  return Buffer.concat([signed, sigLength, sigData])
}

export const QUOTE_V4_SIGNED_LENGTH = HEADER_LENGTH + TD_REPORT10_LENGTH
