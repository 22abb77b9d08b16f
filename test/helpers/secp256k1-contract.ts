// The secp256k1 backend contract (docs/design.md#secp256k1-through-libsecp256k1-or-noble-curves):
// every backend must give byte-identical RFC 6979 low-S signatures with recovery id 0/1, checked
// here against @noble/curves directly and against the upstream-asserted legacy vector. Call
// runSecp256k1Contract once per backend.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import {
  SECP256K1_ORDER,
  type Secp256k1Backend,
  keccak256,
  signMessage,
  signMessageWithTimestamp,
} from '../../src/crypto/secp256k1.js'
import { KmsError } from '../../src/errors.js'
import { readVectorJson } from './crypto-vectors.js'

interface LegacyVector {
  public_key: string
  app_id: string
  signature: string
  message: string
  keccak256: string
  signer: string
}

const vectors = readVectorJson<{ legacy_env_pubkey_signature: LegacyVector }>('vectors.json')
const legacy = vectors.legacy_env_pubkey_signature

const hex = (s: string): Buffer => Buffer.from(s, 'hex')
const HALF_ORDER = SECP256K1_ORDER >> 1n

// Fixed keys: small, mid-range, near the order, and one that is the key of many test suites.
const KEYS = [
  hex('0000000000000000000000000000000000000000000000000000000000000001'),
  hex('c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721'),
  hex('fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140'),
  hex('ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'),
]

export function runSecp256k1Contract(backend: Secp256k1Backend): void {
  describe(`secp256k1 backend contract: ${backend.name}`, () => {
    it('recovers the upstream legacy env-pubkey signer', () => {
      const appId = hex(legacy.app_id)
      const publicKey = hex(legacy.public_key)
      const message = Buffer.concat([Buffer.from('dstack-env-encrypt-pubkey:'), appId, publicKey])
      assert.equal(message.toString('hex'), legacy.message)
      const digest = keccak256(Buffer.from('dstack-env-encrypt-pubkey:'), appId, publicKey)
      assert.equal(digest.toString('hex'), legacy.keccak256)
      const signer = backend.recoverCompressed(digest, hex(legacy.signature))
      assert.equal('0x' + signer.toString('hex'), legacy.signer)
    })

    it('derives compressed public keys like noble', () => {
      for (const sk of KEYS) {
        const pub = backend.publicKeyCompressed(sk)
        assert.equal(pub.length, 33)
        assert.deepEqual(pub, Buffer.from(secp256k1.getPublicKey(sk, true)))
      }
      assert.equal(
        backend.publicKeyCompressed(KEYS[0] as Buffer).toString('hex'),
        '0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798',
      )
    })

    it('signs deterministically, low-S, recid 0/1, byte-identical to noble', () => {
      let sawRecid = 0
      for (const sk of KEYS) {
        for (let m = 0; m < 16; m++) {
          const digest = keccak256(Buffer.from(`message ${m}`))
          const sig = backend.signRecoverable(digest, sk)
          assert.equal(sig.length, 65)
          assert.deepEqual(backend.signRecoverable(digest, sk), sig)
          const s = BigInt('0x' + sig.subarray(32, 64).toString('hex'))
          assert.ok(s <= HALF_ORDER, 'high S')
          const recid = sig[64] as number
          assert.ok(recid === 0 || recid === 1)
          sawRecid |= 1 << recid
          const ref = secp256k1.sign(digest, sk, { lowS: true })
          const refBytes = Buffer.concat([
            Buffer.from(ref.toCompactRawBytes()),
            Buffer.from([ref.recovery]),
          ])
          assert.deepEqual(sig, refBytes)
          assert.deepEqual(backend.recoverCompressed(digest, sig), backend.publicKeyCompressed(sk))
        }
      }
      assert.equal(sawRecid, 0b11, 'both recovery ids should occur over 64 signatures')
    })

    it('signs messages with and without timestamp as upstream sign_message', () => {
      const sk = KEYS[1] as Buffer
      const appId = hex('5bb4ff9a3837357f19dc176407a5709c62eb6c56')
      const msg = hex(legacy.public_key)
      const sig = signMessage(backend, sk, 'dstack-env-encrypt-pubkey', appId, msg)
      const digest = keccak256(Buffer.from('dstack-env-encrypt-pubkey:'), appId, msg)
      assert.deepEqual(sig, backend.signRecoverable(digest, sk))

      const ts = 1739290000n
      const sigV1 = signMessageWithTimestamp(
        backend,
        sk,
        'dstack-env-encrypt-pubkey',
        appId,
        ts,
        msg,
      )
      const digestV1 = keccak256(
        Buffer.from('dstack-env-encrypt-pubkey:'),
        appId,
        hex('0000000067ab7590'),
        msg,
      )
      assert.deepEqual(sigV1, backend.signRecoverable(digestV1, sk))
      assert.notDeepEqual(sigV1, sig)
      assert.deepEqual(backend.recoverCompressed(digestV1, sigV1), backend.publicKeyCompressed(sk))
    })

    it('refuses invalid keys, digests and signatures', () => {
      const digest = keccak256(Buffer.from('x'))
      const zero = Buffer.alloc(32)
      const order = hex(SECP256K1_ORDER.toString(16))
      for (const bad of [zero, order, Buffer.alloc(31, 1)]) {
        assert.throws(() => backend.signRecoverable(digest, bad), KmsError)
        assert.throws(() => backend.publicKeyCompressed(bad), KmsError)
      }
      assert.throws(() => backend.signRecoverable(digest.subarray(1), KEYS[1] as Buffer), KmsError)
      const sig = backend.signRecoverable(digest, KEYS[1] as Buffer)
      const badRecid = Buffer.from(sig)
      badRecid[64] = 4
      assert.throws(() => backend.recoverCompressed(digest, badRecid), KmsError)
      assert.throws(() => backend.recoverCompressed(digest, sig.subarray(0, 64)), KmsError)
      const zeroR = Buffer.from(sig)
      zeroR.fill(0, 0, 32)
      assert.throws(() => backend.recoverCompressed(digest, zeroR), KmsError)
    })
  })
}
