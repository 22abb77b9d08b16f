// Upstream's TdxAttestError (dstack `tdx-attest` crate) as a typed error: `code` (one per
// variant) is stable for programs, `message` is upstream's Display text for operators and
// error-text parity, and the errno error of the failing syscall stays as `cause`.
import { constants } from 'node:os'
import { KmsError, type TdxErrorCode } from '../../errors.js'
import { errnoCode } from '../../fs/errno.js'
import { isNativeErrnoError } from '../../native/binding.js'

export type { TdxErrorCode }

const PREFIX: Record<TdxErrorCode, string> = {
  KMS_ERR_TDX_UNEXPECTED: 'unexpected error',
  KMS_ERR_TDX_INVALID_PARAMETER: 'invalid parameter',
  KMS_ERR_TDX_OUT_OF_MEMORY: 'out of memory',
  KMS_ERR_TDX_VSOCK_FAILURE: 'vsock failure',
  KMS_ERR_TDX_REPORT_FAILURE: 'report failure',
  KMS_ERR_TDX_EXTEND_FAILURE: 'extend failure',
  KMS_ERR_TDX_NOT_SUPPORTED: 'not supported',
  KMS_ERR_TDX_QUOTE_FAILURE: 'quote failure',
  KMS_ERR_TDX_BUSY: 'device busy',
  KMS_ERR_TDX_DEVICE_FAILURE: 'device failure',
  KMS_ERR_TDX_INVALID_RTMR_INDEX: 'invalid RTMR index',
  KMS_ERR_TDX_UNSUPPORTED_ATT_KEY_ID: 'unsupported attestation key ID',
}

export class TdxError extends KmsError {
  declare readonly code: TdxErrorCode
  /** the variant's payload (`s` of `NotSupported(s)`), empty for the payload-less variants */
  readonly detail: string

  constructor(code: TdxErrorCode, detail = '', options?: { cause?: unknown }) {
    super(code, detail === '' ? PREFIX[code] : `${PREFIX[code]}: ${detail}`, options)
    this.name = 'TdxError'
    this.detail = detail
  }

  static unexpected(detail: string, cause?: unknown): TdxError {
    return new TdxError('KMS_ERR_TDX_UNEXPECTED', detail, { cause })
  }
  static notSupported(detail: string, cause?: unknown): TdxError {
    return new TdxError('KMS_ERR_TDX_NOT_SUPPORTED', detail, { cause })
  }
  static quoteFailure(detail: string, cause?: unknown): TdxError {
    return new TdxError('KMS_ERR_TDX_QUOTE_FAILURE', detail, { cause })
  }
  static extendFailure(detail: string, cause?: unknown): TdxError {
    return new TdxError('KMS_ERR_TDX_EXTEND_FAILURE', detail, { cause })
  }
  static reportFailure(detail: string, cause?: unknown): TdxError {
    return new TdxError('KMS_ERR_TDX_REPORT_FAILURE', detail, { cause })
  }
  static deviceFailure(detail: string, cause?: unknown): TdxError {
    return new TdxError('KMS_ERR_TDX_DEVICE_FAILURE', detail, { cause })
  }
  static vsockFailure(ioError: unknown): TdxError {
    return new TdxError('KMS_ERR_TDX_VSOCK_FAILURE', ioErrorText(ioError), { cause: ioError })
  }
  static busy(cause?: unknown): TdxError {
    return new TdxError('KMS_ERR_TDX_BUSY', '', { cause })
  }
  static invalidRtmrIndex(index: number, cause?: unknown): TdxError {
    return new TdxError('KMS_ERR_TDX_INVALID_RTMR_INDEX', String(index), { cause })
  }
}

export function isTdxError(err: unknown, code?: TdxErrorCode): err is TdxError {
  return err instanceof TdxError && (code === undefined || err.code === code)
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
