// End to end, other start-up paths: crashes in the middle of Bootstrap, auto-bootstrap with a
// webhook auth API and the admin listener, onboarding disabled, and Finish over pRPC.
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { keysExist } from '../src/keys/cert-dir.js'
import { prpc, rawRequest, type RawResponse } from './helpers/https-client.js'
import { ADMIN_TOKEN, testConfigToml } from './helpers/kms-config.js'
import { freePort, startKms, tempDir, type KmsProcess } from './helpers/kms-process.js'
import { EXIT_CANNOT_START } from '../src/supervisor/worker-ipc.js'

function json(res: RawResponse): Record<string, unknown> {
  assert.equal(res.headers['content-type'], 'application/json', res.text)
  return JSON.parse(res.text) as Record<string, unknown>
}

async function stop(kms: KmsProcess): Promise<void> {
  if (kms.proc.exitCode !== null || kms.proc.signalCode !== null) return
  kms.kill('SIGTERM')
  assert.deepEqual(await kms.waitForExit(), { code: 0, signal: null })
}

describe('a crash in the middle of Bootstrap never leaves a half key set', () => {
  for (const point of ['commit:staged', 'commit:marked', 'commit:first-renamed']) {
    it(`SIGKILL of the onboard worker at ${point}`, async () => {
      const dir = tempDir()
      const certDir = join(dir, 'certs')
      const port = await freePort()
      const base = `https://127.0.0.1:${port}`
      const configToml = testConfigToml({ dir, port })
      const kms = startKms({ dir, configToml, env: { DSTACK_KMS_TEST_CRASH_POINT: point } })
      try {
        await kms.waitForLog((l) => l.msg === 'onboarding worker ready')
        // the worker dies mid-request: the client sees the connection drop
        await assert.rejects(prpc(base, 'Bootstrap', '{"domain":"localhost"}'))
        await kms.waitForLog((l) => l.msg === 'onboard worker exited unexpectedly')
        if (point === 'commit:staged') {
          // before the commit point: nothing committed; the restarted worker discards the
          // staging directory and onboarding starts over
          await kms.waitForLog(
            (l) =>
              l.msg === 'onboarding worker ready' &&
              kms.logs.filter((x) => x.msg === 'onboarding worker ready').length >= 2,
          )
          assert.equal(keysExist(certDir), false)
          assert.deepEqual(
            readdirSync(certDir).filter((f) => !f.startsWith('.dstack-kms')),
            [],
          )
        } else {
          // after the commit point: the restarted worker completes the commit and hands over
          await kms.waitForLog((l) => l.msg === 'KMS worker ready')
          assert.equal(keysExist(certDir), true)
          assert.equal(existsSync(join(certDir, '.staging')), false)
          const meta = json(await prpc(base, 'GetMeta', '{}'))
          const info = meta.bootstrap_info as Record<string, unknown>
          assert.equal(info.k256_pubkey, meta.k256_pubkey, 'bootstrap-info.json matches the keys')
        }
      } finally {
        await stop(kms)
      }
      if (point === 'commit:staged') {
        // a clean restart bootstraps normally
        const again = startKms({ dir, configToml })
        try {
          await again.waitForLog((l) => l.msg === 'onboarding worker ready')
          const res = await prpc(base, 'Bootstrap', '{"domain":"localhost"}')
          assert.equal(res.status, 200, res.text)
          assert.equal(keysExist(certDir), true)
        } finally {
          await stop(again)
        }
      }
    })
  }
})

