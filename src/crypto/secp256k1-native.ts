// The libsecp256k1 backend (docs/design.md#secp256k1-through-libsecp256k1-or-noble-curves): the
// addon signs and derives public keys; everything else is here. Arguments are validated before the
// call with the same errors as the noble backend, so the two are interchangeable; the addon's own
// status codes are a second line of defence.
//
// Secrets go to the addon by reference: neither this layer nor the addon copies them, so there
// is no copy to wipe. Outputs are fresh buffers owned by the caller.
import { KmsError } from '../errors.js'
import { SECP256K1_STATUS, type NativeSecp256k1 } from '../native/secp256k1.js'
import {
  assertDigest,
  assertSecretKey,
  nobleSecp256k1,
  type Secp256k1Backend,
} from './secp256k1.js'

function check(status: number, operation: string): void {
  if (status === SECP256K1_STATUS.ok) return
  if (status === SECP256K1_STATUS.secretRejected) {
    throw new KmsError('KMS_ERR_CRYPTO', 'invalid secp256k1 key')
  }
  if (status === SECP256K1_STATUS.signFailed) {
    throw new KmsError('KMS_ERR_CRYPTO', 'secp256k1 signing failed')
  }
  throw new KmsError('KMS_ERR_NATIVE', `${operation}: unexpected native status ${status}`)
}

export function createNativeSecp256k1Backend(binding: NativeSecp256k1): Secp256k1Backend {
  return {
    name: 'libsecp256k1',
    publicKeyCompressed(secretKey) {
      assertSecretKey(secretKey)
      const out = Buffer.alloc(33)
      check(binding.secp256k1PublicKey(out, secretKey), 'secp256k1PublicKey')
      return out
    },
    signRecoverable(digest32, secretKey) {
      assertDigest(digest32)
      assertSecretKey(secretKey)
      const out = Buffer.alloc(65)
      check(binding.secp256k1Sign(out, digest32, secretKey), 'secp256k1Sign')
      return out
    },
    // Recovery needs no secret and is off every hot path; the addon stays minimal.
    recoverCompressed(digest32, signature65) {
      return nobleSecp256k1.recoverCompressed(digest32, signature65)
    },
  }
}
