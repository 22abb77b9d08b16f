// The supervisor with real worker processes (test/fixtures/workers/worker.mjs) and, for the
// signal tests, as a real process itself (test/fixtures/run-supervisor.ts). Nothing is timed:
// tests wait for log lines and worker events, and assert on their order and counts.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve as resolvePath } from 'node:path'
import { after, describe, test } from 'node:test'
import pino from 'pino'
import { REQUIRED_KEY_FILES, keysExist } from '../src/keys/cert-dir.js'
import { RestartBackoff } from '../src/supervisor/backoff.js'
import { runSupervisor, type SupervisorDeps } from '../src/supervisor/supervisor.js'
import {
  EXIT_CANNOT_START,
  isWorkerIpcReady,
  isWorkerIpcStart,
  onSupervisorGone,
  receiveStart,
  sendReady,
} from '../src/supervisor/worker-ipc.js'
import { supervisorTestConfig } from './fixtures/supervisor-config.js'
import { collectLines, waitUntil } from './helpers/line-collector.js'
import { tempDir } from './helpers/temp-dir.js'

const WORKER = resolvePath(import.meta.dirname, 'fixtures/workers/worker.mjs')
const RUN_SUPERVISOR = resolvePath(import.meta.dirname, 'fixtures/run-supervisor.ts')
const FAST = { initialMs: 10, maxMs: 100, crashLoopWindowMs: 60_000, crashLoopLimit: 50 }

type LogEntry = Record<string, unknown> & { msg: string; level: number }

function isLogEntry(value: unknown): value is LogEntry {
  return (
    typeof value === 'object' &&
    value !== null &&
    'msg' in value &&
    typeof value.msg === 'string' &&
    'level' in value &&
    typeof value.level === 'number'
  )
}

function parseLog(line: string): LogEntry {
  const parsed: unknown = JSON.parse(line)
  assert.ok(isLogEntry(parsed), `not a pino line: ${line}`)
  return parsed
}

const roots: string[] = []
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

/** A temp root (cert_dir is <root>/certs) plus a logger whose entries the test can read. */
function fixture() {
  const root = tempDir('dstack-kms-supervisor-')
  roots.push(root)
  const logs: LogEntry[] = []
  const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(parseLog(line)) })
  const eventsFile = join(root, 'events.log')
  return {
    root,
    certDir: join(root, 'certs'),
    logs,
    logger,
    /** "<role> <event>" lines in order, pids dropped */
    events: (): string[] =>
      existsSync(eventsFile)
        ? readFileSync(eventsFile, 'utf8')
            .split('\n')
            .filter((l) => l !== '')
            .map((l) => l.split(' ').slice(0, 2).join(' '))
        : [],
    pids: (role: string, event: string): number[] =>
      existsSync(eventsFile)
        ? readFileSync(eventsFile, 'utf8')
            .split('\n')
            .filter((l) => l.startsWith(`${role} ${event} `))
            .map((l) => Number(l.split(' ')[2]))
        : [],
    record: (what: string) => writeFileSync(eventsFile, `supervisor ${what} 0\n`, { flag: 'a' }),
    mode: (role: 'onboard' | 'kms' | 'auth-simple', words: string) =>
      writeFileSync(join(root, `${role}.mode`), words),
    finish: () => writeFileSync(join(root, 'finish'), ''),
    writeKeys: () => {
      mkdirSync(join(root, 'certs'), { recursive: true })
      for (const f of REQUIRED_KEY_FILES) writeFileSync(join(root, 'certs', f), 'key\n')
    },
    waitForLog: (pred: (l: LogEntry) => boolean, what: string) =>
      waitUntil(() => logs.find(pred), what),
    messages: () => logs.map((l) => l.msg),
  }
}

type Fixture = ReturnType<typeof fixture>

const controllers: AbortController[] = []
after(() => {
  for (const c of controllers) c.abort()
})

