// Token digests shared by the admin authenticator and the start-up config check, which must agree
// on what "the hash of the empty token" is.
import { createHash } from 'node:crypto'

export function sha256Utf8(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}

/** SHA-256 of the empty string: what `printf '%s' "$ADMIN_TOKEN" | sha256sum` yields when the
 * deploy script's variable is unset. Accepting it would open ClearImageCache to `{}`. */
export const EMPTY_TOKEN_HASH = sha256Utf8('')
