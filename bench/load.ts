// A closed-loop HTTPS load generator: N clients, each with one keep-alive connection, send the
// next request as soon as the previous answer is read. Connections are opened during a warm-up
// that is not counted, so the figures are per request, not per TLS handshake — unless
// `freshConnectionTls` asks for a new connection (and a new client certificate) per request.
import { Agent, request } from 'node:https'
import type { SecureContext } from 'node:tls'
import { procsCpuMs } from './proc.js'

/** A TLS client certificate and its key (PEM). */
export interface ClientTls {
  cert: string
  key: string
  /** the two already loaded (then used instead): keeps PEM parsing off the measured window */
  secureContext?: SecureContext
}

export interface LoadOptions {
  url: string
  /** the request body, or a function giving each request its own (e.g. a new app id) */
  body: string | (() => string)
  headers: Record<string, string>
  concurrency: number
  warmupMs: number
  durationMs: number
  /** checks one answer body; returns a complaint, or undefined when it is right */
  validate(body: Buffer, requestBody: string): string | undefined
  /** the server process(es), whose CPU time over the measured window is reported (summed) */
  serverPid: number | readonly number[]
  /** each client's own keep-alive connection presents this client certificate */
  clientTls?: (clientIndex: number) => ClientTls
  /** every request on a new connection presenting the certificate this returns (a guest's
   * one-shot GetAppKey); undefined when the supply is exhausted, which ends the run early */
  freshConnectionTls?: () => ClientTls | undefined
}

export interface LoadResult {
  requests: number
  errors: number
  firstError: string | undefined
  elapsedMs: number
  rps: number
  meanMs: number
  p50Ms: number
  p99Ms: number
  /** CPU time this (client) process spent, as a share of one core */
  clientCpuPct: number
  /** CPU time the server process spent, as a share of one core */
  serverCpuPct: number
  /** server CPU time per answered request, in microseconds */
  serverCpuUsPerRequest: number
}

interface Answer {
  status: number
  body: Buffer
}

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

function send(
  agent: Agent | false,
  o: LoadOptions,
  body: string,
  tls: ClientTls | undefined,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      o.url,
      {
        method: 'POST',
        agent,
        headers: { ...o.headers, 'content-length': String(Buffer.byteLength(body)) },
        ...(agent === false ? { rejectUnauthorized: false, ...tls } : {}),
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const idx = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)
  return sorted[Math.max(0, idx)] ?? Number.NaN
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  // One agent per client when each presents its own certificate, else one shared agent.
  const agents = Array.from({ length: o.clientTls === undefined ? 1 : o.concurrency }, (_, i) => {
    return new Agent({
      keepAlive: true,
      maxSockets: o.clientTls === undefined ? o.concurrency : 1,
      rejectUnauthorized: false,
      ...o.clientTls?.(i),
    })
  })
  const latencies: number[] = []
  let errors = 0
  let firstError: string | undefined
  let validated = false

  const complain = (what: string): void => {
    errors++
    firstError ??= what
  }

  let exhausted = false
  const client = async (index: number, until: number, record: boolean): Promise<void> => {
    const agent = agents[index] ?? agents[0]
    if (agent === undefined) throw new Error('no agent')
    while (nowMs() < until && !exhausted) {
      let fresh: ClientTls | undefined
      if (o.freshConnectionTls !== undefined) {
        fresh = o.freshConnectionTls()
        if (fresh === undefined) {
          exhausted = true
          break
        }
      }
      const body = typeof o.body === 'string' ? o.body : o.body()
      const t0 = nowMs()
      let answer: Answer
      try {
        answer = await send(fresh === undefined ? agent : false, o, body, fresh)
      } catch (err) {
        if (record) complain(err instanceof Error ? err.message : String(err))
        continue
      }
      const t1 = nowMs()
      if (!record) continue
      if (answer.status !== 200) {
        complain(`HTTP ${answer.status}: ${answer.body.toString('utf8').slice(0, 200)}`)
        continue
      }
      // Parsing every answer would load the client, so one answer per run is checked in full.
      if (!validated) {
        validated = true
        const problem = o.validate(answer.body, body)
        if (problem !== undefined) complain(problem)
      }
      latencies.push(t1 - t0)
    }
  }

  const clients = (until: number, record: boolean) =>
    Promise.all(Array.from({ length: o.concurrency }, (_, i) => client(i, until, record)))

  try {
    await clients(nowMs() + o.warmupMs, false)
    const cpu0 = process.cpuUsage()
    const serverCpu0 = procsCpuMs(o.serverPid)
    const start = nowMs()
    await clients(start + o.durationMs, true)
    const elapsedMs = nowMs() - start
    const cpu = process.cpuUsage(cpu0)
    const serverCpu = procsCpuMs(o.serverPid) - serverCpu0
    latencies.sort((a, b) => a - b)
    const sum = latencies.reduce((a, b) => a + b, 0)
    return {
      requests: latencies.length,
      errors,
      firstError,
      elapsedMs,
      rps: (latencies.length * 1000) / elapsedMs,
      meanMs: sum / Math.max(1, latencies.length),
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      clientCpuPct: ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100,
      serverCpuPct: (serverCpu / elapsedMs) * 100,
      serverCpuUsPerRequest: (serverCpu * 1000) / Math.max(1, latencies.length),
    }
  } finally {
    for (const agent of agents) agent.destroy()
  }
}
