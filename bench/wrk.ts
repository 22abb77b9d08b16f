// HTTP load with wrk (Debian package `wrk`; `scripts/setup-system.sh --bench` installs it): a C
// load generator that costs the machine far less per request than a Node.js client, so the
// figures are the server's. Bodies come from bench/wrk/post.lua. The server's CPU (utime+stime
// from /proc) and wrk's own (its shell's `times`) are read around the measured run.
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { resolve as resolvePath } from 'node:path'
import { rawRequest } from '../test/helpers/https-client.js'
import type { LoadResult } from './load.js'
import { procsCpuMs } from './proc.js'

const SCRIPT = resolvePath(import.meta.dirname, 'wrk', 'post.lua')

export interface WrkOptions {
  url: string
  /** a fixed JSON body, or `distinct` for a new app id per request */
  body: string | 'distinct'
  /** open connections (each keeps one request in flight) */
  concurrency: number
  warmupMs: number
  durationMs: number
  serverPid: number | readonly number[]
}

/** Why wrk cannot be used, or undefined when it can. */
export function wrkUnavailable(): string | undefined {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'pipe' })
    return undefined
  } catch (err) {
    // `wrk --version` prints its banner and exits 1
    const out = (err as { stdout?: Buffer }).stdout?.toString('utf8') ?? ''
    return out.startsWith('wrk ')
      ? undefined
      : 'wrk is not installed (scripts/setup-system.sh --bench)'
  }
}

function ms(value: string, unit: string): number {
  const v = Number(value)
  return unit === 'us' ? v / 1000 : unit === 's' ? v * 1000 : unit === 'm' ? v * 60_000 : v
}

interface WrkRun {
  stdout: string
  /** wrk's user+system CPU, ms */
  cpuMs: number
  elapsedMs: number
}

function runWrk(o: WrkOptions, durationMs: number, nonce: string): Promise<WrkRun> {
  const threads = Math.min(2, o.concurrency)
  const args = [
    '-t',
    String(threads),
    '-c',
    String(o.concurrency),
    '-d',
    `${Math.max(1, Math.round(durationMs / 1000))}s`,
    '--latency',
    '-s',
    SCRIPT,
    o.url,
  ]
  // `times` after wrk reports the CPU of the shell's children: wrk's own
  const script = 'wrk "$@" && times'
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn('bash', ['-c', script, 'wrk', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        BENCH_DISTINCT: o.body === 'distinct' ? '1' : '0',
        BENCH_BODY: o.body === 'distinct' ? '{}' : o.body,
        BENCH_NONCE: nonce,
      },
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
    child.on('error', reject)
    child.on('exit', (code) => {
      const elapsedMs = performance.now() - t0
      if (code !== 0) {
        reject(new Error(`wrk exited with ${String(code)}: ${stderr.trim() || stdout.trim()}`))
        return
      }
      // `times`: the shell's line, then the children's: "0m1.234s 0m0.567s"
      const lines = stdout.trim().split('\n')
      const m = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(lines[lines.length - 1] ?? '')
      const cpuMs =
        m === null
          ? Number.NaN
          : (Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4])) * 1000
      resolve({ stdout, cpuMs, elapsedMs })
    })
  })
}

/** A warm-up run, then the measured run; the result in the Node client's shape (client CPU is
 * wrk's). Throws when wrk reports socket errors or non-2xx answers. */
export async function wrkLoad(o: WrkOptions): Promise<LoadResult> {
  const nonce = randomBytes(8).toString('hex')
  if (o.warmupMs > 0) await runWrk(o, o.warmupMs, nonce.replace(/^./, 'f'))
  const cpu0 = procsCpuMs(o.serverPid)
  const run = await runWrk(o, o.durationMs, nonce)
  const serverCpu = procsCpuMs(o.serverPid) - cpu0
  const out = run.stdout
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(out)
  if (total === null) throw new Error(`unexpected wrk output:\n${out}`)
  const requests = Number(total[1])
  const elapsedMs = ms(total[2] ?? '0', total[3] ?? 's')
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out)
    return m === null ? Number.NaN : ms(m[1] ?? '0', m[2] ?? 'ms')
  }
  const latency = /^\s+Latency\s+([\d.]+)(us|ms|s)/m.exec(out)
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
    out,
  )
  const errorCount =
    Number(non2xx?.[1] ?? 0) +
    (socketErrors === null ? 0 : socketErrors.slice(1).reduce((a, v) => a + Number(v), 0))
  return {
    requests,
    errors: errorCount,
    firstError:
      errorCount === 0 ? undefined : `wrk: ${non2xx?.[0] ?? ''} ${socketErrors?.[0] ?? ''}`.trim(),
    elapsedMs,
    rps: (requests * 1000) / elapsedMs,
    meanMs: latency === null ? Number.NaN : ms(latency[1] ?? '0', latency[2] ?? 'ms'),
    p50Ms: pct('50'),
    p99Ms: pct('99'),
    clientCpuPct: (run.cpuMs / run.elapsedMs) * 100,
    serverCpuPct: (serverCpu / elapsedMs) * 100,
    serverCpuUsPerRequest: (serverCpu * 1000) / Math.max(1, requests),
  }
}

/** One request through the Node client with its answer checked (wrk does not read answers):
 * a complaint, or undefined when the answer is right. */
export async function checkOne(
  url: string,
  body: string,
  validate: (body: Buffer, request: string) => string | undefined,
): Promise<string | undefined> {
  const res = await rawRequest({
    url,
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json' },
  })
  if (res.status !== 200) return `HTTP ${res.status}: ${res.text.slice(0, 200)}`
  return validate(Buffer.from(res.text, 'utf8'), body)
}
