// The load client of the cold GetAppKey rows: bench/c/cold_client.c, compiled here (cc from $CC,
// OpenSSL 3's libssl), one thread per client, a new TCP + TLS connection presenting a guest's
// certificate per request. A Node client costs ~2.3 ms of CPU per such request, a large share of
// the cores the KMS worker needs; the C client costs a fraction of it. The server's CPU is read
// from /proc around the requests, as bench/load.ts does.
import { spawn } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { ClientTls, LoadResult } from './load.js'
import { compileC } from './c-build.js'
import { procsCpuMs } from './proc.js'

export interface ColdRunOptions {
  url: string
  body: string
  /** the certificates (PEM chain) and keys the requests present */
  credentials: readonly ClientTls[]
  /** `fresh`: each credential once, the run ends when they are used up (or at `durationMs`);
   * `cycle`: round-robin until `durationMs` */
  mode: 'fresh' | 'cycle'
  concurrency: number
  durationMs: number
  serverPid: number | readonly number[]
}

/** A run whose client has loaded its credentials and waits for `go`. */
export interface PreparedColdRun {
  go(): Promise<LoadResult>
}

export interface ColdClient {
  /** what drives the rows, for the report */
  description: string
  prepare(o: ColdRunOptions): Promise<PreparedColdRun>
  dispose(): void
}

interface CResult {
  requests: number
  errors: number
  firstError: string | null
  elapsedMs: number
  clientCpuMs: number
  p50Ms: number | null
  p99Ms: number | null
  meanMs: number | null
}

/** The compiled client, or why it could not be built (no compiler, no libssl-dev). */
export function buildColdClient(): ColdClient | string {
  const built = compileC('cold_client.c', {
    flags: ['-std=c11'],
    libs: ['-lssl', '-lcrypto', '-lpthread'],
  })
  if ('reason' in built) return `C client not built (${built.reason})`
  const { exe, dir } = built
  let runs = 0
  const client: ColdClient = {
    description: 'bench/c/cold_client.c',
    async prepare(o) {
      const u = new URL(o.url)
      const bodyFile = join(dir, `body-${runs}`)
      const credentialsFile = join(dir, `credentials-${runs++}`)
      writeFileSync(bodyFile, o.body)
      writeFileSync(
        credentialsFile,
        o.credentials.map((c) => `${c.cert.trimEnd()}\n${c.key.trimEnd()}\n`).join(''),
      )
      const child = spawn(
        exe,
        [
          u.hostname.replace(/^\[(.*)\]$/, '$1'),
          u.port || '443',
          u.pathname + u.search,
          bodyFile,
          credentialsFile,
          String(o.concurrency),
          String(Math.round(o.durationMs)),
          o.mode,
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      )
      let stderr = ''
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
      // why the client failed, or undefined when it exited 0
      const exited = new Promise<string | undefined>((resolve) => {
        child.on('error', (err) => resolve(err.message))
        child.on('close', (code, signal) => {
          rmSync(bodyFile, { force: true })
          rmSync(credentialsFile, { force: true })
          resolve(code === 0 ? undefined : `exited ${code ?? signal}: ${stderr.trim()}`)
        })
      })
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
      const nextLine = async (): Promise<string> => {
        const line = await lines.next()
        if (line.done === true) {
          throw new Error(`cold_client ${(await exited) ?? 'ended without output'}`)
        }
        return line.value
      }
      const ready = await nextLine()
      const version = /^ready (.*)$/.exec(ready)?.[1]
      if (version === undefined) {
        child.stdin.end() // the client then stops instead of waiting for `go`
        throw new Error(`cold_client: unexpected "${ready}"`)
      }
      client.description = `bench/c/cold_client.c (${version}, one thread per client)`
      return {
        async go() {
          const cpu0 = procsCpuMs(o.serverPid)
          child.stdin.end('go\n')
          const out = JSON.parse(await nextLine()) as CResult
          const serverCpu = procsCpuMs(o.serverPid) - cpu0
          const failed = await exited
          if (failed !== undefined) throw new Error(`cold_client ${failed}`)
          const { requests, elapsedMs } = out
          return {
            requests,
            errors: out.errors,
            firstError: out.firstError ?? undefined,
            elapsedMs,
            rps: (requests * 1000) / elapsedMs,
            meanMs: out.meanMs ?? Number.NaN,
            p50Ms: out.p50Ms ?? Number.NaN,
            p99Ms: out.p99Ms ?? Number.NaN,
            clientCpuPct: (out.clientCpuMs / elapsedMs) * 100,
            serverCpuPct: (serverCpu / elapsedMs) * 100,
            serverCpuUsPerRequest: (serverCpu * 1000) / Math.max(1, requests),
          }
        },
      }
    },
    dispose() {
      built.dispose()
    },
  }
  return client
}
