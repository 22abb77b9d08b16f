// The soak run: a real quick-start KMS (supervisor, auth-simple sidecar, two main workers) in a
// temp directory under bounded load that mixes every RPC, accepted and refused, while one main
// worker is SIGKILLed at a fixed interval. Every answer is checked against the first answer (keys
// are deterministic) or the exact refusal text; a request may fail without an answer only if a
// kill happened while it was in flight. RSS and open file descriptors of the whole process tree
// are sampled and must stay flat. `npm run soak` runs 10 minutes; test/soak.test.ts a short run.
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { randomBytes } from 'node:crypto'
import { parseDuration } from '../src/config/units.js'
import {
  DEMO_APP_ID,
  DEMO_COMPOSE_HASH,
  mockPlatformVerifier,
  requestSimulatedGuestKeys,
} from '../src/quickstart/demo.js'
import { defaultOsImageHash } from '../src/tee/simulator/cvm.js'
import { prpc } from '../test/helpers/https-client.js'
import {
  bootstrapQuickstart,
  quickstartSeed,
  startQuickstartKms,
} from '../test/helpers/quickstart-kms.js'

export interface SoakOptions {
  durationMs: number
  killEveryMs: number
  /** concurrent client loops */
  concurrency: number
  sampleEveryMs: number
  log?: (line: string) => void
}

export interface Sample {
  atMs: number
  rssMb: number
  fds: number
  processes: number
}

export interface SoakReport {
  requests: number
  byMethod: Record<string, number>
  wrongAnswers: string[]
  /** failures without an answer while a kill was in flight (allowed) */
  failedAtKill: number
  /** failures without an answer and without a kill (not allowed) */
  unexplainedFailures: string[]
  kills: number
  /** kill slots passed over because the previous victim was not back yet */
  skippedKills: number
  restarts: number
  samples: Sample[]
  rss: { firstMb: number; lastMb: number }
  fds: { first: number; last: number }
  durationMs: number
}

type Check = (status: number, text: string) => string | null

interface Call {
  name: string
  run: () => Promise<{ status: number; text: string }>
  check: Check
}

const expect400 =
  (text: string): Check =>
  (status, body) => {
    if (status !== 400) return `status ${status}, expected 400: ${body.slice(0, 200)}`
    let parsed: unknown
    try {
      parsed = JSON.parse(body)
    } catch {
      return `not JSON: ${body.slice(0, 200)}`
    }
    const error = (parsed as { error?: unknown }).error
    return error === text
      ? null
      : `error ${JSON.stringify(error)}, expected ${JSON.stringify(text)}`
  }

/** The first 200 answer of a method is the reference: every later one must be byte-identical. */
function sameAsFirst(project: (text: string) => string = (t) => t): Check {
  let first: string | null = null
  return (status, text) => {
    if (status !== 200) return `status ${status}: ${text.slice(0, 200)}`
    const v = project(text)
    if (first === null) first = v
    return v === first ? null : `answer changed: ${v.slice(0, 120)} vs ${first.slice(0, 120)}`
  }
}

function procTree(root: number): number[] {
  const out = [root]
  for (let i = 0; i < out.length; i++) {
    const pid = out[i]
    let children = ''
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        children += readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8')
      }
    } catch {
      continue
    }
    for (const c of children.split(' ').filter((s) => s !== '')) out.push(Number(c))
  }
  return out
}

