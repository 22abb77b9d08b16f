// `npm run bench [-- --quick]`: in-process costs of the crypto and codecs behind the public RPCs,
// then the same RPCs end to end over HTTPS against a real `dstack-kms serve`. Figures are printed
// for people to compare; nothing here passes or fails on speed.
import { readFileSync, rmSync } from 'node:fs'
import { cpus } from 'node:os'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { P256Key } from '../src/crypto/p256.js'
import {
  BENCH_APP_ID_HEX,
  ENV_KEY_HANDLER_CASE,
  cryptoCases,
  expectedEnvPublicKeyHex,
} from './crypto-cases.js'
import { ensureBuilt, startBenchKms, type BenchKms } from './kms-server.js'
import { runLoad, type LoadResult } from './load.js'
import { measure, type MicroOptions, type MicroResult } from './micro.js'
import { mib, procMemory } from './proc.js'
import { micros, num, table } from './table.js'
import { GetMetaResponseType, PublicKeyResponseType } from '../src/prpc/messages.js'
import type { MessageType } from '../src/prpc/schema.js'

/** The JSON keys of a message, in order (the bench checks shapes, the tests pin them). */
const fieldNames = <T>(type: MessageType<T>): string[] => type.fields.map((f) => f.name)

interface Profile {
  name: string
  micro: MicroOptions
  loadWarmupMs: number
  loadDurationMs: number
}

const PROFILES: Record<'full' | 'quick', Profile> = {
  full: {
    name: 'full',
    micro: { warmupMs: 200, roundMs: 150, rounds: 7 },
    loadWarmupMs: 500,
    loadDurationMs: 3000,
  },
  quick: {
    name: 'quick',
    micro: { warmupMs: 100, roundMs: 40, rounds: 3 },
    loadWarmupMs: 200,
    loadDurationMs: 800,
  },
}

const CONCURRENCY = [1, 16] as const

