// `npx tsx bench/profile.ts [--case env-distinct|env-hot|appkey-hot|appkey-cold] [--seconds 5]
// [--clients 16] [--keep]`: a CPU profile (the V8 sampling profiler, as `node --cpu-prof`) of the
// KMS worker under one of the bench's loads, summarised as the functions with the most self time
// and the most inclusive time. This is how the bottlenecks were found; the raw .cpuprofile (open
// it in Chrome DevTools) is kept with --keep. The `auth-simple` sidecar is profiled too.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { BENCH_APP_ID_HEX } from './crypto-cases.js'
import { guestFactory, startAttestedKms, stopAttestedKms } from './app-key-load.js'
import { ensureBuilt, startBenchKms } from './kms-server.js'
import { runLoad, type LoadResult } from './load.js'
import { num, table } from './table.js'

// Node 20 refuses --cpu-prof in NODE_OPTIONS, and the supervisor forks its workers itself, so
// every KMS process preloads this. Profiling starts on SIGUSR2 (sent after a warm-up, so start-up
// and JIT warm-up stay out of the figures); the in-thread inspector session answers
// synchronously, which lets the profile be written from the 'exit' event.
/** seconds of cold GetAppKey requests before an appkey-cold profile starts */
const COLD_WARMUP_SECONDS = 10

const PRELOAD = `
import { Session } from 'node:inspector'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
const session = new Session()
let started = false
process.on('SIGUSR2', () => {
  if (started) return
  started = true
  session.connect()
  session.post('Profiler.enable')
  session.post('Profiler.setSamplingInterval', { interval: 250 })
  session.post('Profiler.start')
})
process.on('exit', () => {
  if (!started) return
  session.post('Profiler.stop', (err, res) => {
    if (err === null) {
      writeFileSync(
        join(process.env.BENCH_CPU_PROF_DIR, 'CPU.' + process.pid + '.cpuprofile'),
        JSON.stringify(res.profile),
      )
    }
  })
})
`

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

