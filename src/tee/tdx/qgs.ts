// Quotes from Intel's Quote Generation Service on the host over vsock: the legacy
// path of dstack 0.5.x guests without configfs-tsm. A TDREPORT from /dev/tdx_guest goes out in a
// GET_QUOTE_REQ; the quote comes back in a GET_QUOTE_RESP. Messages are little-endian inside a
// big-endian length frame.
import { TDX_REPORT_SIZE, VMADDR_CID_HOST } from '../../native/tdx.js'
import { TdxError } from './errors.js'
import type { TdxIo } from './io.js'
import { TDX_ATTEST_CONFIG_PATH } from './detect.js'
import { QUOTE_MIN_SIZE } from './configfs-tsm.js'
import { getTdReport } from './report.js'

export const QGS_MSG_GET_QUOTE_REQ = 0
export const QGS_MSG_GET_QUOTE_RESP = 1
/** header (16) + report_size (4) + id_list_size (4) + TDREPORT (1024) */
export const QGS_GET_QUOTE_REQ_SIZE = 16 + 4 + 4 + TDX_REPORT_SIZE
export const QGS_MAX_RESPONSE = 16 * 1024
const QGS_RESP_HEADER_SIZE = 24

/** `major 1, minor 0, type 0, size 1048, error 0, report_size 1024, id_list_size 0, report`. */
export function buildQgsGetQuoteRequest(tdReport: Uint8Array): Buffer {
  if (tdReport.length !== TDX_REPORT_SIZE) throw new TdxError('KMS_ERR_TDX_INVALID_PARAMETER')
  const msg = Buffer.alloc(QGS_GET_QUOTE_REQ_SIZE)
  msg.writeUInt16LE(1, 0)
  msg.writeUInt16LE(0, 2)
  msg.writeUInt32LE(QGS_MSG_GET_QUOTE_REQ, 4)
  msg.writeUInt32LE(QGS_GET_QUOTE_REQ_SIZE, 8)
  msg.writeUInt32LE(0, 12)
  msg.writeUInt32LE(TDX_REPORT_SIZE, 16)
  msg.writeUInt32LE(0, 20)
  Buffer.from(tdReport).copy(msg, 24)
  return msg
}

/** The length frame QGS reads first: 4 bytes, big-endian. */
export function frameQgsMessage(msg: Uint8Array): Buffer {
  const frame = Buffer.alloc(4 + msg.length)
  frame.writeUInt32BE(msg.length, 0)
  Buffer.from(msg).copy(frame, 4)
  return frame
}

/** The quote inside a GET_QUOTE_RESP body (after the length frame). */
export function parseQgsGetQuoteResponse(data: Buffer): Buffer {
  if (data.length < QGS_RESP_HEADER_SIZE) {
    throw TdxError.quoteFailure(`response too short: ${data.length} bytes`)
  }
  const type = data.readUInt32LE(4)
  const errorCode = data.readUInt32LE(12)
  if (type !== QGS_MSG_GET_QUOTE_RESP) {
    throw TdxError.quoteFailure(`unexpected message type: ${type}`)
  }
  if (errorCode !== 0) {
    throw TdxError.quoteFailure(`QGS error code: 0x${errorCode.toString(16)}`)
  }
  const selectedIdSize = data.readUInt32LE(16)
  const quoteSize = data.readUInt32LE(20)
  const expected = QGS_RESP_HEADER_SIZE + selectedIdSize + quoteSize
  if (data.length < expected) {
    throw TdxError.quoteFailure(
      `response truncated: got ${data.length} bytes, expected ${expected}`,
    )
  }
  const offset = QGS_RESP_HEADER_SIZE + selectedIdSize
  const quote = Buffer.from(data.subarray(offset, offset + quoteSize))
  if (quote.length < QUOTE_MIN_SIZE) {
    throw TdxError.quoteFailure(`quote too short: ${quote.length} bytes`)
  }
  return quote
}

/** TDREPORT → QGS → quote. I/O failures of the socket are `vsock failure: …`. */
export async function getQuoteViaVsock(
  io: TdxIo,
  reportData: Uint8Array,
  port: number,
): Promise<Buffer> {
  if (port === 0) {
    throw TdxError.notSupported(`no vsock port configured in ${TDX_ATTEST_CONFIG_PATH}`)
  }
  const report = await getTdReport(io, reportData)
  const request = frameQgsMessage(buildQgsGetQuoteRequest(report))
  let reply: Buffer
  try {
    reply = await io.vsockRoundTrip(VMADDR_CID_HOST, port, request, QGS_MAX_RESPONSE)
  } catch (err) {
    throw TdxError.vsockFailure(err)
  }
  if (reply.length < 4) throw TdxError.vsockFailure(Object.assign(new Error(''), { code: 'EOF' }))
  const length = reply.readUInt32BE(0)
  if (length > QGS_MAX_RESPONSE) throw TdxError.quoteFailure(`response too large: ${length}`)
  return parseQgsGetQuoteResponse(reply.subarray(4))
}
