// EnvPubKeyProvider: the cached GetAppEnvEncryptPubKey answer must be byte-identical to a fresh
// computation (docs/design.md#key-hierarchy) for either secp256k1 backend, verify with the dstack
// SDK, follow the clock second by second, stay within its bound and never hand out its own buffers.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { verifyEnvEncryptPublicKey, verifyEnvEncryptPublicKeyLegacy } from '@phala/dstack-sdk'
import { deriveDhSecret } from '../src/crypto/kdf.js'
import { P256Key } from '../src/crypto/p256.js'
import { createNativeSecp256k1Backend } from '../src/crypto/secp256k1-native.js'
import {
  generateSecp256k1Key,
  nobleSecp256k1,
  signMessage,
  signMessageWithTimestamp,
  type Secp256k1Backend,
} from '../src/crypto/secp256k1.js'
import { x25519PublicKey } from '../src/crypto/x25519.js'
import { KmsError } from '../src/errors.js'
import {
  ENV_PUBKEY_PREFIX,
  EnvPubKeyProvider,
  type EnvEncryptPubKey,
} from '../src/kms/env-pubkey.js'
import { loadNativeSecp256k1 } from '../src/native/secp256k1.js'

const rootCaKey = P256Key.fromScalar(
  Buffer.from('1f3c5a7b9d2e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8', 'hex'),
)
const rootK256Key = generateSecp256k1Key()
const native = createNativeSecp256k1Backend(loadNativeSecp256k1({}))

/** What KmsService.getAppEnvEncryptPubKey computes, with no cache. */
function fresh(backend: Secp256k1Backend, appId: Buffer, timestamp: bigint): EnvEncryptPubKey {
  const publicKey = x25519PublicKey(deriveDhSecret(rootCaKey, [appId, 'env-encrypt-key']))
  return {
    publicKey,
    signature: signMessage(backend, rootK256Key, ENV_PUBKEY_PREFIX, appId, publicKey),
    timestamp,
    signatureV1: signMessageWithTimestamp(
      backend,
      rootK256Key,
      ENV_PUBKEY_PREFIX,
      appId,
      timestamp,
      publicKey,
    ),
  }
}

/** A clock the test moves by hand. */
function manualClock(startSeconds: number): { now: () => Date; set(seconds: number): void } {
  let ms = startSeconds * 1000
  return {
    now: () => new Date(ms),
    set(seconds) {
      ms = seconds * 1000
    },
  }
}

/** The real backend, counting signatures, so cache hits and misses are visible. */
function counting(backend: Secp256k1Backend): Secp256k1Backend & { signs: number } {
  const counted = {
    name: backend.name,
    signs: 0,
    publicKeyCompressed: (sk: Uint8Array) => backend.publicKeyCompressed(sk),
    signRecoverable(digest: Uint8Array, sk: Uint8Array) {
      counted.signs++
      return backend.signRecoverable(digest, sk)
    },
    recoverCompressed: (d: Uint8Array, s: Uint8Array) => backend.recoverCompressed(d, s),
  }
  return counted
}

const appIds = Array.from({ length: 8 }, (_, i) =>
  Buffer.from(`${i.toString(16).padStart(2, '0')}`.repeat(20), 'hex'),
)

for (const backend of [native, nobleSecp256k1]) {
  describe(`EnvPubKeyProvider over ${backend.name}`, () => {
    it('answers byte-identically to a fresh computation, hit or miss', () => {
      const clock = manualClock(1_750_000_000)
      const provider = new EnvPubKeyProvider({
        rootCaKey,
        rootK256Key,
        secp256k1: backend,
        ...clock,
      })
      for (let round = 0; round < 3; round++) {
        for (const appId of appIds) {
          assert.deepEqual(provider.get(appId), fresh(nobleSecp256k1, appId, 1_750_000_000n))
        }
      }
      clock.set(1_750_000_001.999)
      for (const appId of appIds) {
        assert.deepEqual(provider.get(appId), fresh(nobleSecp256k1, appId, 1_750_000_001n))
      }
    })

    it('answers verify with @phala/dstack-sdk against the root k256 public key', () => {
      const provider = new EnvPubKeyProvider({ rootCaKey, rootK256Key, secp256k1: backend })
      const expected = `0x${nobleSecp256k1.publicKeyCompressed(rootK256Key).toString('hex')}`
      for (const appId of appIds.slice(0, 3)) {
        const a = provider.get(appId)
        const hex = appId.toString('hex')
        assert.equal(
          verifyEnvEncryptPublicKey(a.publicKey, a.signatureV1, hex, Number(a.timestamp)),
          expected,
        )
        assert.equal(
          verifyEnvEncryptPublicKeyLegacy(a.publicKey, a.signature, `0x${hex}`),
          expected,
        )
      }
    })
  })
}

