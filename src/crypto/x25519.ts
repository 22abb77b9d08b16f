// X25519 public keys for the env-encryption key (spec 02 §4).
//
// The secret passed in is used as given: upstream (x25519-dalek 2) returns the derived bytes
// unclamped as `env_crypt_key`, and clamping happens only inside the scalar multiplication
// (RFC 7748 decodeScalar25519, which OpenSSL applies too). Callers must therefore hand out the
// unclamped bytes and must not clamp them themselves.
import { createPrivateKey, createPublicKey } from 'node:crypto'
import { KmsError } from '../errors.js'

const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')

export function x25519PublicKey(secretKey: Uint8Array): Buffer {
  if (secretKey.length !== 32) {
    throw new KmsError('KMS_ERR_CRYPTO', 'X25519 secret key must be 32 bytes')
  }
  const privateKey = createPrivateKey({
    key: Buffer.concat([X25519_PKCS8_PREFIX, secretKey]),
    format: 'der',
    type: 'pkcs8',
  })
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' })
  return Buffer.from(spki.subarray(spki.length - 32))
}