describe('auto-bootstrap with a webhook auth API and the admin listener', () => {
  let webhook: Server
  let webhookUrl: string
  let infoStatus = 200
  let infoBody: unknown = {
    status: 'ok',
    kmsContractAddr: '0x1234567890abcdef1234567890abcdef12345678',
    gatewayAppId: '0xgateway',
    chainId: 8453,
    appImplementation: '0ximpl',
    appAuthImplementation: '0xignored',
    ethRpcUrl: 'https://rpc.example',
  }
  let dir: string
  let base: string
  let adminBase: string
  let kms: KmsProcess

  before(async () => {
    webhook = createServer((req, res) => {
      if (req.method === 'GET' && req.url === '/') {
        res.writeHead(infoStatus, { 'content-type': 'application/json' })
        res.end(typeof infoBody === 'string' ? infoBody : JSON.stringify(infoBody))
      } else {
        res.writeHead(404)
        res.end()
      }
    })
    await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve))
    webhookUrl = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/`
    dir = tempDir()
    const port = await freePort()
    const adminPort = await freePort()
    base = `https://127.0.0.1:${port}`
    adminBase = `http://127.0.0.1:${adminPort}`
    kms = startKms({
      dir,
      configToml: testConfigToml({
        dir,
        port,
        onboard: 'auto_bootstrap_domain = "kms.auto.example"',
        authApi: `[core.auth_api]\ntype = "webhook"\n\n[core.auth_api.webhook]\nurl = "${webhookUrl}"\ntimeout = "5s"`,
        extra: `\n[core.admin]\nenabled = true\naddress = "127.0.0.1"\nport = ${adminPort}\nauth_token = "admin-secret"\n`,
      }),
    })
    await kms.waitForLog((l) => l.msg === 'KMS worker ready')
  })

  after(async () => {
    await stop(kms)
    webhook.close()
  })

  it('never started an onboarding listener and wrote no bootstrap-info.json', () => {
    assert.equal(
      kms.logs.some((l) => l.msg === 'onboarding worker ready'),
      false,
    )
    assert.equal(existsSync(join(dir, 'certs', 'bootstrap-info.json')), false)
    assert.equal(keysExist(join(dir, 'certs')), true)
  })

  it('GetMeta carries the webhook info in upstream shape', async () => {
    const res = await prpc(base, 'GetMeta', 'null', {})
    assert.equal(res.status, 200, res.text)
    const meta = json(res)
    assert.equal(meta.bootstrap_info, null)
    assert.equal(meta.is_dev, false)
    assert.equal(meta.allow_any_upgrade, false)
    assert.equal(meta.gateway_app_id, '0xgateway')
    assert.equal(meta.kms_contract_address, '0x1234567890abcdef1234567890abcdef12345678')
    assert.equal(meta.chain_id, 8453)
    assert.match(res.text, /"chain_id":8453,/)
    assert.equal(meta.app_auth_implementation, '0ximpl')
  })

  it('fails GetMeta closed when the webhook fails', async () => {
    infoStatus = 500
    infoBody = 'boom'
    try {
      const res = await prpc(base, 'GetMeta', '{}')
      assert.equal(res.status, 400)
      assert.equal(
        json(res).error,
        `auth api ${webhookUrl} returned 500 Internal Server Error: boom`,
      )
      infoStatus = 200
      infoBody = { status: 'ok', gatewayAppId: 'x', chainId: 1, appImplementation: 'y' }
      const missing = await prpc(base, 'GetMeta', '{}')
      assert.equal(missing.status, 400)
      assert.match(String(json(missing).error), /^failed to decode response from /)
    } finally {
      infoStatus = 200
      infoBody = {
        status: 'ok',
        kmsContractAddr: '0x',
        gatewayAppId: 'g',
        chainId: 0,
        appImplementation: 'i',
      }
    }
    const meta = json(await prpc(base, 'GetMeta', '{}'))
    assert.equal(meta.chain_id, 0, 'chain_id = Some(0) is kept, not dropped')
  })

  it('the admin listener demands header auth and clears with the HEAD field layout', async () => {
    const body = JSON.stringify({ image_hash: 'all', config_hash: 'all' })
    const denied = await rawRequest({
      url: `${adminBase}/prpc/Admin.ClearImageCache?json`,
      method: 'POST',
      body,
    })
    assert.equal(denied.status, 401)
    assert.equal(denied.headers['www-authenticate'], 'Basic realm="dstack-kms admin"')
    assert.equal(denied.body.length, 0)
    const wrong = await rawRequest({
      url: `${adminBase}/prpc/Admin.ClearImageCache?json`,
      method: 'POST',
      body,
      headers: { authorization: 'Bearer wrong' },
    })
    assert.equal(wrong.status, 401)
    const ok = await rawRequest({
      url: `${adminBase}/prpc/Admin.ClearImageCache?json`,
      method: 'POST',
      body,
      headers: { authorization: 'Bearer admin-secret', 'content-type': 'application/json' },
    })
    assert.equal(ok.status, 200, ok.text)
    assert.equal(ok.text, 'null')
    const bad = await rawRequest({
      url: `${adminBase}/prpc/ClearImageCache?json`,
      method: 'POST',
      body: JSON.stringify({ image_hash: '../x' }),
      headers: { 'x-admin-token': 'admin-secret' },
    })
    assert.equal(bad.status, 400)
    assert.equal(json(bad).error, 'Failed to clear image cache: Invalid cache key')
    assert.equal((await rawRequest({ url: `${adminBase}/health` })).text, 'OK')
    // the main listener still takes the in-body token form
    const main = await prpc(
      base,
      'ClearImageCache',
      JSON.stringify({ token: ADMIN_TOKEN, image_hash: 'all' }),
    )
    assert.equal(main.status, 200, main.text)
  })
})

