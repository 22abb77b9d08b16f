// Typed errors with stable codes. The `message` of an error that reaches a pRPC client is the
// upstream context chain (outermost first, joined by ": "), because operators' runbooks and the
// upstream clients match on those exact texts; the `code` is ours, for programmatic matching.
// Every error class in this project extends KmsError, and `errorView` below is the one place
// that decides what a client is told and how a failure is logged.

/** Upstream's TdxAttestError variants (dstack/tdx-attest), one code each. */
export type TdxErrorCode =
  | 'KMS_ERR_TDX_UNEXPECTED'
  | 'KMS_ERR_TDX_INVALID_PARAMETER'
  | 'KMS_ERR_TDX_OUT_OF_MEMORY'
  | 'KMS_ERR_TDX_VSOCK_FAILURE'
  | 'KMS_ERR_TDX_REPORT_FAILURE'
  | 'KMS_ERR_TDX_EXTEND_FAILURE'
  | 'KMS_ERR_TDX_NOT_SUPPORTED'
  | 'KMS_ERR_TDX_QUOTE_FAILURE'
  | 'KMS_ERR_TDX_BUSY'
  | 'KMS_ERR_TDX_DEVICE_FAILURE'
  | 'KMS_ERR_TDX_INVALID_RTMR_INDEX'
  | 'KMS_ERR_TDX_UNSUPPORTED_ATT_KEY_ID'

export type KmsErrorCode =
  | 'KMS_ERR_RPC' // a handler refused the request
  | 'KMS_ERR_BAD_REQUEST' // the request could not be decoded
  | 'KMS_ERR_NOT_FOUND' // unknown pRPC method (upstream never answers 404 here)
  | 'KMS_ERR_PAYLOAD_TOO_LARGE' // body over the per-method limit
  | 'KMS_ERR_UNAUTHORIZED' // admin credentials missing or wrong
  | 'KMS_ERR_CONFIG' // configuration invalid; fatal at start
  | 'KMS_ERR_USAGE' // a mistake in the command line (exit status 2)
  | 'KMS_ERR_KEYS' // key material missing, incomplete or unreadable
  | 'KMS_ERR_CRYPTO' // a derivation or signature failed
  | 'KMS_ERR_CERT' // certificate encoding or parsing failed
  | 'KMS_ERR_DER_TRAILING_DATA' // a DER value followed by bytes that belong to nothing
  | 'KMS_ERR_HEX' // a hex string with an odd length or a non-hex digit
  | 'KMS_ERR_PROTO_DECODE' // a protobuf message that does not decode (prost's DecodeError)
  | 'KMS_ERR_JSON_DECODE' // a JSON body or query string that does not decode (serde's error)
  | 'KMS_ERR_TIMEOUT' // an outbound exchange passed its deadline
  | 'KMS_ERR_HTTP' // an outbound exchange broke HTTP/1.1: a malformed reply, an unsendable header
  | 'KMS_ERR_TEE' // the TEE backend refused or failed
  | 'KMS_ERR_ALREADY_BOOTSTRAPPED'
  | 'KMS_ERR_NOT_IMPLEMENTED'
  | 'KMS_ERR_NATIVE' // the native addon is missing, failed to load, or a primitive failed
  | 'KMS_ERR_LOCKED' // another process holds a lock we need (e.g. a second KMS on the same data)
  | 'KMS_ERR_ATTESTATION' // an attestation could not be decoded or did not verify
  | 'KMS_ERR_COLLATERAL' // quote collateral could not be obtained or has expired
  | 'KMS_ERR_DENIED' // the auth policy said no
  | 'KMS_ERR_TDX' // a TDX guest interface failed outside the TdxAttestError variants
  | 'KMS_ERR_IMAGE' // an OS image could not be fetched, was malformed, or could not be measured
  | 'KMS_ERR_AUDIT' // the key-release audit log could not be written or read; releases refuse
  | 'KMS_ERR_AUDIT_DAMAGED' // the audit database is not a healthy SQLite file; never replaced
  | TdxErrorCode
  | 'KMS_ERR_INTERNAL'

export class KmsError extends Error {
  readonly code: KmsErrorCode
  constructor(code: KmsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'KmsError'
    this.code = code
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}

/** `err` as an Error, so that pino's `err` serializer always sees one (type, message, stack,
 * code, cause) whatever was thrown. */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}

/** Whether `err`, or any error in its `cause` chain, is a KmsError with `code`. Wrapping keeps
 * the original as `cause`, so a caller can recognise a failure without reading message text. */
export function hasErrorCode(err: unknown, code: KmsErrorCode): boolean {
  const seen = new Set<unknown>()
  let cur: unknown = err
  while (cur instanceof Error && !seen.has(cur)) {
    if (cur instanceof KmsError && cur.code === code) return true
    seen.add(cur)
    cur = cur.cause
  }
  return false
}