function supervise(
  f: Fixture,
  overrides: Partial<SupervisorDeps> & {
    onboard?: { enabled?: boolean; autoBootstrapDomain?: string }
    workers?: number
    extraToml?: string
  } = {},
): { result: Promise<number>; stop: () => void } {
  const controller = new AbortController()
  controllers.push(controller)
  const config = supervisorTestConfig(
    f.root,
    overrides.onboard,
    overrides.workers ?? 1,
    overrides.extraToml ?? '',
  )
  const result = runSupervisor({
    config,
    logger: f.logger,
    workerScript: WORKER,
    keysExist: () => keysExist(config.core.certDir),
    autoBootstrap: () => Promise.reject(new Error('unexpected auto-bootstrap')),
    updateCerts: async () => {
      f.record(`updateCerts keys=${keysExist(config.core.certDir)}`)
    },
    backoff: FAST,
    stopGraceMs: 20_000,
    abortSignal: controller.signal,
    env: {},
    ...overrides,
  })
  return { result, stop: () => controller.abort() }
}

const LEVEL = { info: 30, warn: 40, error: 50 }

describe('RestartBackoff', () => {
  test('doubles from the initial delay up to the cap, and resets after a stable run', () => {
    const b = new RestartBackoff({
      initialMs: 500,
      maxMs: 30_000,
      crashLoopWindowMs: 1,
      crashLoopLimit: 100,
    })
    const delays = Array.from({ length: 9 }, (_, i) => b.onCrash(i * 10).delayMs)
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000])
    b.noteReadyFor(29_999)
    assert.equal(b.onCrash(1000).delayMs, 30000)
    b.noteReadyFor(30_000)
    const next = b.onCrash(2000)
    assert.deepEqual(next, { attempt: 1, delayMs: 500, recentCrashes: 1, crashLoop: false })
  })

  test('more than crashLoopLimit crashes inside the window is a crash loop, at the cap', () => {
    const b = new RestartBackoff({
      initialMs: 1,
      maxMs: 64,
      crashLoopWindowMs: 1000,
      crashLoopLimit: 3,
    })
    assert.deepEqual(
      [0, 10, 20, 30, 40].map((t) => b.onCrash(t)),
      [
        { attempt: 1, delayMs: 1, recentCrashes: 1, crashLoop: false },
        { attempt: 2, delayMs: 2, recentCrashes: 2, crashLoop: false },
        { attempt: 3, delayMs: 4, recentCrashes: 3, crashLoop: false },
        { attempt: 4, delayMs: 64, recentCrashes: 4, crashLoop: true },
        { attempt: 5, delayMs: 64, recentCrashes: 5, crashLoop: true },
      ],
    )
    // the window slides: at t=1035 only the crashes at 40 and 1035 are recent
    assert.deepEqual(b.onCrash(1035), {
      attempt: 6,
      delayMs: 32, // the exponential sequence went on underneath: 1, 2, 4, 8, 16, 32
      recentCrashes: 2,
      crashLoop: false,
    })
  })

  test('rejects nonsensical options', () => {
    const ok = { initialMs: 1, maxMs: 2, crashLoopWindowMs: 1, crashLoopLimit: 1 }
    assert.throws(() => new RestartBackoff({ ...ok, maxMs: 0 }), RangeError)
    assert.throws(() => new RestartBackoff({ ...ok, initialMs: -1 }), RangeError)
    assert.throws(() => new RestartBackoff({ ...ok, crashLoopLimit: 0 }), RangeError)
    assert.throws(() => new RestartBackoff({ ...ok, crashLoopWindowMs: 0 }), RangeError)
  })
})

describe('worker IPC', () => {
  test('type guards accept exactly the two protocol messages', () => {
    const config = supervisorTestConfig('/tmp/x')
    assert.ok(isWorkerIpcStart({ type: 'start', role: 'onboard', config }))
    assert.ok(!isWorkerIpcStart({ type: 'start', role: 'main', config }))
    assert.ok(!isWorkerIpcStart({ type: 'start', role: 'kms' }))
    assert.ok(isWorkerIpcReady({ type: 'ready', role: 'kms', url: 'https://0.0.0.0:8000' }))
    assert.ok(!isWorkerIpcReady({ type: 'ready', role: 'kms', url: 8000 }))
    assert.ok(!isWorkerIpcReady(null))
  })

  test('receiveStart and sendReady speak the protocol over a process-like channel', async () => {
    const sent: unknown[] = []
    const proc = Object.assign(new EventEmitter(), {
      connected: true,
      send(message: unknown, callback: (error: Error | null) => void): boolean {
        sent.push(message)
        callback(null)
        return true
      },
    })
    const config = supervisorTestConfig('/tmp/x')
    const started = receiveStart(proc)
    proc.emit('message', { type: 'start', role: 'kms', config })
    assert.deepEqual(await started, { type: 'start', role: 'kms', config })
    assert.equal(proc.listenerCount('message'), 0)

    await sendReady('kms', 'https://127.0.0.1:8000', proc)
    assert.deepEqual(sent, [
      { type: 'hello' },
      { type: 'ready', role: 'kms', url: 'https://127.0.0.1:8000' },
    ])

    const wrong = receiveStart(proc)
    proc.emit('message', { type: 'ready', role: 'kms', url: 'x' })
    await assert.rejects(wrong, { code: 'KMS_ERR_INTERNAL' })
    await assert.rejects(receiveStart(new EventEmitter()), {
      message: 'not started by the supervisor: no IPC channel',
    })

    let gone = 0
    onSupervisorGone(() => gone++, proc)
    proc.emit('disconnect')
    proc.emit('disconnect')
    assert.equal(gone, 1)
  })
})

