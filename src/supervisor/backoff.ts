// Restart delays for a crashing worker: exponential with a cap, plus crash-loop detection.
// Pure (time is passed in), so the policy is testable without waiting.

export interface BackoffOptions {
  /** delay before the first restart */
  initialMs: number
  /** the cap; also how long a worker must have been ready for its next crash to start over */
  maxMs: number
  /** crashes are counted within this sliding window… */
  crashLoopWindowMs: number
  /** …and more than this many of them is a crash loop */
  crashLoopLimit: number
}

export const DEFAULT_BACKOFF: BackoffOptions = {
  initialMs: 500,
  maxMs: 30_000,
  crashLoopWindowMs: 300_000,
  crashLoopLimit: 5,
}

export interface RestartDecision {
  /** 1 for the first restart since the last reset */
  attempt: number
  delayMs: number
  /** crashes within the window, this one included */
  recentCrashes: number
  crashLoop: boolean
}

export class RestartBackoff {
  readonly options: BackoffOptions
  #nextDelayMs: number
  #attempt = 0
  #crashTimes: number[] = []

  constructor(options: BackoffOptions = DEFAULT_BACKOFF) {
    const { initialMs, maxMs, crashLoopWindowMs, crashLoopLimit } = options
    if (!(initialMs >= 0) || !(maxMs >= initialMs)) {
      throw new RangeError(`backoff needs 0 <= initialMs <= maxMs, got ${initialMs} and ${maxMs}`)
    }
    if (!(crashLoopWindowMs > 0) || !Number.isInteger(crashLoopLimit) || crashLoopLimit < 1) {
      throw new RangeError('backoff needs crashLoopWindowMs > 0 and an integer crashLoopLimit >= 1')
    }
    this.options = { ...options }
    this.#nextDelayMs = initialMs
  }

  /** Records a crash at `nowMs`. In a crash loop the delay is the cap: we keep retrying (the
   * cause may be outside our control, e.g. a port held by another process) but slowly. */
  onCrash(nowMs: number): RestartDecision {
    const { maxMs, crashLoopWindowMs, crashLoopLimit } = this.options
    this.#crashTimes = this.#crashTimes.filter((t) => nowMs - t < crashLoopWindowMs)
    this.#crashTimes.push(nowMs)
    const crashLoop = this.#crashTimes.length > crashLoopLimit
    const delayMs = crashLoop ? maxMs : this.#nextDelayMs
    this.#nextDelayMs = Math.min(Math.max(this.#nextDelayMs * 2, 1), maxMs)
    this.#attempt += 1
    return { attempt: this.#attempt, delayMs, recentCrashes: this.#crashTimes.length, crashLoop }
  }

  /** A worker that was ready for at least `maxMs` before it died starts over at `initialMs`.
   * The crash history is kept: a crash loop is about frequency, not about each run. */
  noteReadyFor(readyMs: number): void {
    if (readyMs >= this.options.maxMs) this.reset()
  }

  reset(): void {
    this.#nextDelayMs = this.options.initialMs
    this.#attempt = 0
  }
}
