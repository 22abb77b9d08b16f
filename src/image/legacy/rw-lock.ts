// Verifications share the image directory; a cache clear needs it to itself. Readers run
// together, a writer waits for the running readers, and readers arriving while a writer waits
// queue behind it so a steady stream of verifications cannot starve ClearImageCache.
export class RwLock {
  #readers = 0
  #writer = false
  #queue: Array<{ write: boolean; wake: () => void }> = []

  async read<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#writer || this.#queue.length > 0) {
      await new Promise<void>((resolve) => this.#queue.push({ write: false, wake: resolve }))
    } else {
      this.#readers++
    }
    try {
      return await fn()
    } finally {
      this.#readers--
      this.#drain()
    }
  }

  async write<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#writer || this.#readers > 0 || this.#queue.length > 0) {
      await new Promise<void>((resolve) => this.#queue.push({ write: true, wake: resolve }))
    } else {
      this.#writer = true
    }
    try {
      return await fn()
    } finally {
      this.#writer = false
      this.#drain()
    }
  }

  /** Hands the lock to the next writer, or to every reader up to the next waiting writer. */
  #drain(): void {
    if (this.#writer) return
    const head = this.#queue[0]
    if (head === undefined) return
    if (head.write) {
      if (this.#readers > 0) return
      this.#queue.shift()
      this.#writer = true
      head.wake()
      return
    }
    while (this.#queue[0] !== undefined && !this.#queue[0].write) {
      const next = this.#queue.shift()
      this.#readers++
      next?.wake()
    }
  }
}
