// Upstream's TdxAttestError (upstream `tdx-attest`) as a typed error: `code` is stable
// for programs, `message` is upstream's Display text for operators and error-text parity, and the
// errno error of the failing syscall stays as `cause`.
import { constants } from 'node:os'
import { isNativeErrnoError } from '../../native/binding.js'

export type TdxErrorCode =
  | 'TDX_UNEXPECTED'
  | 'TDX_INVALID_PARAMETER'
  | 'TDX_OUT_OF_MEMORY'
  | 'TDX_VSOCK_FAILURE'
  | 'TDX_REPORT_FAILURE'
  | 'TDX_EXTEND_FAILURE'
  | 'TDX_NOT_SUPPORTED'
  | 'TDX_QUOTE_FAILURE'
  | 'TDX_BUSY'
  | 'TDX_DEVICE_FAILURE'
  | 'TDX_INVALID_RTMR_INDEX'
  | 'TDX_UNSUPPORTED_ATT_KEY_ID'

const PREFIX: Record<TdxErrorCode, string> = {
  TDX_UNEXPECTED: 'unexpected error',
  TDX_INVALID_PARAMETER: 'invalid parameter',
  TDX_OUT_OF_MEMORY: 'out of memory',
  TDX_VSOCK_FAILURE: 'vsock failure',
  TDX_REPORT_FAILURE: 'report failure',
  TDX_EXTEND_FAILURE: 'extend failure',
  TDX_NOT_SUPPORTED: 'not supported',
  TDX_QUOTE_FAILURE: 'quote failure',
  TDX_BUSY: 'device busy',
  TDX_DEVICE_FAILURE: 'device failure',
  TDX_INVALID_RTMR_INDEX: 'invalid RTMR index',
  TDX_UNSUPPORTED_ATT_KEY_ID: 'unsupported attestation key ID',
}

export class TdxError extends Error {
  readonly code: TdxErrorCode
  /** the variant's payload (`s` of `NotSupported(s)`), empty for the payload-less variants */
  readonly detail: string

  constructor(code: TdxErrorCode, detail = '', options?: { cause?: unknown }) {
    super(detail === '' ? PREFIX[code] : `${PREFIX[code]}: ${detail}`, options)
    this.name = 'TdxError'
    this.code = code
    this.detail = detail
  }

  static unexpected(detail: string, cause?: unknown): TdxError {
    return new TdxError('TDX_UNEXPECTED', detail, { cause })
  }
  static notSupported(detail: string, cause?: unknown): TdxError {
    return new TdxError('TDX_NOT_SUPPORTED', detail, { cause })
  }
  static quoteFailure(detail: string, cause?: unknown): TdxError {
    return new TdxError('TDX_QUOTE_FAILURE', detail, { cause })
  }
  static extendFailure(detail: string, cause?: unknown): TdxError {
    return new TdxError('TDX_EXTEND_FAILURE', detail, { cause })
  }
  static reportFailure(detail: string, cause?: unknown): TdxError {
    return new TdxError('TDX_REPORT_FAILURE', detail, { cause })
  }
  static deviceFailure(detail: string, cause?: unknown): TdxError {
    return new TdxError('TDX_DEVICE_FAILURE', detail, { cause })
  }
  static vsockFailure(ioError: unknown): TdxError {
    return new TdxError('TDX_VSOCK_FAILURE', ioErrorText(ioError), { cause: ioError })
  }
  static busy(cause?: unknown): TdxError {
    return new TdxError('TDX_BUSY', '', { cause })
  }
  static invalidRtmrIndex(index: number, cause?: unknown): TdxError {
    return new TdxError('TDX_INVALID_RTMR_INDEX', String(index), { cause })
  }
}

export function isTdxError(err: unknown, code?: TdxErrorCode): err is TdxError {
  return err instanceof TdxError && (code === undefined || err.code === code)
}

/** The errno name of a Node-style error (`'ENOENT'`), or undefined for anything else. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined
  return typeof err.code === 'string' ? err.code : undefined
}

// glibc's strerror texts, as Rust's io::Error Display prints them: upstream's messages embed
// that Display (`No such file or directory (os error 2)`), and runbooks grep for it.
const STRERROR: Record<string, string> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EINTR: 'Interrupted system call',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  EBADF: 'Bad file descriptor',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EFAULT: 'Bad address',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  EMFILE: 'Too many open files',
  ENOTTY: 'Inappropriate ioctl for device',
  EFBIG: 'File too large',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
  EPIPE: 'Broken pipe',
  ENAMETOOLONG: 'File name too long',
  ENOLCK: 'No locks available',
  ENOSYS: 'Function not implemented',
  ELOOP: 'Too many levels of symbolic links',
  ENODATA: 'No data available',
  EOPNOTSUPP: 'Operation not supported',
  ENOTSUP: 'Operation not supported',
  EAFNOSUPPORT: 'Address family not supported by protocol',
  ECONNRESET: 'Connection reset by peer',
  ETIMEDOUT: 'Connection timed out',
  ECONNREFUSED: 'Connection refused',
  EHOSTUNREACH: 'No route to host',
  ENETUNREACH: 'Network is unreachable',
}

/** Rust's `io::Error` Display of an errno error (`No such file or directory (os error 2)`);
 * the plain message of anything else. */
export function ioErrorText(err: unknown): string {
  const code = errnoCode(err)
  // a stream that ended early: Rust's read_exact says UnexpectedEof this way
  if (code === 'EOF') return 'failed to fill whole buffer'
  if (code !== undefined) {
    const known = (constants.errno as Record<string, number | undefined>)[code]
    const errno = isNativeErrnoError(err) ? Math.abs(err.errno) : known
    if (errno !== undefined) {
      const text = STRERROR[code] ?? `Unknown error ${errno}`
      return `${text} (os error ${errno})`
    }
  }
  return err instanceof Error ? err.message : String(err)
}
