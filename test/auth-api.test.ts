// The auth API client against a real HTTP server on loopback.
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { bootInfoToJson, type BootInfo } from '../src/attestation/boot-info.js'
import { sampleBootInfo } from './helpers/boot-info.js'
import {
  DevAuthApi,
  MAX_RESPONSE_BYTES,
  PreparedBootInfo,
  WebhookAuthApi,
  truncateUtf8,
} from '../src/auth/auth-api.js'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

describe('webhook auth API: info call', () => {
  let server: Server
  let url = ''
  let handler: Handler = (_req, res) => res.end()
  const seen: Array<{ method?: string; url?: string; ua?: string }> = []

  before(async () => {
    server = createServer((req, res) => {
      seen.push({ method: req.method, url: req.url, ua: req.headers['user-agent'] })
      handler(req, res)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/base`
  })

  after(() => {
    server.closeAllConnections()
    server.close()
  })

  const api = (timeoutMs = 5000) =>
    new WebhookAuthApi({ url, timeoutMs, userAgent: 'dstack-kms/test' })

  it('GETs exactly the configured URL and maps the reply', async () => {
    handler = (_req, res) =>
      res.end(
        JSON.stringify({
          status: 'ok',
          kmsContractAddr: '0xabc',
          gatewayAppId: 'gw',
          chainId: 1,
          appImplementation: '0ximpl',
          extra: true,
        }),
      )
    seen.length = 0
    assert.deepEqual(await api().info(), {
      isDev: false,
      gatewayAppId: 'gw',
      kmsContractAddress: '0xabc',
      chainId: 1n,
      appAuthImplementation: '0ximpl',
      ethRpcUrl: null,
    })
    assert.deepEqual(seen, [{ method: 'GET', url: '/base', ua: 'dstack-kms/test' }])
  })

  it('reports non-2xx with status, reason and at most 512 bytes of body', async () => {
    handler = (_req, res) => {
      res.statusCode = 503
      res.end('x'.repeat(600))
    }
    await assert.rejects(api().info(), {
      message: `auth api ${url} returned 503 Service Unavailable: ${'x'.repeat(512)}`,
    })
  })

  it('fails closed on a missing required key or a non-JSON body', async () => {
    handler = (_req, res) => res.end('{"status":"ok","gatewayAppId":"g","chainId":1}')
    await assert.rejects(api().info(), /^KmsError: failed to decode response from .*status=200 OK/)
    handler = (_req, res) => res.end('not json')
    await assert.rejects(api().info(), /failed to decode response from .*body=not json$/)
    handler = (_req, res) =>
      res.end(
        '{"status":"ok","kmsContractAddr":"","gatewayAppId":"","chainId":-1,"appImplementation":""}',
      )
    await assert.rejects(api().info(), /failed to decode response/)
  })

  it('refuses an oversized reply instead of buffering it', async () => {
    handler = (_req, res) => {
      res.write('{"pad":"')
      res.end('a'.repeat(MAX_RESPONSE_BYTES + 10))
    }
    await assert.rejects(api().info(), /larger than 1048576 bytes/)
  })

  it('times out and stays fail-closed', async () => {
    handler = () => {
      // never answers
    }
    await assert.rejects(api(200).info(), /timed out/)
  })
})

describe('webhook auth API: decision calls', () => {
  let server: Server
  let origin = ''
  let handler: Handler = (_req, res) => res.end()
  const seen: Array<{ method?: string; url?: string; ua?: string; type?: string; body: string }> =
    []

  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        seen.push({
          method: req.method,
          url: req.url,
          ua: req.headers['user-agent'],
          type: req.headers['content-type'],
          body: Buffer.concat(chunks).toString('utf8'),
        })
        handler(req, res)
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  after(() => {
    server.closeAllConnections()
    server.close()
  })

  const api = (url = origin, timeoutMs = 5000) =>
    new WebhookAuthApi({ url, timeoutMs, userAgent: 'dstack-kms/test' })
  const bootInfo = sampleBootInfo({
    keyProviderInfo: Buffer.from('{"name":"none","id":""}'),
    advisoryIds: ['INTEL-SA-00837'],
  })
  // what the webhook must receive: bootInfoToJson's keys, order and hex
  const bootInfoJson = bootInfoToJson(bootInfo)
  const reply = (obj: unknown, status = 200): Handler => {
    return (_req, res) => {
      res.statusCode = status
      res.setHeader('content-type', 'application/json')
      res.end(typeof obj === 'string' ? obj : JSON.stringify(obj))
    }
  }

  it('POSTs the BootInfo JSON to <url>/bootAuth/{app,kms} and returns the verdict', async () => {
    handler = reply({ isAllowed: true, gatewayAppId: 'gw', reason: '', extra: 1 })
    seen.length = 0
    assert.deepEqual(await api().bootAuth(bootInfo, false), {
      isAllowed: true,
      gatewayAppId: 'gw',
      reason: '',
    })
    handler = reply({ isAllowed: false, gatewayAppId: '', reason: 'compose hash not allowed' })
    assert.deepEqual(await api(`${origin}/`).bootAuth(bootInfo, true), {
      isAllowed: false,
      gatewayAppId: '',
      reason: 'compose hash not allowed',
    })
    await api(`${origin}/prefix`).bootAuth(bootInfo, true)
    await api(`${origin}/prefix/`).bootAuth(bootInfo, false)
    assert.deepEqual(
      seen.map((r) => [r.method, r.url, r.ua, r.type]),
      [
        ['POST', '/bootAuth/app', 'dstack-kms/test', 'application/json'],
        ['POST', '/bootAuth/kms', 'dstack-kms/test', 'application/json'],
        ['POST', '/prefix/bootAuth/kms', 'dstack-kms/test', 'application/json'],
        ['POST', '/prefix/bootAuth/app', 'dstack-kms/test', 'application/json'],
      ],
    )
    for (const r of seen) assert.deepEqual(JSON.parse(r.body), bootInfoJson)
    // key order is the caller's (the webhook order comes from bootInfoToJson)
    assert.equal(seen[0]?.body, JSON.stringify(bootInfoJson))
  })

  it('a PreparedBootInfo goes out as the same bytes as its BootInfo, asked anew each time', async () => {
    const answers = [
      { isAllowed: true, gatewayAppId: 'gw', reason: '' },
      { isAllowed: true, gatewayAppId: 'gw', reason: '' },
      { isAllowed: false, gatewayAppId: 'gw', reason: 'revoked' },
    ]
    handler = (req, res) => reply(answers.shift())(req, res)
    seen.length = 0
    const client = api()
    const prepared = new PreparedBootInfo(bootInfo)
    assert.equal((await client.bootAuth(bootInfo, true)).isAllowed, true)
    assert.equal((await client.bootAuth(prepared, true)).isAllowed, true)
    assert.equal((await client.bootAuth(prepared, true)).reason, 'revoked')
    assert.deepEqual(
      seen.map((r) => [r.url, r.type, r.body]),
      Array.from({ length: 3 }, () => [
        '/bootAuth/kms',
        'application/json',
        JSON.stringify(bootInfoJson),
      ]),
    )
  })

  it('never caches: the same BootInfo twice makes two requests, the second answer wins', async () => {
    const answers = [
      { isAllowed: true, gatewayAppId: 'gw', reason: '' },
      { isAllowed: false, gatewayAppId: 'gw', reason: 'revoked' },
    ]
    handler = (req, res) => reply(answers.shift())(req, res)
    seen.length = 0
    const client = api()
    assert.equal((await client.bootAuth(bootInfo, false)).isAllowed, true)
    assert.deepEqual(await client.bootAuth(bootInfo, false), {
      isAllowed: false,
      gatewayAppId: 'gw',
      reason: 'revoked',
    })
    assert.equal(seen.length, 2)
    assert.equal(seen[0]?.body, seen[1]?.body)
  })

  it('times out and stays fail-closed', async () => {
    handler = () => {
      // never answers
    }
    await assert.rejects(api(origin, 200).bootAuth(bootInfo, true), {
      message: `auth api ${origin}/bootAuth/kms request failed: timed out`,
    })
  })

  it('fails closed on a body that is not JSON', async () => {
    handler = reply('<html>oops</html>')
    await assert.rejects(api().bootAuth(bootInfo, false), {
      message: `failed to decode response from ${origin}/bootAuth/app, status=200 OK, body=<html>oops</html>`,
    })
  })

  it('requires all three reply keys with their types', async () => {
    const bad: unknown[] = [
      { isAllowed: true, gatewayAppId: 'gw' },
      { isAllowed: true, reason: '' },
      { gatewayAppId: 'gw', reason: '' },
      { isAllowed: 'true', gatewayAppId: 'gw', reason: '' },
      { isAllowed: true, gatewayAppId: null, reason: '' },
      { isAllowed: true, gatewayAppId: 'gw', reason: 0 },
      [true, 'gw', ''],
      null,
    ]
    for (const body of bad) {
      handler = reply(JSON.stringify(body))
      await assert.rejects(api().bootAuth(bootInfo, true), (err: Error) => {
        assert.equal(
          err.message,
          `failed to decode response from ${origin}/bootAuth/kms, status=200 OK, body=${JSON.stringify(body)}`,
        )
        return true
      })
    }
  })

  it('reports a 500 with at most 512 bytes of body, cut at a character boundary', async () => {
    // 'é' is two bytes at offsets 511–512: a byte slice at 512 would split it
    handler = reply(`${'x'.repeat(511)}é${'y'.repeat(40)}`, 500)
    await assert.rejects(api().bootAuth(bootInfo, true), {
      message: `auth api ${origin}/bootAuth/kms returned 500 Internal Server Error: ${'x'.repeat(511)}`,
    })
    handler = reply(`${'x'.repeat(510)}é${'y'.repeat(40)}`, 500)
    await assert.rejects(api().bootAuth(bootInfo, false), {
      message: `auth api ${origin}/bootAuth/app returned 500 Internal Server Error: ${'x'.repeat(510)}é`,
    })
  })

  it('refuses an oversized reply instead of buffering it', async () => {
    handler = (_req, res) => {
      res.write('{"isAllowed":true,"pad":"')
      res.end('a'.repeat(MAX_RESPONSE_BYTES + 10))
    }
    await assert.rejects(api().bootAuth(bootInfo, true), /larger than 1048576 bytes/)
  })
})

describe('dev auth API', () => {
  it('answers locally with the configured gateway app id and nulls', async () => {
    assert.deepEqual(await new DevAuthApi('any').info(), {
      isDev: true,
      gatewayAppId: 'any',
      kmsContractAddress: null,
      chainId: null,
      appAuthImplementation: null,
      ethRpcUrl: null,
    })
  })

  it('allows every boot, app or KMS, with the configured gateway app id and no HTTP', async () => {
    const minimalBootInfo: BootInfo = {
      attestationMode: 'dstack-tdx',
      mrAggregated: Buffer.alloc(32),
      osImageHash: Buffer.alloc(0),
      mrSystem: Buffer.alloc(32),
      appId: Buffer.alloc(20),
      composeHash: Buffer.alloc(32),
      instanceId: Buffer.alloc(0),
      deviceId: Buffer.alloc(0),
      keyProviderInfo: Buffer.alloc(0),
      tcbStatus: '',
      advisoryIds: [],
    }
    const dev = new DevAuthApi('0xgateway')
    for (const isKms of [false, true]) {
      assert.deepEqual(await dev.bootAuth(minimalBootInfo, isKms), {
        isAllowed: true,
        gatewayAppId: '0xgateway',
        reason: '',
      })
    }
  })
})

describe('truncateUtf8', () => {
  it('cuts at a character boundary', () => {
    assert.equal(truncateUtf8('abc', 512), 'abc')
    assert.equal(truncateUtf8('aé', 2), 'a')
    assert.equal(truncateUtf8('aéb', 3), 'aé')
    assert.equal(truncateUtf8('🔑🔑', 5), '🔑')
  })
})
