import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  SECP256K1_ORDER,
  generateSecp256k1Key,
  isValidSecp256k1Scalar,
  keccak256,
  nobleSecp256k1,
} from '../src/crypto/secp256k1.js'
import { runSecp256k1Contract } from './helpers/secp256k1-contract.js'

runSecp256k1Contract(nobleSecp256k1)

describe('secp256k1 helpers', () => {
  it('keccak256 is Keccak (pre-NIST), concatenating its parts', () => {
    assert.equal(
      keccak256().toString('hex'),
      'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470',
    )
    assert.deepEqual(
      keccak256(Buffer.from('ab'), Buffer.from(''), Buffer.from('c')),
      keccak256(Buffer.from('abc')),
    )
    assert.equal(
      keccak256(Buffer.from('abc')).toString('hex'),
      '4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45',
    )
  })

  it('validates scalars in [1, n-1]', () => {
    const n = Buffer.from(SECP256K1_ORDER.toString(16), 'hex')
    const nMinus1 = Buffer.from((SECP256K1_ORDER - 1n).toString(16), 'hex')
    assert.equal(isValidSecp256k1Scalar(Buffer.alloc(32)), false)
    assert.equal(isValidSecp256k1Scalar(n), false)
    assert.equal(isValidSecp256k1Scalar(Buffer.alloc(32, 0xff)), false)
    assert.equal(isValidSecp256k1Scalar(nMinus1), true)
    assert.equal(isValidSecp256k1Scalar(Buffer.alloc(33, 1)), false)
  })

  it('generates valid, distinct 32-byte keys', () => {
    const a = generateSecp256k1Key()
    const b = generateSecp256k1Key()
    assert.equal(a.length, 32)
    assert.ok(isValidSecp256k1Scalar(a))
    assert.notDeepEqual(a, b)
  })
})
