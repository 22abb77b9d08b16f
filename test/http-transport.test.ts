// The outbound client's HTTP/1.1 transport against a raw TCP server on loopback that writes
// exactly the bytes each test needs: connection reuse and when it must not happen, answers never
// attributed to the wrong request, maxSockets, the idle timeout, and requests it refuses to send.
import assert from 'node:assert/strict'
import { type AddressInfo, createServer, type Socket } from 'node:net'
import { X509Certificate } from 'node:crypto'
import { createServer as createHttpsServer, type ServerOptions } from 'node:https'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TLSSocket } from 'node:tls'
import { describe, it } from 'node:test'
import { P256Key } from '../src/crypto/p256.js'
import { type Connection, ConnectionPool } from '../src/http/connection-pool.js'
import {
  HttpClient,
  HttpProtocolError,
  HttpTimeoutError,
  type HttpTlsOptions,
} from '../src/http/http-client.js'
import { issueRootCaCert, issueRpcCert, issueTempCaCert } from '../src/x509/templates.js'

interface SeenRequest {
  /** which connection (1-based, in accept order) carried it */
  conn: number
  head: string
  path: string
  body: string
}

/** What the server writes back; undefined: nothing (the test handles the socket itself). */
type Respond = (
  req: SeenRequest,
  socket: Socket,
) => string | undefined | Promise<string | undefined>

interface RawServer {
  base: string
  port: number
  requests: SeenRequest[]
  /** connections accepted so far */
  readonly connections: number
  /** connections that have closed */
  readonly closed: number
  /** the most requests one connection had unanswered at once */
  readonly maxInFlightPerConn: number
  /** the most requests unanswered across all connections at once */
  readonly maxInFlight: number
  closedCount(n: number): Promise<void>
  close(): Promise<void>
}

