// TDREPORTs through ioctl(TDX_CMD_GET_REPORT0) and the measurement registers they
// carry. Not serialised with quotes: the kernel orders it against its own quote lock.
import { TDX_GUEST_DEVICE, TDX_REPORT_DATA_SIZE, TDX_REPORT_SIZE } from '../../native/tdx.js'
import { ioErrorText, TdxError } from './errors.js'
import type { TdxIo } from './io.js'
import { isOpenFailure } from './rtmr.js'

/** Offsets inside the 1024-byte TDREPORT (REPORTMACSTRUCT, TEE_TCB_INFO, TDINFO). */
export const TDREPORT_OFFSETS = {
  reportData: 128,
  mrTd: 528,
  mrConfigId: 576,
  mrOwner: 624,
  mrOwnerConfig: 672,
  rtmr: [720, 768, 816, 864],
} as const

export async function getTdReport(io: TdxIo, reportData: Uint8Array): Promise<Buffer> {
  if (reportData.length !== TDX_REPORT_DATA_SIZE) {
    throw new TdxError('KMS_ERR_TDX_INVALID_PARAMETER')
  }
  let report: Buffer
  try {
    report = await io.getTdReport(TDX_GUEST_DEVICE, reportData)
  } catch (err) {
    if (isOpenFailure(err)) {
      throw TdxError.deviceFailure(`open ${TDX_GUEST_DEVICE}: ${ioErrorText(err)}`, err)
    }
    throw TdxError.reportFailure(`ioctl: ${ioErrorText(err)}`, err)
  }
  if (report.length !== TDX_REPORT_SIZE) {
    throw TdxError.reportFailure(`ioctl: TDREPORT of ${report.length} bytes`)
  }
  return report
}

/** RTMR0..3 as a TDREPORT carries them. */
export function tdReportRtmrs(report: Buffer): [Buffer, Buffer, Buffer, Buffer] {
  const [a, b, c, d] = TDREPORT_OFFSETS.rtmr
  const at = (o: number): Buffer => Buffer.from(report.subarray(o, o + 48))
  return [at(a), at(b), at(c), at(d)]
}
