// secp256k1 message signing (upstream `kms/src/crypto.rs` `sign_message`). The curve arithmetic
// sits behind a backend interface so that a native libsecp256k1 backend can be added against the
// same contract; all backends must produce byte-identical RFC 6979 low-S signatures with recovery
// id 0/1.
import { randomBytes } from 'node:crypto'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { KmsError, errorMessage } from '../errors.js'
import { isScalarInRange, orderBytes } from './scalar.js'
import { keccak256 } from './keccak.js'

// Callers have always taken Keccak-256 from here, next to the signatures it feeds.
export { keccak256 }

/** The secp256k1 group order n. */
export const SECP256K1_ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n

export interface Secp256k1Backend {
  readonly name: string
  /** 33-byte compressed SEC1 public key. */
  publicKeyCompressed(secretKey: Uint8Array): Buffer
  /** r‖s‖recid (65 bytes): RFC 6979 nonce over the digest as given (no re-hashing), low-S. */
  signRecoverable(digest32: Uint8Array, secretKey: Uint8Array): Buffer
  /** The compressed public key that produced `signature65` (r‖s‖recid) over `digest32`. */
  recoverCompressed(digest32: Uint8Array, signature65: Uint8Array): Buffer
}

function toBigInt(bytes: Uint8Array): bigint {
  return BigInt('0x' + (Buffer.from(bytes).toString('hex') || '0'))
}

function toBytes32(value: bigint): Buffer {
  return Buffer.from(value.toString(16).padStart(64, '0'), 'hex')
}

const ORDER_BYTES = orderBytes(SECP256K1_ORDER)

export function isValidSecp256k1Scalar(sk: Uint8Array): boolean {
  return isScalarInRange(sk, ORDER_BYTES)
}

/** Validation shared by both backends, so they refuse the same inputs with the same errors. */
export function assertSecretKey(sk: Uint8Array): void {
  if (!isValidSecp256k1Scalar(sk)) throw new KmsError('KMS_ERR_CRYPTO', 'invalid secp256k1 key')
}

export function assertDigest(digest: Uint8Array): void {
  if (digest.length !== 32) throw new KmsError('KMS_ERR_CRYPTO', 'digest must be 32 bytes')
}

/** Splits and range-checks a 65-byte r‖s‖recid signature. */
export function parseRecoverableSignature(sig: Uint8Array): {
  r: bigint
  s: bigint
  recid: number
} {
  if (sig.length !== 65) throw new KmsError('KMS_ERR_CRYPTO', 'signature must be 65 bytes')
  const r = toBigInt(sig.subarray(0, 32))
  const s = toBigInt(sig.subarray(32, 64))
  const recid = sig[64] ?? 0xff
  if (r < 1n || r >= SECP256K1_ORDER || s < 1n || s >= SECP256K1_ORDER) {
    throw new KmsError('KMS_ERR_CRYPTO', 'signature r or s out of range')
  }
  if (recid > 3) throw new KmsError('KMS_ERR_CRYPTO', `invalid recovery id ${recid}`)
  return { r, s, recid }
}

export const nobleSecp256k1: Secp256k1Backend = {
  name: 'noble',
  publicKeyCompressed(secretKey) {
    assertSecretKey(secretKey)
    return Buffer.from(secp256k1.getPublicKey(secretKey, true))
  },
  signRecoverable(digest32, secretKey) {
    assertDigest(digest32)
    assertSecretKey(secretKey)
    const sig = secp256k1.sign(digest32, secretKey, { lowS: true, prehash: false })
    return Buffer.concat([toBytes32(sig.r), toBytes32(sig.s), Buffer.from([sig.recovery])])
  },
  recoverCompressed(digest32, signature65) {
    assertDigest(digest32)
    const { r, s, recid } = parseRecoverableSignature(signature65)
    try {
      // The v1 API exposes recovery only on the Signature instance.
      const point = new secp256k1.Signature(r, s, recid).recoverPublicKey(digest32)
      return Buffer.from(point.toBytes(true))
    } catch (err) {
      throw new KmsError('KMS_ERR_CRYPTO', `signature recovery failed: ${errorMessage(err)}`)
    }
  },
}

/** A fresh root k256 key: 32 CSPRNG bytes, retried until they form a valid scalar. */
export function generateSecp256k1Key(): Buffer {
  for (;;) {
    const sk = randomBytes(32)
    if (isValidSecp256k1Scalar(sk)) return sk
  }
}

// The signing prefix is a constant of its caller: its bytes are made once, not per digest.
let lastPrefix = ''
let lastPrefixBytes = Buffer.from(':', 'utf8')

function prefixBytes(prefix: string): Buffer {
  if (prefix !== lastPrefix) {
    lastPrefixBytes = Buffer.from(`${prefix}:`, 'utf8')
    lastPrefix = prefix
  }
  return lastPrefixBytes
}

// keccak256 reads its parts before it returns, so one timestamp buffer serves every digest
const timestampBytes = Buffer.alloc(8)

/** keccak256(prefix ‖ ":" ‖ appId ‖ message) */
export function messageDigest(prefix: string, appId: Uint8Array, message: Uint8Array): Buffer {
  return keccak256(prefixBytes(prefix), appId, message)
}

/** keccak256(prefix ‖ ":" ‖ appId ‖ BE8(timestamp) ‖ message) */
export function messageDigestWithTimestamp(
  prefix: string,
  appId: Uint8Array,
  timestamp: bigint,
  message: Uint8Array,
): Buffer {
  if (timestamp < 0n || timestamp >= 1n << 64n) {
    throw new KmsError('KMS_ERR_CRYPTO', 'timestamp out of u64 range')
  }
  timestampBytes.writeBigUInt64BE(timestamp)
  return keccak256(prefixBytes(prefix), appId, timestampBytes, message)
}

export function signMessage(
  backend: Secp256k1Backend,
  sk: Uint8Array,
  prefix: string,
  appId: Uint8Array,
  message: Uint8Array,
): Buffer {
  return backend.signRecoverable(messageDigest(prefix, appId, message), sk)
}

export function signMessageWithTimestamp(
  backend: Secp256k1Backend,
  sk: Uint8Array,
  prefix: string,
  appId: Uint8Array,
  timestamp: bigint,
  message: Uint8Array,
): Buffer {
  return backend.signRecoverable(messageDigestWithTimestamp(prefix, appId, timestamp, message), sk)
}