describe('onboarding', () => {
  it('Onboard.Finish over pRPC replies null, then the main worker starts', async () => {
    const dir = tempDir()
    const port = await freePort()
    const base = `https://127.0.0.1:${port}`
    const kms = startKms({ dir, configToml: testConfigToml({ dir, port }) })
    try {
      await kms.waitForLog((l) => l.msg === 'onboarding worker ready')
      assert.equal((await prpc(base, 'Bootstrap', '{"domain":"127.0.0.1"}')).status, 200)
      const fin = await prpc(base, 'Onboard.Finish', 'null', {})
      assert.equal(fin.status, 200)
      assert.equal(fin.text, 'null')
      await kms.waitForLog((l) => l.msg === 'KMS worker ready')
      assert.equal((await prpc(base, 'GetMeta', '{}')).status, 200)
    } finally {
      await stop(kms)
    }
  })

  it('Finish without keys is refused and onboarding stays up', async () => {
    const dir = tempDir()
    const port = await freePort()
    const kms = startKms({ dir, configToml: testConfigToml({ dir, port, onboard: 'tls = false' }) })
    try {
      await kms.waitForLog((l) => l.msg === 'onboarding worker ready')
      const fin = await rawRequest({ url: `http://127.0.0.1:${port}/finish` })
      assert.equal(fin.status, 400)
      assert.match(fin.text, /Finish refused: no key set has been committed yet/)
      const health = await rawRequest({ url: `http://127.0.0.1:${port}/health` })
      assert.equal(health.text, 'OK')
      assert.ok(!kms.logs.some((l) => l.msg === 'Failed to onboard'))
    } finally {
      await stop(kms)
    }
  })

  it('with onboarding disabled and no keys, serve exits non-zero with a clear message', async () => {
    const dir = tempDir()
    const port = await freePort()
    const kms = startKms({
      dir,
      configToml: testConfigToml({ dir, port }).replace('enabled = true', 'enabled = false'),
    })
    const exit = await kms.waitForExit()
    assert.equal(exit.code, EXIT_CANNOT_START)
    assert.ok(
      kms.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('onboarding is disabled')),
      JSON.stringify(kms.logs),
    )
    assert.equal(
      kms.logs.some((l) => l.msg === 'onboarding worker ready'),
      false,
    )
  })

  it('without a TEE a failing update_certs is logged and the existing certificates serve', async () => {
    const dir = tempDir()
    const port = await freePort()
    const base = `https://127.0.0.1:${port}`
    const configToml = testConfigToml({ dir, port })
    const first = startKms({ dir, configToml })
    try {
      await first.waitForLog((l) => l.msg === 'onboarding worker ready')
      assert.equal((await prpc(base, 'Bootstrap', '{"domain":"localhost"}')).status, 200)
      await prpc(base, 'Finish', 'null')
      await first.waitForLog((l) => l.msg === 'KMS worker ready')
    } finally {
      await stop(first)
    }
    const rpcCert = readFileSync(join(dir, 'certs', 'rpc.crt'), 'utf8')
    rmSync(join(dir, 'certs', 'rpc-domain'))
    const again = startKms({ dir, configToml })
    try {
      await again.waitForLog((l) => l.msg === 'KMS worker ready')
      assert.ok(
        again.logs.some(
          (l) => typeof l.msg === 'string' && l.msg.startsWith('Failed to update certs: '),
        ),
      )
      assert.equal(readFileSync(join(dir, 'certs', 'rpc.crt'), 'utf8'), rpcCert)
      assert.equal((await prpc(base, 'GetMeta', '{}')).status, 200)
    } finally {
      await stop(again)
    }
  })

  it('a second instance on the same cert_dir is refused', async () => {
    const dir = tempDir()
    const port = await freePort()
    const configToml = testConfigToml({ dir, port })
    const first = startKms({ dir, configToml })
    try {
      await first.waitForLog((l) => l.msg === 'onboarding worker ready')
      const second = startKms({ dir, configToml })
      const exit = await second.waitForExit()
      assert.equal(exit.code, 1)
      assert.match(second.stderr.join(''), /another dstack-kms instance/)
    } finally {
      await stop(first)
    }
  })
})