describe('EnvPubKeyProvider cache', () => {
  it('signs nothing within a second, one signature per app on the next second', () => {
    const clock = manualClock(1_800_000_000)
    const signer = counting(native)
    const provider = new EnvPubKeyProvider({ rootCaKey, rootK256Key, secp256k1: signer, ...clock })
    const appId = appIds[1] as Buffer
    const first = provider.get(appId)
    assert.equal(signer.signs, 2)
    clock.set(1_800_000_000.75)
    assert.deepEqual(provider.get(appId), first)
    assert.equal(signer.signs, 2)
    clock.set(1_800_000_001)
    const next = provider.get(appId)
    assert.equal(signer.signs, 3)
    assert.equal(next.timestamp, 1_800_000_001n)
    assert.deepEqual(next.publicKey, first.publicKey)
    assert.deepEqual(next.signature, first.signature)
    assert.notDeepEqual(next.signatureV1, first.signatureV1)
    // a clock that steps back gets the answer for its own second, not a cached later one
    clock.set(1_799_999_990)
    assert.deepEqual(provider.get(appId), fresh(native, appId, 1_799_999_990n))
  })

  it('keeps at most maxApps app ids, dropping the least recently used', () => {
    const clock = manualClock(1_800_000_000)
    const signer = counting(native)
    const provider = new EnvPubKeyProvider({
      rootCaKey,
      rootK256Key,
      secp256k1: signer,
      maxApps: 3,
      ...clock,
    })
    const [a, b, c, d] = appIds as [Buffer, Buffer, Buffer, Buffer]
    provider.get(a)
    provider.get(b)
    provider.get(c)
    provider.get(a) // a is now the most recent; b the least
    assert.equal(provider.size, 3)
    assert.equal(signer.signs, 6)
    provider.get(d) // evicts b
    assert.equal(provider.size, 3)
    assert.equal(signer.signs, 8)
    provider.get(a)
    provider.get(c)
    provider.get(d)
    assert.equal(signer.signs, 8, 'a, c and d are still cached')
    assert.deepEqual(provider.get(b), fresh(native, b, 1_800_000_000n))
    assert.equal(signer.signs, 10, 'b was evicted and is derived again')
    assert.equal(provider.size, 3)
  })

  it('hands out copies: a caller writing into an answer cannot change the next one', () => {
    const clock = manualClock(1_800_000_000)
    const provider = new EnvPubKeyProvider({ rootCaKey, rootK256Key, secp256k1: native, ...clock })
    const appId = appIds[2] as Buffer
    const first = provider.get(appId)
    const expected = fresh(native, appId, first.timestamp)
    first.publicKey.fill(0)
    first.signature.fill(0)
    first.signatureV1.fill(0)
    const again = provider.get(appId)
    assert.deepEqual(again.publicKey, expected.publicKey)
    assert.deepEqual(again.signature, expected.signature)
    assert.deepEqual(again.signatureV1, expected.signatureV1)
  })

  it('keys the cache on the app id bytes, whatever view they come in', () => {
    const provider = new EnvPubKeyProvider({ rootCaKey, rootK256Key, secp256k1: native })
    const appId = appIds[3] as Buffer
    const backing = new Uint8Array(64)
    backing.set(appId, 7)
    const view = backing.subarray(7, 27)
    assert.deepEqual(provider.get(view).publicKey, provider.get(appId).publicKey)
    assert.equal(provider.size, 1)
  })

  it('refuses a cache bound below one', () => {
    for (const maxApps of [0, -1, 1.5, Number.NaN]) {
      assert.throws(
        () => new EnvPubKeyProvider({ rootCaKey, rootK256Key, secp256k1: native, maxApps }),
        KmsError,
      )
    }
  })
})
