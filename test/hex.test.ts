import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { fromHex, isHex, toHex } from '../src/crypto/hex.js'

describe('strict hex', () => {
  it('decodes and encodes', () => {
    assert.deepEqual(fromHex('00ffAb'), Buffer.from([0, 255, 0xab]))
    assert.equal(toHex(new Uint8Array([0, 255, 0xab])), '00ffab')
    assert.equal(toHex(Buffer.from([1, 2, 3]).subarray(1)), '0203')
    assert.deepEqual(fromHex(''), Buffer.alloc(0))
  })

  it('refuses what Buffer.from(…, "hex") silently truncates, with the hex crate messages', () => {
    assert.throws(() => fromHex('abz0'), {
      code: 'KMS_ERR_BAD_REQUEST',
      message: 'Invalid character "z" at position 2',
    })
    assert.throws(() => fromHex('abc'), { message: 'Odd number of digits' })
    assert.throws(() => fromHex('0xab'), { message: 'Invalid character "x" at position 1' })
    assert.throws(() => fromHex('ab ', { what: 'app_id' }), {
      message: 'app_id: Invalid character " " at position 2',
    })
  })

  it('handles the 0x prefix, lengths and custom codes', () => {
    assert.deepEqual(fromHex('0xab', { allowPrefix: true }), Buffer.from([0xab]))
    assert.deepEqual(fromHex('0XAB', { allowPrefix: true }), Buffer.from([0xab]))
    assert.throws(() => fromHex('abcd', { length: 1 }), { message: 'Invalid string length' })
    assert.throws(() => fromHex('g0', { code: 'KMS_ERR_CONFIG' }), { code: 'KMS_ERR_CONFIG' })
    assert.ok(isHex('') && isHex('aB09') && !isHex('a') && !isHex('0x00'))
  })
})
