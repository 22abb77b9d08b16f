// `npx tsx bench/profile-env.ts [--seconds 5] [--clients 16] [--hot] [--keep]`: a CPU profile
// (the V8 sampling profiler, as `node --cpu-prof`) of the KMS worker while it answers GetAppEnvEncryptPubKey for all-distinct
// app ids (or one hot app id with --hot), summarised as the functions with the most self time
// and the most inclusive time. This is how the bottlenecks of the distinct path were found; the
// raw .cpuprofile (open it in Chrome DevTools) is kept with --keep.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { BENCH_APP_ID_HEX } from './crypto-cases.js'
import { ensureBuilt, startBenchKms } from './kms-server.js'
import { runLoad } from './load.js'
import { num, table } from './table.js'

// Node 20 refuses --cpu-prof in NODE_OPTIONS, and the supervisor forks its workers itself, so
// every KMS process preloads this: the in-thread inspector session answers synchronously, which
// lets the profile be written from the 'exit' event.
const PRELOAD = `
import { Session } from 'node:inspector'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
const session = new Session()
session.connect()
session.post('Profiler.enable')
session.post('Profiler.setSamplingInterval', { interval: 200 })
session.post('Profiler.start')
process.on('exit', () => {
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
      seconds: { type: 'string', default: '5' },
      clients: { type: 'string', default: '16' },
      hot: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      top: { type: 'string', default: '25' },
    },
  })
  ensureBuilt((l) => process.stderr.write(`${l}\n`))
  const profDir = mkdtempSync(join(tmpdir(), 'dstack-kms-prof-'))
  const preload = join(profDir, 'preload.mjs')
  writeFileSync(preload, PRELOAD)
  const server = await startBenchKms({
    cryptoBackend: 'native',
    workers: 1,
    env: { NODE_OPTIONS: `--import=${preload}`, BENCH_CPU_PROF_DIR: profDir },
  })
  const prefix = randomBytes(8).toString('hex')
  let n = 0
  const result = await runLoad({
    url: `${server.base}/prpc/GetAppEnvEncryptPubKey?json`,
    body: values.hot
      ? JSON.stringify({ app_id: BENCH_APP_ID_HEX })
      : () => JSON.stringify({ app_id: prefix + (n++).toString(16).padStart(24, '0') }),
    headers: { 'content-type': 'application/json' },
    concurrency: Number(values.clients),
    warmupMs: 500,
    durationMs: Number(values.seconds) * 1000,
    validate: () => undefined,
    serverPid: server.workerPid,
  })
  server.kms.kill('SIGTERM')
  await server.kms.waitForExit()
  rmSync(dirname(server.certDir), { recursive: true, force: true })
  const file = readdirSync(profDir).find((f) => f.includes(`.${server.workerPid}.`))
  if (file === undefined) throw new Error(`no profile of worker ${server.workerPid} in ${profDir}`)
  const profile = JSON.parse(readFileSync(join(profDir, file), 'utf8')) as CpuProfile
  const { self, total, samples } = summarise(profile)
  const top = Number(values.top)
  const pct = (v: number) => `${num((v / samples) * 100, 1)}%`
  const rows = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, v]) => [name, pct(v)])
  process.stdout.write(
    `${values.hot ? 'hot app id' : 'all-distinct app ids'}, ${values.clients} clients: ${num(result.rps)} req/s, worker CPU ${num(result.serverCpuUsPerRequest)} µs/request, ${samples} samples\n\n`,
  )
  process.stdout.write(`self time\n${table(['function', 'share'], rows(self))}\n\n`)
  process.stdout.write(`inclusive time\n${table(['function', 'share'], rows(total))}\n`)
  if (values.keep) process.stdout.write(`\nprofiles kept in ${profDir}\n`)
  else rmSync(profDir, { recursive: true, force: true })
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
