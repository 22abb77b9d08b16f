// Refusals made by the HTTP layer itself (Fastify's and Node's) come in the `{"error": …}` shape
// every other error of ours has, on a real listener.
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import { registerCommonHttp } from '../src/http/common.js'
import { defaultLimits } from '../src/config/load.js'
import { createFastify } from '../src/http/server-options.js'
import { createEphemeralTls } from '../src/onboard/ephemeral-tls.js'
import { listenOnLoopback } from './helpers/listen.js'

function exchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(request))
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
  })
}

function parse(response: string): { status: number; type: string; body: unknown } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0)
  const type = /\r\ncontent-type: ([^\r]*)/i.exec(response)?.[1] ?? ''
  return { status, type, body: JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)) }
}

describe('errors of the HTTP layer', () => {
  let app: FastifyInstance
  let port: number

  before(async () => {
    app = createFastify(pino({ level: 'silent' }), null, { limits: defaultLimits() })
    registerCommonHttp(app, {})
    app.get('/item/:id', async () => 'ok')
    port = await listenOnLoopback(app)
  })

  after(async () => {
    await app.close()
  })

  it('answers an undecodable URL (FST_ERR_BAD_URL) with {"error": …}', async () => {
    const res = parse(
      await exchange(port, 'GET /item/%zz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'),
    )
    assert.equal(res.status, 400)
    assert.equal(res.type, 'application/json')
    assert.deepEqual(Object.keys(res.body as object), ['error'])
  })

  it('answers oversized headers with 431 and {"error": …}', async () => {
    const big = `x-big: ${'a'.repeat(64 * 1024)}\r\n`
    const res = parse(await exchange(port, `GET /health HTTP/1.1\r\nhost: x\r\n${big}\r\n`))
    assert.equal(res.status, 431)
    assert.equal(res.type, 'application/json')
    assert.deepEqual(res.body, { error: 'request headers too large' })
  })

  it('answers a malformed request line with 400 and {"error": …}', async () => {
    const res = parse(await exchange(port, 'NOT A REQUEST\r\n\r\n'))
    assert.equal(res.status, 400)
    assert.deepEqual(res.body, { error: 'malformed request' })
  })
})

describe('failed TLS handshakes', () => {
  let app: FastifyInstance
  let port: number

  before(async () => {
    const { key, cert } = createEphemeralTls()
    app = createFastify(
      pino({ level: 'silent' }),
      { tls: { key, cert } },
      { limits: { ...defaultLimits(), tlsHandshakeTimeoutMs: 1000 } },
    )
    registerCommonHttp(app, {})
    port = await listenOnLoopback(app)
  })

  after(async () => {
    await app.close()
  })

  it(
    'cuts a connection that speaks plain HTTP to the TLS port, without an HTTP answer',
    { timeout: 20_000 },
    async () => {
      const reply = await exchange(port, 'GET /health HTTP/1.1\r\nhost: x\r\n\r\n')
      assert.doesNotMatch(reply, /HTTP\/1\.1/)
    },
  )

  it(
    'cuts a connection that never starts its handshake at the handshake timeout',
    { timeout: 20_000 },
    async () => {
      assert.equal(await exchange(port, ''), '')
    },
  )
})
