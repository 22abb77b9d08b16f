// Amounts held per key (a source address), with a key dropped once it holds nothing, so the map
// only ever has entries for sources that hold something now. The connection cap of every
// listener and the pRPC body budget both account per source address with it.
export class CountsByKey {
  readonly #counts = new Map<string, number>()

  get(key: string): number {
    return this.#counts.get(key) ?? 0
  }

  add(key: string, n: number): void {
    this.#counts.set(key, this.get(key) + n)
  }

  subtract(key: string, n: number): void {
    const left = this.get(key) - n
    if (left <= 0) this.#counts.delete(key)
    else this.#counts.set(key, left)
  }
}
