// Slowloris against a real KMS: the quick-start KMS (real worker processes, real HTTPS on
// loopback) with small [limits], held under slow connections of every kind from other source
// addresses (on Linux the whole of 127/8 is loopback): stalled and half-sent TLS handshakes,
// request heads and bodies trickled a byte at a time, idle kept-alive connections. Legitimate
// requests from another source are answered while they are held, the server itself cuts every
// slow connection at its deadline, the worker's RSS stays bounded and nothing restarts. The
// onboarding listener, which runs first, gets the same limits.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { connect as netConnect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import { defaultLimits } from '../src/config/load.js'
import { prpc, rawRequest } from './helpers/https-client.js'
import {
  bootstrapQuickstart,
  startQuickstartKms,
  type QuickstartKms,
} from './helpers/quickstart-kms.js'

// small enough for the test to run in seconds, large enough for a loaded machine's legitimate
// requests (a loopback handshake takes milliseconds)
const LIMITS = `[limits]
headers_timeout = "2s"
request_timeout = "4s"
keep_alive_timeout = "1s"
tls_handshake_timeout = "2s"
body_read_deadline = "3s"
max_connections = 256
max_connections_per_source = 16
body_budget = "8MiB"
body_budget_per_source = "2MiB"
`
const PER_SOURCE_CAP = 16
/** slow connections of each kind, each kind from its own source address (below the cap) */
const N = 10
const MIB = 1024 * 1024
const APP_ID = 'ab'.repeat(20)
/** far above a worker under this load, far below one that buffered what it was sent */
const RSS_GROWTH_BOUND_MB = 160

const LEGIT = '127.0.0.1'

interface Slow {
  kind: string
  socket: Socket
  received: Buffer[]
  /** set when the socket closed; the test never closes one itself before the end */
  closed: boolean
  whenClosed: Promise<void>
}

const held: Slow[] = []

function track(kind: string, socket: Socket): Slow {
  const slow: Slow = {
    kind,
    socket,
    received: [],
    closed: false,
    whenClosed: Promise.resolve(),
  }
  slow.whenClosed = new Promise((resolve) => {
    socket.once('close', () => {
      slow.closed = true
      resolve()
    })
  })
  socket.on('data', (chunk: Buffer) => slow.received.push(chunk))
  // the server's cut may arrive as a reset
  socket.on('error', () => {})
  held.push(slow)
  return slow
}

/** Writes `next()` every 200 ms while the socket is open: a client that is never quite done. */
function trickle(socket: Socket, next: () => string): void {
  const timer = setInterval(() => {
    if (socket.writable) socket.write(next())
  }, 200)
  socket.once('close', () => clearInterval(timer))
}

function tcp(port: number, source: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port, localAddress: source }, () =>
      resolve(socket),
    )
    socket.once('error', reject)
  })
}

/** TLS over a TCP connection from `source` (tls.connect itself takes no local address). */
async function tls(port: number, source: string): Promise<Socket> {
  const raw = await tcp(port, source)
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ socket: raw, rejectUnauthorized: false }, () => resolve(socket))
    socket.once('error', reject)
    socket.once('close', () => reject(new Error('closed before the handshake completed')))
  })
}

/** TCP connected, not one byte of TLS. */
async function stalledHandshake(port: number, source: string): Promise<Slow> {
  return track('stalled handshake', await tcp(port, source))
}

/** A TLS record announcing a 512-byte ClientHello, then its first bytes, trickled. */
async function halfClientHello(port: number, source: string): Promise<Slow> {
  const socket = await tcp(port, source)
  const record = Buffer.concat([
    Buffer.from('1603010200' + '010001fc' + '0303', 'hex'),
    randomBytes(32),
  ])
  socket.write(record)
  trickle(socket, () => '\x00')
  return track('half ClientHello', socket)
}

/** A request line and then one header line every 200 ms, never the blank line. */
async function trickledHead(port: number, source: string): Promise<Slow> {
  const socket = await tls(port, source)
  socket.write('GET /prpc/GetMeta?json HTTP/1.1\r\nhost: localhost\r\n')
  trickle(socket, () => 'x-slow: 1\r\n')
  return track('trickled head', socket)
}

