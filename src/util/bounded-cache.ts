// A small least-recently-used map, for memos keyed by what clients send (content hashes of
// collateral and PCK chains, certificates): every such memo must have a ceiling. An entry may
// also have a lifetime, for results that must be worked out again after a while.

export interface BoundedCacheOptions {
  /** how long an entry is served after it was set (default: until evicted) */
  ttlMs?: number
  now?: () => number
}

interface Entry<V> {
  value: V
  /** served while the clock is below this */
  expires: number
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

  /** The live value under `key`, which becomes the most recently used; an expired one is dropped. */
  get(key: string): V | undefined {
    const e = this.entries.get(key)
    if (e === undefined) return undefined
    // re-insertion moves the key to the young end of the Map's insertion order
    this.entries.delete(key)
    if (!this.live(e)) return undefined
    this.entries.set(key, e)
    return e.value
  }

  /** The live value under `key`, leaving its place in the eviction order as it is. */
  peek(key: string): V | undefined {
    const e = this.entries.get(key)
    return e !== undefined && this.live(e) ? e.value : undefined
  }

  set(key: string, value: V): void {
    this.entries.delete(key)
    if (this.entries.size >= this.capacity) {
      const oldest = this.entries.keys().next().value
      if (oldest !== undefined) this.entries.delete(oldest)
    }
    const expires = this.ttlMs === Infinity ? Infinity : this.now() + this.ttlMs
    this.entries.set(key, { value, expires })
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
