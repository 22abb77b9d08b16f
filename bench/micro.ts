// In-process micro-benchmarks: a warm-up (so the JIT and OpenSSL's caches settle), then several
// timed rounds of a fixed iteration count; the median round is the figure, and the spread shows
// how much to trust it.

export interface MicroOptions {
  warmupMs: number
  /** target wall time of one timed round; the iteration count is calibrated from the warm-up */
  roundMs: number
  rounds: number
}

export interface MicroResult {
  name: string
  usPerOp: number
  opsPerSec: number
  /** (slowest round − fastest round) / median, in percent */
  spreadPct: number
  iterationsPerRound: number
}

// Results go here so the optimiser cannot drop a call whose value is unused.
let sink: unknown

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

function median(sorted: readonly number[]): number {
  const mid = Math.floor(sorted.length / 2)
  const hi = sorted[mid] ?? 0
  if (sorted.length % 2 === 1) return hi
  return ((sorted[mid - 1] ?? hi) + hi) / 2
}

export function measure(name: string, fn: () => unknown, o: MicroOptions): MicroResult {
  let n = 0
  const warmStart = nowMs()
  let elapsed = 0
  while (elapsed < o.warmupMs || n < 3) {
    sink = fn()
    n++
    elapsed = nowMs() - warmStart
  }
  const iterations = Math.max(1, Math.ceil(o.roundMs / (elapsed / n)))
  const perOp: number[] = []
  for (let r = 0; r < o.rounds; r++) {
    const t0 = nowMs()
    for (let i = 0; i < iterations; i++) sink = fn()
    perOp.push((nowMs() - t0) / iterations)
  }
  if (sink === Symbol.for('never')) throw new Error('unreachable')
  perOp.sort((a, b) => a - b)
  const med = median(perOp)
  const spread = ((perOp[perOp.length - 1] ?? med) - (perOp[0] ?? med)) / med
  return {
    name,
    usPerOp: med * 1000,
    opsPerSec: 1000 / med,
    spreadPct: spread * 100,
    iterationsPerRound: iterations,
  }
}