describe('supervisor phases', () => {
  test('onboarding worker exits 0 → keys exist → updateCerts → KMS worker; sd_notify states', async () => {
    const f = fixture()
    f.mode('onboard', 'write-keys')
    const notifySocket = join(f.root, 'notify.sock')
    const rx = spawn('python3', ['-u', '-c', NOTIFY_RECEIVER, notifySocket, '3'])
    const datagrams = collectLines(rx.stdout)
    await datagrams.waitFor((l) => l === 'bound')

    const sup = supervise(f, { env: { NOTIFY_SOCKET: notifySocket } })
    await f.waitForLog((l) => l.msg === 'onboarding worker ready', 'onboarding ready')
    assert.deepEqual(f.events(), ['onboard start', 'onboard ready'])
    f.finish()
    const ready = await f.waitForLog((l) => l.msg === 'KMS worker ready', 'kms ready')
    assert.equal(ready.url, 'https://127.0.0.1:8000/kms')
    assert.equal(ready.worker, 'supervisor')
    sup.stop()
    assert.equal(await sup.result, 0)

    assert.deepEqual(f.events(), [
      'onboard start',
      'onboard ready',
      'onboard finish',
      'supervisor updateCerts',
      'kms start',
      'kms ready',
      'kms sigterm',
    ])
    assert.ok(readFileSync(join(f.root, 'events.log'), 'utf8').includes('updateCerts keys=true'))
    const onboardExit = f.logs.find((l) => l.msg === 'onboard worker exited')
    assert.ok(onboardExit !== undefined)
    assert.equal(onboardExit.exitCode, 0)
    assert.equal(onboardExit.childPid, f.pids('onboard', 'start')[0])
    assert.equal(typeof onboardExit.startedAt, 'string')
    assert.equal(typeof onboardExit.stoppedAt, 'string')

    await datagrams.waitFor((l) => l === 'done')
    assert.deepEqual(
      datagrams.lines.slice(1, 4).map((h) => Buffer.from(h, 'hex').toString('utf8')),
      [
        'READY=1\nSTATUS=waiting for onboarding on https://127.0.0.1:8000/onboard',
        'READY=1\nSTATUS=serving on https://127.0.0.1:8000/kms',
        'STOPPING=1',
      ],
    )
  })

  test('onboarding exits 0 but keys are still missing → Failed to onboard, exit 1', async () => {
    const f = fixture()
    f.finish() // finish right after ready, without writing keys
    const sup = supervise(f)
    assert.equal(await sup.result, 1)
    const failed = f.logs.find((l) => l.msg === 'Failed to onboard')
    assert.equal(failed?.level, LEVEL.error)
    assert.deepEqual(f.events(), ['onboard start', 'onboard ready', 'onboard finish'])
  })

  test('onboarding disabled and no keys → error, exit 78, nothing forked', async () => {
    const f = fixture()
    const sup = supervise(f, { onboard: { enabled: false } })
    assert.equal(await sup.result, EXIT_CANNOT_START)
    const err = f.logs.find((l) => l.level === LEVEL.error)
    assert.equal(err?.msg, `keys are missing in ${f.certDir} and onboarding is disabled`)
    assert.deepEqual(f.events(), [])
    assert.ok(!f.messages().some((m) => m.startsWith('started ')))
  })

  test('a crashed onboarding worker is restarted; the second run finishes', async () => {
    const f = fixture()
    f.mode('onboard', 'crash-once write-keys')
    f.finish()
    const sup = supervise(f)
    await f.waitForLog((l) => l.msg === 'KMS worker ready', 'kms ready')
    sup.stop()
    assert.equal(await sup.result, 0)
    assert.deepEqual(f.events(), [
      'onboard start',
      'onboard crash',
      'onboard start',
      'onboard ready',
      'onboard finish',
      'supervisor updateCerts',
      'kms start',
      'kms ready',
      'kms sigterm',
    ])
    const restart = f.logs.find((l) => l.msg === 'restarting onboard worker in 10 ms')
    assert.equal(restart?.exitCode, 3)
    assert.equal(restart?.level, LEVEL.warn)
  })

  test('auto-bootstrap domain: bootstrap in-process, no onboarding worker', async () => {
    const f = fixture()
    const sup = supervise(f, {
      onboard: { autoBootstrapDomain: 'kms.example.com' },
      autoBootstrap: async () => {
        f.record('autoBootstrap')
        f.writeKeys()
      },
    })
    await f.waitForLog((l) => l.msg === 'KMS worker ready', 'kms ready')
    sup.stop()
    assert.equal(await sup.result, 0)
    assert.deepEqual(f.events(), [
      'supervisor autoBootstrap',
      'supervisor updateCerts',
      'kms start',
      'kms ready',
      'kms sigterm',
    ])
  })

  test('keys present: straight to updateCerts and the KMS worker', async () => {
    const f = fixture()
    f.writeKeys()
    const sup = supervise(f)
    await f.waitForLog((l) => l.msg === 'KMS worker ready', 'kms ready')
    sup.stop()
    assert.equal(await sup.result, 0)
    assert.deepEqual(f.events(), [
      'supervisor updateCerts',
      'kms start',
      'kms ready',
      'kms sigterm',
    ])
  })

  test('[rpc] workers = 2: two main workers, each started, ready and stopped', async () => {
    const f = fixture()
    f.writeKeys()
    const sup = supervise(f, { workers: 2 })
    await waitUntil(
      () => (f.messages().filter((m) => m === 'KMS worker ready').length === 2 ? true : undefined),
      'two ready workers',
    )
    const starts = f.logs.filter((l) => l.msg === 'started kms worker')
    assert.deepEqual(
      starts.map((l) => l.index),
      [0, 1],
    )
    sup.stop()
    assert.equal(await sup.result, 0)
    const events = f.events()
    assert.equal(events.filter((e) => e === 'kms start').length, 2)
    assert.equal(events.filter((e) => e === 'kms sigterm').length, 2)
    assert.equal(new Set(f.pids('kms', 'start')).size, 2)
  })

  test('the auth-simple sidecar is up before anything else and stopped last', async () => {
    const f = fixture()
    f.writeKeys()
    const sup = supervise(f, {
      extraToml: `[auth_simple]\nenabled = true\nport = 0\nconfig = "${join(f.root, 'policy.json')}"\n`,
    })
    await f.waitForLog((l) => l.msg === 'KMS worker ready', 'kms ready')
    sup.stop()
    assert.equal(await sup.result, 0)
    const events = f.events()
    assert.deepEqual(events.slice(0, 3), [
      'auth-simple start',
      'auth-simple ready',
      'supervisor updateCerts',
    ])
    assert.ok(events.includes('auth-simple sigterm'))
    assert.ok(events.includes('kms sigterm'))
  })

  test('a crashing auth-simple sidecar is restarted and the KMS does not start before it is up', async () => {
    const f = fixture()
    f.writeKeys()
    f.mode('auth-simple', 'crash-once')
    const sup = supervise(f, {
      extraToml: `[auth_simple]\nenabled = true\nport = 0\nconfig = "${join(f.root, 'policy.json')}"\n`,
    })
    await f.waitForLog((l) => l.msg === 'KMS worker ready', 'kms ready')
    sup.stop()
    assert.equal(await sup.result, 0)
    assert.deepEqual(f.events().slice(0, 4), [
      'auth-simple start',
      'auth-simple crash',
      'auth-simple start',
      'auth-simple ready',
    ])
  })

  test('a partial key set is fatal and names the missing file; onboarding never starts', async () => {
    const f = fixture()
    f.writeKeys()
    rmSync(join(f.certDir, 'root-ca.key'))
    const sup = supervise(f)
    assert.equal(await sup.result, EXIT_CANNOT_START)
    const line = f.logs.find((l) => l.msg.startsWith('cannot start: incomplete key set'))
    assert.ok(line, f.messages().join('\n'))
    assert.match(line.msg, /root-ca\.key missing/)
    assert.deepEqual(f.events(), [], 'no onboarding worker, no KMS worker')
  })

  test('a KMS worker that cannot start stops the supervisor with exit 78 and the reason', async () => {
    const f = fixture()
    f.writeKeys()
    f.mode('kms', 'cannot-start')
    const sup = supervise(f)
    assert.equal(await sup.result, 78)
    assert.deepEqual(
      f.events(),
      ['supervisor updateCerts', 'kms start', 'kms cannot-start'],
      'never restarted',
    )
    const line = f.logs.find((l) => l.msg.startsWith('kms worker cannot start'))
    assert.ok(line, f.messages().join('\n'))
    assert.match(line.msg, /root-ca\.key: not a PEM file; stopping$/)
  })

  test('an auth-simple sidecar that cannot start stops everything before any KMS worker', async () => {
    const f = fixture()
    f.writeKeys()
    f.mode('auth-simple', 'cannot-start')
    const sup = supervise(f, {
      extraToml: `[auth_simple]\nenabled = true\nport = 0\nconfig = "${join(f.root, 'policy.json')}"\n`,
    })
    assert.equal(await sup.result, 78)
    assert.deepEqual(f.events(), ['auth-simple start', 'auth-simple cannot-start'])
  })

  test('updateCerts failing is fatal before any KMS worker starts', async () => {
    const f = fixture()
    f.writeKeys()
    const sup = supervise(f, { updateCerts: () => Promise.reject(new Error('boom')) })
    assert.equal(await sup.result, 1)
    assert.ok(f.messages().includes('Failed to update certs: boom'))
    assert.deepEqual(f.events(), [])
  })
})

