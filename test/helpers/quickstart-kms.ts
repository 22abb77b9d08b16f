// `dstack-kms serve --quickstart` in a fresh directory, as the quick-start test, the secrets scan
// and the soak run it: only the ports are moved (by a ./kms.toml, which the profile allows) so a
// run never collides with a real KMS on 8000. The auth-simple sidecar needs no port: its socket
// lives in the directory.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { loadConfig } from '../../src/config/load.js'
import { prpc, rawRequest, type RawResponse } from './https-client.js'
import { CLI, freePort, startKms, tempDir, type KmsProcess } from './kms-process.js'

export interface QuickstartKms {
  kms: KmsProcess
  dir: string
  /** `https://localhost:<port>`: onboarding first, then the main listener on the same port */
  base: string
}

export interface QuickstartOptions {
  /** [rpc] workers (default 1) */
  workers?: number
  env?: Record<string, string>
  /** how long to wait for the onboarding worker (default 60 s) */
  readyTimeoutMs?: number
  /** temp directory name prefix (default tempDir's) */
  dirPrefix?: string
  /** more ./kms.toml tables, appended after the port settings (e.g. a `[limits]` table) */
  extraToml?: string
}

/** Starts the quick-start KMS and waits until its onboarding worker listens. */
export async function startQuickstartKms(opts: QuickstartOptions = {}): Promise<QuickstartKms> {
  const dir = tempDir(opts.dirPrefix)
  const port = await freePort()
  const kms = startKms({
    dir,
    args: ['--quickstart'],
    configToml: `[rpc]\naddress = "127.0.0.1"\nport = ${port}\nworkers = ${opts.workers ?? 1}\n[core.onboard]\naddress = "127.0.0.1"\nport = ${port}\n${opts.extraToml ?? ''}`,
    ...(opts.env === undefined ? {} : { env: opts.env }),
  })
  try {
    await kms.waitForLog((l) => l.msg === 'onboarding worker ready', opts.readyTimeoutMs ?? 60_000)
  } catch (err) {
    // the caller never gets the process to stop
    kms.kill('SIGKILL')
    throw err
  }
  return { kms, dir, base: `https://localhost:${port}` }
}

/** Bootstrap for `localhost`, then /finish, then waits for the main worker; returns the
 * Bootstrap reply. Throws when either step is refused. */
export async function bootstrapQuickstart(
  q: QuickstartKms,
  readyTimeoutMs = 60_000,
): Promise<RawResponse> {
  const boot = await prpc(q.base, 'Bootstrap', '{"domain":"localhost"}')
  if (boot.status !== 200) throw new Error(`Bootstrap failed: ${boot.status} ${boot.text}`)
  const finish = await rawRequest({ url: `${q.base}/finish` })
  if (finish.text !== 'OK') throw new Error(`/finish failed: ${finish.status} ${finish.text}`)
  await q.kms.waitForLog((l) => l.msg === 'KMS worker ready', readyTimeoutMs)
  return boot
}

/** The simulator seed the quick start generated in `dir` (what its simulated guests share). */
export function quickstartSeed(dir: string): Buffer {
  const config = loadConfig({ cwd: dir, quickstart: true, etcFile: join(dir, 'none'), env: {} })
  return Buffer.from(config.tee.simulator.seed, 'hex')
}

/** Another `dstack-kms` command in the quick-start directory, as an operator would run it. */
export function runCli(
  args: string[],
  cwd: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd,
      env: { ...process.env, DSTACK_KMS_SYSTEM_CONFIG: join(cwd, 'no-system-config.toml') },
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}
