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

export interface InterleavedCase {
  name: string
  /** one timed round of `iterations` calls, returning µs per call; for work outside this
   * process (the C program) */
  round?: (iterations: number) => number
  fn?: () => unknown
}

/** Like `measure`, but the cases take turns round by round, so a machine whose load changes
 * during the run slows them all alike and their ratios stay meaningful. */
export function measureInterleaved(
  cases: readonly InterleavedCase[],
  o: MicroOptions,
): MicroResult[] {
  const plans = cases.map((c) => {
    const round =
      c.round ??
      ((iterations: number) => {
        const fn = c.fn
        if (fn === undefined) throw new Error(`case ${c.name} has neither fn nor round`)
        const t0 = nowMs()
        for (let i = 0; i < iterations; i++) sink = fn()
        return ((nowMs() - t0) / iterations) * 1000
      })
    // calibrate: grow the iteration count until one round takes a tenth of the warm-up
    let iterations = 1
    let usPerOp = round(iterations)
    const warmEnd = nowMs() + o.warmupMs
    while (nowMs() < warmEnd) {
      usPerOp = round(iterations)
      if (usPerOp * iterations < (o.warmupMs * 1000) / 10) iterations *= 2
    }
    return {
      name: c.name,
      round,
      iterations: Math.max(1, Math.ceil((o.roundMs * 1000) / usPerOp)),
      perOp: [] as number[],
    }
  })
  for (let r = 0; r < o.rounds; r++) {
    for (const p of plans) p.perOp.push(p.round(p.iterations))
  }
  if (sink === Symbol.for('never')) throw new Error('unreachable')
  return plans.map((p) => {
    const sorted = [...p.perOp].sort((a, b) => a - b)
    const med = median(sorted)
    return {
      name: p.name,
      usPerOp: med,
      opsPerSec: 1e6 / med,
      spreadPct: (((sorted[sorted.length - 1] ?? med) - (sorted[0] ?? med)) / med) * 100,
      iterationsPerRound: p.iterations,
    }
  })
}
