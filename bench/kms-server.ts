// A real `dstack-kms serve` for the end-to-end figures, started exactly as the e2e tests start it
// (compiled CLI, temp dir, loopback, backend "none"), then bootstrapped and finished so the main
// KMS worker serves the public RPCs.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { rawRequest } from '../test/helpers/https-client.js'
import { testConfigToml } from '../test/helpers/kms-config.js'
import {
  CLI,
  freePort,
  startKms,
  tempDir,
  type KmsProcess,
  type LogLine,
} from '../test/helpers/kms-process.js'

const ROOT = resolve(import.meta.dirname, '..')

export interface BenchKms {
  kms: KmsProcess
  base: string
  certDir: string
  /** pid of the (first) KMS worker (the process that serves requests) */
  workerPid: number
  /** pids of all main KMS workers (`[rpc] workers` of them, from their `KMS worker ready` lines) */
  workerPids: number[]
  supervisorPid: number
  /** `backend` of the worker's `secp256k1 backend selected` log line ('native' | 'js') */
  secp256k1Backend: string | undefined
}

function newestMtime(dir: string, suffix: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p, suffix))
    else if (entry.name.endsWith(suffix)) newest = Math.max(newest, statSync(p).mtimeMs)
  }
  return newest
}

/** The bench measures the compiled CLI (what systemd runs), so it must exist. */
export function ensureBuilt(log: (line: string) => void): void {
  if (!existsSync(CLI)) {
    log(`${CLI} is missing; running \`npm run build\` first…`)
    const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' })
    if (r.status !== 0 || !existsSync(CLI)) {
      throw new Error('`npm run build` failed; the end-to-end part needs dist/src/cli.js')
    }
    return
  }
  if (newestMtime(join(ROOT, 'src'), '.ts') > newestMtime(join(ROOT, 'dist', 'src'), '.js')) {
    log('note: dist/ is older than src/; these figures are for the last build (npm run build)')
  }
}

export interface BenchKmsOptions {
  /** `[crypto] backend` */
  cryptoBackend: 'auto' | 'native' | 'js'
  /** `[rpc] workers`: 1 keeps the comparison with the one-process Fastify floor fair */
  workers: number
  /** extra environment of the KMS processes (e.g. NODE_OPTIONS=--cpu-prof) */
  env?: Record<string, string>
}

/** Waits for `count` `KMS worker ready` lines and returns their `childPid`s. */
export async function readyWorkerPids(
  kms: KmsProcess,
  count: number,
  timeoutMs = 30_000,
): Promise<number[]> {
  const ready = (l: LogLine) => l.msg === 'KMS worker ready'
  await kms.waitForLog(ready, timeoutMs)
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const pids = [...new Set(kms.logs.filter(ready).map((l) => Number(l.childPid)))]
    if (pids.some((p) => !Number.isInteger(p) || p <= 0)) {
      throw new Error(`a KMS worker ready line has no childPid`)
    }
    if (pids.length >= count) return pids
    if (Date.now() > deadline) throw new Error(`only ${pids.length} of ${count} KMS workers ready`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export async function startBenchKms(
  options: BenchKmsOptions = { cryptoBackend: 'auto', workers: 1 },
): Promise<BenchKms> {
  const dir = tempDir('dstack-kms-bench-')
  const port = await freePort()
  const base = `https://127.0.0.1:${port}`
  const toml = testConfigToml({
    dir,
    port,
    workers: options.workers,
    extra: `\n[crypto]\nbackend = "${options.cryptoBackend}"\n`,
  })
  const kms = startKms({ dir, configToml: toml, ...(options.env ? { env: options.env } : {}) })
  try {
    await kms.waitForLog((l) => l.msg === 'onboarding worker ready')
    const boot = await rawRequest({
      url: `${base}/prpc/Onboard.Bootstrap?json`,
      method: 'POST',
      body: JSON.stringify({ domain: 'localhost' }),
    })
    if (boot.status !== 200) throw new Error(`Bootstrap failed: ${boot.status} ${boot.text}`)
    const fin = await rawRequest({ url: `${base}/finish` })
    if (fin.status !== 200) throw new Error(`/finish failed: ${fin.status} ${fin.text}`)
    const workerPids = await readyWorkerPids(kms, options.workers)
    const workerPid = workerPids[0] ?? 0
    const supervisorPid = kms.proc.pid
    if (supervisorPid === undefined) throw new Error('the KMS process has no pid')
    const selected = [...kms.logs].reverse().find((l) => l.msg === 'secp256k1 backend selected')
    const secp256k1Backend = typeof selected?.backend === 'string' ? selected.backend : undefined
    return {
      kms,
      base,
      certDir: join(dir, 'certs'),
      workerPid,
      workerPids,
      supervisorPid,
      secp256k1Backend,
    }
  } catch (err) {
    kms.kill('SIGKILL')
    throw err
  }
}