function frameName(n: ProfileNode): string {
  const f = n.callFrame
  const file = f.url.replace(/^file:\/\//, '').replace(/^.*\/(dist|node_modules)\//, '$1/')
  const fn = f.functionName === '' ? '(anonymous)' : f.functionName
  return file === '' ? fn : `${fn} ${file}:${f.lineNumber + 1}`
}

/** Self and inclusive sample counts per function (recursion counted once per stack). */
export function summarise(p: CpuProfile): {
  self: Map<string, number>
  total: Map<string, number>
  samples: number
} {
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const self = new Map<string, number>()
  const total = new Map<string, number>()
  for (const id of p.samples) {
    const node = byId.get(id)
    if (node === undefined) continue
    const name = frameName(node)
    self.set(name, (self.get(name) ?? 0) + 1)
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)
      if (n === undefined) break
      const nm = frameName(n)
      if (seen.has(nm)) continue
      seen.add(nm)
      total.set(nm, (total.get(nm) ?? 0) + 1)
    }
  }
  return { self, total, samples: p.samples.length }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      case: { type: 'string', default: 'env-distinct' },
      seconds: { type: 'string', default: '5' },
      clients: { type: 'string', default: '16' },
      keep: { type: 'boolean', default: false },
      top: { type: 'string', default: '25' },
    },
  })
  const which = values.case
  if (!CASES.includes(which as Case)) throw new Error(`--case must be one of ${CASES.join(', ')}`)
  ensureBuilt((l) => process.stderr.write(`${l}\n`))
  const profDir = mkdtempSync(join(tmpdir(), 'dstack-kms-prof-'))
  const preload = join(profDir, 'preload.mjs')
  writeFileSync(preload, PRELOAD)
  const env = { NODE_OPTIONS: `--import=${preload}`, BENCH_CPU_PROF_DIR: profDir }
  const concurrency = Number(values.clients)
  const durationMs = Number(values.seconds) * 1000
  const profiled: Array<[string, number]> = []
  let result: LoadResult
  if (which === 'env-distinct' || which === 'env-hot') {
    const server = await startBenchKms({ cryptoBackend: 'native', workers: 1, env })
    const prefix = randomBytes(8).toString('hex')
    let n = 0
    const load = (warmupMs: number, ms: number) =>
      runLoad({
        url: `${server.base}/prpc/GetAppEnvEncryptPubKey?json`,
        body:
          which === 'env-hot'
            ? JSON.stringify({ app_id: BENCH_APP_ID_HEX })
            : () => JSON.stringify({ app_id: prefix + (n++).toString(16).padStart(24, '0') }),
        headers: { 'content-type': 'application/json' },
        concurrency,
        warmupMs,
        durationMs: ms,
        validate: () => undefined,
        serverPid: server.workerPid,
      })
    await load(0, 1000)
    process.kill(server.workerPid, 'SIGUSR2')
    result = await load(200, durationMs)
    // the log lines are not needed; the helper would keep them all
    server.kms.logs.splice(0)
    server.kms.kill('SIGTERM')
    await server.kms.waitForExit()
    rmSync(dirname(server.certDir), { recursive: true, force: true })
    profiled.push(['KMS worker', server.workerPid])
  } else {
    const k = await startAttestedKms(1, env)
    const guests = await guestFactory(k)
    const certs = Array.from({ length: concurrency }, () => guests.make())
    const cold = which === 'appkey-cold'
    // cold: more certificates than one worker can take in the time (about 300/s here)
    const makePool = (seconds: number) =>
      cold ? Array.from({ length: 400 * seconds }, () => guests.make()) : []
    let pool = makePool(COLD_WARMUP_SECONDS)
    const load = (warmupMs: number, ms: number, fresh: boolean) =>
      runLoad({
        url: `${k.base}/prpc/GetAppKey?json`,
        body: guests.body,
        headers: {},
        concurrency,
        warmupMs,
        durationMs: ms,
        validate: () => undefined,
        serverPid: k.workerPids,
        clientTls: (i) => certs[i] ?? guests.make(),
        ...(fresh ? { freshConnectionTls: () => pool.pop() } : {}),
      })
    await load(0, 1000, false)
    if (cold) {
      // the cold path is compiled only after thousands of requests (see bench/README.md)
      await load(0, COLD_WARMUP_SECONDS * 1000, true)
      pool = makePool(Number(values.seconds))
    }
    for (const pid of [...k.workerPids, k.sidecarPid ?? 0]) {
      if (pid > 0) process.kill(pid, 'SIGUSR2')
    }
    result = await load(0, durationMs, cold)
    k.kms.logs.splice(0)
    await stopAttestedKms(k)
    profiled.push(['KMS worker', k.workerPids[0] ?? 0], ['auth-simple sidecar', k.sidecarPid ?? 0])
  }
  process.stdout.write(
    `${which}, ${concurrency} clients: ${num(result.rps)} req/s, worker CPU ${num(result.serverCpuUsPerRequest)} µs/request\n`,
  )
  const top = Number(values.top)
  for (const [label, pid] of profiled) {
    const file = readdirSync(profDir).find((f) => f === `CPU.${pid}.cpuprofile`)
    if (file === undefined) throw new Error(`no profile of ${label} ${pid} in ${profDir}`)
    const profile = JSON.parse(readFileSync(join(profDir, file), 'utf8')) as CpuProfile
    const { self, total, samples } = summarise(profile)
    const pct = (v: number) => `${num((v / samples) * 100, 1)}%`
    const rows = (m: Map<string, number>) =>
      [...m.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, top)
        .map(([name, v]) => [name, pct(v)])
    process.stdout.write(`\n${label} (pid ${pid}, ${samples} samples)\n`)
    process.stdout.write(`self time\n${table(['function', 'share'], rows(self))}\n\n`)
    process.stdout.write(`inclusive time\n${table(['function', 'share'], rows(total))}\n`)
  }
  if (values.keep) process.stdout.write(`\nprofiles kept in ${profDir}\n`)
  else rmSync(profDir, { recursive: true, force: true })
}

const CASES = ['env-distinct', 'env-hot', 'appkey-hot', 'appkey-cold'] as const
type Case = (typeof CASES)[number]

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
