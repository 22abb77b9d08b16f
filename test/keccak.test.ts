// Keccak-256 (src/crypto/keccak.ts) against published values, the shared legacy-signature vector
// and @noble/hashes over every length around the 136-byte rate.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { keccak_256 as nobleKeccak256 } from '@noble/hashes/sha3.js'
import { keccak256 } from '../src/crypto/keccak.js'
import { keccak256 as viaSecp256k1 } from '../src/crypto/secp256k1.js'
import { hexBytes, readVectorJson } from './helpers/crypto-vectors.js'

interface LegacySignatureVector {
  message: string
  keccak256: string
}

const { legacy_env_pubkey_signature: legacy } = readVectorJson<{
  legacy_env_pubkey_signature: LegacySignatureVector
}>('vectors.json')

describe('keccak256', () => {
  it('gives the published digests of "" and "abc" (pre-NIST padding, not SHA3-256)', () => {
    assert.equal(
      keccak256(Buffer.alloc(0)).toString('hex'),
      'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470',
    )
    assert.equal(
      keccak256(Buffer.from('abc')).toString('hex'),
      '4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45',
    )
  })

  it('matches the legacy env-pubkey signature vector', () => {
    assert.equal(keccak256(hexBytes(legacy.message)).toString('hex'), legacy.keccak256)
    // the signing code reaches it through secp256k1.ts
    assert.equal(viaSecp256k1(hexBytes(legacy.message)).toString('hex'), legacy.keccak256)
  })

  it('equals @noble/hashes for every length up to three blocks', () => {
    for (let len = 0; len <= 3 * 136 + 1; len++) {
      const m = randomBytes(len)
      assert.equal(
        keccak256(m).toString('hex'),
        Buffer.from(nobleKeccak256(m)).toString('hex'),
        `length ${len}`,
      )
    }
  })

  it('hashes the concatenation of its parts, whatever their types and offsets', () => {
    const m = randomBytes(300)
    const whole = keccak256(m)
    assert.deepEqual(keccak256(m.subarray(0, 100), m.subarray(100)), whole)
    assert.deepEqual(keccak256(m.subarray(0, 136), new Uint8Array(0), m.subarray(136)), whole)
    const inner = new Uint8Array(m.buffer, m.byteOffset + 7, 200)
    assert.deepEqual(keccak256(inner), Buffer.from(nobleKeccak256(inner)))
    assert.notDeepEqual(keccak256(m.subarray(1)), whole)
    // parts that straddle the block boundaries at every offset
    for (let cut = 1; cut < 300; cut += 7) {
      const parts = [m.subarray(0, cut), m.subarray(cut, cut + 150), m.subarray(cut + 150)]
      assert.deepEqual(keccak256(...parts), whole, `cut at ${cut}`)
    }
  })

  it('leaves its input alone and returns a fresh 32-byte buffer', () => {
    const m = randomBytes(150)
    const copy = Buffer.from(m)
    const a = keccak256(m)
    const b = keccak256(m)
    assert.deepEqual(m, copy)
    assert.equal(a.length, 32)
    a.fill(0)
    assert.deepEqual(b, keccak256(copy))
  })
})
