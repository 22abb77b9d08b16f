// GetAppEnvEncryptPubKey over real HTTPS on loopback, side by side in one run: the KMS with the
// native secp256k1 backend, the KMS with the js backend, and a minimal Fastify HTTPS route (the
// floor) on the same TLS key, each with N keep-alive clients; one hot app id and all-distinct
// app ids. The crypto floor is 1 / (sum of the raw per-request primitive costs) measured here.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, rmSync } from 'node:fs'
import { dirname, join, resolve as resolvePath } from 'node:path'
import { deriveDhSecret } from '../src/crypto/kdf.js'
import { P256Key } from '../src/crypto/p256.js'
import { keccak256, messageDigestWithTimestamp, nobleSecp256k1 } from '../src/crypto/secp256k1.js'
import { x25519PublicKey } from '../src/crypto/x25519.js'
import { CERT_DIR_FILES } from '../src/keys/cert-dir.js'
import { BENCH_APP_ID_HEX, expectedEnvPublicKeyHex } from './crypto-cases.js'
import { startBenchKms, type BenchKms } from './kms-server.js'
import type { LoadResult } from './load.js'
import { measureInterleaved, type MicroOptions } from './micro.js'
import { BENCH_K256_KEY, nativeBackendOrReason } from './secp256k1.js'
import { checkOne, wrkLoad } from './wrk.js'

const ROOT = resolvePath(import.meta.dirname, '..')
const ENV_PUBKEY_PREFIX = 'dstack-env-encrypt-pubkey'

export type EnvTarget = 'floor' | 'kms-native' | 'kms-js'
export type AppIdMode = 'hot' | 'distinct'

export interface EnvLoadRow {
  target: EnvTarget
  /** for the floor: the KMS session it was measured in */
  session: 'native' | 'js'
  appIds: AppIdMode | null
  concurrency: number
  result: LoadResult
}

export interface CryptoFloor {
  /** µs per request of each primitive GetAppEnvEncryptPubKey computes, as measured */
  primitivesUs: Record<string, number>
  nativeSumUs: number | null
  jsSumUs: number
  nativeRps: number | null
  jsRps: number
}

export interface EnvComparison {
  rows: EnvLoadRow[]
  cryptoFloor: CryptoFloor
  ok: boolean
  problems: string[]
  notes: string[]
}

export interface EnvComparisonOptions {
  concurrency: readonly number[]
  /** `[rpc] workers` of the KMS sessions (the floor is always one process) */
  workers: number
  warmupMs: number
  durationMs: number
  micro: MicroOptions
  progress(line: string): void
}

/** The raw per-request work of GetAppEnvEncryptPubKey, without a cache: HKDF → P-256 → SHA-256
 * (deriveDhSecret), X25519, two Keccak-256 digests and two signatures. */
export function measureCryptoFloor(o: MicroOptions): CryptoFloor {
  const rootCaKey = P256Key.fromScalar(Buffer.alloc(32, 0x11))
  const appId = Buffer.from(BENCH_APP_ID_HEX, 'hex')
  const secret = deriveDhSecret(rootCaKey, [appId, 'env-encrypt-key'])
  const publicKey = x25519PublicKey(secret)
  const digest = messageDigestWithTimestamp(ENV_PUBKEY_PREFIX, appId, 1_750_000_000n, publicKey)
  const message = Buffer.concat([Buffer.from(`${ENV_PUBKEY_PREFIX}:`), appId, publicKey])
  const native = nativeBackendOrReason()
  const cases = [
    { name: 'deriveDhSecret', fn: () => deriveDhSecret(rootCaKey, [appId, 'env-encrypt-key']) },
    { name: 'x25519PublicKey', fn: () => x25519PublicKey(secret) },
    { name: 'keccak256', fn: () => keccak256(message) },
    { name: 'sign (noble)', fn: () => nobleSecp256k1.signRecoverable(digest, BENCH_K256_KEY) },
  ]
  if (typeof native !== 'string') {
    cases.push({
      name: 'sign (native)',
      fn: () => native.signRecoverable(digest, BENCH_K256_KEY),
    })
  }
  const us = Object.fromEntries(measureInterleaved(cases, o).map((r) => [r.name, r.usPerOp]))
  const common =
    (us.deriveDhSecret ?? NaN) + (us.x25519PublicKey ?? NaN) + 2 * (us.keccak256 ?? NaN)
  const jsSumUs = common + 2 * (us['sign (noble)'] ?? NaN)
  const nativeSign = us['sign (native)']
  const nativeSumUs = nativeSign === undefined ? null : common + 2 * nativeSign
  return {
    primitivesUs: us,
    nativeSumUs,
    jsSumUs,
    nativeRps: nativeSumUs === null ? null : 1e6 / nativeSumUs,
    jsRps: 1e6 / jsSumUs,
  }
}

