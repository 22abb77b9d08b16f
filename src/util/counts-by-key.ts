// Amounts held per key (a source address). The connection cap of every listener and the pRPC
// body budget both account per source address with it, on every connection and every request.
//
// A key that comes back to zero keeps its entry until a sweep: dropping it at once made the Map
// shrink and grow again on every request of a keep-alive client (a table rebuilt each time,
// measured ~1 µs a call in the body budget). A sweep runs when a new key would be added and the
// Map has doubled since the last one, so it stays within twice the keys holding something, plus
// SWEEP_FLOOR, whatever the number of sources ever seen.

/** entries tolerated before the first sweep */
const SWEEP_FLOOR = 1024

export class CountsByKey {
  readonly #counts = new Map<string, number>()
  #sweepAt = SWEEP_FLOOR

  get(key: string): number {
    return this.#counts.get(key) ?? 0
  }

  add(key: string, n: number): void {
    const held = this.#counts.get(key)
    if (held === undefined && this.#counts.size >= this.#sweepAt) this.#sweep()
    this.#counts.set(key, (held ?? 0) + n)
  }

  /** A key never added, or already at zero, stays as it is. */
  subtract(key: string, n: number): void {
    const held = this.#counts.get(key)
    if (held !== undefined && held !== 0) this.#counts.set(key, Math.max(0, held - n))
  }

  /** entries kept, holding something or waiting for a sweep: bounded, as described above */
  get size(): number {
    return this.#counts.size
  }

  #sweep(): void {
    for (const [key, held] of this.#counts) if (held === 0) this.#counts.delete(key)
    this.#sweepAt = Math.max(SWEEP_FLOOR, 2 * this.#counts.size)
  }
}
