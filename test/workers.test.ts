// `[rpc] workers = 2`: two main worker processes serve one port (cluster, SCHED_NONE), and
// /metrics shows the supervisor's totals whichever worker answers the scrape.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { prpc, rawRequest } from './helpers/https-client.js'
import { testConfigToml } from './helpers/kms-config.js'
import { freePort, startKms, tempDir, type KmsProcess } from './helpers/kms-process.js'

const METRICS_WARNING =
  'metrics scrape answered without the requests of workers that did not report in time'

describe('two main workers on one port', () => {
  let kms: KmsProcess
  let base: string

  before(async () => {
    const dir = tempDir()
    const port = await freePort()
    base = `https://127.0.0.1:${port}`
    kms = startKms({
      dir,
      configToml: testConfigToml({
        dir,
        port,
        workers: 2,
        onboard: 'auto_bootstrap_domain = "localhost"',
      }),
    })
    await kms.waitForLog(
      () => kms.logs.filter((l) => l.msg === 'KMS worker ready').length === 2,
      60_000,
    )
  })

  after(async () => {
    kms.kill('SIGTERM')
    await kms.waitForExit()
  })

  it('both workers serve, and every scrape sees the same totals', async () => {
    // Two workers alive. A worker that died during start-up and was restarted (seen once on a
    // loaded CI-sized machine, e.g. a port another test took between freePort and listen) is
    // not this test's subject; the lines about it go into the failure message.
    const started = kms.logs.filter((l) => l.msg === 'started kms worker').map((l) => l.childPid)
    const exits = kms.logs.filter(
      (l) => typeof l.msg === 'string' && /^kms worker exited|^restarting kms worker/.test(l.msg),
    )
    const exited = new Set(exits.map((l) => l.childPid))
    const pids = new Set(started.filter((pid) => !exited.has(pid)))
    assert.equal(pids.size, 2, `alive workers ${[...pids].join(',')}; ${JSON.stringify(exits)}`)
    for (let i = 0; i < 12; i++) {
      // fresh connections, so the kernel spreads them over both workers
      const res = await prpc(base, 'GetAppKey', '{"api_version":1}')
      assert.equal(res.status, 400)
    }
    const served = new Set(
      kms.logs.filter((l) => l.msg === 'request completed' && l.worker === 'kms').map((l) => l.pid),
    )
    // requests are served by the worker processes (whichever the kernel picked), never elsewhere
    assert.ok(served.size >= 1)
    for (const pid of served) {
      assert.ok(pids.has(pid), `request served by unknown pid ${String(pid)}`)
    }
    for (let i = 0; i < 6; i++) {
      const m = await rawRequest({ url: `${base}/metrics` })
      assert.equal(m.status, 200)
      assert.match(m.text, /^dstack_kms_attestation_requests_total 12$/m)
      assert.match(m.text, /^dstack_kms_attestation_failures_total 12$/m)
    }
  })

  it('workers report their counts in batches, yet a scrape right after a burst counts every request', async () => {
    const before = await rawRequest({ url: `${base}/metrics` })
    const count = (text: string, name: string): number =>
      Number(new RegExp(`^dstack_kms_attestation_${name}_total (\\d+)$`, 'm').exec(text)?.[1])
    const start = count(before.text, 'requests')
    const burst = 240
    for (let i = 0; i < burst; i += 24) {
      const statuses = await Promise.all(
        Array.from({ length: 24 }, () => prpc(base, 'GetAppKey', '{"api_version":1}')),
      )
      assert.deepEqual(new Set(statuses.map((r) => r.status)), new Set([400]))
    }
    // well inside METRICS_FLUSH_MS of the last request: only the flush on scrape can count it
    const scrapes = await Promise.all(
      Array.from({ length: 4 }, () => rawRequest({ url: `${base}/metrics` })),
    )
    for (const m of scrapes) {
      assert.equal(m.status, 200)
      assert.equal(count(m.text, 'requests'), start + burst)
      assert.equal(count(m.text, 'failures'), start + burst)
    }
  })

  it('a scrape is still answered while another worker cannot report (stopped)', async () => {
    const ready = kms.logs
      .filter((l) => l.msg === 'KMS worker ready')
      .map((l) => Number(l.childPid))
    const stopped = ready[ready.length - 1] as number
    process.kill(stopped, 'SIGSTOP')
    try {
      // new connections are accepted by the worker that still runs
      const m = await rawRequest({ url: `${base}/metrics` })
      assert.equal(m.status, 200, m.text)
      assert.match(m.text, /^dstack_kms_attestation_requests_total \d+$/m)
      const warned = kms.logs.find((l) => l.msg === METRICS_WARNING)
      assert.ok(warned !== undefined, 'the supervisor names the workers that did not report')
      assert.deepEqual(warned.unanswered, [stopped])
    } finally {
      process.kill(stopped, 'SIGCONT')
    }
  })

  it('a SIGTERM stops both workers and the supervisor exits 0', async () => {
    kms.kill('SIGTERM')
    assert.deepEqual(await kms.waitForExit(), { code: 0, signal: null })
    const exited = kms.logs.filter((l) => l.msg === 'kms worker exited')
    assert.equal(exited.length, 2)
  })
})
