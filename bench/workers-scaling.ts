// GetAppKey on the TEE simulator (hot: one certificate per client, verified once; cold: a new
// certificate and connection per request) and `[rpc] workers` scaling, measured side by side in
// one run: for each worker count a plain KMS serves GetAppEnvEncryptPubKey for all-distinct app
// ids (the CPU-bound case) and an attested KMS serves GetAppKey. The peak RSS (VmHWM) of every
// main worker is read after its load.
import { randomBytes } from 'node:crypto'
import { createSecureContext } from 'node:tls'
import { dirname, join } from 'node:path'
import { rmSync } from 'node:fs'
import {
  appKeyValidator,
  guestFactory,
  startAttestedKms,
  stopAttestedKms,
  type AttestedKms,
  type GuestFactory,
} from './app-key-load.js'
import { buildColdClient, type ColdClient } from './cold-client.js'
import { startBenchKms } from './kms-server.js'
import { startFloor } from './env-pubkey-load.js'
import { CERT_DIR_FILES } from '../src/keys/cert-dir.js'
import { runLoad, type ClientTls, type LoadResult } from './load.js'
import { checkOne, wrkLoad } from './wrk.js'
import { procCpuMs, procMemory, type ProcMemory } from './proc.js'
import { DEFAULT_CLIENT_CERT_CACHE_ENTRIES } from '../src/kms/client-cert.js'

export type ScalingRpc =
  'env-distinct' | 'appkey-hot' | 'appkey-cold' | 'appkey-cold-dcap-qvl' | 'cold-tls-floor'

export interface ScalingRow {
  rpc: ScalingRpc
  workers: number
  concurrency: number
  result: LoadResult
  /** CPU of the auth-simple sidecar over the window, share of one core (GetAppKey rows) */
  sidecarCpuPct: number | null
}

export interface WorkerMemory {
  kms: 'plain' | 'attested'
  workers: number
  pid: number
  memory: ProcMemory
}

export interface ScalingOptions {
  workerCounts: readonly number[]
  /** clients of the comparison rows */
  concurrency: number
  warmupMs: number
  durationMs: number
  /** cold GetAppKey requests (a new connection and a certificate the worker has not verified
   * lately, each) before a cold row's window: V8 optimises the cold path (handshake handling,
   * certificate parsing, quote verification) only after thousands of requests, and until then
   * compiling costs the worker more CPU than the requests (measured on one worker: ~4,800 µs per
   * request in the first 3 s, ~3,000 after 10 s, ~2,650–2,750 from about 20 s on) */
  coldWarmupMs: number
  /** each cold row's window: consecutive 3 s windows of one warmed worker differ by ±10 % in CPU
   * per cold request (major collections, WAL checkpoints of the audit log land in some and not
   * others), so the cold rows, whose ratio is a target, are measured over a longer one */
  coldDurationMs: number
  /** also measure GetAppKey hot with a single client (latency without queueing) */
  singleClient: boolean
  /** also measure the cold TLS floor (see coldTlsFloor) */
  coldFloor: boolean
  progress(line: string): void
}

export interface ScalingReport {
  rows: ScalingRow[]
  memory: WorkerMemory[]
  /** client-side cost of making one guest certificate (key, simulated quote, X.509), µs */
  certMakeUs: number | null
  /** what drove the cold rows (the C client, or the Node client and why), once they ran */
  coldClient: string | null
  problems: string[]
}

/** Upper bound of cold GetAppKey requests per second the pool is sized for (per worker). */
const COLD_RPS_BUDGET_PER_WORKER = 400
/** Certificates the cold warm-up cycles through: each comes back only after more distinct
 * certificates than a worker's ClientCertVerifier remembers, so every warm-up request is a full
 * verification on a new connection, as in the window, without making a certificate per request
 * (2.8 ms of client CPU each: 25 s of warm-up would cost ~25 s of certificates). */
const COLD_WARMUP_CERTIFICATES = 4 * DEFAULT_CLIENT_CERT_CACHE_ENTRIES

function distinctBodies(): () => string {
  const prefix = randomBytes(8).toString('hex')
  let n = 0
  return () => JSON.stringify({ app_id: prefix + (n++).toString(16).padStart(24, '0') })
}