function sampleTree(root: number, atMs: number): Sample {
  let rssKb = 0
  let fds = 0
  const pids = procTree(root)
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      rssKb += Number(m?.[1] ?? 0)
      fds += readdirSync(`/proc/${pid}/fd`).length
    } catch {
      // the process exited between listing and reading
    }
  }
  return { atMs, rssMb: rssKb / 1024, fds, processes: pids.length }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? 0
}

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const log = opts.log ?? (() => {})
  const quickstart = await startQuickstartKms({
    workers: 2,
    dirPrefix: 'dstack-kms-soak-',
    readyTimeoutMs: 120_000,
  })
  const { kms, dir, base } = quickstart
  const supervisorPid = kms.proc.pid
  if (supervisorPid === undefined) throw new Error('the KMS did not start')
  try {
    await bootstrapQuickstart(quickstart, 120_000)
    // both main workers up before the clock starts
    const deadline = Date.now() + 120_000
    while (kms.logs.filter((l) => l.msg === 'KMS worker ready').length < 2) {
      if (Date.now() > deadline) throw new Error('the second main worker did not start')
      await new Promise((resolve) => setTimeout(resolve, 200))
    }

    const seed = quickstartSeed(dir)
    const verifier = mockPlatformVerifier(seed)
    const guest = {
      seed,
      appId: DEMO_APP_ID,
      composeHash: DEMO_COMPOSE_HASH,
      instanceId: randomBytes(20),
      osImageHash: defaultOsImageHash(seed),
    }
    const rootCaPem = readFileSync(join(dir, 'data', 'certs', 'root-ca.crt'), 'utf8')
    const wrongToken = '00'.repeat(32)

    const calls: Call[] = [
      {
        name: 'GetMeta',
        run: () => prpc(base, 'GetMeta', '{}'),
        check: (status, text) =>
          status === 200 && (JSON.parse(text) as { ca_cert?: string }).ca_cert === rootCaPem
            ? null
            : `GetMeta: ${status} ${text.slice(0, 200)}`,
      },
      {
        name: 'GetTempCaCert',
        run: () => prpc(base, 'GetTempCaCert', '{}'),
        check: sameAsFirst(),
      },
      {
        name: 'GetAppEnvEncryptPubKey',
        run: () =>
          prpc(
            base,
            'GetAppEnvEncryptPubKey',
            JSON.stringify({ app_id: DEMO_APP_ID.toString('hex') }),
          ),
        check: sameAsFirst((t) => (JSON.parse(t) as { public_key: string }).public_key),
      },
      {
        name: 'GetAppKey (RA-TLS)',
        run: async () => {
          const { keys } = await requestSimulatedGuestKeys({
            kmsUrl: base,
            guest,
            verifier,
            timeoutMs: 30_000,
          })
          return {
            status: 200,
            text: [keys.diskCryptKey, keys.envCryptKey, keys.k256Key, keys.k256Signature]
              .map((b) => b.toString('hex'))
              .join(':'),
          }
        },
        check: sameAsFirst(),
      },
      {
        name: 'GetAppKey (no attestation)',
        run: () => prpc(base, 'GetAppKey', '{"api_version":1,"vm_config":""}'),
        check: expect400('App not allowed: No attestation provided'),
      },
      {
        name: 'GetKmsKey (no attestation)',
        run: () => prpc(base, 'GetKmsKey', '{"vm_config":""}'),
        check: expect400('No attestation provided'),
      },
      {
        name: 'SignCert (garbage CSR)',
        run: () =>
          prpc(
            base,
            'SignCert',
            JSON.stringify({ api_version: 9, csr: '00', signature: '00', vm_config: '' }),
          ),
        check: (status) => (status === 400 ? null : `SignCert garbage answered ${status}`),
      },
      {
        name: 'ClearImageCache (wrong token)',
        run: () =>
          prpc(
            base,
            'ClearImageCache',
            JSON.stringify({ token: wrongToken, image_hash: 'all', config_hash: '' }),
          ),
        check: expect400('Invalid token'),
      },
      {
        name: 'malformed JSON',
        run: () => prpc(base, 'GetAppEnvEncryptPubKey', '{"app_id":'),
        check: (status) => (status === 400 ? null : `malformed JSON answered ${status}`),
      },
    ]

    const report: SoakReport = {
      requests: 0,
      byMethod: {},
      wrongAnswers: [],
      failedAtKill: 0,
      unexplainedFailures: [],
      kills: 0,
      skippedKills: 0,
      restarts: 0,
      samples: [],
      rss: { firstMb: 0, lastMb: 0 },
      fds: { first: 0, last: 0 },
      durationMs: 0,
    }
    const killTimes: number[] = []
    const started = Date.now()
    const end = started + opts.durationMs

    const sampler = setInterval(() => {
      report.samples.push(sampleTree(supervisorPid, Date.now() - started))
    }, opts.sampleEveryMs)
    report.samples.push(sampleTree(supervisorPid, 0))

    const liveKmsWorkers = (): number[] => {
      const ready = kms.logs
        .filter((l) => l.msg === 'KMS worker ready' && typeof l.childPid === 'number')
        .map((l) => l.childPid as number)
      return ready.filter((pid) => {
        try {
          process.kill(pid, 0)
          return true
        } catch {
          return false
        }
      })
    }
    const killer = setInterval(() => {
      // only while the other worker serves: the point is that a kill costs only its own
      // in-flight requests, not that two quick kills take the whole listener down
      const live = liveKmsWorkers()
      const [victim] = live
      if (victim === undefined || live.length < 2) {
        report.skippedKills++
        log(`kill skipped: ${live.length} main worker(s) up`)
        return
      }
      killTimes.push(Date.now())
      report.kills++
      log(`SIGKILL main worker ${victim}`)
      process.kill(victim, 'SIGKILL')
    }, opts.killEveryMs)

    const loop = async (offset: number): Promise<void> => {
      for (let i = offset; Date.now() < end; i++) {
        const call = calls[i % calls.length]
        if (call === undefined) continue
        const t0 = Date.now()
        let answer: { status: number; text: string } | null = null
        let failure = ''
        try {
          answer = await call.run()
        } catch (err) {
          failure = err instanceof Error ? err.message : String(err)
        }
        const t1 = Date.now()
        report.requests++
        report.byMethod[call.name] = (report.byMethod[call.name] ?? 0) + 1
        if (answer === null) {
          // a kill between the start and end of this request explains a lost answer
          if (killTimes.some((k) => k >= t0 - 50 && k <= t1 + 50)) report.failedAtKill++
          else report.unexplainedFailures.push(`${call.name}: ${failure}`)
          continue
        }
        const problem = call.check(answer.status, answer.text)
        if (problem !== null) report.wrongAnswers.push(`${call.name}: ${problem}`)
      }
    }
    await Promise.all(Array.from({ length: opts.concurrency }, (_v, k) => loop(k * 2)))
    clearInterval(killer)
    // the last victim must come back too: wait for its restart to be reported (a killed worker
    // the supervisor has not reaped yet still answers kill(pid, 0), so liveness alone is no sign)
    const readyLines = (): number => kms.logs.filter((l) => l.msg === 'KMS worker ready').length
    const back = Date.now() + 60_000
    while (readyLines() - 2 < report.kills && Date.now() < back) {
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    clearInterval(sampler)
    report.samples.push(sampleTree(supervisorPid, Date.now() - started))
    report.durationMs = Date.now() - started
    report.restarts = Math.max(0, kms.logs.filter((l) => l.msg === 'KMS worker ready').length - 2)
    // compare the first and last quarter of the run, after the first sample (warm-up)
    const steady = report.samples.slice(1)
    const q = Math.max(1, Math.floor(steady.length / 4))
    report.rss = {
      firstMb: median(steady.slice(0, q).map((s) => s.rssMb)),
      lastMb: median(steady.slice(-q).map((s) => s.rssMb)),
    }
    report.fds = {
      first: median(steady.slice(0, q).map((s) => s.fds)),
      last: median(steady.slice(-q).map((s) => s.fds)),
    }
    return report
  } finally {
    kms.kill('SIGTERM')
    await kms.waitForExit(30_000).catch(() => kms.kill('SIGKILL'))
  }
}

