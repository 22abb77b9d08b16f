// Connection caps on a real listener: past the per-source cap a source's new connections are
// closed on arrival while other sources are still served; past the listener cap everyone waits.
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import { registerCommonHttp } from '../src/http/common.js'
import { defaultLimits } from '../src/config/load.js'
import { createFastify } from '../src/http/server-options.js'
import { listenOnLoopback } from './helpers/listen.js'

function open(port: number, localAddress: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress }, () => resolve(socket))
    socket.on('error', reject)
  })
}

/** GET /health on a fresh connection: the status line, or 'closed' when the server cut it. */
function health(port: number, localAddress: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress }, () => {
      socket.write('GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')
    })
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', () => socket.destroy())
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      resolve(text === '' ? 'closed' : (text.split('\r\n')[0] ?? ''))
    })
  })
}

describe('connection caps', () => {
  let app: FastifyInstance
  let port = 0
  const idle: Socket[] = []

  before(async () => {
    app = createFastify(pino({ level: 'silent' }), null, {
      limits: { ...defaultLimits(), maxConnections: 6, maxConnectionsPerSource: 3 },
    })
    registerCommonHttp(app, {})
    port = await listenOnLoopback(app)
  })

  after(async () => {
    for (const s of idle) s.destroy()
    await app.close()
  })

  it('closes a source past its cap, serves other sources, and caps the listener', async () => {
    for (let k = 0; k < 3; k++) idle.push(await open(port, '127.0.0.1'))
    assert.equal(await health(port, '127.0.0.1'), 'closed')
    assert.equal(await health(port, '127.0.0.2'), 'HTTP/1.1 200 OK')
    for (let k = 0; k < 3; k++) idle.push(await open(port, '127.0.0.2'))
    // six idle connections: the listener is full for a third source too
    assert.equal(await health(port, '127.0.0.3'), 'closed')
    // a freed slot is usable again
    idle.shift()?.destroy()
    let status = 'closed'
    for (let k = 0; k < 50 && status === 'closed'; k++) status = await health(port, '127.0.0.3')
    assert.equal(status, 'HTTP/1.1 200 OK')
  })
})
