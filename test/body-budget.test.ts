// Stalled uploads against the shared body budget, on a real listener: one source address cannot
// hold more than its share, and a body that stops arriving gives its bytes back at the deadline.
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import Fastify from 'fastify'
import { AppIdType } from '../src/prpc/messages.js'
import { BodyBudget, defineMethod, registerPrpc } from '../src/prpc/plugin.js'
import { listenOnLoopback } from './helpers/listen.js'

const KIB = 1024

function request(port: number, body: Buffer, localAddress: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress }, () => {
      socket.write(
        `POST /prpc/Echo?json HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: ${body.length}\r\n\r\n`,
      )
      socket.end(body)
    })
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
  })
}

/** Sends all but the last byte of a body and stalls. */
function stalledUpload(port: number, size: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1' }, () => {
      socket.write(`POST /prpc/Echo?json HTTP/1.1\r\nhost: x\r\ncontent-length: ${size}\r\n\r\n`)
      socket.write(Buffer.alloc(size - 1, 0x20), () => resolve(socket))
    })
    socket.on('error', reject)
  })
}

/** An Echo pRPC listener on loopback for the enclosing describe, with its own budget (1 MiB in all,
 * 256 KiB per source) and the given body read deadline. */
function echoListener(bodyReadDeadlineMs: number): { budget: BodyBudget; port: () => number } {
  const app = Fastify()
  const budget = new BodyBudget({
    bodyBudgetBytes: 1024 * KIB,
    bodyBudgetPerSourceBytes: 256 * KIB,
    bodyReadDeadlineMs,
  })
  let port = 0
  before(async () => {
    await registerPrpc(app, {
      servicePrefix: 'KMS.',
      methods: { Echo: defineMethod(AppIdType, AppIdType, async (input) => input) },
      bodyBudget: budget,
    })
    port = await listenOnLoopback(app)
  })
  after(() => app.close())
  return { budget, port: () => port }
}

describe('body budget under stalled uploads', () => {
  const { budget, port } = echoListener(1500)
  const stalled: Socket[] = []

  after(() => {
    for (const s of stalled) s.destroy()
  })

  it('one source cannot lock others out, and stalled bodies are dropped at the deadline', async () => {
    // eight nearly complete 200 KiB uploads from one address: 1.6 MiB, more than the whole budget
    for (let k = 0; k < 8; k++) stalled.push(await stalledUpload(port(), 200 * KIB))
    await sleep(200)
    assert.ok(budget.used <= 256 * KIB, `one source holds ${budget.used} bytes`)
    const body = Buffer.from(JSON.stringify({ app_id: 'ab'.repeat(50 * KIB) }))
    const other = await request(port(), body, '127.0.0.2')
    assert.match(other, /^HTTP\/1\.1 200 /, other.slice(0, 200))
    // the stalled uploads give their bytes back once the read deadline has passed
    for (let k = 0; k < 100 && budget.used > 0; k++) await sleep(100)
    assert.equal(budget.used, 0)
  })
})

describe('body budget under aborted uploads', () => {
  // a deadline no test waits for: only the abort itself can give the bytes back
  const { budget, port } = echoListener(600_000)

  it('a client that disconnects mid-body gives its bytes back, and the listener keeps serving', async () => {
    const socket = await stalledUpload(port(), 100 * KIB)
    for (let k = 0; k < 100 && budget.used === 0; k++) await sleep(20)
    assert.ok(budget.used > 0, 'the partial body is held while it arrives')
    socket.destroy()
    for (let k = 0; k < 500 && budget.used > 0; k++) await sleep(20)
    assert.equal(budget.used, 0)
    const body = Buffer.from(JSON.stringify({ app_id: 'ab'.repeat(20) }))
    const reply = await request(port(), body, '127.0.0.1')
    assert.match(reply, /^HTTP\/1\.1 200 /, reply.slice(0, 200))
    assert.equal(budget.used, 0)
  })
})
