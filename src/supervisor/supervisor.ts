// The in-process supervisor (docs/design.md#a-supervisor-in-the-same-program): upstream main()'s
// decision (onboard or auto-bootstrap while keys are missing, then update_certs, then the KMS),
// with each phase in its own child process so that leaving onboarding never depends on an outer
// restart, a crashed KMS comes back with backoff, and a stop signal reaches the worker with a
// grace period.
import { fork, type ChildProcess } from 'node:child_process'
import cluster from 'node:cluster'
import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import type { Logger } from 'pino'
import type { KmsConfig } from '../config/types.js'
import { MAX_RPC_WORKERS } from '../config/validate.js'
import { asError, errorMessage } from '../errors.js'
import { notify } from '../native/sd-notify.js'
import { isUnreachableCause } from '../onboard/source-client.js'
import { type BackoffOptions, DEFAULT_BACKOFF, RestartBackoff } from './backoff.js'
import {
  EXIT_CANNOT_START,
  isWorkerIpcCannotStart,
  isWorkerIpcHello,
  isWorkerIpcMetricsAdd,
  isWorkerIpcMetricsQuery,
  isWorkerIpcReady,
  METRICS_SCRAPE_WAIT_MS,
  type WorkerIpcMetricsFlush,
  type WorkerIpcMetricsTotals,
  type WorkerIpcStart,
  type WorkerRole,
} from './worker-ipc.js'

export type { WorkerIpcReady, WorkerIpcStart } from './worker-ipc.js'

export interface SupervisorDeps {
  config: KmsConfig
  logger: Logger
  /** absolute path of the worker entry (JS) forked with child_process.fork */
  workerScript: string
  /** whether a complete key set is present; throws (naming the problem) when cert_dir holds a
   * partial or unloadable one, which the supervisor reports and exits EXIT_CANNOT_START on */
  keysExist(): boolean
  /** used when onboard.enabled && !keysExist && core.onboard.autoBootstrapDomain !== '' */
  autoBootstrap(): Promise<void>
  /** used when onboard.enabled && !keysExist && core.onboard.autoOnboardSource !== '': replicate
   * the keys of that KMS; throws SourceUnreachableError while it cannot be reached */
  autoOnboard?(): Promise<void>
  /** delays between auto-onboard attempts while the source is unreachable */
  autoOnboardBackoff?: { initialMs: number; maxMs: number }
  /** called once after keys exist, before the first main worker */
  updateCerts(): Promise<void>
  backoff?: BackoffOptions
  /** how long a worker may take to stop after the forwarded signal; default 10000 */
  stopGraceMs?: number
  /** aborting it stops the supervisor like SIGTERM does (for embedding and tests) */
  abortSignal?: AbortSignal
  /** the environment sd_notify reads NOTIFY_SOCKET from; default process.env */
  env?: NodeJS.ProcessEnv
}

export const DEFAULT_STOP_GRACE_MS = 10_000

const STOP_SIGNALS = ['SIGTERM', 'SIGINT'] as const

interface WorkerExit {
  code: number | null
  signal: NodeJS.Signals | null
  /** how long the worker had been ready when it exited; undefined if it never was */
  readyForMs: number | undefined
}

interface WorkerRun {
  role: WorkerRole
  child: ChildProcess
  exited: Promise<WorkerExit>
}

/** `[rpc] workers`, 0 meaning one main worker per CPU core. */
export function mainWorkerCount(config: KmsConfig): number {
  if (config.rpc.workers > 0) return config.rpc.workers
  return Math.min(MAX_RPC_WORKERS, Math.max(1, availableParallelism()))
}

/** Runs until the work is done or a stop is requested; resolves with the process exit code. */
export async function runSupervisor(deps: SupervisorDeps): Promise<number> {
  return new Supervisor(deps).run()
}

class Supervisor {
  readonly #deps: SupervisorDeps
  readonly #log: Logger
  readonly #graceMs: number
  #stopping = false
  readonly #runs = new Set<WorkerRun>()
  #killTimer: NodeJS.Timeout | undefined
  readonly #cancelDelays = new Set<() => void>()
  #sidecarReady: (() => void) | undefined
  #notifiedReady = false
  readonly #metrics = { requests: 0, failures: 0 }
  /** main workers that are serving, each holding up to METRICS_FLUSH_MS of finished requests */
  readonly #metricsWorkers = new Set<ChildProcess>()
  /** scrapes waiting for those workers' reports, by the id of the `metrics-flush` sent */
  readonly #scrapes = new Map<
    number,
    { asker: ChildProcess; id: number; waiting: Set<ChildProcess>; timer: NodeJS.Timeout }
  >()
  #nextFlushId = 1
  /** set when a worker reported a start failure no restart can fix; the supervisor's exit code */
  #fatal: number | undefined
  readonly #cannotStartReasons = new Map<ChildProcess, string>()

