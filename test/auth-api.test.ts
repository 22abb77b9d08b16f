// The auth API client (spec 05 §3–5) against a real HTTP server on loopback.
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import {
  DevAuthApi,
  MAX_RESPONSE_BYTES,
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

  it('times out (D9) and stays fail-closed', async () => {
    handler = () => {
      // never answers
    }
    await assert.rejects(api(200).info(), /timed out/)
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
})

describe('truncateUtf8', () => {
  it('cuts at a character boundary', () => {
    assert.equal(truncateUtf8('abc', 512), 'abc')
    assert.equal(truncateUtf8('aé', 2), 'a')
    assert.equal(truncateUtf8('aéb', 3), 'aé')
    assert.equal(truncateUtf8('🔑🔑', 5), '🔑')
  })
})