async function envDistinct(
  o: ScalingOptions,
  workers: number,
  report: ScalingReport,
): Promise<void> {
  o.progress(`GetAppEnvEncryptPubKey, distinct app ids, [rpc] workers = ${workers}…`)
  const server = await startBenchKms({ cryptoBackend: 'native', workers })
  try {
    const url = `${server.base}/prpc/GetAppEnvEncryptPubKey?json`
    const result = await wrkLoad({
      url,
      body: 'distinct',
      concurrency: o.concurrency,
      warmupMs: o.warmupMs,
      durationMs: o.durationMs,
      serverPid: server.workerPids,
    })
    const problem = await checkOne(url, distinctBodies()(), (body) => {
      const v = JSON.parse(body.toString('utf8')) as Record<string, unknown>
      return typeof v.public_key === 'string' && v.public_key.length === 64
        ? undefined
        : 'no public_key'
    })
    if (problem !== undefined) result.errors++
    result.firstError ??= problem
    server.kms.logs.splice(0)
    report.rows.push({
      rpc: 'env-distinct',
      workers,
      concurrency: o.concurrency,
      result,
      sidecarCpuPct: null,
    })
    if (result.errors > 0) {
      report.problems.push(`env distinct w=${workers}: ${result.firstError ?? 'errors'}`)
    }
    for (const pid of server.workerPids) {
      report.memory.push({ kms: 'plain', workers, pid, memory: procMemory(pid) })
    }
  } finally {
    server.kms.kill('SIGTERM')
    const exit = await server.kms.waitForExit().catch(() => ({ code: null }))
    if (exit.code !== 0) {
      report.problems.push(`KMS (workers ${workers}) did not exit 0 on SIGTERM`)
      server.kms.kill('SIGKILL')
    }
    rmSync(dirname(server.certDir), { recursive: true, force: true })
  }
}

async function withSidecarCpu(
  k: AttestedKms,
  fn: () => Promise<LoadResult>,
): Promise<{ result: LoadResult; sidecarCpuPct: number | null }> {
  const pid = k.sidecarPid
  const cpu0 = pid === undefined ? 0 : procCpuMs(pid)
  const t0 = performance.now()
  const result = await fn()
  const elapsed = performance.now() - t0
  // the window includes the warm-up; the sidecar's share is the same in both
  const sidecarCpuPct = pid === undefined ? null : ((procCpuMs(pid) - cpu0) / elapsed) * 100
  return { result, sidecarCpuPct }
}

async function appKey(
  o: ScalingOptions,
  workers: number,
  report: ScalingReport,
  coldClient: ColdClient | string,
): Promise<void> {
  o.progress(`starting the attested KMS on the simulator, [rpc] workers = ${workers}…`)
  const k = await startAttestedKms(workers)
  try {
    const guests = await guestFactory(k)
    const validate = appKeyValidator(k)
    const url = `${k.base}/prpc/GetAppKey?json`
    const push = (
      rpc: ScalingRpc,
      concurrency: number,
      r: { result: LoadResult; sidecarCpuPct: number | null },
    ) => {
      report.rows.push({ rpc, workers, concurrency, ...r })
      if (r.result.errors > 0) {
        report.problems.push(
          `${rpc} w=${workers} c=${concurrency}: ${r.result.firstError ?? 'errors'}`,
        )
      }
      k.kms.logs.splice(0)
    }
    const hot = async (concurrency: number) => {
      o.progress(`GetAppKey hot, ${concurrency} clients, [rpc] workers = ${workers}…`)
      // one certificate per client, made once, as a guest makes one per boot
      const certs = Array.from({ length: concurrency }, () => guests.make())
      const r = await withSidecarCpu(k, () =>
        runLoad({
          url,
          body: guests.body,
          headers: {},
          concurrency,
          warmupMs: o.warmupMs,
          durationMs: o.durationMs,
          validate,
          serverPid: k.workerPids,
          clientTls: (i) => certs[i] ?? guests.make(),
        }),
      )
      push('appkey-hot', concurrency, r)
    }
    if (o.singleClient) await hot(1)
    await hot(o.concurrency)

    push('appkey-cold', o.concurrency, await coldRow(o, k, workers, report, guests, coldClient))
    if (o.coldFloor) {
      push('cold-tls-floor', o.concurrency, await coldTlsFloor(o, k, guests, coldClient))
    }
    for (const pid of k.workerPids) {
      report.memory.push({ kms: 'attested', workers, pid, memory: procMemory(pid) })
    }
  } finally {
    const exit = await stopAttestedKms(k)
    if (exit.code !== 0) {
      report.problems.push(`attested KMS (workers ${workers}) did not exit 0 on SIGTERM`)
    }
  }
}

/** Where cold requests go, and how one answer is judged by the Node client. */
interface ColdTarget {
  url: string
  body: string
  serverPid: number | readonly number[]
  validate: (body: Buffer) => string | undefined
}

/** Cold requests (a new connection and certificate each) against one target: through the C client
 * when it was built, else (`client` is then why not) through the Node client (bench/load.ts). */
