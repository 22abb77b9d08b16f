import assert from 'node:assert/strict'
import {
  createHash,
  createHmac,
  createPrivateKey,
  diffieHellman,
  createPublicKey,
} from 'node:crypto'
import { describe, it } from 'node:test'
import { deriveDhSecret, deriveKey, deriveP256Key } from '../src/crypto/kdf.js'
import { P256Key } from '../src/crypto/p256.js'
import { x25519PublicKey } from '../src/crypto/x25519.js'
import { hexBytes, readVectorJson } from './helpers/crypto-vectors.js'

interface DhVector {
  root_pkcs8_der: string
  context_utf8: string[]
  derived_p256_scalar: string
  secret: string
}

const { derive_dh_secret: dh } = readVectorJson<{ derive_dh_secret: DhVector }>('vectors.json')
const root = P256Key.fromPkcs8Der(hexBytes(dh.root_pkcs8_der))

/** RFC 5869 written out with HMAC, to pin salt/info handling independently of hkdfSync. */
function referenceHkdf(ikm: Buffer, salt: Buffer, info: Buffer, length: number): Buffer {
  const prk = createHmac('sha256', salt).update(ikm).digest()
  const blocks: Buffer[] = []
  let prev = Buffer.alloc(0)
  for (let i = 1; blocks.length * 32 < length; i++) {
    prev = createHmac('sha256', prk)
      .update(Buffer.concat([prev, info, Buffer.from([i])]))
      .digest()
    blocks.push(prev)
  }
  return Buffer.concat(blocks).subarray(0, length)
}

describe('derive_key (HKDF-SHA256, salt RATLS)', () => {
  it('matches the derive_dh_secret vector intermediate scalar', () => {
    assert.equal(root.scalar.toString('hex'), dh.root_pkcs8_der.slice(72, 136))
    assert.equal(deriveKey(root.scalar, dh.context_utf8).toString('hex'), dh.derived_p256_scalar)
  })

  it('equals a from-scratch RFC 5869 HKDF with salt "RATLS" and concatenated info', () => {
    const ikm = Buffer.from('input keying material')
    const expected = referenceHkdf(ikm, Buffer.from('RATLS'), Buffer.from('app-idapp-key'), 64)
    assert.deepEqual(deriveKey(ikm, ['app-id', 'app-key'], 64), expected)
    assert.deepEqual(deriveKey(ikm, ['app-id', 'app-key']), expected.subarray(0, 32))
  })

  it('concatenates info parts without separators (upstream behaviour, kept)', () => {
    const ikm = Buffer.alloc(32, 7)
    const appId = hexBytes('5bb4ff9a3837357f19dc176407a5709c62eb6c56')
    const withEmpty = deriveKey(ikm, [appId, '', 'app-disk-crypt-key'])
    assert.deepEqual(withEmpty, deriveKey(ikm, [appId, 'app-disk-crypt-key']))
    assert.deepEqual(withEmpty, deriveKey(ikm, [appId, new Uint8Array(0), 'app-disk-crypt-key']))
    assert.deepEqual(deriveKey(ikm, ['ab', 'c']), deriveKey(ikm, ['a', 'bc']))
    assert.deepEqual(deriveKey(ikm, ['abc']), deriveKey(ikm, [Buffer.from('abc')]))
    assert.notDeepEqual(deriveKey(ikm, ['abc']), deriveKey(ikm, ['abd']))
  })
})

describe('derive_p256_key_pair and derive_dh_secret', () => {
  it('reproduces the upstream-pinned derive_dh_secret vector', () => {
    const derived = deriveP256Key(root, dh.context_utf8)
    assert.equal(derived.scalar.toString('hex'), dh.derived_p256_scalar)
    assert.equal(deriveDhSecret(root, dh.context_utf8).toString('hex'), dh.secret)
    // the secret is SHA-256 of the canonical 138-byte PKCS#8, which OpenSSL reproduces too
    const der = derived.pkcs8Der()
    assert.equal(der.length, 138)
    const openssl = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({
      format: 'der',
      type: 'pkcs8',
    })
    assert.deepEqual(openssl, der)
    assert.equal(createHash('sha256').update(openssl).digest('hex'), dh.secret)
  })

  it('is deterministic and context-sensitive', () => {
    const appId = hexBytes('5bb4ff9a3837357f19dc176407a5709c62eb6c56')
    const a = deriveP256Key(root, [appId, 'app-ca'])
    const b = deriveP256Key(root, [appId, 'app-ca'])
    assert.deepEqual(a.scalar, b.scalar)
    assert.deepEqual(a.publicPoint, b.publicPoint)
    assert.deepEqual(a.pkcs8Der(), b.pkcs8Der())
    assert.notDeepEqual(deriveP256Key(root, [appId, 'app-cb']).scalar, a.scalar)
    assert.deepEqual(a.scalar, deriveKey(root.scalar, [appId, 'app-ca']))
    // different roots give different keys for the same context
    const other = P256Key.fromScalar(Buffer.alloc(32, 1))
    assert.notDeepEqual(deriveP256Key(other, [appId, 'app-ca']).scalar, a.scalar)
  })

  it('derives the env key pair chain: X25519 public key of the unclamped secret', () => {
    const appId = Buffer.alloc(20)
    const envKey = deriveDhSecret(root, [appId, 'env-encrypt-key'])
    assert.equal(envKey.length, 32)
    const pub = x25519PublicKey(envKey)
    assert.equal(pub.length, 32)
    const clamped = Buffer.from(envKey)
    clamped[0] = (clamped[0] as number) & 248
    clamped[31] = ((clamped[31] as number) & 127) | 64
    assert.deepEqual(x25519PublicKey(clamped), pub)
  })
})

describe('X25519 public keys', () => {
  // RFC 7748 §6.1
  const alicePriv = hexBytes('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')
  const alicePub = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'
  const bobPriv = hexBytes('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb')
  const bobPub = 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f'

  it('matches the RFC 7748 vectors', () => {
    assert.equal(x25519PublicKey(alicePriv).toString('hex'), alicePub)
    assert.equal(x25519PublicKey(bobPriv).toString('hex'), bobPub)
    // and the shared secret from those keys, as a consistency check of the encoding
    const prefix = hexBytes('302e020100300506032b656e04220420')
    const spkiPrefix = hexBytes('302a300506032b656e032100')
    const shared = diffieHellman({
      privateKey: createPrivateKey({
        key: Buffer.concat([prefix, alicePriv]),
        format: 'der',
        type: 'pkcs8',
      }),
      publicKey: createPublicKey({
        key: Buffer.concat([spkiPrefix, hexBytes(bobPub)]),
        format: 'der',
        type: 'spki',
      }),
    })
    assert.equal(
      shared.toString('hex'),
      '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
    )
  })

  it('leaves the secret untouched (clamping is internal to the multiplication)', () => {
    const sk = Buffer.alloc(32, 0xff)
    const copy = Buffer.from(sk)
    x25519PublicKey(sk)
    assert.deepEqual(sk, copy)
  })

  it('refuses wrong lengths', () => {
    assert.throws(() => x25519PublicKey(Buffer.alloc(31)), { code: 'KMS_ERR_CRYPTO' })
  })
})