/** Flat means: the last quarter is within 50% + 40 MiB of the first, and at most 20 more fds. */
export function soakProblems(r: SoakReport): string[] {
  const problems: string[] = []
  if (r.wrongAnswers.length > 0) problems.push(`${r.wrongAnswers.length} wrong answers`)
  if (r.unexplainedFailures.length > 0) {
    problems.push(`${r.unexplainedFailures.length} failures outside a kill`)
  }
  if (r.rss.lastMb > r.rss.firstMb * 1.5 + 40) {
    problems.push(`RSS grew from ${r.rss.firstMb.toFixed(0)} to ${r.rss.lastMb.toFixed(0)} MiB`)
  }
  if (r.fds.last > r.fds.first + 20) problems.push(`fds grew from ${r.fds.first} to ${r.fds.last}`)
  if (r.kills > 0 && r.restarts < r.kills) {
    problems.push(`${r.kills} kills but only ${r.restarts} worker restarts`)
  }
  return problems
}

export function formatSoak(r: SoakReport): string {
  return [
    `duration ${(r.durationMs / 1000).toFixed(0)} s, ${r.requests} requests (${(r.requests / (r.durationMs / 1000)).toFixed(1)}/s)`,
    `  by method: ${Object.entries(r.byMethod)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    `  worker SIGKILLs ${r.kills} (${r.skippedKills} skipped: victim of the last kill not back yet), restarts ${r.restarts}, requests lost at a kill ${r.failedAtKill}`,
    `  wrong answers ${r.wrongAnswers.length}, failures outside a kill ${r.unexplainedFailures.length}`,
    `  RSS (process tree) first quarter ${r.rss.firstMb.toFixed(0)} MiB, last quarter ${r.rss.lastMb.toFixed(0)} MiB`,
    `  open fds (process tree) first quarter ${r.fds.first}, last quarter ${r.fds.last}`,
    ...r.wrongAnswers.slice(0, 10).map((w) => `  wrong: ${w}`),
    ...r.unexplainedFailures.slice(0, 10).map((w) => `  failed: ${w}`),
  ].join('\n')
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10m' },
      'kill-every': { type: 'string', default: '1m' },
      concurrency: { type: 'string', default: '4' },
    },
  })
  const durationMs = parseDuration(values.duration)
  const killEveryMs = parseDuration(values['kill-every'])
  if (durationMs === null || killEveryMs === null) throw new Error('durations must be finite')
  process.stdout.write(
    `soak: ${values.duration}, SIGKILL of a main worker every ${values['kill-every']}, ${values.concurrency} client loops\n`,
  )
  const report = await runSoak({
    durationMs,
    killEveryMs,
    concurrency: Number(values.concurrency),
    sampleEveryMs: Math.max(1000, Math.min(10_000, durationMs / 40)),
    log: (l) => process.stdout.write(`  ${new Date().toISOString()} ${l}\n`),
  })
  process.stdout.write(formatSoak(report) + '\n')
  const problems = soakProblems(report)
  process.stdout.write(
    problems.length === 0 ? 'soak: PASS\n' : `soak: FAIL: ${problems.join('; ')}\n`,
  )
  return problems.length === 0 ? 0 : 1
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
      process.stderr.write(
        `soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      )
      process.exitCode = 1
    },
  )
}
