// The two messages between the supervisor and a worker process (docs/design.md#architecture). The
// channel is Node's fork IPC with `serialization: 'advanced'` (structured clone), so KmsConfig
// travels as is.
import type { KmsConfig } from '../config/types.js'
import { KmsError } from '../errors.js'

/** `auth-simple` is the optional policy sidecar ([auth_simple] enabled). */
export type WorkerRole = 'onboard' | 'kms' | 'auth-simple'

/** worker → supervisor, first: the worker listens now. Cluster workers (the main KMS workers)
 * read their IPC channel from the start and drop messages that arrive before the ESM entry has
 * registered its listener, so the supervisor sends `start` only in reply to this. */
export interface WorkerIpcHello {
  type: 'hello'
}

export function isWorkerIpcHello(msg: unknown): msg is WorkerIpcHello {
  return typeof msg === 'object' && msg !== null && 'type' in msg && msg.type === 'hello'
}

/** supervisor → worker, the reply to hello */
export interface WorkerIpcStart {
  type: 'start'
  role: WorkerRole
  config: KmsConfig
  /** which of the `[rpc] workers` main workers this is (0-based); absent for other roles */
  index?: number
}

/** worker → supervisor, once its listener is bound */
export interface WorkerIpcReady {
  type: 'ready'
  role: WorkerRole
  url: string
}

function isRole(value: unknown): value is WorkerRole {
  return value === 'onboard' || value === 'kms' || value === 'auth-simple'
}

export function isWorkerIpcStart(msg: unknown): msg is WorkerIpcStart {
  return (
    typeof msg === 'object' &&
    msg !== null &&
    'type' in msg &&
    msg.type === 'start' &&
    'role' in msg &&
    isRole(msg.role) &&
    'config' in msg &&
    typeof msg.config === 'object' &&
    msg.config !== null
  )
}

export function isWorkerIpcReady(msg: unknown): msg is WorkerIpcReady {
  return (
    typeof msg === 'object' &&
    msg !== null &&
    'type' in msg &&
    msg.type === 'ready' &&
    'role' in msg &&
    isRole(msg.role) &&
    'url' in msg &&
    typeof msg.url === 'string'
  )
}

/** The part of `process` the worker side uses. */
export interface IpcProcess {
  send?(message: unknown, callback: (error: Error | null) => void): boolean
  connected?: boolean
  on(event: 'message', listener: (msg: unknown) => void): unknown
  off(event: 'message', listener: (msg: unknown) => void): unknown
  once?(event: 'disconnect', listener: () => void): unknown
}

/** Worker side: waits for the supervisor's start message. Removing the listener afterwards
 * unrefs the channel, so the IPC link alone never keeps a finished worker alive. */
export function receiveStart(proc: IpcProcess = process): Promise<WorkerIpcStart> {
  if (proc.send === undefined || proc.connected === false) {
    return Promise.reject(
      new KmsError('KMS_ERR_INTERNAL', 'not started by the supervisor: no IPC channel'),
    )
  }
  return new Promise((resolve, reject) => {
    const onMessage = (msg: unknown): void => {
      proc.off('message', onMessage)
      if (isWorkerIpcStart(msg)) resolve(msg)
      else reject(new KmsError('KMS_ERR_INTERNAL', 'the first supervisor message was not "start"'))
    }
    proc.on('message', onMessage)
    const hello: WorkerIpcHello = { type: 'hello' }
    proc.send?.(hello, (err) => {
      if (err !== null) {
        proc.off('message', onMessage)
        reject(err)
      }
    })
  })
}

/** Worker side: tells the supervisor the listener is bound. */
export function sendReady(
  role: WorkerRole,
  url: string,
  proc: IpcProcess = process,
): Promise<void> {
  if (proc.send === undefined) {
    return Promise.reject(
      new KmsError('KMS_ERR_INTERNAL', 'not started by the supervisor: no IPC channel'),
    )
  }
  const msg: WorkerIpcReady = { type: 'ready', role, url }
  return new Promise((resolve, reject) => {
    proc.send?.(msg, (err) => (err === null ? resolve() : reject(err)))
  })
}

