// Runs one fuzz target in a worker thread: the parent can terminate it on a hang and reads the
// input that hung from shared memory, and the thread's heap limit bounds the memory one input may
// take. The result goes back as one message.
import { parentPort, workerData } from 'node:worker_threads'
import { errorMessage } from '../../src/errors.js'
import { checkTarget, type CheckResult } from './check.js'
import { TARGETS } from './targets.js'

export interface WorkerJob {
  target: string
  runs: number
  seed: number
  deadlineMs: number
  /** Int32 [0] = inputs started, [1] = length of the current input; its bytes from offset 8 */
  shared: SharedArrayBuffer
}

export type WorkerResult = CheckResult

const job = workerData as WorkerJob
const target = TARGETS.find((t) => t.name === job.target)
if (target === undefined) throw new Error(`unknown fuzz target ${job.target}`)
const counters = new Int32Array(job.shared, 0, 2)
const current = new Uint8Array(job.shared, 8)

let unhandled: unknown = null
process.on('unhandledRejection', (reason) => {
  unhandled = reason
})

const result = checkTarget(target, {
  runs: job.runs,
  seed: job.seed,
  deadlineMs: job.deadlineMs,
  beforeInput: (input) => {
    const n = Math.min(input.length, current.length)
    current.set(input.subarray(0, n))
    Atomics.store(counters, 1, n)
    Atomics.add(counters, 0, 1)
  },
})
// let pending microtasks and timers surface before reporting
await new Promise((resolve) => setTimeout(resolve, 10))
if (unhandled !== null && result.failure === undefined) {
  result.failure = { kind: 'unhandled-rejection', message: errorMessage(unhandled), inputHex: '' }
}
parentPort?.postMessage(result)