async function rawServer(respond: Respond): Promise<RawServer> {
  const requests: SeenRequest[] = []
  const sockets = new Set<Socket>()
  let connections = 0
  let closed = 0
  let inFlight = 0
  let maxInFlight = 0
  let maxInFlightPerConn = 0
  const server = createServer((socket) => {
    const conn = ++connections
    sockets.add(socket)
    socket.on('close', () => {
      closed++
      sockets.delete(socket)
    })
    socket.on('error', () => {})
    let buf = Buffer.alloc(0)
    let mine = 0
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) return
        const head = buf.toString('latin1', 0, end)
        const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0)
        if (buf.length < end + 4 + length) return
        const body = buf.toString('utf8', end + 4, end + 4 + length)
        buf = buf.subarray(end + 4 + length)
        const req = { conn, head, path: head.split(' ')[1] ?? '', body }
        requests.push(req)
        mine++
        inFlight++
        maxInFlightPerConn = Math.max(maxInFlightPerConn, mine)
        maxInFlight = Math.max(maxInFlight, inFlight)
        Promise.resolve(respond(req, socket)).then(
          (out) => {
            mine--
            inFlight--
            if (out !== undefined && !socket.destroyed) socket.write(out, 'latin1')
          },
          (err: unknown) => socket.destroy(err as Error),
        )
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    base: `http://127.0.0.1:${port}`,
    port,
    requests,
    get connections() {
      return connections
    },
    get closed() {
      return closed
    },
    get maxInFlightPerConn() {
      return maxInFlightPerConn
    },
    get maxInFlight() {
      return maxInFlight
    },
    async closedCount(n: number) {
      for (let i = 0; i < 200; i++) {
        if (closed >= n) break
        await sleep(10)
      }
      assert.equal(closed, n, 'connections closed on the server side')
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

const ok = (body: string, extra: string[] = []) =>
  `HTTP/1.1 200 OK\r\n${[...extra, `Content-Length: ${Buffer.byteLength(body)}`].join('\r\n')}\r\n\r\n${body}`

async function withServer(
  respond: Respond,
  opts: Partial<ConstructorParameters<typeof HttpClient>[0]>,
  body: (server: RawServer, client: HttpClient) => Promise<void>,
): Promise<void> {
  const server = await rawServer(respond)
  const client = new HttpClient({ timeoutMs: 5000, maxResponseBytes: 1 << 16, ...opts })
  try {
    await body(server, client)
  } finally {
    client.close()
    await server.close()
  }
}

describe('HttpClient transport: connection reuse', () => {
  it('keeps one connection for sequential calls, sending Host, Content-Length and keep-alive', async () => {
    await withServer(
      (req) => ok(`answer to ${req.path}`),
      {},
      async (server, client) => {
        for (let i = 0; i < 5; i++) {
          const r = await client.request(`${server.base}/call/${i}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-id': String(i) },
            body: `{"i":${i}}`,
          })
          assert.equal(r.body.toString(), `answer to /call/${i}`)
        }
        assert.equal(server.connections, 1)
        const head = server.requests[0]!.head.split('\r\n')
        assert.equal(head[0], 'POST /call/0 HTTP/1.1')
        assert.ok(head.includes(`Host: 127.0.0.1:${server.port}`), head.join('|'))
        assert.ok(head.includes('content-type: application/json'))
        assert.ok(head.includes('Content-Length: 7'))
        assert.ok(head.includes('Connection: keep-alive'))
        assert.ok(!head.some((l) => /^transfer-encoding/i.test(l)))
        assert.equal(server.requests[4]!.body, '{"i":4}')
      },
    )
  })

  it('a GET has no Content-Length; a POST without a body says 0; a UTF-8 body is counted in bytes', async () => {
    await withServer(
      () => ok('x'),
      {},
      async (server, client) => {
        await client.request(`${server.base}/get?q=1`, { method: 'GET' })
        await client.request(`${server.base}/empty`, { method: 'POST' })
        await client.request(`${server.base}/utf8`, { method: 'POST', body: 'é€' })
        const [get, empty, utf8] = server.requests
        assert.ok(get!.head.startsWith('GET /get?q=1 HTTP/1.1\r\n'))
        assert.doesNotMatch(get!.head, /content-length/i)
        assert.match(empty!.head, /\r\nContent-Length: 0(\r\n|$)/)
        assert.match(utf8!.head, /\r\nContent-Length: 5(\r\n|$)/)
        assert.equal(utf8!.body, 'é€')
      },
    )
  })

  it('a response followed by extra bytes: the connection is not reused', async () => {
    await withServer(
      (req) => ok(req.path) + 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforged',
      {},
      async (server, client) => {
        assert.equal(
          (await client.request(`${server.base}/a`, { method: 'GET' })).body.toString(),
          '/a',
        )
        assert.equal(
          (await client.request(`${server.base}/b`, { method: 'GET' })).body.toString(),
          '/b',
        )
        assert.equal(server.connections, 2)
      },
    )
  })

  it('bytes arriving on an idle connection: it is closed, never read as the next answer', async () => {
    await withServer(
      (req, socket) => {
        setTimeout(() => socket.write(ok('forged')), 20)
        return ok(req.path)
      },
      {},
      async (server, client) => {
        assert.equal(
          (await client.request(`${server.base}/a`, { method: 'GET' })).body.toString(),
          '/a',
        )
        await server.closedCount(1)
        assert.equal(
          (await client.request(`${server.base}/b`, { method: 'GET' })).body.toString(),
          '/b',
        )
        assert.equal(server.connections, 2)
      },
    )
  })

  it('honours Connection: close even when the server leaves the socket open', async () => {
    await withServer(
      (req) => ok(req.path, ['Connection: close']),
      {},
      async (server, client) => {
        await client.request(`${server.base}/a`, { method: 'GET' })
        await client.request(`${server.base}/b`, { method: 'GET' })
        assert.equal(server.connections, 2)
        await server.closedCount(2)
      },
    )
  })

  it('a body that runs to the close is complete at the close, and the next call connects anew', async () => {
    await withServer(
      (req, socket) => {
        socket.end(`HTTP/1.1 200 OK\r\n\r\nuntil close ${req.path}`)
        return undefined
      },
      {},
      async (server, client) => {
        const a = await client.request(`${server.base}/a`, { method: 'GET' })
        assert.equal(a.body.toString(), 'until close /a')
        const b = await client.request(`${server.base}/b`, { method: 'GET' })
        assert.equal(b.body.toString(), 'until close /b')
        assert.equal(server.connections, 2)
      },
    )
  })

  it('keepAlive false: Connection: close on every request and a connection each', async () => {
    await withServer(
      (req) => ok(req.path),
      { keepAlive: false },
      async (server, client) => {
        for (let i = 0; i < 3; i++) await client.request(`${server.base}/${i}`, { method: 'GET' })
        assert.equal(server.connections, 3)
        for (const r of server.requests) assert.match(r.head, /\r\nConnection: close(\r\n|$)/)
        await server.closedCount(3)
      },
    )
  })

  it('a connection closed before any reply on its first use is an error, not retried', async () => {
    await withServer(
      (_req, socket) => {
        socket.end()
        return undefined
      },
      {},
      async (server, client) => {
        await assert.rejects(
          client.request(`${server.base}/x`, { method: 'POST', body: '{}' }),
          (e: unknown) =>
            e instanceof HttpProtocolError && e.message === 'connection closed before a reply',
        )
        assert.equal(server.requests.length, 1)
      },
    )
  })
})

describe('HttpClient transport: concurrency', () => {
  it('concurrent calls get their own connections and their own answers', async () => {
    // each wave's answers are held until all its requests arrived, then sent in random order
    const WAVE = 40
    let held: (() => void)[] = []
    await withServer(
      async (req) => {
        await new Promise<void>((resolve) => {
          held.push(resolve)
          if (held.length === WAVE) {
            for (const release of held) setTimeout(release, Math.floor(Math.random() * 15))
            held = []
          }
        })
        return ok(`id=${req.path.slice(1)}`)
      },
      {},
      async (server, client) => {
        for (let wave = 0; wave < 3; wave++) {
          const ids = Array.from({ length: WAVE }, (_, i) => `${wave}-${i}`)
          const replies = await Promise.all(
            ids.map((id) => client.request(`${server.base}/${id}`, { method: 'POST', body: id })),
          )
          assert.deepEqual(
            replies.map((r) => r.body.toString()),
            ids.map((id) => `id=${id}`),
          )
        }
        assert.equal(server.maxInFlightPerConn, 1, 'never two requests on one connection')
        assert.equal(server.maxInFlight, WAVE)
        for (const r of server.requests) assert.equal(r.body, r.path.slice(1))
      },
    )
  })

  const maxSocketsCases = [
    { name: 'extra calls wait their turn on the same connections', keepAlive: true, maxSockets: 2 },
    { name: 'applies without keep-alive too', keepAlive: false, maxSockets: 1 },
  ]
  for (const { name, keepAlive, maxSockets } of maxSocketsCases) {
    it(`maxSockets ${name}`, async () => {
      await withServer(
        async (req) => {
          await sleep(20)
          return ok(req.path)
        },
        { maxSockets, keepAlive },
        async (server, client) => {
          const paths = Array.from({ length: 3 * maxSockets }, (_, i) => `/${i}`)
          const replies = await Promise.all(
            paths.map((p) => client.request(`${server.base}${p}`, { method: 'GET' })),
          )
          assert.deepEqual(
            replies.map((r) => r.body.toString()),
            paths,
          )
          // kept alive, the same connections carry every call; otherwise each call has its own
          assert.equal(server.connections, keepAlive ? maxSockets : paths.length)
          assert.equal(server.maxInFlight, maxSockets)
        },
      )
    })
  }

  it('a call that timed out on a maxSockets connection frees its place', async () => {
    await withServer(
      async (req) => {
        await sleep(req.path === '/slow' ? 400 : 0)
        return ok(req.path)
      },
      { maxSockets: 1, timeoutMs: 150 },
      async (server, client) => {
        await assert.rejects(
          client.request(`${server.base}/slow`, { method: 'GET' }),
          HttpTimeoutError,
        )
        const next = await client.request(`${server.base}/next`, { method: 'GET' })
        assert.equal(next.body.toString(), '/next')
        assert.equal(server.connections, 2)
      },
    )
  })
})

describe('HttpClient transport: failures close the connection', () => {
  it('the deadline destroys the connection', async () => {
    await withServer(
      () => new Promise<undefined>(() => {}),
      { timeoutMs: 150 },
      async (server, client) => {
        await assert.rejects(
          client.request(`${server.base}/x`, { method: 'GET' }),
          HttpTimeoutError,
        )
        await server.closedCount(1)
      },
    )
  })

  it('a framing error destroys the connection', async () => {
    await withServer(
      () => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n',
      {},
      async (server, client) => {
        await assert.rejects(
          client.request(`${server.base}/x`, { method: 'GET' }),
          (e: unknown) =>
            e instanceof HttpProtocolError && e.message === 'unsupported Transfer-Encoding',
        )
        await server.closedCount(1)
      },
    )
  })

  it('refuses to send a header that could split the request', async () => {
    await withServer(
      () => ok('x'),
      {},
      async (server, client) => {
        const refused: Record<string, string>[] = [
          { 'x-a': 'v\r\nInjected: 1' },
          { 'x-a': 'v\nInjected: 1' },
          { 'x-a\r\nInjected': 'v' },
          { 'bad name': 'v' },
          { 'transfer-encoding': 'chunked' },
        ]
        for (const headers of refused) {
          await assert.rejects(
            client.request(`${server.base}/x`, { method: 'POST', headers, body: '{}' }),
            (e: unknown) => e instanceof Error && (e as { code?: string }).code === 'KMS_ERR_HTTP',
          )
        }
        assert.equal(server.connections, 0, 'nothing was sent')
      },
    )
  })
})

describe('HttpClient transport: TLS names', () => {
  it('sends the host name as SNI and checks the certificate against it; an IP literal gets no SNI', async () => {
    const caKey = P256Key.generate()
    const ca = issueRootCaCert(caKey)
    const serverKey = P256Key.generate()
    const cert = issueRpcCert('localhost', serverKey, { key: caKey, subjectDer: ca.subjectDer })
    const sni: (string | false | null)[] = []
    const server = createHttpsServer({ key: serverKey.pkcs8Pem(), cert: cert.pem }, (req, res) => {
      sni.push((req.socket as TLSSocket).servername)
      res.end('ok')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    const client = new HttpClient({ timeoutMs: 5000, maxResponseBytes: 1024, tls: { ca: ca.pem } })
    try {
      const byName = await client.request(`https://localhost:${port}/`, { method: 'GET' })
      assert.equal(byName.body.toString(), 'ok')
      assert.deepEqual(byName.peerCertDer, cert.der)
      // the certificate names localhost only: by IP the name check refuses it
      await assert.rejects(
        client.request(`https://127.0.0.1:${port}/`, { method: 'GET' }),
        /IP: 127\.0\.0\.1 is not in the cert's list/,
      )
      assert.deepEqual(sni, ['localhost'])
      const insecure = new HttpClient({
        timeoutMs: 5000,
        maxResponseBytes: 1024,
        tls: { rejectUnauthorized: false },
      })
      try {
        await insecure.request(`https://127.0.0.1:${port}/`, { method: 'GET' })
      } finally {
        insecure.close()
      }
      assert.deepEqual(sni, ['localhost', false])
    } finally {
      client.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe('HttpClient transport: TLS session resumption', () => {
  const caKey = P256Key.generate()
  const ca = issueRootCaCert(caKey)
  const serverKey = P256Key.generate()
  const cert = issueRpcCert('localhost', serverKey, { key: caKey, subjectDer: ca.subjectDer })

  interface Seen {
    reused: boolean
    /** SHA-256 fingerprint of the client certificate the server saw */
    client: string | undefined
  }
  /** An HTTPS server naming localhost only; it asks for a client certificate but takes none too. */
  async function tlsServer(extra: ServerOptions = {}, port = 0) {
    const seen: Seen[] = []
    const server = createHttpsServer(
      {
        key: serverKey.pkcs8Pem(),
        cert: cert.pem,
        requestCert: true,
        rejectUnauthorized: false,
        ...extra,
      },
      (req, res) => {
        const socket = req.socket as TLSSocket
        const client = socket.getPeerX509Certificate()?.fingerprint256
        seen.push({ reused: socket.isSessionReused(), client })
        res.end('ok')
      },
    )
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    return {
      port: (server.address() as AddressInfo).port,
      seen,
      ticketKeys: server.getTicketKeys(),
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections()
          server.close(() => resolve())
        }),
    }
  }
  // one connection per request, so that every request is a new handshake
  const oneShot = (tls: HttpTlsOptions) =>
    new HttpClient({ timeoutMs: 5000, maxResponseBytes: 1024, keepAlive: false, tls })
  const get = (client: HttpClient, url: string) => client.request(url, { method: 'GET' })

  for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`a new connection to the same origin resumes the last session (${maxVersion})`, async () => {
      const server = await tlsServer({ maxVersion })
      const client = oneShot({ ca: ca.pem })
      try {
        for (let i = 0; i < 3; i++) {
          const r = await get(client, `https://localhost:${server.port}/`)
          assert.deepEqual(r.peerCertDer, cert.der, 'the server certificate, resumed or not')
        }
        assert.deepEqual(
          server.seen.map((s) => s.reused),
          [false, true, true],
        )
      } finally {
        client.close()
        await server.close()
      }
    })

    // a resumed handshake checks neither the chain nor the name again, so a session made for
    // one host name must never be offered to another, nor one from a refused handshake kept
    it(`a session is not offered to another host name of the same server (${maxVersion})`, async () => {
      const server = await tlsServer({ maxVersion })
      const client = oneShot({ ca: ca.pem })
      try {
        await get(client, `https://localhost:${server.port}/`)
        for (let i = 0; i < 2; i++) {
          await assert.rejects(
            get(client, `https://127.0.0.1:${server.port}/`),
            /IP: 127\.0\.0\.1 is not in the cert's list/,
          )
        }
        await get(client, `https://localhost:${server.port}/`)
        assert.deepEqual(
          server.seen.map((s) => s.reused),
          [false, true],
        )
      } finally {
        client.close()
        await server.close()
      }
    })
  }

  it('a session is not offered under other trust anchors or another client certificate', async () => {
    const server = await tlsServer()
    const url = `https://localhost:${server.port}/`
    const [keyA, keyB] = [P256Key.generate(), P256Key.generate()]
    const [certA, certB] = [issueTempCaCert(keyA), issueTempCaCert(keyB)]
    const a = oneShot({ ca: ca.pem, cert: certA.pem, key: keyA.pkcs8Pem() })
    const b = oneShot({ ca: ca.pem, cert: certB.pem, key: keyB.pkcs8Pem() })
    const otherCa = oneShot({ ca: issueRootCaCert(P256Key.generate()).pem })
    try {
      await get(a, url)
      await get(a, url)
      await get(b, url)
      // the other root has the same name: the chain fails on its signature
      await assert.rejects(get(otherCa, url), /certificate signature failure/)
      const fingerprint = (der: Buffer) => new X509Certificate(der).fingerprint256
      assert.deepEqual(server.seen, [
        { reused: false, client: fingerprint(certA.der) },
        { reused: true, client: fingerprint(certA.der) },
        { reused: false, client: fingerprint(certB.der) },
      ])
    } finally {
      for (const c of [a, b, otherCa]) c.close()
      await server.close()
    }
  })

  it('a session whose handshake failed is not offered again', async () => {
    const first = await tlsServer()
    const { port, ticketKeys } = first
    const client = oneShot({ ca: ca.pem })
    const url = `https://localhost:${port}/`
    try {
      await get(client, url)
      await first.close()
      // the same port now answers the ClientHello with bytes that are no TLS
      const garbage = createServer((socket) => {
        // reading, so that the client's close ends it
        socket.on('error', () => {}).resume()
        socket.end('HTTP/1.1 400 Bad Request\r\n\r\n')
      })
      await new Promise<void>((resolve) => garbage.listen(port, '127.0.0.1', resolve))
      await assert.rejects(get(client, url), /wrong version number|packet length too long/)
      await new Promise((resolve) => garbage.close(resolve))
      // a server that could resume the first session (same ticket keys) gets a full handshake
      const second = await tlsServer({ ticketKeys }, port)
      try {
        await get(client, url)
        await get(client, url)
        assert.deepEqual(
          second.seen.map((s) => s.reused),
          [false, true],
        )
      } finally {
        await second.close()
      }
    } finally {
      client.close()
    }
  })
})

describe('ConnectionPool', () => {
  it('a withdrawn waiter is never handed a connection', async () => {
    const server = await rawServer(() => undefined)
    const pool = new ConnectionPool({
      keepAlive: true,
      maxSockets: 1,
      maxIdle: 16,
      idleTimeoutMs: 10_000,
    })
    const origin = { key: 'http://test', tls: false, host: '127.0.0.1', port: server.port }
    try {
      let first: Connection | undefined
      pool.acquire(origin, false, (_err, c) => (first = c))
      assert.ok(first !== undefined)
      let handed = 0
      const withdraw = pool.acquire(origin, false, () => handed++)
      assert.equal(handed, 0, 'the second waits at maxSockets')
      withdraw()
      pool.release(first, true)
      assert.equal(handed, 0)
      assert.ok(pool.isIdle(first), 'the connection went idle instead')
      let third: Connection | undefined
      pool.acquire(origin, false, (_err, c) => (third = c))
      assert.equal(third, first, 'and is reused')
    } finally {
      pool.close()
      await server.close()
    }
  })

  it('closes an idle connection after the idle timeout', async () => {
    const server = await rawServer(() => undefined)
    const pool = new ConnectionPool({ keepAlive: true, maxIdle: 16, idleTimeoutMs: 100 })
    const origin = { key: 'http://test', tls: false, host: '127.0.0.1', port: server.port }
    try {
      const conn = await new Promise<Connection>((resolve, reject) =>
        pool.acquire(origin, false, (err, c) => (err === undefined ? resolve(c!) : reject(err))),
      )
      await new Promise((resolve) => conn.socket.once('connect', resolve))
      pool.release(conn, true)
      assert.ok(pool.isIdle(conn))
      await server.closedCount(1)
      assert.ok(conn.dead)
      assert.equal(pool.isIdle(conn), false)
    } finally {
      pool.close()
      await server.close()
    }
  })

  it('keeps at most maxIdle connections per origin', async () => {
    const server = await rawServer(() => undefined)
    const pool = new ConnectionPool({ keepAlive: true, maxIdle: 2, idleTimeoutMs: 10_000 })
    const origin = { key: 'http://test', tls: false, host: '127.0.0.1', port: server.port }
    try {
      const conns = await Promise.all(
        [0, 1, 2, 3].map(
          () =>
            new Promise<Connection>((resolve, reject) =>
              pool.acquire(origin, false, (err, c) =>
                err === undefined ? resolve(c!) : reject(err),
              ),
            ),
        ),
      )
      await Promise.all(
        conns.map((c) => new Promise((resolve) => c.socket.once('connect', resolve))),
      )
      for (const c of conns) pool.release(c, true)
      assert.deepEqual(
        conns.map((c) => pool.isIdle(c)),
        [true, true, false, false],
      )
      await server.closedCount(2)
    } finally {
      pool.close()
      await server.close()
    }
  })
})
