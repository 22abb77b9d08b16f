// The one hex decoder: Rust `hex` crate semantics and texts.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HexError, decodeHex } from '../src/util/hex.js'

describe('decodeHex', () => {
  it('decodes either case', () => {
    assert.deepEqual(decodeHex('00ffAb'), Buffer.from([0, 255, 0xab]))
    assert.deepEqual(decodeHex(''), Buffer.alloc(0))
  })

  it('checks the length before the characters', () => {
    assert.throws(() => decodeHex('zzz'), new HexError('Odd number of digits'))
  })

  it('reports the first bad byte as a Rust char literal at its byte index', () => {
    assert.throws(() => decodeHex('abzz'), new HexError("Invalid character 'z' at position 2"))
    assert.throws(() => decodeHex('0xab'), new HexError("Invalid character 'x' at position 1"))
    assert.throws(() => decodeHex("a'"), new HexError("Invalid character '\\'' at position 1"))
    assert.throws(() => decodeHex('a\n'), new HexError("Invalid character '\\n' at position 1"))
    // 'é' is two UTF-8 bytes; the crate sees bytes, and reports the first as a Latin-1 char
    assert.throws(() => decodeHex('abé'), new HexError("Invalid character 'Ã' at position 2"))
  })
})
