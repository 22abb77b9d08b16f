// A real `dstack-kms serve` for the end-to-end figures, started exactly as the e2e tests start it
// (compiled CLI, temp dir, loopback, backend "none"), then bootstrapped and finished so the main
// KMS worker serves the public RPCs.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { rawRequest } from '../test/helpers/https-client.js'
import { testConfigToml } from '../test/helpers/kms-config.js'
import { CLI, freePort, startKms, tempDir, type KmsProcess } from '../test/helpers/kms-process.js'

const ROOT = resolve(import.meta.dirname, '..')

export interface BenchKms {
  kms: KmsProcess
  base: string
  certDir: string
  /** pid of the KMS worker (the process that serves requests) */
  workerPid: number
  supervisorPid: number
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

export async function startBenchKms(): Promise<BenchKms> {
  const dir = tempDir('dstack-kms-bench-')
  const port = await freePort()
  const base = `https://127.0.0.1:${port}`
  const kms = startKms({ dir, configToml: testConfigToml({ dir, port }) })
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
    const ready = await kms.waitForLog((l) => l.msg === 'KMS worker ready')
    const workerPid = Number(ready.child_pid)
    if (!Number.isInteger(workerPid) || workerPid <= 0) {
      throw new Error(`no child_pid in ${JSON.stringify(ready)}`)
    }
    const supervisorPid = kms.proc.pid
    if (supervisorPid === undefined) throw new Error('the KMS process has no pid')
    return { kms, base, certDir: join(dir, 'certs'), workerPid, supervisorPid }
  } catch (err) {
    kms.kill('SIGKILL')
    throw err
  }
}
