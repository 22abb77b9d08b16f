// Typed access to the addon's two /dev/tdx_guest ioctls (native/tdx_guest.cc). Arguments are
// validated here, so the addon only ever sees well-formed input; failures reject with Node's
// errno error shape (`{code, errno, syscall: 'open' | 'ioctl', path}`), which src/tee/tdx/errors.ts
// turns into TdxErrors.
import { KmsError } from '../errors.js'
import { loadNativeBinding } from './binding.js'

/** The misc device of the in-tree TDX guest driver (the kernel docs say tdx-guest; the node is
 * tdx_guest). */
export const TDX_GUEST_DEVICE = '/dev/tdx_guest'
export const TDX_REPORT_DATA_SIZE = 64
export const TDX_REPORT_SIZE = 1024
export const RTMR_DIGEST_SIZE = 48

/** The TDX part of the addon's exports. */
export interface NativeTdx {
  /** ioctl(TDX_CMD_GET_REPORT0 = 0xc4405401): the 1024-byte TDREPORT for 64 bytes of REPORTDATA */
  tdxGetReport0(devicePath: string, reportData: Uint8Array): Promise<Buffer>
  /** the legacy out-of-tree ioctl(TDX_CMD_EXTEND_RTMR = 0x80315403) */
  tdxExtendRtmr(devicePath: string, index: number, digest: Uint8Array): Promise<void>
  /** connect(AF_VSOCK, cid, port), send `request`, read a 4-byte big-endian length and that many
   * bytes; resolves with length ‖ body, or the 4 length bytes alone when over `maxResponse`.
   * A stream that ends early rejects with `code: 'EOF'`. */
  vsockRoundTrip(
    cid: number,
    port: number,
    request: Uint8Array,
    maxResponse: number,
    timeoutMs: number,
  ): Promise<Buffer>
}

export function loadNativeTdx(env: NodeJS.ProcessEnv = process.env): NativeTdx {
  const binding: object = loadNativeBinding(env)
  if (!isNativeTdx(binding)) {
    throw new KmsError(
      'KMS_ERR_NATIVE',
      'the native addon predates the TDX primitives (tdxGetReport0/tdxExtendRtmr/vsockRoundTrip missing); run `npm run build:native`',
    )
  }
  return binding
}

function isNativeTdx(value: object): value is NativeTdx {
  return (
    'tdxGetReport0' in value &&
    typeof value.tdxGetReport0 === 'function' &&
    'tdxExtendRtmr' in value &&
    typeof value.tdxExtendRtmr === 'function' &&
    'vsockRoundTrip' in value &&
    typeof value.vsockRoundTrip === 'function'
  )
}

export interface NativeTdxOptions {
  /** defaults to /dev/tdx_guest; tests point it elsewhere to observe errno errors */
  devicePath?: string
  binding?: NativeTdx
}

/** TDX_CMD_GET_REPORT0 on the thread pool. */
export function getTdReport(
  reportData: Uint8Array,
  options: NativeTdxOptions = {},
): Promise<Buffer> {
  if (!(reportData instanceof Uint8Array) || reportData.length !== TDX_REPORT_DATA_SIZE) {
    throw new RangeError(`reportData must be exactly ${TDX_REPORT_DATA_SIZE} bytes`)
  }
  const binding = options.binding ?? loadNativeTdx()
  return binding.tdxGetReport0(options.devicePath ?? TDX_GUEST_DEVICE, reportData)
}

/** The legacy TDX_CMD_EXTEND_RTMR ioctl. The index is passed through (the kernel decides which
 * registers it accepts, answering EINVAL otherwise); only its byte range is checked here. */
export function extendRtmr(
  index: number,
  digest: Uint8Array,
  options: NativeTdxOptions = {},
): Promise<void> {
  if (!Number.isInteger(index) || index < 0 || index > 255) {
    throw new RangeError(`RTMR index must be an integer from 0 to 255, got ${index}`)
  }
  if (!(digest instanceof Uint8Array) || digest.length !== RTMR_DIGEST_SIZE) {
    throw new RangeError(`digest must be exactly ${RTMR_DIGEST_SIZE} bytes`)
  }
  const binding = options.binding ?? loadNativeTdx()
  return binding.tdxExtendRtmr(options.devicePath ?? TDX_GUEST_DEVICE, index, digest)
}

/** The host's context id: QGS listens there. */
export const VMADDR_CID_HOST = 2

/** One framed request/response with a vsock service (QGS), on the thread pool. */
export function vsockRoundTrip(
  port: number,
  request: Uint8Array,
  options: { cid?: number; maxResponse: number; timeoutMs?: number; binding?: NativeTdx },
): Promise<Buffer> {
  const cid = options.cid ?? VMADDR_CID_HOST
  for (const [name, v] of [
    ['cid', cid],
    ['port', port],
    ['maxResponse', options.maxResponse],
    ['timeoutMs', options.timeoutMs ?? 0],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new RangeError(`${name} must be a 32-bit unsigned integer, got ${v}`)
    }
  }
  const binding = options.binding ?? loadNativeTdx()
  return binding.vsockRoundTrip(cid, port, request, options.maxResponse, options.timeoutMs ?? 0)
}
