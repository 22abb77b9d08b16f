// Key derivation (spec 02 §1–3): every derived secret is a pure function of the root keys and
// the context, so these must match upstream's ra-tls kdf.rs byte for byte.
import { createHash, hkdfSync } from 'node:crypto'
import { KmsError, errorMessage } from '../errors.js'
import { P256Key, isValidP256Scalar } from './p256.js'

/** A context part: raw bytes, or a string taken as its UTF-8 bytes (ASCII in practice). */
export type ContextPart = Uint8Array | string

const SALT = Buffer.from('RATLS', 'ascii')

function info(parts: readonly ContextPart[]): Buffer {
  // Plain concatenation without separators or lengths: upstream behaviour, so ['a', '', 'b']
  // and ['a', 'b'] derive the same key. Kept for compatibility.
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)))
}

/** HKDF-SHA256 with salt `RATLS` and info = the concatenated context parts. */
export function deriveKey(ikm: Uint8Array, parts: readonly ContextPart[], length = 32): Buffer {
  try {
    return Buffer.from(hkdfSync('sha256', ikm, SALT, info(parts), length))
  } catch (err) {
    throw new KmsError('KMS_ERR_CRYPTO', `key derivation failed: ${errorMessage(err)}`)
  }
}

/** derive_p256_key_pair: the HKDF output is the scalar itself; out-of-range outputs fail (no
 * retry, no reduction) exactly as upstream does. */
export function deriveP256Key(root: P256Key, parts: readonly ContextPart[]): P256Key {
  const okm = deriveKey(root.scalar, parts, 32)
  if (!isValidP256Scalar(okm)) {
    throw new KmsError('KMS_ERR_CRYPTO', 'failed to decode derived secret key')
  }
  return P256Key.fromScalar(okm)
}

/** derive_dh_secret: SHA-256 of the 138-byte PKCS#8 DER of the derived key (a historical design
 * pinned by an upstream test). */
export function deriveDhSecret(root: P256Key, parts: readonly ContextPart[]): Buffer {
  return createHash('sha256').update(deriveP256Key(root, parts).pkcs8Der()).digest()
}