describe('supervisor restarts', () => {
  test('a SIGKILLed KMS worker is restarted after backoff and becomes ready again', async () => {
    const f = fixture()
    f.writeKeys()
    const sup = supervise(f)
    const first = await f.waitForLog((l) => l.msg === 'KMS worker ready', 'first ready')
    const firstPid = first.childPid
    assert.equal(typeof firstPid, 'number')
    process.kill(Number(firstPid), 'SIGKILL')
    const second = await f.waitForLog(
      (l) => l.msg === 'KMS worker ready' && l.childPid !== firstPid,
      'second ready',
    )
    sup.stop()
    assert.equal(await sup.result, 0)

    const starts = f.pids('kms', 'start')
    assert.deepEqual(starts, [firstPid, second.childPid])
    const msgs = f.messages()
    assert.equal(msgs.filter((m) => m === 'started kms worker').length, 2)
    const crash = f.logs.find((l) => l.msg === 'kms worker exited unexpectedly')
    assert.equal(crash?.signal, 'SIGKILL')
    assert.equal(crash?.exitCode, null)
    const restart = f.logs.find((l) => l.msg === 'restarting kms worker in 10 ms')
    assert.equal(restart?.signal, 'SIGKILL')
    assert.ok(
      msgs.indexOf('kms worker exited unexpectedly') <
        msgs.indexOf('restarting kms worker in 10 ms'),
    )
  })

  test('a crash loop is reported and retried at the cap', async () => {
    const f = fixture()
    f.writeKeys()
    f.mode('kms', 'crash')
    const sup = supervise(f, {
      backoff: { initialMs: 5, maxMs: 20, crashLoopWindowMs: 600_000, crashLoopLimit: 3 },
    })
    const loop = await f.waitForLog((l) => l.msg.includes('crash loop'), 'crash loop')
    const loopIndex = f.logs.indexOf(loop)
    await f.waitForLog(
      (l) => f.logs.indexOf(l) > loopIndex && l.msg === 'started kms worker',
      'a start after the crash loop report',
    )
    sup.stop()
    assert.equal(await sup.result, 0)

    assert.equal(loop.level, LEVEL.error)
    assert.equal(
      loop.msg,
      'kms worker is in a crash loop: 4 crashes within 600000 ms; retrying every 20 ms',
    )
    assert.equal(loop.exitCode, 3)
    const restarts = f.logs.filter((l) => l.msg.startsWith('restarting kms worker'))
    assert.deepEqual(
      restarts.slice(0, 3).map((l) => l.delayMs),
      [5, 10, 20],
    )
    // 4 crashes to the report, then at least one more start: it keeps retrying
    assert.ok(f.messages().filter((m) => m === 'started kms worker').length >= 5)
    assert.ok(!f.events().includes('kms ready'), f.events().join('\n'))
  })
})

