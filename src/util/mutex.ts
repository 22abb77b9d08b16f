// A FIFO async mutex: Bootstrap and Onboard must never run concurrently
// (docs/design.md#bootstrap-happens-once), and a second call must see the files the first one
// committed; the TDX guest interfaces take one quote at a time.
export class Mutex {
  #tail: Promise<void> = Promise.resolve()

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.#tail
    let release!: () => void
    this.#tail = new Promise<void>((resolve) => {
      release = resolve
    })
    await previous
    try {
      return await fn()
    } finally {
      release()
    }
  }

  /** Resolves once every run queued so far has finished. */
  async idle(): Promise<void> {
    await this.run(async () => {})
  }
}