const out = (line = ''): void => {
  process.stdout.write(`${line}\n`)
}
const progress = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`)
}

function parseFlags(): Profile {
  const { values } = parseArgs({
    options: { quick: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  })
  if (values.help === true) {
    out('Usage: npm run bench [-- --quick]')
    process.exit(0)
  }
  return values.quick ? PROFILES.quick : PROFILES.full
}

function runMicro(profile: Profile): MicroResult[] {
  progress('in-process micro-benchmarks…')
  const results = cryptoCases().map((c) => measure(c.name, c.fn, profile.micro))
  out(
    `In-process, per operation (median of ${profile.micro.rounds} rounds of ~${profile.micro.roundMs} ms after a ${profile.micro.warmupMs} ms warm-up)`,
  )
  out(
    table(
      ['operation', 'µs/op', 'ops/s', 'spread'],
      results.map((r) => [r.name, micros(r.usPerOp), num(r.opsPerSec), `${num(r.spreadPct, 1)}%`]),
    ),
  )
  out()
  return results
}

interface Scenario {
  label: string
  method: string
  body: string
  validate(body: Buffer): string | undefined
}

function jsonKeys(body: Buffer, keys: readonly string[]): Record<string, unknown> | string {
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    return `not JSON: ${body.toString('utf8').slice(0, 200)}`
  }
  if (typeof parsed !== 'object' || parsed === null) return 'not a JSON object'
  const got = Object.keys(parsed)
  if (got.join(',') !== keys.join(',')) return `unexpected fields ${got.join(',')}`
  return parsed as Record<string, unknown>
}

function scenarios(server: BenchKms): Scenario[] {
  // The answer must be the key the in-process code derives from the same root key, which also
  // shows that the two halves of this bench measure the same work.
  const rootCaKey = P256Key.fromPem(readFileSync(join(server.certDir, 'root-ca.key'), 'utf8'))
  const expectedKey = expectedEnvPublicKeyHex(rootCaKey, BENCH_APP_ID_HEX)
  return [
    {
      label: 'GetAppEnvEncryptPubKey',
      method: 'GetAppEnvEncryptPubKey?json',
      body: JSON.stringify({ app_id: BENCH_APP_ID_HEX }),
      validate(body) {
        const v = jsonKeys(body, fieldNames(PublicKeyResponseType))
        if (typeof v === 'string') return v
        return v.public_key === expectedKey
          ? undefined
          : `public_key ${String(v.public_key)} is not the derived key`
      },
    },
    {
      label: 'GetMeta',
      method: 'GetMeta?json',
      body: '{}',
      validate(body) {
        const v = jsonKeys(body, fieldNames(GetMetaResponseType))
        if (typeof v === 'string') return v
        if (typeof v.ca_cert !== 'string' || !v.ca_cert.startsWith('-----BEGIN CERTIFICATE-----')) {
          return 'ca_cert is not a PEM certificate'
        }
        return undefined
      },
    },
  ]
}

interface LoadRow {
  scenario: Scenario
  concurrency: number
  result: LoadResult
}

async function runEndToEnd(profile: Profile, micro: MicroResult[]): Promise<boolean> {
  ensureBuilt(progress)
  progress('starting dstack-kms serve, Bootstrap, Finish…')
  const server = await startBenchKms()
  let ok = true
  try {
    const memBefore = procMemory(server.workerPid)
    const supervisorBefore = procMemory(server.supervisorPid)
    const rows: LoadRow[] = []
    let logLines = 0
    let errorLogLines = 0
    for (const scenario of scenarios(server)) {
      for (const concurrency of CONCURRENCY) {
        progress(`${scenario.label}, concurrency ${concurrency}…`)
        const result = await runLoad({
          url: `${server.base}/prpc/${scenario.method}`,
          body: scenario.body,
          headers: { 'content-type': 'application/json' },
          concurrency,
          warmupMs: profile.loadWarmupMs,
          durationMs: profile.loadDurationMs,
          validate: scenario.validate,
          serverPid: server.workerPid,
        })
        rows.push({ scenario, concurrency, result })
        // The helper keeps every log line; drop them between runs so the bench's own memory and
        // the search for errors stay small.
        logLines += server.kms.logs.length
        errorLogLines += server.kms.logs.filter((l) => (l.level ?? 0) >= 50).length
        server.kms.logs.splice(0)
      }
    }
    const memAfter = procMemory(server.workerPid)
    const supervisorAfter = procMemory(server.supervisorPid)

    out(
      `End to end over HTTPS (keep-alive, JSON, ${num(profile.loadDurationMs / 1000, 1)} s per row after a ${profile.loadWarmupMs} ms warm-up; client and KMS on this machine)`,
    )
    out(
      table(
        ['RPC', 'clients', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'KMS CPU', 'client CPU'],
        rows.map(({ scenario, concurrency, result: r }) => [
          scenario.label,
          String(concurrency),
          num(r.rps),
          num(r.p50Ms, 2),
          num(r.p99Ms, 2),
          String(r.errors),
          `${num(r.serverCpuPct)}%`,
          `${num(r.clientCpuPct)}%`,
        ]),
      ),
    )
    for (const { scenario, concurrency, result } of rows) {
      if (result.errors > 0) {
        ok = false
        out(`  ! ${scenario.label} c=${concurrency}: ${result.firstError ?? 'errors'}`)
      }
    }
    out(
      `  KMS log lines during load: ${num(logLines)} (${num(
        logLines /
          Math.max(
            1,
            rows.reduce((a, r) => a + r.result.requests, 0),
          ),
        2,
      )} per request), error-level: ${errorLogLines}`,
    )
    out()

    out(`KMS memory (VmRSS from /proc; worker pid ${server.workerPid})`)
    out(
      table(
        ['process', 'before load', 'after load', 'peak (VmHWM)'],
        [
          ['KMS worker', mib(memBefore.rssKiB), mib(memAfter.rssKiB), mib(memAfter.hwmKiB)],
          [
            'supervisor',
            mib(supervisorBefore.rssKiB),
            mib(supervisorAfter.rssKiB),
            mib(supervisorAfter.hwmKiB),
          ],
        ],
      ),
    )
    out()

    printWhereTimeGoes(rows, micro)

    progress('stopping the KMS with SIGTERM…')
    server.kms.kill('SIGTERM')
    const exit = await server.kms.waitForExit()
    const clean = exit.code === 0 && exit.signal === null
    if (!clean) ok = false
    out(
      `KMS stop on SIGTERM: exit code ${String(exit.code)}, signal ${String(exit.signal)} (${clean ? 'ok' : 'EXPECTED exit 0'})`,
    )
  } finally {
    if (server.kms.proc.exitCode === null && server.kms.proc.signalCode === null) {
      server.kms.kill('SIGKILL')
      await server.kms.waitForExit().catch(() => undefined)
    }
    rmSync(dirname(server.certDir), { recursive: true, force: true })
  }
  return ok
}

function printWhereTimeGoes(rows: readonly LoadRow[], micro: readonly MicroResult[]): void {
  const inProcess = micro.find((m) => m.name === ENV_KEY_HANDLER_CASE)
  const envRows = rows.filter((r) => r.scenario.label === 'GetAppEnvEncryptPubKey')
  if (inProcess === undefined || envRows.length === 0) return
  const base = inProcess.usPerOp
  const ratio = (us: number) => `${num(us / base, 1)}×`
  const lines: string[][] = [
    ['in-process handler work (decode, derive, 2 signatures, encode)', micros(base), '1.0×'],
  ]
  for (const { concurrency, result } of envRows) {
    if (concurrency === 1) {
      lines.push([
        `HTTPS, 1 client: mean latency`,
        micros(result.meanMs * 1000),
        ratio(result.meanMs * 1000),
      ])
    }
    lines.push([
      `HTTPS, ${concurrency} client${concurrency === 1 ? '' : 's'}: KMS worker CPU per request`,
      micros(result.serverCpuUsPerRequest),
      ratio(result.serverCpuUsPerRequest),
    ])
    lines.push([
      `HTTPS, ${concurrency} client${concurrency === 1 ? '' : 's'}: wall time per request (1/throughput)`,
      micros(1e6 / result.rps),
      ratio(1e6 / result.rps),
    ])
  }
  out('Where the time goes: GetAppEnvEncryptPubKey, HTTPS end to end vs in-process')
  out(table(['figure', 'µs', 'vs in-process'], lines))
  out(
    '  (the difference is TLS, HTTP parsing, routing, pRPC negotiation, request logging and, for latency, the client)',
  )
  out()
}

async function main(): Promise<number> {
  const profile = parseFlags()
  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  out(
    `dstack-kms bench (${profile.name}): node ${process.version}, ${process.platform}/${process.arch}, ${cpus().length} × ${cpu.trim()}`,
  )
  out()
  const started = Date.now()
  const micro = runMicro(profile)
  const ok = await runEndToEnd(profile, micro)
  out(`bench finished in ${num((Date.now() - started) / 1000, 1)} s`)
  return ok ? 0 : 1
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    )
    process.exitCode = 1
  },
)
