// The onboarding listener's cross-site guard and Finish, on a real HTTPS listener with a real
// onboarding service: every spelling of a state-changing path is either refused or reaches the
// guard, and Finish only ever follows a committed key set.
import assert from 'node:assert/strict'
import { readdirSync, writeFileSync } from 'node:fs'
import { connect as tlsConnect } from 'node:tls'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import { loadConfig } from '../src/config/load.js'
import { BodyBudget } from '../src/prpc/plugin.js'
import { buildOnboardApp } from '../src/onboard/app.js'
import { createEphemeralTls } from '../src/onboard/ephemeral-tls.js'
import { OnboardService } from '../src/onboard/service.js'
import { createRuntime, type KmsRuntime } from '../src/runtime.js'
import { testConfigToml } from './helpers/kms-config.js'
import { tempDir } from './helpers/kms-process.js'

const EVIL = { origin: 'https://evil.example', 'content-type': 'application/json' }

interface Onboarding {
  app: FastifyInstance
  base: string
  port: number
  certDir: string
  finishes: () => number
  rt: KmsRuntime
}

async function startOnboarding(): Promise<Onboarding> {
  const dir = tempDir()
  const file = join(dir, 'kms.toml')
  writeFileSync(file, testConfigToml({ dir, port: 0 }))
  const config = loadConfig({ configFile: file, etcFile: join(dir, 'none.toml'), env: {} })
  const logger = pino({ level: 'silent' })
  const rt = await createRuntime(config, logger, { env: {} })
  let finished = 0
  const app = await buildOnboardApp({
    service: new OnboardService({ config, logger, ...rt }),
    logger,
    tls: createEphemeralTls(),
    onFinish: () => {
      finished++
    },
    limits: config.limits,
    bodyBudget: new BodyBudget(config.limits),
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  assert.ok(address !== null && typeof address === 'object')
  return {
    app,
    base: `https://127.0.0.1:${address.port}`,
    port: address.port,
    certDir: config.core.certDir,
    finishes: () => finished,
    rt,
  }
}

/** An onboarding server for the enclosing describe block: started before its tests (which is
 * when the fields are filled in) and closed after them. */
function suiteOnboarding(): Onboarding {
  const o = {} as Onboarding
  before(async () => {
    Object.assign(o, await startOnboarding())
  })
  after(async () => {
    await o.app.close()
    await o.rt.close()
  })
  return o
}

function keyFiles(certDir: string): string[] {
  try {
    return readdirSync(certDir).filter((f) => !f.startsWith('.'))
  } catch {
    return []
  }
}

/** Sends the request target byte for byte (no client-side normalisation of `..` or `//`). */
function rawTarget(
  port: number,
  method: string,
  target: string,
  headers: Record<string, string>,
  body = '',
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const lines = [
        `${method} ${target} HTTP/1.1`,
        `host: 127.0.0.1:${port}`,
        'connection: close',
        `content-length: ${Buffer.byteLength(body)}`,
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      ]
      socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`)
    })
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)
      resolve({ status, text: text.slice(text.indexOf('\r\n\r\n') + 4) })
    })
  })
}

// spellings of /prpc/Bootstrap and /finish that a router might decode, collapse or resolve
const BOOTSTRAP_TARGETS = [
  '/%70rpc/x/prpc/Bootstrap',
  '/%70rpc/Bootstrap',
  '/%70%72%70%63/Bootstrap',
  '/prpc/%42ootstrap',
  '/prpc/Onboard.%42ootstrap',
  '/prpc/Onboard.Onboard.Bootstrap',
  '/prpc/Bootstrap?json',
  '/%2570rpc/Bootstrap',
  '/prpc%2fBootstrap',
  '/prpc%2FBootstrap',
  '/prpc%5cBootstrap',
  '/prpc\\Bootstrap',
  '//prpc/Bootstrap',
  '/./prpc/Bootstrap',
  '/ui/../prpc/Bootstrap',
  '/ui/%2e%2e/prpc/Bootstrap',
  '/ui/%2E%2E/prpc/Bootstrap',
  '/ui/..%2fprpc/Bootstrap',
  '/%2e/prpc/Bootstrap',
  '/prpc/Bootstrap;x=1',
  '/prpc/Bootstrap%00',
  '/prpc/Bootstrap%',
  '/prpc/Bootstrap%zz',
  '/prpc/%u0042ootstrap',
  '/PRPC/Bootstrap',
  'https://127.0.0.1/prpc/Bootstrap',
  '/prpc/Bootstrap#x',
  '/x/prpc/Bootstrap',
]

const FINISH_TARGETS = [
  '/finish',
  '/%66inish',
  '/%66%69%6e%69%73%68',
  '/%66inish?x=1',
  '/finish/',
  '//finish',
  '/./finish',
  '/ui/../finish',
  '/ui/%2e%2e/finish',
  '/ui%2f..%2ffinish',
  '/finish;x',
  '/finish%00',
  '/%2566inish',
  '/prpc/Finish',
  '/prpc/%46inish',
  '/%70rpc/Finish',
  '/%70rpc/x/prpc/Finish',
  '/prpc/Onboard.Finish',
]

describe('onboarding cross-site guard', () => {
  const o = suiteOnboarding()

  it('never lets a cross-site Bootstrap through, however the path is spelled', async () => {
    for (const target of BOOTSTRAP_TARGETS) {
      for (const method of ['POST', 'GET']) {
        const body = method === 'POST' ? '{"domain":"evil.example"}' : ''
        const res = await rawTarget(o.port, method, target, EVIL, body)
        assert.ok(res.status === 400 || res.status === 404, `${method} ${target}: ${res.status}`)
        assert.deepEqual(keyFiles(o.certDir), [], `${method} ${target} bootstrapped the KMS`)
      }
    }
  })

  it('never lets a cross-site Finish through, however the path is spelled', async () => {
    for (const target of FINISH_TARGETS) {
      for (const method of ['GET', 'POST', 'HEAD']) {
        const headers = { 'sec-fetch-site': 'cross-site' }
        const res = await rawTarget(o.port, method, target, headers)
        assert.ok(res.status === 400 || res.status === 404, `${method} ${target}: ${res.status}`)
        assert.equal(o.finishes(), 0, `${method} ${target} finished onboarding`)
      }
    }
  })

  it('refuses ambiguous paths outright, labelled or not', async () => {
    for (const target of ['/ui/%2e%2e/finish', '/prpc%2fBootstrap', '//finish', '/finish%00']) {
      const res = await rawTarget(o.port, 'GET', target, {})
      assert.equal(res.status, 400, target)
      assert.equal(res.text, JSON.stringify({ error: 'ambiguous request path refused' }, null, 2))
    }
    assert.equal(o.finishes(), 0)
  })

  it('decides on the decoded path: encoded spellings of a route reach it and its guard', async () => {
    // not cross-site: the same decoded path is routed
    const ok = await rawTarget(o.port, 'POST', '/%70rpc/GetAttestationInfo', {}, '{}')
    assert.equal(ok.status, 200, ok.text)
    // cross-site: refused by the guard, not by a 404
    const refused = await rawTarget(o.port, 'POST', '/%70rpc/GetAttestationInfo', EVIL, '{}')
    assert.equal(refused.status, 400)
    assert.equal(refused.text, JSON.stringify({ error: 'cross-site request refused' }, null, 2))
    // the page, its assets and /health stay readable from anywhere
    for (const target of ['/', '/health', '/%68ealth']) {
      const res = await rawTarget(o.port, 'GET', target, { 'sec-fetch-site': 'cross-site' })
      assert.equal(res.status, 200, target)
    }
  })
})

describe('onboarding Finish', () => {
  const o = suiteOnboarding()

  it('refuses Finish with a clear 400 until a key set is committed', async () => {
    const refused = JSON.stringify(
      { error: 'Finish refused: no key set has been committed yet; call Bootstrap first' },
      null,
      2,
    )
    for (const [method, target] of [
      ['GET', '/finish'],
      ['POST', '/prpc/Finish'],
      ['GET', '/prpc/Onboard.Finish'],
    ] as const) {
      const res = await rawTarget(o.port, method, target, {})
      assert.equal(res.status, 400, `${method} ${target}`)
      assert.equal(res.text, refused)
    }
    assert.equal(o.finishes(), 0)
  })

  it('lets a Finish sent during Bootstrap wait for it, never race it', async () => {
    const boot = rawTarget(o.port, 'POST', '/prpc/Bootstrap', {}, '{"domain":"localhost"}')
    const fin = rawTarget(o.port, 'GET', '/finish', {}).then((res) => ({
      res,
      keysAtReply: keyFiles(o.certDir).length,
    }))
    const [b, f] = await Promise.all([boot, fin])
    assert.equal(b.status, 200, b.text)
    // either order is fine, as long as a successful Finish only ever follows committed keys
    if (f.res.status === 200) assert.ok(f.keysAtReply > 0)
    else assert.equal(f.res.status, 400)
    const again = await rawTarget(o.port, 'GET', '/finish', {})
    assert.equal(again.status, 200, again.text)
    assert.equal(again.text, 'OK')
    assert.ok(o.finishes() >= 1)
  })
})
