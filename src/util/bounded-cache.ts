// A small map with a ceiling, for memos keyed by what clients send (content hashes of
// collateral and PCK chains, certificates): every such memo must have a ceiling. An entry may
// also have a lifetime, for results that must be worked out again after a while.
//
// Eviction is second-chance (CLOCK) over the Map's insertion order, an approximation of LRU: a
// hit only marks its entry, and the oldest unmarked entry goes when room is needed (marked ones
// on the way move to the young end, unmarked). A hit that deleted and re-inserted its key, as a
// strict LRU on a Map does, leaves a tombstone per hit, and the Map rehashes all its entries
// every few thousand of them; these memos are hit several times per key request.

export interface BoundedCacheOptions {
  /** how long an entry is served after it was set (default: until evicted) */
  ttlMs?: number
  now?: () => number
}

interface Entry<V> {
  value: V
  /** served while the clock is below this */
  expires: number
  /** got since it was set or last passed over by eviction */
  used: boolean
}

export class BoundedCache<V> {
  private readonly entries = new Map<string, Entry<V>>()
  private readonly ttlMs: number
  private readonly now: () => number

  constructor(
    private readonly capacity: number,
    opts: BoundedCacheOptions = {},
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`cache capacity must be a positive integer, got ${capacity}`)
    }
    this.ttlMs = opts.ttlMs ?? Infinity
    this.now = opts.now ?? Date.now
  }

  /** The live value under `key`, marked as used (it survives the next eviction pass); an expired
   * one is dropped. */
  get(key: string): V | undefined {
    const e = this.entries.get(key)
    if (e === undefined) return undefined
    if (!this.live(e)) {
      this.entries.delete(key)
      return undefined
    }
    e.used = true
    return e.value
  }

  /** The live value under `key`, leaving its place in the eviction order as it is. */
  peek(key: string): V | undefined {
    const e = this.entries.get(key)
    return e !== undefined && this.live(e) ? e.value : undefined
  }

  set(key: string, value: V): void {
    if (!this.entries.delete(key) && this.entries.size >= this.capacity) this.evictOne()
    const expires = this.ttlMs === Infinity ? Infinity : this.now() + this.ttlMs
    this.entries.set(key, { value, expires, used: false })
  }

  /** Drops the oldest entry not used since it was last passed over; the used ones before it get
   * their second chance at the young end. Each pass clears the mark it skips, so this ends
   * within one round of the entries. */
  private evictOne(): void {
    for (const [key, e] of this.entries) {
      this.entries.delete(key)
      if (!e.used || !this.live(e)) return
      e.used = false
      this.entries.set(key, e)
    }
  }

  delete(key: string): void {
    this.entries.delete(key)
  }

  clear(): void {
    this.entries.clear()
  }

  get size(): number {
    return this.entries.size
  }

  private live(e: Entry<V>): boolean {
    return e.expires === Infinity || e.expires > this.now()
  }
}
