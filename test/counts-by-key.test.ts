// Per-source accounting shared by the connection cap and the pRPC body budget.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { CountsByKey } from '../src/util/counts-by-key.js'

describe('CountsByKey', () => {
  it('counts per key; a key back at zero reads zero and is reused, not re-added', () => {
    const c = new CountsByKey()
    c.add('a', 3)
    c.add('a', 2)
    c.subtract('a', 4)
    assert.equal(c.get('a'), 1)
    c.subtract('a', 5)
    assert.equal(c.get('a'), 0)
    assert.equal(c.size, 1)
    c.add('a', 1)
    assert.equal(c.get('a'), 1)
    assert.equal(c.size, 1)
  })

  it('subtracting from a key never added neither creates it nor goes negative', () => {
    const c = new CountsByKey()
    c.subtract('ghost', 1)
    assert.equal(c.size, 0)
    assert.equal(c.get('ghost'), 0)
  })

  it('stays bounded over any number of sources that come and go, keeping the ones that hold', () => {
    const c = new CountsByKey()
    for (let i = 0; i < 10; i++) c.add(`holder-${i}`, 1)
    for (let i = 0; i < 50_000; i++) {
      c.add(`s-${i}`, 7)
      c.subtract(`s-${i}`, 7)
      assert.ok(c.size <= 2048 + 10, `${c.size} entries after ${i} sources`)
    }
    for (let i = 0; i < 10; i++) assert.equal(c.get(`holder-${i}`), 1)
  })
})
