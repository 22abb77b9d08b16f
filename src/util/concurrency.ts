// Bounded concurrency, the one helper for it: at most `size` runs at once, the rest wait in
// arrival order. A Mutex is the bound of one: Bootstrap and Onboard must never run concurrently,
// and a second call must see the files the first one committed; the TDX guest interfaces take one
// quote at a time. The PCCS source bounds its collateral fetches with a wider one.
export class ConcurrencyLimit {
  #free: number
  readonly #waiting: (() => void)[] = []

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`concurrency limit must be a positive integer, got ${size}`)
    }
    this.#free = size
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--
    else await new Promise<void>((resolve) => this.#waiting.push(resolve))
    try {
      return await fn()
    } finally {
      // the slot passes straight to the next waiter, so a later arrival cannot overtake it
      const next = this.#waiting.shift()
      if (next !== undefined) next()
      else this.#free++
    }
  }

  /** Resolves once every run queued so far has finished (exactly so for a Mutex). */
  async idle(): Promise<void> {
    await this.run(async () => {})
  }
}

export class Mutex extends ConcurrencyLimit {
  constructor() {
    super(1)
  }
}