/** Worker side: runs `handler` when the IPC channel closes, i.e. the supervisor died (workers
 * run in their own process group, so no terminal or group signal would reach them). While
 * registered, the listener keeps the channel referenced: the worker ends with process.exit. */
export function onSupervisorGone(handler: () => void, proc: IpcProcess = process): void {
  proc.once?.('disconnect', handler)
}

// ---------------------------------------------------------------------------------------------
// /metrics counters shared by all main workers, kept by the supervisor

/** How long a worker holds finished attestation RPCs before it reports them: one IPC message
 * per request cost a busy worker 8–25 µs of CPU. A scrape does not wait for it: the supervisor
 * asks every main worker for what it holds first (`metrics-flush`). */
export const METRICS_FLUSH_MS = 100
/** How long a worker waits for the supervisor's answer to a metrics query. */
export const METRICS_QUERY_TIMEOUT_MS = 2000
/** How long the supervisor waits for the other workers' held requests before it answers a
 * scrape anyway: well inside the asker's own timeout. */
export const METRICS_SCRAPE_WAIT_MS = 1000

/** worker → supervisor: the attestation RPCs finished since the worker's last report; with
 * `flushed`, the answer to that `metrics-flush` */
export interface WorkerIpcMetricsAdd {
  type: 'metrics-add'
  requests: number
  failures: number
  flushed?: number
}

/** supervisor → worker: report what you hold now, naming `id` (before a scrape is answered) */
export interface WorkerIpcMetricsFlush {
  type: 'metrics-flush'
  id: number
}

/** worker → supervisor: a scrape wants the totals; answered with `metrics-totals` */
export interface WorkerIpcMetricsQuery {
  type: 'metrics-query'
  id: number
}

export interface WorkerIpcMetricsTotals {
  type: 'metrics-totals'
  id: number
  requests: number
  failures: number
}