/** A 16 MiB body announced, 1 MiB sent at once, then a byte every 200 ms. */
async function trickledBody(port: number, source: string): Promise<Slow> {
  const socket = await tls(port, source)
  socket.write(
    `POST /prpc/GetAppEnvEncryptPubKey?json HTTP/1.1\r\nhost: localhost\r\ncontent-length: ${16 * MIB}\r\n\r\n`,
  )
  socket.write(Buffer.alloc(MIB, 0x20))
  trickle(socket, () => ' ')
  return track('trickled body', socket)
}

/** One GetMeta answered on a kept-alive connection, then silence. */
async function idleKeepAlive(port: number, source: string): Promise<Slow> {
  const socket = await tls(port, source)
  const slow = track('idle keep-alive', socket)
  const answered = new Promise<void>((resolve) => socket.once('data', () => resolve()))
  socket.write('GET /prpc/GetMeta?json HTTP/1.1\r\nhost: localhost\r\n\r\n')
  await answered
  return slow
}

function text(slow: Slow): string {
  return Buffer.concat(slow.received).toString('latin1')
}

/** The built-in defaults would cut the slow connections only this long after they opened
 * (10 s and more); the configured [limits] (4 s at most, plus the deadline check interval) long
 * before. Waiting up to it shows the configured limits were applied, not the built-in ones. */
const defaults = defaultLimits()
const BUILT_IN_CUT_MS = Math.min(
  defaults.headersTimeoutMs,
  defaults.requestTimeoutMs,
  defaults.keepAliveTimeoutMs,
  defaults.tlsHandshakeTimeoutMs,
  defaults.bodyReadDeadlineMs,
)

/** Waits until the server has closed every slow connection of `slows`, opened at `openedAt`;
 * fails naming the kinds still open when the built-in defaults would have been needed. */
async function allClosedByServer(slows: Slow[], openedAt: number): Promise<void> {
  let guard: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    guard = setTimeout(
      () => {
        const open = new Map<string, number>()
        for (const s of slows.filter((t) => !t.closed)) {
          open.set(s.kind, (open.get(s.kind) ?? 0) + 1)
        }
        const list = [...open].map(([kind, n]) => `${n} × ${kind}`).join(', ')
        reject(new Error(`the configured limits did not cut: ${list}`))
      },
      Math.max(0, openedAt + BUILT_IN_CUT_MS - Date.now()),
    )
  })
  try {
    await Promise.race([Promise.all(slows.map((s) => s.whenClosed)), timeout])
  } finally {
    clearTimeout(guard)
  }
}

function vmRssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  assert.ok(m?.[1] !== undefined, `no VmRSS for ${pid}`)
  return Number(m[1]) / 1024
}

/** Whether a TLS connection from `source` is closed before its handshake completes (a source
 * that already holds its cap). */
async function refusedBeforeHandshake(port: number, source: string): Promise<boolean> {
  try {
    ;(await tls(port, source)).destroy()
    return false
  } catch {
    return true
  }
}

function workerPid(q: QuickstartKms, msg: string): number {
  const line = q.kms.logs.find((l) => l.msg === msg)
  const pid = line?.childPid
  assert.equal(typeof pid, 'number', `${msg} names no childPid`)
  return pid as number
}

