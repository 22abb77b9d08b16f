// Runs `dstack-kms serve` (the compiled CLI, exactly what the systemd unit runs) as a real child
// process with its own temp directory, and collects its JSON log lines.
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { tempDir } from './temp-dir.js'
import { findLeaks, secretsUnder, type Leak, type Secret } from './secret-scan.js'

export { tempDir }

export const CLI = resolve(import.meta.dirname, '../../dist/src/cli.js')

export type LogLine = Record<string, unknown> & { msg?: string; worker?: string; level?: number }

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })
}

export interface KmsProcess {
  proc: ChildProcess
  dir: string
  logs: LogLine[]
  stderr: string[]
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>
  waitForExit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  kill(signal?: NodeJS.Signals): void
  /** secrets the test knows (derived keys, tokens, request bodies) to look for in the logs too */
  addSecrets(...secrets: Secret[]): void
  /** key material found in any captured log line so far (also checked when the process exits) */
  secretLeaks(): Leak[]
}

export interface StartOptions {
  dir: string
  configToml: string
  env?: Record<string, string>
  args?: string[]
}

export function startKms(opts: StartOptions): KmsProcess {
  const configPath = join(opts.dir, 'kms.toml')
  writeFileSync(configPath, opts.configToml)
  const proc = spawn(process.execPath, [CLI, 'serve', '-c', configPath, ...(opts.args ?? [])], {
    cwd: opts.dir,
    env: {
      ...process.env,
      // never pick up the developer's /etc/kms/kms.toml
      DSTACK_KMS_SYSTEM_CONFIG: join(opts.dir, 'no-system-config.toml'),
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: LogLine[] = []
  const stderr: string[] = []
  const waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = []
  let buf = ''
  proc.stdout?.on('data', (chunk: Buffer) => {
    buf += chunk.toString('utf8')
    let nl: number
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      if (line.trim() === '') continue
      let parsed: LogLine
      try {
        parsed = JSON.parse(line) as LogLine
      } catch {
        parsed = { msg: line, unparsed: true }
      }
      logs.push(parsed)
      if (process.env.KMS_TEST_VERBOSE) process.stderr.write(line + '\n')
      for (const w of [...waiters]) {
        if (w.pred(parsed)) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve(parsed)
        }
      }
    }
  })
  proc.stderr?.on('data', (chunk: Buffer) => {
    stderr.push(chunk.toString('utf8'))
    if (process.env.KMS_TEST_VERBOSE) process.stderr.write(chunk)
  })
  // Every run is scanned for key material when it exits: the keys of its directory (read while
  // it runs, since a test may delete them) and whatever the test registered.
  const secrets: Secret[] = []
  const snapshot = (): void => {
    for (const s of secretsUnder(opts.dir)) {
      if (!secrets.some((t) => t.name === s.name && t.needles[0] === s.needles[0])) secrets.push(s)
    }
  }
  const secretLeaks = (): Leak[] => {
    snapshot()
    return findLeaks([...logs.map((l) => JSON.stringify(l)), ...stderr], secrets)
  }
  const snapshotTimer = setInterval(snapshot, 2000)
  snapshotTimer.unref()
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => {
      clearInterval(snapshotTimer)
      const leaks = secretLeaks()
      if (leaks.length > 0) {
        // thrown outside any test on purpose: whichever test ran this KMS, its file fails
        setImmediate(() => {
          throw new Error(`key material in the KMS logs:\n${JSON.stringify(leaks, null, 2)}`)
        })
      }
      resolve({ code, signal })
    })
  })
  return {
    proc,
    dir: opts.dir,
    logs,
    stderr,
    waitForLog(pred, timeoutMs = 30_000) {
      const found = logs.find(pred)
      if (found !== undefined) return Promise.resolve(found)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new Error(
              `timed out waiting for a log line; last lines:\n${logs
                .slice(-15)
                .map((l) => JSON.stringify(l))
                .join('\n')}\nstderr:\n${stderr.join('')}`,
            ),
          )
        }, timeoutMs)
        waiters.push({
          pred,
          resolve: (l) => {
            clearTimeout(timer)
            resolve(l)
          },
        })
        exit.then(
          () => {
            const idx = waiters.findIndex((w) => w.pred === pred)
            if (idx !== -1) {
              clearTimeout(timer)
              waiters.splice(idx, 1)
              reject(
                new Error(
                  `process exited while waiting for a log line; logs:\n${logs.map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${stderr.join('')}`,
                ),
              )
            }
          },
          () => {},
        )
      })
    },
    waitForExit(timeoutMs = 30_000) {
      return Promise.race([
        exit,
        new Promise<never>((_resolve, reject) =>
          setTimeout(() => reject(new Error('process did not exit in time')), timeoutMs).unref(),
        ),
      ])
    },
    kill(signal = 'SIGTERM') {
      proc.kill(signal)
    },
    addSecrets(...more) {
      secrets.push(...more)
    },
    secretLeaks,
  }
}
