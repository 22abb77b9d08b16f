// Key derivation (docs/design.md#key-hierarchy): every derived secret is a pure function of the
// root keys and the context, so these must match upstream's ra-tls kdf.rs byte for byte.
import { createHash, createHmac, hkdfSync } from 'node:crypto'
import { KmsError, errorMessage } from '../errors.js'
import { P256Key, isValidP256Scalar } from './p256.js'

/** A context part: raw bytes, or a string taken as its UTF-8 bytes (ASCII in practice). */
export type ContextPart = Uint8Array | string

const SALT = Buffer.from('RATLS', 'ascii')
const HASH_LEN = 32
/** RFC 5869: at most 255 blocks */
const MAX_OKM = 255 * HASH_LEN

function info(parts: readonly ContextPart[]): Buffer {
  // Plain concatenation without separators or lengths: upstream behaviour, so ['a', '', 'b']
  // and ['a', 'b'] derive the same key. Kept for compatibility.
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)))
}

// RFC 5869 written out with HMAC-SHA256 instead of hkdfSync: the same bytes, but hkdfSync
// re-imports the key and runs a crypto job per call (~4x the cost of one HMAC, measured with
// bench/profile.ts), and splitting extract from expand lets the root keys keep their PRK.
function extract(ikm: Uint8Array): Buffer {
  return createHmac('sha256', SALT).update(ikm).digest()
}

function expand(prk: Buffer, infoBytes: Buffer, length: number): Buffer {
  const blocks: Buffer[] = []
  let prev: Buffer | undefined
  for (let i = 1; blocks.length * HASH_LEN < length; i++) {
    const h = createHmac('sha256', prk)
    if (prev !== undefined) h.update(prev)
    prev = h.update(infoBytes).update(Buffer.of(i)).digest()
    blocks.push(prev)
  }
  const okm = blocks.length === 1 ? (blocks[0] as Buffer) : Buffer.concat(blocks)
  return okm.length === length ? okm : Buffer.from(okm.subarray(0, length))
}

function hkdf(
  ikm: Uint8Array,
  prk: Buffer | undefined,
  parts: readonly ContextPart[],
  length: number,
): Buffer {
  try {
    if (!Number.isInteger(length) || length < 1 || length > MAX_OKM) {
      // out of range: let hkdfSync produce its own error text
      return Buffer.from(hkdfSync('sha256', ikm, SALT, info(parts), length))
    }
    return expand(prk ?? extract(ikm), info(parts), length)
  } catch (err) {
    throw new KmsError('KMS_ERR_CRYPTO', `key derivation failed: ${errorMessage(err)}`)
  }
}

/** HKDF-SHA256 with salt `RATLS` and info = the concatenated context parts. */
export function deriveKey(ikm: Uint8Array, parts: readonly ContextPart[], length = 32): Buffer {
  return hkdf(ikm, undefined, parts, length)
}

// The extract step of a P-256 root depends only on its scalar, which a P256Key never changes;
// remembering it halves the HMAC work of every derivation from the root CA key.
const rootPrks = new WeakMap<P256Key, Buffer>()

function prkOf(root: P256Key): Buffer {
  let prk = rootPrks.get(root)
  if (prk === undefined) {
    prk = extract(root.scalar)
    rootPrks.set(root, prk)
  }
  return prk
}

/** derive_p256_key_pair: the HKDF output is the scalar itself; out-of-range outputs fail (no
 * retry, no reduction) exactly as upstream does. */
export function deriveP256Key(root: P256Key, parts: readonly ContextPart[]): P256Key {
  const okm = hkdf(root.scalar, prkOf(root), parts, 32)
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