describe('slowloris', () => {
  let q: QuickstartKms
  let port = 0
  let legitBase = ''

  before(async () => {
    q = await startQuickstartKms({ extraToml: LIMITS, dirPrefix: 'kms-slowloris-' })
    port = Number(new URL(q.base).port)
    legitBase = `https://${LEGIT}:${port}`
  })

  after(async () => {
    for (const s of held) s.socket.destroy()
    q.kms.kill('SIGTERM')
    await q.kms.waitForExit()
  })

  it('the onboarding listener cuts stalled handshakes and trickled heads and keeps serving', async () => {
    const slows: Slow[] = []
    const openedAt = Date.now()
    for (let k = 0; k < N; k++) {
      slows.push(await stalledHandshake(port, '127.0.0.40'))
      slows.push(await trickledHead(port, '127.0.0.41'))
    }
    const health = await rawRequest({ url: `${legitBase}/health` })
    assert.equal(health.status, 200)
    assert.ok(
      slows.filter((s) => !s.closed).length > slows.length / 2,
      'the slow connections were held while the legitimate request was served',
    )
    await allClosedByServer(slows, openedAt)
    for (const s of slows.filter((t) => t.kind === 'trickled head')) {
      assert.match(text(s), /^HTTP\/1\.1 408 Request Timeout\r\n/, text(s))
      assert.match(text(s), /"error": "request timed out"/)
    }
    for (const s of slows.filter((t) => t.kind === 'stalled handshake')) {
      assert.equal(text(s), '', 'a handshake that never started gets no answer')
    }
    await bootstrapQuickstart(q)
  })

  it('the main listener serves GetMeta and GetAppEnvEncryptPubKey while slow clients are cut', async (t) => {
    const pid = workerPid(q, 'KMS worker ready')
    const warm = await prpc(legitBase, 'GetMeta?json', '')
    assert.equal(warm.status, 200, warm.text)
    const baseline = vmRssMb(pid)
    let peak = baseline
    const sampler = setInterval(() => {
      peak = Math.max(peak, vmRssMb(pid))
    }, 100)

    try {
      // one source at its cap: its next connection is closed before any TLS, another source's is not
      const openedAt = Date.now()
      const capped: Slow[] = []
      for (let k = 0; k < PER_SOURCE_CAP; k++) {
        capped.push(await stalledHandshake(port, '127.0.0.30'))
      }
      assert.equal(await refusedBeforeHandshake(port, '127.0.0.30'), true)
      assert.equal(await refusedBeforeHandshake(port, '127.0.0.31'), false)

      const openers = [stalledHandshake, halfClientHello, trickledHead, trickledBody, idleKeepAlive]
      const slows: Slow[] = [...capped]
      for (const [i, open] of openers.entries()) {
        for (let k = 0; k < N; k++) slows.push(await open(port, `127.0.0.${10 + i}`))
      }

      for (let round = 0; round < 3; round++) {
        const meta = await prpc(legitBase, 'GetMeta?json', '')
        assert.equal(meta.status, 200, meta.text)
        const pub = await prpc(
          legitBase,
          'GetAppEnvEncryptPubKey?json',
          JSON.stringify({ app_id: APP_ID }),
        )
        assert.equal(pub.status, 200, pub.text)
        assert.match(pub.text, /"public_key"/)
        if (round === 0) {
          assert.ok(
            slows.filter((s) => !s.closed).length > slows.length / 2,
            'the slow connections were held while the legitimate requests were served',
          )
        }
      }

      await allClosedByServer(slows, openedAt)
      for (const s of slows) {
        const answer = text(s)
        if (s.kind === 'trickled head') {
          assert.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/, answer)
        } else if (s.kind === 'trickled body') {
          // cut by the request timeout (408) or the body read deadline (no answer)
          assert.ok(answer === '' || answer.startsWith('HTTP/1.1 408 '), answer.slice(0, 200))
        } else if (s.kind === 'idle keep-alive') {
          assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/, answer.slice(0, 200))
          assert.doesNotMatch(answer, /connection: close/i, 'the server kept the connection alive')
        } else if (s.kind === 'stalled handshake') {
          assert.equal(answer, '', 'a handshake that never started gets no answer')
        }
      }
    } finally {
      clearInterval(sampler)
    }

    // nothing crashed: the same worker answers, and it was never restarted
    const after = await prpc(legitBase, 'GetMeta?json', '')
    assert.equal(after.status, 200, after.text)
    process.kill(pid, 0)
    assert.equal(q.kms.logs.filter((l) => l.msg === 'KMS worker ready').length, 1)
    t.diagnostic(`worker RSS ${baseline.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB`)
    assert.ok(
      peak - baseline < RSS_GROWTH_BOUND_MB,
      `worker RSS grew from ${baseline.toFixed(0)} to ${peak.toFixed(0)} MiB`,
    )
  })
})
