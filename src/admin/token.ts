// The in-body admin token of `KMS.ClearImageCache` on the main listener
// (docs/design.md#two-ways-to-authorize-clearimagecache): `core.admin_token_hash` holds the hex SHA-256 of the token, the request carries the token.
import { timingSafeEqual } from 'node:crypto'
import { withContext } from '../errors.js'
import { decodeHex } from '../util/hex.js'
import { EMPTY_TOKEN_HASH, sha256Utf8 } from '../util/token-digest.js'

/** The product document's capitalisation
 * (docs/design.md#the-wrong-token-message-is-invalid-token). */
export const INVALID_TOKEN_MESSAGE = 'Invalid token'

const TOKEN_DIGEST_BYTES = 32

/** Constant-time equality of two SHA-256 digests; any other length never matches. */
export function digestEquals(candidate: Buffer, expected: Buffer): boolean {
  if (candidate.length !== TOKEN_DIGEST_BYTES || expected.length !== TOKEN_DIGEST_BYTES) {
    return false
  }
  return timingSafeEqual(candidate, expected)
}

/** Decodes `admin_token_hash` at start-up: hex in either case, no `0x`. `""` (the default) →
 * null, which refuses every token. Valid hex of the wrong length is kept as is: upstream starts
 * with it and then refuses every token, and so do we (verifyAdminToken). */
export function parseAdminTokenHash(hex: string): Buffer | null {
  if (hex === '') return null
  try {
    return decodeHex(hex)
  } catch (err) {
    throw withContext('Invalid admin_token_hash', err, 'KMS_ERR_CONFIG')
  }
}

/** Whether a configured hash can ever authorize anything (32 bytes, not the empty token). */
export function isUsableAdminTokenHash(configured: Buffer | null): configured is Buffer {
  return (
    configured !== null &&
    configured.length === TOKEN_DIGEST_BYTES &&
    !configured.equals(EMPTY_TOKEN_HASH)
  )
}

/** SHA-256 of the UTF-8 token (untrimmed) against the configured digest. Fails closed: no
 * configured hash, one that is not exactly 32 bytes, or the hash of the empty token refuses
 * every token. */
export function verifyAdminToken(configured: Buffer | null, token: string): boolean {
  if (!isUsableAdminTokenHash(configured)) return false
  return digestEquals(sha256Utf8(token), configured)
}