function hasType(msg: unknown, type: string): msg is Record<string, unknown> {
  return typeof msg === 'object' && msg !== null && 'type' in msg && msg.type === type
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0

export function isWorkerIpcMetricsAdd(msg: unknown): msg is WorkerIpcMetricsAdd {
  return (
    hasType(msg, 'metrics-add') &&
    isCount(msg.requests) &&
    isCount(msg.failures) &&
    msg.failures <= msg.requests &&
    (msg.flushed === undefined || typeof msg.flushed === 'number')
  )
}

function isWorkerIpcMetricsFlush(msg: unknown): msg is WorkerIpcMetricsFlush {
  return hasType(msg, 'metrics-flush') && typeof msg.id === 'number'
}

export function isWorkerIpcMetricsQuery(msg: unknown): msg is WorkerIpcMetricsQuery {
  return hasType(msg, 'metrics-query') && typeof msg.id === 'number'
}

function isWorkerIpcMetricsTotals(msg: unknown): msg is WorkerIpcMetricsTotals {
  return (
    hasType(msg, 'metrics-totals') &&
    typeof msg.id === 'number' &&
    typeof msg.requests === 'number' &&
    typeof msg.failures === 'number'
  )
}

/** Worker side of the shared counters. Finished requests are reported in batches (at most
 * METRICS_FLUSH_MS late, at once when the supervisor asks, and by `flush` on a graceful stop).
 * A scrape the supervisor does not answer within the deadline fails (HTTP 500) rather than
 * showing partial counts. */
export class SupervisorMetricsStore {
  readonly #proc: IpcProcess
  readonly #timeoutMs: number
  readonly #flushMs: number
  #pending = { requests: 0, failures: 0 }
  #flushTimer: NodeJS.Timeout | undefined
  #nextId = 1
  readonly #waiting = new Map<
    number,
    { resolve: (t: { requests: number; failures: number }) => void; timer: NodeJS.Timeout }
  >()

  constructor(
    proc: IpcProcess = process,
    timeoutMs = METRICS_QUERY_TIMEOUT_MS,
    flushMs = METRICS_FLUSH_MS,
  ) {
    this.#proc = proc
    this.#timeoutMs = timeoutMs
    this.#flushMs = flushMs
    proc.on('message', (msg: unknown) => {
      if (isWorkerIpcMetricsFlush(msg)) {
        this.#report(msg.id, () => {})
        return
      }
      if (!isWorkerIpcMetricsTotals(msg)) return
      const w = this.#waiting.get(msg.id)
      if (w === undefined) return
      this.#waiting.delete(msg.id)
      clearTimeout(w.timer)
      w.resolve({ requests: msg.requests, failures: msg.failures })
    })
  }

  add(failed: boolean): void {
    this.#pending.requests++
    if (failed) this.#pending.failures++
    if (this.#flushTimer === undefined) {
      this.#flushTimer = setTimeout(() => this.#report(undefined, () => {}), this.#flushMs)
      this.#flushTimer.unref()
    }
  }

  /** Sends what is held (nothing when there is nothing, unless it answers a flush request). */
  #report(flushed: number | undefined, done: (err: Error | null) => void): void {
    clearTimeout(this.#flushTimer)
    this.#flushTimer = undefined
    const { requests, failures } = this.#pending
    if (this.#proc.send === undefined || (requests === 0 && flushed === undefined)) {
      done(null)
      return
    }
    this.#pending = { requests: 0, failures: 0 }
    const msg: WorkerIpcMetricsAdd = {
      type: 'metrics-add',
      requests,
      failures,
      ...(flushed === undefined ? {} : { flushed }),
    }
    this.#proc.send(msg, done)
  }

  /** Reports what is held now; resolves once it is sent (or could not be: the supervisor is
   * gone and nobody counts any more). */
  flush(): Promise<void> {
    return new Promise((resolve) => this.#report(undefined, () => resolve()))
  }

  totals(): Promise<{ requests: number; failures: number }> {
    // this worker's own requests go first on the same ordered channel
    this.#report(undefined, () => {})
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id)
        reject(new KmsError('KMS_ERR_INTERNAL', 'the supervisor did not answer the metrics query'))
      }, this.#timeoutMs)
      timer.unref()
      this.#waiting.set(id, { resolve, timer })
      const msg: WorkerIpcMetricsQuery = { type: 'metrics-query', id }
      this.#proc.send?.(msg, (err) => {
        if (err === null) return
        clearTimeout(timer)
        this.#waiting.delete(id)
        reject(err)
      })
    })
  }
}

/** The exit status of a worker whose start failed for a reason no restart can change (a damaged
 * key file, an address another process holds): sysexits' EX_CONFIG. The supervisor then stops
 * and exits with it instead of restarting the worker forever. */
export const EXIT_CANNOT_START = 78

/** Sent just before exiting with EXIT_CANNOT_START, so the supervisor can name the reason in its
 * own last log line (the one `systemctl status` shows). */
export interface WorkerIpcCannotStart {
  type: 'cannot-start'
  role: WorkerRole
  reason: string
}

export function isWorkerIpcCannotStart(msg: unknown): msg is WorkerIpcCannotStart {
  return hasType(msg, 'cannot-start') && isRole(msg.role) && typeof msg.reason === 'string'
}

/** Worker side: reports a permanent start failure; resolves once the message is out (or the
 * channel is gone, when there is nobody left to tell). */
export function sendCannotStart(
  role: WorkerRole,
  reason: string,
  proc: IpcProcess = process,
): Promise<void> {
  const msg: WorkerIpcCannotStart = { type: 'cannot-start', role, reason }
  return new Promise((resolve) => {
    try {
      if (proc.send?.(msg, () => resolve()) === undefined) resolve()
    } catch {
      // the channel is already closed: nobody is left to tell
      resolve()
    }
  })
}