interface ColdRunner {
  /** `count` guest certificates, made before a window so that the client spends the window on
   * handshakes (the Node client's TLS contexts included) */
  pool(count: number): ClientTls[]
  /** loads `credentials` into the client; the returned function runs the window. `fresh`: each
   * credential once; `cycle`: round-robin until `durationMs` */
  prepare(
    credentials: ClientTls[],
    mode: 'fresh' | 'cycle',
    durationMs: number,
  ): Promise<() => Promise<LoadResult>>
}

function coldRunner(
  o: ScalingOptions,
  t: ColdTarget,
  guests: GuestFactory,
  client: ColdClient | string,
): ColdRunner {
  if (typeof client !== 'string') {
    return {
      pool: (count) => Array.from({ length: count }, () => guests.make()),
      async prepare(credentials, mode, durationMs) {
        const prepared = await client.prepare({
          url: t.url,
          body: t.body,
          credentials,
          mode,
          concurrency: o.concurrency,
          durationMs,
          serverPid: t.serverPid,
        })
        return () => prepared.go()
      },
    }
  }
  return {
    pool: (count) =>
      Array.from({ length: count }, () => {
        const tls = guests.make()
        return { ...tls, secureContext: createSecureContext(tls) }
      }),
    prepare(credentials, mode, durationMs) {
      let turn = 0
      const next =
        mode === 'fresh' ? () => credentials.pop() : () => credentials[turn++ % credentials.length]
      return Promise.resolve(() =>
        runLoad({
          url: t.url,
          body: t.body,
          headers: {},
          concurrency: o.concurrency,
          warmupMs: 0,
          durationMs,
          validate: t.validate,
          serverPid: t.serverPid,
          freshConnectionTls: next,
        }),
      )
    },
  }
}

/** GetAppKey with a new certificate and connection per request: what one guest boot costs.
 * Cold requests for `coldWarmupMs` first (their figures dropped), then the measured window. Driven
 * by the C client when it was built (one answer then checked through the Node client, which
 * validates it), else by the Node client (bench/load.ts). */
async function coldRow(
  o: ScalingOptions,
  k: AttestedKms,
  workers: number,
  report: ScalingReport,
  guests: GuestFactory,
  client: ColdClient | string,
  budgetPerWorker = COLD_RPS_BUDGET_PER_WORKER,
): Promise<{ result: LoadResult; sidecarCpuPct: number | null }> {
  const target: ColdTarget = {
    url: `${k.base}/prpc/GetAppKey?json`,
    body: guests.body,
    serverPid: k.workerPids,
    validate: appKeyValidator(k),
  }
  const runner = coldRunner(o, target, guests, client)
  const poolFor = (ms: number) => Math.ceil((budgetPerWorker * workers * ms) / 1000)
  if (o.coldWarmupMs > 0) {
    const warmCount = Math.min(poolFor(o.coldWarmupMs), COLD_WARMUP_CERTIFICATES)
    o.progress(`making ${warmCount} guest certificates for the cold warm-up…`)
    const warmPool = runner.pool(warmCount)
    o.progress(`GetAppKey cold warm-up (${o.coldWarmupMs} ms), [rpc] workers = ${workers}…`)
    const warm = await (await runner.prepare(warmPool, 'cycle', o.coldWarmupMs))()
    if (warm.errors > 0) {
      report.problems.push(`cold warm-up w=${workers}: ${warm.firstError ?? 'errors'}`)
    }
  }
  const poolSize = poolFor(o.coldDurationMs)
  o.progress(`making ${poolSize} guest certificates for the cold GetAppKey row…`)
  const t0 = performance.now()
  const pool = runner.pool(poolSize)
  report.certMakeUs ??= ((performance.now() - t0) * 1000) / poolSize
  o.progress(`GetAppKey cold (new certificate per request), [rpc] workers = ${workers}…`)
  const go = await runner.prepare(pool, 'fresh', o.coldDurationMs)
  const r = await withSidecarCpu(k, go)
  report.coldClient =
    typeof client === 'string'
      ? `the Node client (bench/load.ts); ${client}`
      : `${client.description}; one answer also checked in full through the Node client`
  if (typeof client !== 'string') {
    // the C client reads status codes only: one more cold request through the Node client,
    // whose answer is checked in full (as the wrk rows do with checkOne)
    const viaNode = coldRunner(o, target, guests, 'the Node client, to check one answer')
    const check = await (await viaNode.prepare(viaNode.pool(1), 'fresh', 60_000))()
    if (check.errors > 0 || check.requests !== 1) {
      r.result.errors++
      r.result.firstError ??= check.firstError ?? 'the checked cold request got no answer'
    }
  }
  return r
}