  constructor(deps: SupervisorDeps) {
    this.#deps = deps
    this.#log =
      deps.logger.bindings().worker === 'supervisor'
        ? deps.logger
        : deps.logger.child({ worker: 'supervisor' })
    this.#graceMs = deps.stopGraceMs ?? DEFAULT_STOP_GRACE_MS
  }

  async run(): Promise<number> {
    const onSignal = (signal: NodeJS.Signals): void => this.#stop(signal)
    const onAbort = (): void => this.#stop('SIGTERM')
    for (const s of STOP_SIGNALS) process.on(s, onSignal)
    this.#deps.abortSignal?.addEventListener('abort', onAbort, { once: true })
    if (this.#deps.abortSignal?.aborted === true) this.#stop('SIGTERM')
    try {
      return await this.#phases()
    } finally {
      for (const s of STOP_SIGNALS) process.off(s, onSignal)
      this.#deps.abortSignal?.removeEventListener('abort', onAbort)
      clearTimeout(this.#killTimer)
      this.#log.info('supervisor stopped')
    }
  }

  async #phases(): Promise<number> {
    const { config } = this.#deps
    const { certDir } = config.core

    this.#log.info({ certDir, workerScript: this.#deps.workerScript }, 'supervisor started')
    let sidecar: Promise<void> = Promise.resolve()
    if (config.authSimple.enabled) {
      // auth-simple runs beside the KMS for its whole life; the KMS's first self-authorization
      // (Bootstrap) needs it, so the phases wait until it listens.
      if (!this.#checkWorkerScript()) return 1
      const ready = new Promise<void>((resolve) => {
        this.#sidecarReady = resolve
      })
      sidecar = this.#superviseForever('auth-simple')
      await Promise.race([ready, sidecar])
      this.#sidecarReady = undefined
    }
    try {
      const code = await this.#mainPhases()
      return this.#fatal ?? code
    } finally {
      if (!this.#stopping) this.#stop('SIGTERM')
      await sidecar
    }
  }

  async #mainPhases(): Promise<number> {
    const { config } = this.#deps
    const { certDir } = config.core
    const onboard = config.core.onboard
    // the sidecar may already have failed for good (#cannotStart stopped us)
    if (this.#stopping) return 0
    let haveKeys: boolean
    try {
      haveKeys = this.#deps.keysExist()
    } catch (err) {
      // a damaged key set stays damaged: a restart would only repeat this (and systemd's
      // RestartPreventExitStatus stops on this code)
      this.#log.error({ err, certDir }, `cannot start: ${errorMessage(err)}`)
      return EXIT_CANNOT_START
    }
    if (!haveKeys) {
      if (!onboard.enabled) {
        this.#log.error(`keys are missing in ${certDir} and onboarding is disabled`)
        return EXIT_CANNOT_START
      }
      if (onboard.autoOnboardSource !== '') {
        if (!(await this.#autoOnboard())) return this.#stopping ? 0 : 1
      } else if (onboard.autoBootstrapDomain !== '') {
        this.#log.info({ domain: onboard.autoBootstrapDomain }, 'auto-bootstrapping')
        try {
          await this.#deps.autoBootstrap()
        } catch (err) {
          this.#log.error({ err }, `Failed to bootstrap: ${errorMessage(err)}`)
          return 1
        }
      } else {
        if (!this.#checkWorkerScript()) return 1
        await this.#superviseOnboarding()
      }
      if (this.#stopping) return 0
      let onboarded: boolean
      try {
        onboarded = this.#deps.keysExist()
      } catch (err) {
        this.#log.error({ err, certDir }, `Failed to onboard: ${errorMessage(err)}`)
        return 1
      }
      if (!onboarded) {
        this.#log.error({ certDir }, 'Failed to onboard')
        return 1
      }
    }
    if (this.#stopping) return 0

    try {
      await this.#deps.updateCerts()
    } catch (err) {
      this.#log.error({ err }, `Failed to update certs: ${errorMessage(err)}`)
      return 1
    }
    if (this.#stopping) return 0
    if (!this.#checkWorkerScript()) return 1
    const count = mainWorkerCount(config)
    if (count > 1) this.#log.info({ workers: count }, 'main KMS workers share the listening port')
    await Promise.all(Array.from({ length: count }, (_, i) => this.#superviseForever('kms', i)))
    return 0
  }

  /** Never falls back to bootstrap: a replica that generated its own keys would silently serve
   * a different root than the rest of the set. Only an unreachable source is retried; a refusal
   * (policy, attestation, mismatched keys) needs the operator. */
  async #autoOnboard(): Promise<boolean> {
    const { autoOnboardSource: source, autoOnboardDomain: domain } = this.#deps.config.core.onboard
    const { initialMs, maxMs } = this.#deps.autoOnboardBackoff ?? {
      initialMs: 1_000,
      maxMs: 30_000,
    }
    const autoOnboard = this.#deps.autoOnboard
    if (autoOnboard === undefined) {
      this.#log.error('core.onboard.auto_onboard_source is set but this process cannot onboard')
      return false
    }
    let delayMs = initialMs
    for (let attempt = 1; !this.#stopping; attempt++) {
      this.#log.info({ source, domain, attempt }, 'auto-onboarding')
      try {
        await autoOnboard()
        return true
      } catch (err) {
        if (!isUnreachableCause(err)) {
          this.#log.error({ source, err: errorMessage(err) }, errorMessage(err))
          return false
        }
        this.#log.warn(
          { source, attempt, delayMs, err: asError(err) },
          `source KMS unreachable; retrying auto-onboard in ${delayMs} ms`,
        )
      }
      await this.#sleep(delayMs)
      delayMs = Math.min(delayMs * 2, maxMs)
    }
    return false
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      const cancels = this.#cancelDelays
      function done(): void {
        clearTimeout(timer)
        cancels.delete(done)
        resolve()
      }
      cancels.add(done)
    })
  }

  #checkWorkerScript(): boolean {
    if (existsSync(this.#deps.workerScript)) return true
    this.#log.error({ workerScript: this.#deps.workerScript }, 'worker script not found')
    return false
  }

  /** Exit 0 means "onboarding finished" (docs/design.md#finish-replies-before-the-worker-stops);
   * anything else is a crash and restarts it. The restarted worker cannot bootstrap twice: the RPC
   * refuses once keys exist (docs/design.md#bootstrap-happens-once). */
  async #superviseOnboarding(): Promise<void> {
    const backoff = new RestartBackoff(this.#deps.backoff ?? DEFAULT_BACKOFF)
    while (!this.#stopping) {
      const run = this.#spawn('onboard')
      const exit = await run.exited
      if (this.#stopping || exit.code === 0) return
      if (this.#cannotStart(run, exit)) return
      await this.#delayRestart('onboard', backoff, exit)
    }
  }

  /** KMS workers and the sidecar should never exit on their own: every exit is a crash. */
  async #superviseForever(role: 'kms' | 'auth-simple', index?: number): Promise<void> {
    const backoff = new RestartBackoff(this.#deps.backoff ?? DEFAULT_BACKOFF)
    while (!this.#stopping) {
      const run = this.#spawn(role, index)
      const exit = await run.exited
      if (this.#stopping) return
      if (this.#cannotStart(run, exit)) return
      await this.#delayRestart(role, backoff, exit)
    }
  }

  /** A worker that exited with EXIT_CANNOT_START before it was ready would fail the same way on
   * every restart: the supervisor stops everything and exits non-zero with the reason, so the
   * service manager shows a failed unit instead of a silent crash loop. */
  #cannotStart(run: WorkerRun, exit: WorkerExit): boolean {
    const reason = this.#cannotStartReasons.get(run.child)
    this.#cannotStartReasons.delete(run.child)
    if (exit.code !== EXIT_CANNOT_START || exit.readyForMs !== undefined) return false
    const text = reason ?? 'see the worker log above'
    this.#log.fatal(
      { role: run.role, exitCode: exit.code, reason: text },
      `${run.role} worker cannot start and a restart would not change that: ${text}; stopping`,
    )
    this.#fatal ??= EXIT_CANNOT_START
    this.#stop('SIGTERM')
    return true
  }

  async #delayRestart(role: WorkerRole, backoff: RestartBackoff, exit: WorkerExit): Promise<void> {
    if (exit.readyForMs !== undefined) backoff.noteReadyFor(exit.readyForMs)
    const decision = backoff.onCrash(Date.now())
    const fields = {
      role,
      exitCode: exit.code,
      signal: exit.signal,
      attempt: decision.attempt,
      delayMs: decision.delayMs,
    }
    if (decision.crashLoop) {
      const { crashLoopWindowMs } = backoff.options
      this.#log.error(
        { ...fields, recentCrashes: decision.recentCrashes, windowMs: crashLoopWindowMs },
        `${role} worker is in a crash loop: ${decision.recentCrashes} crashes within ` +
          `${crashLoopWindowMs} ms; retrying every ${decision.delayMs} ms`,
      )
    } else {
      this.#log.warn(fields, `restarting ${role} worker in ${decision.delayMs} ms`)
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, decision.delayMs)
      const cancels = this.#cancelDelays
      function done(): void {
        clearTimeout(timer)
        cancels.delete(done)
        resolve()
      }
      cancels.add(done)
    })
  }

  /** Main workers are cluster workers so that they can all listen on the one port: the
   * listening socket is created here and handed to each (SCHED_NONE: the kernel balances
   * accepted connections, we never proxy them). Other roles are plain forks. */
  #forkChild(role: WorkerRole): ChildProcess {
    // Loaders (tsx) are inherited; an inspector port cannot be bound twice.
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--inspect'))
    if (role === 'kms') {
      cluster.schedulingPolicy = cluster.SCHED_NONE
      cluster.setupPrimary({
        exec: this.#deps.workerScript,
        args: [],
        execArgv,
        serialization: 'advanced',
        stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
      })
      return cluster.fork().process
    }
    return fork(this.#deps.workerScript, [], {
      stdio: 'inherit',
      serialization: 'advanced',
      // Its own process group: a terminal's Ctrl-C would otherwise reach the worker directly
      // and again through our forwarding. A worker learns that we are gone from the IPC
      // 'disconnect' event (onSupervisorGone).
      detached: true,
      execArgv,
    })
  }

  #spawn(role: WorkerRole, index?: number): WorkerRun {
    const startedAt = new Date()
    const child = this.#forkChild(role)
    this.#log.info(
      { role, index, childPid: child.pid, startedAt: startedAt.toISOString() },
      `started ${role} worker`,
    )
    let readyAt: number | undefined
    const start: WorkerIpcStart = {
      type: 'start',
      role,
      config: this.#deps.config,
      ...(index === undefined ? {} : { index }),
    }

    let startSent = false
    child.on('message', (msg: unknown) => {
      if (isWorkerIpcHello(msg) && !startSent) {
        startSent = true
        child.send(start, (err) => {
          if (err !== null) this.#log.warn({ err, role }, `could not send start to ${role} worker`)
        })
        return
      }
      if (isWorkerIpcCannotStart(msg) && msg.role === role) {
        this.#cannotStartReasons.set(child, msg.reason)
        return
      }
      if (role === 'kms' && this.#onMetrics(child, msg)) return
      if (isWorkerIpcReady(msg) && msg.role === 'kms' && role === 'kms') {
        this.#metricsWorkers.add(child)
      }
      if (!isWorkerIpcReady(msg) || msg.role !== role || this.#stopping) return
      readyAt ??= Date.now()
      this.#onReady(role, child.pid, msg.url)
    })

    const exited: Promise<WorkerExit> = new Promise<WorkerExit>((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
        const stoppedAt = new Date()
        for (const r of this.#runs) if (r.child === child) this.#runs.delete(r)
        this.#metricsWorkers.delete(child)
        for (const flushId of [...this.#scrapes.keys()]) this.#flushed(flushId, child)
        if (this.#runs.size === 0) clearTimeout(this.#killTimer)
        const expected = this.#stopping || (role === 'onboard' && code === 0)
        const fields = {
          role,
          childPid: child.pid,
          startedAt: startedAt.toISOString(),
          stoppedAt: stoppedAt.toISOString(),
          exitCode: code,
          signal,
        }
        if (expected) this.#log.info(fields, `${role} worker exited`)
        else this.#log.warn(fields, `${role} worker exited unexpectedly`)
        resolve({
          code,
          signal,
          readyForMs: readyAt === undefined ? undefined : stoppedAt.getTime() - readyAt,
        })
      }
      child.once('exit', finish)
      // Without a pid the process never started and no 'exit' will follow.
      child.on('error', (err) => {
        if (child.pid === undefined) {
          this.#log.error({ err, role }, `failed to start ${role} worker`)
          finish(null, null)
        } else {
          this.#log.warn({ err, role, childPid: child.pid }, `${role} worker IPC error`)
        }
      })
    })

    const run: WorkerRun = { role, child, exited }
    this.#runs.add(run)
    return run
  }

  /** The /metrics counters of all main workers, for the supervisor's lifetime (a restarted
   * worker does not reset them). A scrape is answered once every other serving worker has
   * reported what it held (the asker reported its own just before asking), so it counts every
   * request that finished before it. */
  #onMetrics(child: ChildProcess, msg: unknown): boolean {
    if (isWorkerIpcMetricsAdd(msg)) {
      this.#metrics.requests += msg.requests
      this.#metrics.failures += msg.failures
      if (msg.flushed !== undefined) this.#flushed(msg.flushed, child)
      return true
    }
    if (isWorkerIpcMetricsQuery(msg)) {
      const flushId = this.#nextFlushId++
      const waiting = new Set([...this.#metricsWorkers].filter((w) => w !== child))
      // a worker whose event loop is stuck never reports: the scrape is answered without its
      // held requests before the asker gives up on the query, and its entry does not linger
      const timer = setTimeout(() => {
        const scrape = this.#scrapes.get(flushId)
        if (scrape === undefined) return
        this.#log.warn(
          { unanswered: [...scrape.waiting].map((w) => w.pid) },
          'metrics scrape answered without the requests of workers that did not report in time',
        )
        scrape.waiting.clear()
        this.#flushed(flushId, undefined)
      }, METRICS_SCRAPE_WAIT_MS)
      timer.unref()
      this.#scrapes.set(flushId, { asker: child, id: msg.id, waiting, timer })
      const flush: WorkerIpcMetricsFlush = { type: 'metrics-flush', id: flushId }
      for (const w of waiting) {
        w.send(flush, (err) => {
          if (err !== null) this.#flushed(flushId, w)
        })
      }
      this.#flushed(flushId, undefined)
      return true
    }
    return false
  }

  /** `worker` has reported for (or can no longer answer) the scrape of `flushId`; the scrape is
   * answered when nobody is left. */
  #flushed(flushId: number, worker: ChildProcess | undefined): void {
    const scrape = this.#scrapes.get(flushId)
    if (scrape === undefined) return
    if (worker !== undefined) scrape.waiting.delete(worker)
    if (scrape.waiting.size > 0) return
    clearTimeout(scrape.timer)
    this.#scrapes.delete(flushId)
    const reply: WorkerIpcMetricsTotals = {
      type: 'metrics-totals',
      id: scrape.id,
      ...this.#metrics,
    }
    scrape.asker.send(reply, () => {})
  }

  #onReady(role: WorkerRole, pid: number | undefined, url: string): void {
    if (role === 'auth-simple') {
      this.#log.info({ role, childPid: pid, url }, 'auth-simple policy server ready')
      this.#sidecarReady?.()
    } else if (role === 'kms') {
      this.#log.info({ role, childPid: pid, url }, 'KMS worker ready')
      if (!this.#notifiedReady) this.#notify(`READY=1\nSTATUS=serving on ${url}`)
      this.#notifiedReady = true
    } else {
      this.#log.info({ role, childPid: pid, url }, 'onboarding worker ready')
      // Onboarding may wait hours for an operator; a Type=notify unit that never heard READY=1
      // would be killed by its start timeout, so onboarding counts as started too.
      this.#notify(`READY=1\nSTATUS=waiting for onboarding on ${url}`)
    }
  }

  /** sd_notify must never take the supervisor down: failures are only logged. */
  #notify(state: string): void {
    try {
      notify(state, this.#deps.env ?? process.env)
    } catch (err) {
      this.#log.warn({ err }, `sd_notify failed: ${errorMessage(err)}`)
    }
  }

  #alive(): WorkerRun[] {
    return [...this.#runs].filter((r) => r.child.exitCode === null && r.child.signalCode === null)
  }

  #stop(signal: NodeJS.Signals): void {
    const alive = this.#alive()
    if (this.#stopping) {
      this.#log.warn({ signal }, 'second stop signal')
      for (const run of alive) this.#kill(run, 'SIGKILL')
      return
    }
    this.#stopping = true
    this.#log.info({ signal, graceMs: this.#graceMs }, 'stopping')
    this.#notify('STOPPING=1')
    for (const cancel of [...this.#cancelDelays]) cancel()
    this.#sidecarReady?.()
    if (alive.length === 0) return
    for (const run of alive) this.#kill(run, signal)
    this.#killTimer = setTimeout(() => {
      for (const run of this.#alive()) {
        this.#log.warn(
          { role: run.role, childPid: run.child.pid, graceMs: this.#graceMs },
          `${run.role} worker did not stop within ${this.#graceMs} ms; sending SIGKILL`,
        )
        this.#kill(run, 'SIGKILL')
      }
    }, this.#graceMs)
  }

  #kill(run: WorkerRun, signal: NodeJS.Signals): void {
    try {
      run.child.kill(signal)
    } catch (err) {
      this.#log.warn({ err, role: run.role, signal }, 'could not signal worker')
    }
  }
}
