// The decoder fuzzer: each target runs in its own worker thread with a heap limit, a deadline
// per input and a watchdog for hangs. `npm run test:fuzz` runs the full campaign from the command
// line; test/fuzz-decoders.test.ts runs a small seeded subset inside `npm test`.
import { Worker } from 'node:worker_threads'
import { parseArgs } from 'node:util'
import { TARGETS } from './targets.js'
import type { WorkerJob, WorkerResult } from './worker.js'

export interface FuzzOptions {
  runs: number
  seed: number
  /** one input may take at most this long */
  deadlineMs: number
  /** no progress for this long = a hang; the worker is terminated */
  hangMs: number
  /** V8 old-space limit of a target's worker */
  heapLimitMb: number
  targets?: readonly string[]
}

export interface TargetReport extends WorkerResult {
  elapsedMs: number
}

const SHARED_INPUT_BYTES = 512 * 1024
const STARTUP_MS = 180_000

export function runTarget(name: string, opts: FuzzOptions): Promise<TargetReport> {
  const shared = new SharedArrayBuffer(8 + SHARED_INPUT_BYTES)
  const counters = new Int32Array(shared, 0, 2)
  const job: WorkerJob = {
    target: name,
    runs: opts.runs,
    seed: opts.seed,
    deadlineMs: opts.deadlineMs,
    shared,
  }
  const started = performance.now()
  const worker = new Worker(new URL('./worker-entry.mjs', import.meta.url), {
    workerData: job,
    resourceLimits: { maxOldGenerationSizeMb: opts.heapLimitMb },
    stdout: false,
    stderr: false,
  })
  const currentInput = (): string => {
    const len = Atomics.load(counters, 1)
    return Buffer.from(new Uint8Array(shared, 8, len)).toString('hex')
  }
  const failed = (kind: 'hang' | 'crash', message: string): TargetReport => ({
    target: name,
    runs: Atomics.load(counters, 0),
    typedErrors: 0,
    maxInputMs: 0,
    maxInputBytes: 0,
    peakHeapMb: 0,
    elapsedMs: performance.now() - started,
    failure: { kind: kind === 'hang' ? 'slow' : 'crash', message, inputHex: currentInput() },
  })
  return new Promise((resolve) => {
    let lastCount = -1
    let lastChange = performance.now()
    let settled = false
    const finish = (r: TargetReport): void => {
      if (settled) return
      settled = true
      clearInterval(watchdog)
      worker.terminate().then(
        () => {},
        () => {},
      )
      resolve(r)
    }
    const watchdog = setInterval(() => {
      const count = Atomics.load(counters, 0)
      // loading the decoders and building the seeds is not an input: it gets its own limit
      const limit = count === 0 ? STARTUP_MS : opts.hangMs
      if (count !== lastCount) {
        lastCount = count
        lastChange = performance.now()
      } else if (performance.now() - lastChange > limit) {
        finish(
          failed(
            'hang',
            count === 0
              ? `the worker did not start its first input within ${STARTUP_MS} ms`
              : `no progress for ${limit} ms (hang) on input #${count}`,
          ),
        )
      }
    }, 250)
    worker.on('message', (r: WorkerResult) =>
      finish({ ...r, elapsedMs: performance.now() - started }),
    )
    worker.on('error', (err) => finish(failed('crash', `worker died: ${String(err)}`)))
    worker.on('exit', (code) => finish(failed('crash', `worker exited with code ${code}`)))
  })
}

export async function runFuzz(
  opts: FuzzOptions,
  onReport?: (r: TargetReport) => void,
): Promise<TargetReport[]> {
  const names = opts.targets ?? TARGETS.map((t) => t.name)
  const reports: TargetReport[] = []
  // one target at a time: the machine is shared, and a failure is easier to read alone
  for (const name of names) {
    const r = await runTarget(name, opts)
    onReport?.(r)
    reports.push(r)
  }
  return reports
}

export function formatReport(r: TargetReport): string {
  const status = r.failure === undefined ? 'ok  ' : 'FAIL'
  return `${status} ${r.target.padEnd(22)} ${String(r.runs).padStart(7)} inputs  ${String(
    r.typedErrors,
  ).padStart(7)} typed errors  max ${r.maxInputMs.toFixed(1).padStart(7)} ms/input  max ${String(
    r.maxInputBytes,
  ).padStart(
    6,
  )} B  heap ${r.peakHeapMb.toFixed(0).padStart(4)} MiB  ${(r.elapsedMs / 1000).toFixed(1)} s`
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '10000' },
      seed: { type: 'string', default: String(Date.now() % 2 ** 31) },
      target: { type: 'string', multiple: true },
      deadline: { type: 'string', default: '2000' },
      'heap-mb': { type: 'string', default: '512' },
      list: { type: 'boolean', default: false },
    },
  })
  if (values.list) {
    for (const t of TARGETS) process.stdout.write(`${t.name}\n`)
    return 0
  }
  const opts: FuzzOptions = {
    runs: Number(values.runs),
    seed: Number(values.seed),
    deadlineMs: Number(values.deadline),
    hangMs: Math.max(10_000, 5 * Number(values.deadline)),
    heapLimitMb: Number(values['heap-mb']),
    ...(values.target === undefined ? {} : { targets: values.target }),
  }
  process.stdout.write(
    `fuzzing ${(opts.targets ?? TARGETS.map((t) => t.name)).length} decoders, ${opts.runs} inputs each, seed ${opts.seed}, deadline ${opts.deadlineMs} ms/input, heap limit ${opts.heapLimitMb} MiB\n`,
  )
  const started = performance.now()
  const reports = await runFuzz(opts, (r) => {
    process.stdout.write(formatReport(r) + '\n')
    if (r.failure !== undefined) {
      process.stdout.write(
        `  ${r.failure.kind}: ${r.failure.message}\n  input (hex, ${r.failure.inputHex.length / 2} bytes): ${r.failure.inputHex.slice(0, 4096)}${r.failure.inputHex.length > 4096 ? '…' : ''}\n`,
      )
    }
  })
  const failures = reports.filter((r) => r.failure !== undefined).length
  const total = reports.reduce((n, r) => n + r.runs, 0)
  process.stdout.write(
    `${total} inputs, ${failures} failing decoders, ${((performance.now() - started) / 1000).toFixed(0)} s, reproduce with --seed ${opts.seed}\n`,
  )
  return failures === 0 ? 0 : 1
}

if (
  process.argv[1] !== undefined &&
  import.meta.url === new URL(`file://${process.argv[1]}`).href
) {
  main().then(
    (code) => {
      process.exitCode = code
    },
    (err: unknown) => {
      process.stderr.write(`fuzz: ${String(err)}\n`)
      process.exitCode = 1
    },
  )
}
