// The DCAP collateral of the mock platform: TCB info (TDX, v3) and QE identity (TD_QE, v2) signed
// by the mock TCB-signing key the way Intel signs them (raw r‖s over the exact JSON text of the
// inner object), the issuer chains and both CRLs, in the object shape `@phala/dcap-qvl` verifies.
import type { Collateral } from '@phala/dcap-qvl'
import {
  MOCK_PKI_NOT_AFTER,
  MOCK_PKI_NOT_BEFORE,
  MOCK_PLATFORM_TCB,
  MOCK_TD_QE,
  type MockIntelPki,
  signDeterministic,
} from './mock-pki.js'

export type { Collateral }

/** Intel's date format in TCB info and QE identity documents (no milliseconds). */
function intelDate(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

const upper = (b: Buffer): string => b.toString('hex').toUpperCase()

/** The `tcbInfo` object. Compact JSON (what PCCS clients re-serialise with JSON.stringify). */
export function mockTcbInfoJson(pki: MockIntelPki): string {
  const date = intelDate(MOCK_PKI_NOT_BEFORE)
  const tcb = MOCK_PLATFORM_TCB
  const teeTcbSvn = tcb.tdxComponents
  const tcbInfo = {
    id: 'TDX',
    version: 3,
    issueDate: date,
    nextUpdate: intelDate(MOCK_PKI_NOT_AFTER),
    fmspc: upper(pki.fmspc),
    pceId: upper(tcb.pceId),
    tcbType: 0,
    tcbEvaluationDataNumber: 1,
    // The TDX module identity the simulated TD report claims: Intel-signed (MRSIGNER_SEAM zero),
    // SEAM attributes zero, major version = TEE_TCB_SVN[1].
    tdxModule: {
      mrsigner: '00'.repeat(48),
      attributes: '00'.repeat(8),
      attributesMask: 'FF'.repeat(8),
    },
    tdxModuleIdentities: [
      {
        id: `TDX_${String(teeTcbSvn[1]).padStart(2, '0')}`,
        mrsigner: '00'.repeat(48),
        attributes: '00'.repeat(8),
        attributesMask: 'FF'.repeat(8),
        tcbLevels: [{ tcb: { isvsvn: teeTcbSvn[0] }, tcbDate: date, tcbStatus: 'UpToDate' }],
      },
    ],
    tcbLevels: [
      {
        tcb: {
          sgxtcbcomponents: tcb.sgxComponents.map((svn) => ({ svn })),
          pcesvn: tcb.pceSvn,
          tdxtcbcomponents: tcb.tdxComponents.map((svn) => ({ svn })),
        },
        tcbDate: date,
        tcbStatus: 'UpToDate',
      },
    ],
  }
  return JSON.stringify(tcbInfo)
}

/** The `enclaveIdentity` object of the TD quoting enclave. */
export function mockQeIdentityJson(): string {
  const date = intelDate(MOCK_PKI_NOT_BEFORE)
  const miscSelect = Buffer.alloc(4)
  miscSelect.writeUInt32LE(MOCK_TD_QE.miscSelect)
  const qeIdentity = {
    id: 'TD_QE',
    version: 2,
    issueDate: date,
    nextUpdate: intelDate(MOCK_PKI_NOT_AFTER),
    tcbEvaluationDataNumber: 1,
    miscselect: upper(miscSelect),
    miscselectMask: 'FFFFFFFF',
    attributes: '11000000000000000000000000000000',
    attributesMask: 'FBFFFFFFFFFFFFFF0000000000000000',
    mrsigner: upper(MOCK_TD_QE.mrSigner),
    isvprodid: MOCK_TD_QE.isvProdId,
    tcbLevels: [{ tcb: { isvsvn: MOCK_TD_QE.isvSvn }, tcbDate: date, tcbStatus: 'UpToDate' }],
  }
  return JSON.stringify(qeIdentity)
}

/** The collateral for every quote of this mock platform (binary fields as hex strings). */
export function mockCollateral(pki: MockIntelPki): Collateral {
  const tcbInfo = mockTcbInfoJson(pki)
  const qeIdentity = mockQeIdentityJson()
  const tcbIssuerChain = pki.tcbSigning.pem + pki.root.pem
  return {
    pck_crl_issuer_chain: pki.pckCa.pem + pki.root.pem,
    root_ca_crl: pki.rootCrl.toString('hex'),
    pck_crl: pki.pckCrl.toString('hex'),
    tcb_info_issuer_chain: tcbIssuerChain,
    tcb_info: tcbInfo,
    tcb_info_signature: signDeterministic(pki.tcbSigning.key, Buffer.from(tcbInfo)).raw.toString(
      'hex',
    ),
    qe_identity_issuer_chain: tcbIssuerChain,
    qe_identity: qeIdentity,
    qe_identity_signature: signDeterministic(
      pki.tcbSigning.key,
      Buffer.from(qeIdentity),
    ).raw.toString('hex'),
  }
}