/** Certificates the cold TLS floor cycles through: the floor keeps nothing per certificate, so a
 * cycled certificate costs it a full handshake like a new one. */
const COLD_FLOOR_CERTIFICATES = 256
/** The cold TLS floor's warm-up: its request path is small, V8 is done with it in a second or two. */
const COLD_FLOOR_WARMUP_MS = 3_000

/** What the cold rows cost below the KMS: bench/floor-server.ts with the KMS main listener's TLS
 * settings, its RPC certificate and its temp CA, reading each request's client certificate, driven
 * like the cold rows (a new connection and guest certificate per request, the same clients and
 * load client). Each row's CPU per request minus this one is what the KMS adds to the handshake. */
async function coldTlsFloor(
  o: ScalingOptions,
  k: AttestedKms,
  guests: GuestFactory,
  client: ColdClient | string,
): Promise<{ result: LoadResult; sidecarCpuPct: number | null }> {
  o.progress('cold TLS floor (bare Fastify route, client certificates, new connection each)…')
  const floor = await startFloor(k.certDir, join(k.certDir, CERT_DIR_FILES.tmpCaCert))
  try {
    const runner = coldRunner(
      o,
      {
        url: `https://127.0.0.1:${floor.port}/prpc/Floor`,
        body: guests.body,
        serverPid: floor.pid,
        validate: (body) =>
          body.toString('utf8').includes('public_key') ? undefined : 'no answer',
      },
      guests,
      client,
    )
    const certs = runner.pool(COLD_FLOOR_CERTIFICATES)
    const warmupMs = Math.min(COLD_FLOOR_WARMUP_MS, o.coldWarmupMs)
    await (
      await runner.prepare(certs, 'cycle', warmupMs)
    )()
    return {
      result: await (await runner.prepare(certs, 'cycle', o.coldDurationMs))(),
      sidecarCpuPct: null,
    }
  } finally {
    await floor.stop()
  }
}

/** The cold row again on a KMS whose quote verifier is @phala/dcap-qvl (same workers, same
 * clients), for the node:crypto / dcap-qvl ratio. */
async function coldWithLibrary(
  o: ScalingOptions,
  workers: number,
  report: ScalingReport,
  coldClient: ColdClient | string,
): Promise<void> {
  o.progress(`starting the attested KMS with quote_verifier = "dcap-qvl", workers = ${workers}…`)
  const k = await startAttestedKms(workers, undefined, 'dcap-qvl')
  try {
    const guests = await guestFactory(k)
    // a few hot requests first, so that both cold rows start from a worker that has served
    const warm = guests.make()
    await runLoad({
      url: `${k.base}/prpc/GetAppKey?json`,
      body: guests.body,
      headers: {},
      concurrency: 1,
      warmupMs: 0,
      durationMs: Math.min(500, o.warmupMs),
      validate: appKeyValidator(k),
      serverPid: k.workerPids,
      clientTls: () => warm,
    })
    // the library path is several times slower: a smaller certificate pool covers the window
    const r = await coldRow(
      o,
      k,
      workers,
      report,
      guests,
      coldClient,
      COLD_RPS_BUDGET_PER_WORKER / 3,
    )
    report.rows.push({ rpc: 'appkey-cold-dcap-qvl', workers, concurrency: o.concurrency, ...r })
    if (r.result.errors > 0) {
      report.problems.push(`appkey-cold-dcap-qvl w=${workers}: ${r.result.firstError ?? 'errors'}`)
    }
  } finally {
    const exit = await stopAttestedKms(k)
    if (exit.code !== 0) {
      report.problems.push(`attested KMS (dcap-qvl, workers ${workers}) did not exit 0 on SIGTERM`)
    }
  }
}

export async function runWorkersScaling(o: ScalingOptions): Promise<ScalingReport> {
  const report: ScalingReport = {
    rows: [],
    memory: [],
    certMakeUs: null,
    coldClient: null,
    problems: [],
  }
  const coldClient = buildColdClient()
  try {
    for (const workers of o.workerCounts) {
      await envDistinct(o, workers, report)
      await appKey(
        {
          ...o,
          singleClient: o.singleClient && workers === o.workerCounts[0],
          coldFloor: o.coldFloor && workers === o.workerCounts[0],
        },
        workers,
        report,
        coldClient,
      )
      if (workers === o.workerCounts[0]) await coldWithLibrary(o, workers, report, coldClient)
    }
  } finally {
    if (typeof coldClient !== 'string') coldClient.dispose()
  }
  return report
}