export interface FloorServer {
  port: number
  pid: number
  proc: ChildProcess
  stop(): Promise<void>
}

/** The floor server on the KMS's RPC key and certificate; with `clientCaPath`, asking for client
 * certificates as the KMS main listener does. */
export async function startFloor(certDir: string, clientCaPath?: string): Promise<FloorServer> {
  const proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'bench', 'floor-server.ts'),
      join(certDir, CERT_DIR_FILES.rpcKey),
      join(certDir, CERT_DIR_FILES.rpcCert),
      ...(clientCaPath === undefined ? [] : [clientCaPath]),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  )
  const line = await new Promise<string>((resolve, reject) => {
    let buf = ''
    proc.stdout?.on('data', (c: Buffer) => {
      buf += c.toString('utf8')
      const nl = buf.indexOf('\n')
      if (nl !== -1) resolve(buf.slice(0, nl))
    })
    proc.once('exit', (code) => reject(new Error(`floor server exited with ${String(code)}`)))
  })
  const m = /^listening (\d+) (\d+)$/.exec(line)
  if (m === null) throw new Error(`floor server said ${line}`)
  return {
    port: Number(m[1]),
    pid: Number(m[2]),
    proc,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) {
          resolve()
          return
        }
        proc.once('exit', () => resolve())
        proc.kill('SIGTERM')
      }),
  }
}

function parseJson(body: Buffer): Record<string, unknown> | string {
  try {
    const v: unknown = JSON.parse(body.toString('utf8'))
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : 'not an object'
  } catch {
    return `not JSON: ${body.toString('utf8').slice(0, 200)}`
  }
}

/** Checks the key against the in-process derivation and signature_v1 against the root k256
 * key: whatever backend signed, the answer must verify. */
function envValidator(server: BenchKms): (body: Buffer, request: string) => string | undefined {
  const rootCaKey = P256Key.fromPem(
    readFileSync(join(server.certDir, CERT_DIR_FILES.rootCaKey), 'utf8'),
  )
  const k256 = readFileSync(join(server.certDir, CERT_DIR_FILES.rootK256Key))
  const k256Pub = nobleSecp256k1.publicKeyCompressed(k256)
  k256.fill(0)
  return (body, request) => {
    const v = parseJson(body)
    if (typeof v === 'string') return v
    const appIdHex = String((JSON.parse(request) as { app_id: string }).app_id)
    const expected = expectedEnvPublicKeyHex(rootCaKey, appIdHex)
    if (v.public_key !== expected) return `public_key ${String(v.public_key)} is wrong`
    const digest = messageDigestWithTimestamp(
      ENV_PUBKEY_PREFIX,
      Buffer.from(appIdHex, 'hex'),
      BigInt(String(v.timestamp)),
      Buffer.from(expected, 'hex'),
    )
    const signer = nobleSecp256k1.recoverCompressed(
      digest,
      Buffer.from(String(v.signature_v1), 'hex'),
    )
    return signer.equals(k256Pub) ? undefined : 'signature_v1 is not by the root k256 key'
  }
}