/** A KMS_ERR_CONFIG error (a bad setting or a file it names), keeping `cause` when given. */
export function configError(message: string, cause?: unknown): KmsError {
  return new KmsError('KMS_ERR_CONFIG', message, cause === undefined ? undefined : { cause })
}

/** Wraps `err` in an outer context, like anyhow's `.context()`: the message becomes
 * `<context>: <inner message>` and the code of a KmsError is kept. */
export function withContext(context: string, err: unknown, code?: KmsErrorCode): KmsError {
  const inner = errorMessage(err)
  const innerCode = err instanceof KmsError ? err.code : undefined
  return new KmsError(code ?? innerCode ?? 'KMS_ERR_RPC', `${context}: ${inner}`, { cause: err })
}

/** The HTTP status a client receives for an error of each code. Upstream's pRPC server answers
 * every handler failure, undecodable request and unknown method with 400 and the error text, so
 * every code maps to 400. (The admin listener's HTTP authentication answers 401 before any
 * pRPC handler runs; that answer is not an error of this family.) */
export const HTTP_STATUS: Readonly<Record<KmsErrorCode, number>> = {
  KMS_ERR_RPC: 400,
  KMS_ERR_BAD_REQUEST: 400,
  KMS_ERR_NOT_FOUND: 400,
  KMS_ERR_PAYLOAD_TOO_LARGE: 400,
  // a wrong in-body token (KMS.ClearImageCache) is a handler failure upstream: 400
  KMS_ERR_UNAUTHORIZED: 400,
  KMS_ERR_CONFIG: 400,
  KMS_ERR_USAGE: 400,
  KMS_ERR_KEYS: 400,
  KMS_ERR_CRYPTO: 400,
  KMS_ERR_CERT: 400,
  KMS_ERR_DER_TRAILING_DATA: 400,
  KMS_ERR_HEX: 400,
  KMS_ERR_PROTO_DECODE: 400,
  KMS_ERR_JSON_DECODE: 400,
  KMS_ERR_TIMEOUT: 400,
  KMS_ERR_HTTP: 400,
  KMS_ERR_TEE: 400,
  KMS_ERR_ALREADY_BOOTSTRAPPED: 400,
  KMS_ERR_NOT_IMPLEMENTED: 400,
  KMS_ERR_NATIVE: 400,
  KMS_ERR_LOCKED: 400,
  KMS_ERR_ATTESTATION: 400,
  KMS_ERR_COLLATERAL: 400,
  KMS_ERR_DENIED: 400,
  KMS_ERR_TDX: 400,
  KMS_ERR_IMAGE: 400,
  KMS_ERR_AUDIT: 400,
  KMS_ERR_AUDIT_DAMAGED: 400,
  KMS_ERR_TDX_UNEXPECTED: 400,
  KMS_ERR_TDX_INVALID_PARAMETER: 400,
  KMS_ERR_TDX_OUT_OF_MEMORY: 400,
  KMS_ERR_TDX_VSOCK_FAILURE: 400,
  KMS_ERR_TDX_REPORT_FAILURE: 400,
  KMS_ERR_TDX_EXTEND_FAILURE: 400,
  KMS_ERR_TDX_NOT_SUPPORTED: 400,
  KMS_ERR_TDX_QUOTE_FAILURE: 400,
  KMS_ERR_TDX_BUSY: 400,
  KMS_ERR_TDX_DEVICE_FAILURE: 400,
  KMS_ERR_TDX_INVALID_RTMR_INDEX: 400,
  KMS_ERR_TDX_UNSUPPORTED_ATT_KEY_ID: 400,
  KMS_ERR_INTERNAL: 400,
}

/** What a failed request shows the client and what goes into the log. */
export interface ErrorView {
  status: number
  /** the text the client receives: the whole context chain, as upstream sends it */
  message: string
  code: KmsErrorCode
  /** a refusal the client caused is `info`; a failure of our own is `error` */
  level: 'info' | 'error'
  /** the log fields; `err` always goes through pino's Error serializer */
  log: { code: KmsErrorCode; err: Error }
}

/** The one mapping from a thrown value to a reply and a log line. Errors that are not ours
 * (a bug, a library throwing) keep their text, like anyhow's chain upstream, with code
 * KMS_ERR_INTERNAL so the log says they were unexpected. */
export function errorView(err: unknown): ErrorView {
  const code = err instanceof KmsError ? err.code : 'KMS_ERR_INTERNAL'
  return {
    status: HTTP_STATUS[code],
    message: errorMessage(err),
    code,
    level: code === 'KMS_ERR_INTERNAL' ? 'error' : 'info',
    log: { code, err: asError(err) },
  }
}
