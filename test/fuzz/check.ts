// One fuzz target's loop, shared by the worker (full campaign) and the in-process seeded subset
// in `npm test`: every input must decode or fail with a typed error, within the deadline.
import { getHeapStatistics } from 'node:v8'
import fc from 'fast-check'
import { errorMessage } from '../../src/errors.js'
import { isAllowedError, type FuzzTarget } from './targets.js'

export interface CheckResult {
  target: string
  runs: number
  typedErrors: number
  maxInputMs: number
  maxInputBytes: number
  peakHeapMb: number
  failure?: { kind: 'crash' | 'slow' | 'unhandled-rejection'; message: string; inputHex: string }
}

class Slow extends Error {}

export interface CheckOptions {
  runs: number
  seed: number
  deadlineMs: number
  /** called with each input before it is decoded (the worker mirrors it to shared memory) */
  beforeInput?: (input: Uint8Array) => void
}

export function checkTarget(target: FuzzTarget, opts: CheckOptions): CheckResult {
  const result: CheckResult = {
    target: target.name,
    runs: 0,
    typedErrors: 0,
    maxInputMs: 0,
    maxInputBytes: 0,
    peakHeapMb: 0,
  }
  const property = fc.property(target.arbitrary, (input) => {
    opts.beforeInput?.(input)
    result.runs++
    result.maxInputBytes = Math.max(result.maxInputBytes, input.length)
    const t0 = performance.now()
    try {
      target.decode(input)
    } catch (err) {
      if (!isAllowedError(target, err)) throw err
      result.typedErrors++
    }
    let ms = performance.now() - t0
    if (ms > opts.deadlineMs) {
      // on a shared machine one slow run can be the scheduler's doing: an input is slow only if
      // it stays slow on two more tries
      for (let i = 0; i < 2 && ms > opts.deadlineMs; i++) {
        const t = performance.now()
        try {
          target.decode(input)
        } catch {
          // its outcome was judged on the first run
        }
        ms = Math.min(ms, performance.now() - t)
      }
    }
    result.maxInputMs = Math.max(result.maxInputMs, ms)
    if (ms > opts.deadlineMs) {
      throw new Slow(`took ${ms.toFixed(0)} ms (deadline ${opts.deadlineMs} ms)`)
    }
    if (result.runs % 256 === 0) {
      result.peakHeapMb = Math.max(result.peakHeapMb, getHeapStatistics().used_heap_size / 2 ** 20)
    }
  })
  const details = fc.check(property, { numRuns: opts.runs, seed: opts.seed, endOnFailure: true })
  result.peakHeapMb = Math.max(result.peakHeapMb, getHeapStatistics().used_heap_size / 2 ** 20)
  if (details.failed) {
    const input = details.counterexample?.[0] ?? new Uint8Array()
    const err = details.errorInstance
    result.failure = {
      kind: err instanceof Slow ? 'slow' : 'crash',
      message:
        err instanceof Error
          ? `${err.constructor.name}: ${err.message}\n${err.stack ?? ''}`
          : errorMessage(err),
      inputHex: Buffer.from(input).toString('hex'),
    }
  }
  return result
}