describe('supervisor signals (real process)', () => {
  function startSupervisorProcess(f: Fixture, graceMs: number) {
    const env = { ...process.env }
    delete env.NODE_TEST_CONTEXT
    delete env.NOTIFY_SOCKET
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', RUN_SUPERVISOR, f.root, String(graceMs)],
      { env, stdio: ['ignore', 'pipe', 'inherit'] },
    )
    const out = collectLines(child.stdout)
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    )
    after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    })
    const logs = (): LogEntry[] => out.lines.filter((l) => l.startsWith('{')).map(parseLog)
    const waitForMsg = async (msg: string): Promise<LogEntry> =>
      parseLog(await out.waitFor((l) => l.startsWith('{') && parseLog(l).msg === msg))
    return { child, exit, logs, waitForMsg }
  }

  function isAlive(pid: number): boolean {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  }

  test('SIGTERM is forwarded to the worker and the supervisor exits 0', async () => {
    const f = fixture()
    f.writeKeys()
    const sup = startSupervisorProcess(f, 20_000)
    const ready = await sup.waitForMsg('KMS worker ready')
    const workerPid = Number(ready.childPid)
    sup.child.kill('SIGTERM')
    assert.deepEqual(await sup.exit, { code: 0, signal: null })

    assert.deepEqual(f.pids('kms', 'sigterm'), [workerPid])
    assert.ok(!isAlive(workerPid))
    const logs = sup.logs()
    assert.equal(logs.find((l) => l.msg === 'stopping')?.signal, 'SIGTERM')
    const exited = logs.find((l) => l.msg === 'kms worker exited')
    assert.equal(exited?.exitCode, 0)
    assert.equal(exited?.signal, null)
    assert.ok(!logs.some((l) => l.msg.includes('SIGKILL')))
  })

  test('a worker that ignores SIGTERM is SIGKILLed after the grace period', async () => {
    const f = fixture()
    f.writeKeys()
    f.mode('kms', 'ignore-sigterm')
    const sup = startSupervisorProcess(f, 300)
    const ready = await sup.waitForMsg('KMS worker ready')
    const workerPid = Number(ready.childPid)
    sup.child.kill('SIGTERM')
    assert.deepEqual(await sup.exit, { code: 0, signal: null })

    assert.deepEqual(f.events().slice(-1), ['kms sigterm-ignored'])
    assert.ok(!isAlive(workerPid))
    const msgs = sup.logs().map((l) => l.msg)
    const killIndex = msgs.indexOf('kms worker did not stop within 300 ms; sending SIGKILL')
    const exitIndex = msgs.indexOf('kms worker exited')
    assert.ok(killIndex !== -1 && killIndex < exitIndex, msgs.join('\n'))
    assert.equal(sup.logs()[exitIndex]?.signal, 'SIGKILL')
  })

  test('a second signal kills the worker at once', async () => {
    const f = fixture()
    f.writeKeys()
    f.mode('kms', 'ignore-sigterm')
    const sup = startSupervisorProcess(f, 600_000)
    await sup.waitForMsg('KMS worker ready')
    sup.child.kill('SIGTERM')
    await waitUntil(
      () => (f.events().includes('kms sigterm-ignored') ? true : undefined),
      'the worker to ignore SIGTERM',
    )
    sup.child.kill('SIGINT')
    assert.deepEqual(await sup.exit, { code: 0, signal: null })
    const logs = sup.logs()
    assert.ok(logs.some((l) => l.msg === 'second stop signal' && l.signal === 'SIGINT'))
    assert.equal(logs.find((l) => l.msg === 'kms worker exited')?.signal, 'SIGKILL')
    assert.ok(!logs.some((l) => l.msg.includes('did not stop within')))
  })
})

// Receives `count` datagrams on a unix socket and prints each as hex, then "done".
const NOTIFY_RECEIVER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('bound', flush=True)
for _ in range(int(sys.argv[2])):
    print(s.recv(65536).hex(), flush=True)
print('done', flush=True)
`
