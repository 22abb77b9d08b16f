// A small least-recently-used map, for memos keyed by what clients send (content hashes of
// collateral and PCK chains, certificates): every such memo must have a ceiling.

export class BoundedCache<V> {
  private readonly entries = new Map<string, V>()
  constructor(private readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`cache capacity must be a positive integer, got ${capacity}`)
    }
  }

  get(key: string): V | undefined {
    const v = this.entries.get(key)
    if (v === undefined) return undefined
    // re-insertion moves the key to the young end of the Map's insertion order
    this.entries.delete(key)
    this.entries.set(key, v)
    return v
  }

  set(key: string, value: V): void {
    this.entries.delete(key)
    if (this.entries.size >= this.capacity) {
      const oldest = this.entries.keys().next().value
      if (oldest !== undefined) this.entries.delete(oldest)
    }
    this.entries.set(key, value)
  }

  get size(): number {
    return this.entries.size
  }
}