function distinctAppIds(): () => string {
  // a fresh prefix per run, then a counter: no app id repeats within the process
  const prefix = randomBytes(8).toString('hex')
  let n = 0
  return () => JSON.stringify({ app_id: prefix + (n++).toString(16).padStart(24, '0') })
}

async function session(
  backend: 'native' | 'js',
  o: EnvComparisonOptions,
  rows: EnvLoadRow[],
  problems: string[],
): Promise<void> {
  o.progress(`starting dstack-kms serve with [crypto] backend = "${backend}"…`)
  const server = await startBenchKms({ cryptoBackend: backend, workers: o.workers })
  let floor: FloorServer | undefined
  try {
    if (server.secp256k1Backend !== backend) {
      problems.push(
        `KMS asked for backend ${backend} logged ${String(server.secp256k1Backend)} (is [crypto] backend wired?)`,
      )
    }
    floor = await startFloor(server.certDir)
    const validate = envValidator(server)
    const hot = JSON.stringify({ app_id: BENCH_APP_ID_HEX })
    const target: EnvTarget = backend === 'native' ? 'kms-native' : 'kms-js'
    const kmsUrl = `${server.base}/prpc/GetAppEnvEncryptPubKey?json`
    const floorUrl = `https://127.0.0.1:${floor.port}/prpc/Floor`
    for (const concurrency of o.concurrency) {
      const common = { concurrency, warmupMs: o.warmupMs, durationMs: o.durationMs }
      o.progress(`floor, ${concurrency} connections (wrk)…`)
      const floorResult = await wrkLoad({
        ...common,
        url: floorUrl,
        body: hot,
        serverPid: floor.pid,
      })
      const floorAnswer = await checkOne(floorUrl, hot, (body) =>
        typeof parseJson(body) === 'string' ? 'floor: not JSON' : undefined,
      )
      if (floorAnswer !== undefined) floorResult.errors++
      floorResult.firstError ??= floorAnswer
      rows.push({
        target: 'floor',
        session: backend,
        appIds: null,
        concurrency,
        result: floorResult,
      })
      for (const mode of ['hot', 'distinct'] as const) {
        o.progress(`${target}, ${mode} app ids, ${concurrency} connections (wrk)…`)
        const result = await wrkLoad({
          ...common,
          url: kmsUrl,
          body: mode === 'hot' ? hot : 'distinct',
          serverPid: server.workerPid,
        })
        // wrk does not read answers; one answer per row is checked in full here
        const problem = await checkOne(kmsUrl, mode === 'hot' ? hot : distinctAppIds()(), validate)
        if (problem !== undefined) result.errors++
        result.firstError ??= problem
        rows.push({ target, session: backend, appIds: mode, concurrency, result })
        if (result.errors > 0) {
          problems.push(`${target} ${mode} c=${concurrency}: ${result.firstError ?? 'errors'}`)
        }
        server.kms.logs.splice(0)
      }
    }
  } finally {
    await floor?.stop()
    server.kms.kill('SIGTERM')
    const exit = await server.kms.waitForExit().catch(() => ({ code: null, signal: null }))
    if (exit.code !== 0) {
      problems.push(`KMS (${backend}) did not exit 0 on SIGTERM: ${String(exit.code)}`)
      server.kms.kill('SIGKILL')
    }
    rmSync(dirname(server.certDir), { recursive: true, force: true })
  }
}

export async function runEnvComparison(o: EnvComparisonOptions): Promise<EnvComparison> {
  o.progress('crypto floor: raw per-request primitives…')
  const cryptoFloor = measureCryptoFloor(o.micro)
  const rows: EnvLoadRow[] = []
  const problems: string[] = []
  const notes: string[] = []
  const native = nativeBackendOrReason()
  if (typeof native === 'string') {
    notes.push(`native backend unavailable in this build, KMS-native rows skipped: ${native}`)
  } else {
    await session('native', o, rows, problems)
  }
  await session('js', o, rows, problems)
  return { rows, cryptoFloor, ok: problems.length === 0, problems, notes }
}
