// The bounded map (second-chance eviction) with a lifetime: what ClientCertVerifier relies on (an expired entry is gone, a
// peek does not change the eviction order); the plain LRU order is tested with its first users
// in dcap-differential.test.ts.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { BoundedCache } from '../src/util/bounded-cache.js'

describe('BoundedCache', () => {
  it('serves an entry for ttlMs after it was set, then drops it', () => {
    let clock = 0
    const cache = new BoundedCache<string>(4, { ttlMs: 100, now: () => clock })
    cache.set('a', 'x')
    clock = 99
    assert.equal(cache.get('a'), 'x')
    assert.equal(cache.peek('a'), 'x')
    clock = 100
    assert.equal(cache.peek('a'), undefined)
    assert.equal(cache.size, 1, 'a peek leaves an expired entry where it is')
    assert.equal(cache.get('a'), undefined)
    assert.equal(cache.size, 0, 'a get drops it')
    // setting again starts a new lifetime
    cache.set('a', 'y')
    clock = 199
    assert.equal(cache.get('a'), 'y')
  })

  it('peek does not make an entry the most recently used; get does', () => {
    const cache = new BoundedCache<number>(2)
    cache.set('a', 1)
    cache.set('b', 2)
    assert.equal(cache.peek('a'), 1)
    cache.set('c', 3)
    assert.equal(cache.peek('a'), undefined, 'a was still the oldest')
    assert.equal(cache.get('b'), 2)
    cache.set('d', 4)
    assert.deepEqual(
      ['b', 'c', 'd'].map((k) => cache.peek(k)),
      [2, undefined, 4],
    )
  })

  it('when every entry was used, the oldest goes after one pass, and hits do not reorder', () => {
    const cache = new BoundedCache<number>(3)
    cache.set('a', 1)
    cache.set('b', 2)
    cache.set('c', 3)
    for (let i = 0; i < 1000; i++) for (const k of ['c', 'b', 'a']) cache.get(k)
    cache.set('d', 4)
    assert.deepEqual(
      ['a', 'b', 'c', 'd'].map((k) => cache.peek(k)),
      [undefined, 2, 3, 4],
    )
    assert.equal(cache.size, 3)
    // b and c lost their mark in that pass: the next new key takes b, the older of them
    cache.set('e', 5)
    assert.deepEqual(
      ['b', 'c', 'd', 'e'].map((k) => cache.peek(k)),
      [undefined, 3, 4, 5],
    )
  })

  it('delete and clear remove entries', () => {
    const cache = new BoundedCache<number>(3)
    cache.set('a', 1)
    cache.set('b', 2)
    cache.delete('a')
    assert.equal(cache.get('a'), undefined)
    assert.equal(cache.size, 1)
    cache.clear()
    assert.equal(cache.size, 0)
  })
})
