// Typed errors with stable codes. The `message` of an error that reaches a pRPC client is the
// upstream context chain (outermost first, joined by ": "), because operators' runbooks and the
// upstream clients match on those exact texts; the `code` is ours, for programmatic matching.

export type KmsErrorCode =
  | 'KMS_ERR_RPC' // a handler refused the request; answered with HTTP 400
  | 'KMS_ERR_BAD_REQUEST' // the request could not be decoded; HTTP 400
  | 'KMS_ERR_NOT_FOUND' // unknown pRPC method; HTTP 400 (upstream never answers 404 here)
  | 'KMS_ERR_PAYLOAD_TOO_LARGE' // body over the per-method limit; HTTP 400
  | 'KMS_ERR_UNAUTHORIZED' // admin credentials missing or wrong
  | 'KMS_ERR_CONFIG' // configuration invalid; fatal at start
  | 'KMS_ERR_KEYS' // key material missing, incomplete or unreadable
  | 'KMS_ERR_CRYPTO' // a derivation or signature failed
  | 'KMS_ERR_CERT' // certificate encoding or parsing failed
  | 'KMS_ERR_TEE' // the TEE backend refused or failed
  | 'KMS_ERR_ALREADY_BOOTSTRAPPED'
  | 'KMS_ERR_NOT_IMPLEMENTED'
  | 'KMS_ERR_NATIVE' // the native addon is missing, failed to load, or a primitive failed
  | 'KMS_ERR_LOCKED' // another process holds a lock we need (e.g. a second KMS on the same data)
  | 'KMS_ERR_ATTESTATION' // an attestation could not be decoded or did not verify
  | 'KMS_ERR_COLLATERAL' // quote collateral could not be obtained or has expired
  | 'KMS_ERR_DENIED' // the auth policy said no
  | 'KMS_ERR_TDX' // a TDX guest interface failed (see TdxError for the syscall details)
  | 'KMS_ERR_AUDIT' // the key-release audit log could not be written or read; releases refuse
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

/** Wraps `err` in an outer context, like anyhow's `.context()`: the message becomes
 * `<context>: <inner message>` and the code of a KmsError is kept. */
export function withContext(context: string, err: unknown, code?: KmsErrorCode): KmsError {
  const inner = errorMessage(err)
  const innerCode = err instanceof KmsError ? err.code : undefined
  return new KmsError(code ?? innerCode ?? 'KMS_ERR_RPC', `${context}: ${inner}`, { cause: err })
}
