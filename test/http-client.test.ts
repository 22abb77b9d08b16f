// The shared outbound HTTP client against real servers on loopback: TCP, a unix socket and
// mutual TLS; redirects; the whole-exchange deadline and the reply cap.
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { TLSSocket } from 'node:tls'
import { P256Key } from '../src/crypto/p256.js'
import { HttpClient, HttpReplyTooLargeError, HttpTimeoutError } from '../src/http/http-client.js'
import { issueRootCaCert, issueRpcCert, issueTempCaCert } from '../src/x509/templates.js'
import { tempDir } from './helpers/temp-dir.js'

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void

const routes: Record<string, Handler> = {
  '/echo': (req, body, res) =>
    res.writeHead(200, { 'x-seen': `${req.method} ${req.headers.host}` }).end(body),
  '/see-other': (_req, _body, res) => res.writeHead(303, { location: '/echo' }).end(),
  '/keep-method': (_req, _body, res) => res.writeHead(307, { location: '/echo' }).end(),
  '/loop': (_req, _body, res) => res.writeHead(302, { location: '/loop' }).end(),
  '/trickle': (_req, _body, res) => {
    res.writeHead(200)
    const t = setInterval(() => res.write('.'), 50)
    res.on('close', () => clearInterval(t))
  },
  '/big': (_req, _body, res) => res.writeHead(200).end(Buffer.alloc(2048)),
  '/big-chunked': (_req, _body, res) => {
    res.writeHead(200, { 'transfer-encoding': 'chunked' })
    for (let i = 0; i < 4; i++) res.write(Buffer.alloc(512))
    res.end()
  },
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const route = routes[new URL(req.url ?? '/', 'http://x').pathname]
    if (route === undefined) res.writeHead(404).end()
    else route(req, Buffer.concat(chunks).toString('utf8'), res)
  })
}

const listen = (server: Server, at: number | string): Promise<void> =>
  new Promise((resolve) => {
    if (typeof at === 'string') server.listen(at, resolve)
    else server.listen(at, '127.0.0.1', resolve)
  })
const close = (server: Server): Promise<void> =>
  new Promise((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })

describe('HttpClient', () => {
  const plain = createServer(handle)
  const onSocket = createServer(handle)
  const socketPath = join(tempDir('kms-http-client-'), 'agent.sock')
  const caKey = P256Key.generate()
  const ca = issueRootCaCert(caKey)
  const serverKey = P256Key.generate()
  const serverCert = issueRpcCert('127.0.0.1', serverKey, { key: caKey, subjectDer: ca.subjectDer })
  const clientKey = P256Key.generate()
  const clientCert = issueTempCaCert(clientKey)
  const tls = createHttpsServer(
    {
      key: serverKey.pkcs8Pem(),
      cert: serverCert.pem,
      ca: clientCert.pem,
      requestCert: true,
      rejectUnauthorized: true,
    },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate()
      res.writeHead(200).end(peer.subject?.CN ?? '')
    },
  )
  let base = ''
  let tlsBase = ''
  const clients: HttpClient[] = []
  const client = (opts: Partial<ConstructorParameters<typeof HttpClient>[0]> = {}) => {
    const c = new HttpClient({ timeoutMs: 2000, maxResponseBytes: 1024, ...opts })
    clients.push(c)
    return c
  }

  before(async () => {
    await listen(plain, 0)
    await listen(onSocket, socketPath)
    await listen(tls, 0)
    base = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`
    tlsBase = `https://127.0.0.1:${(tls.address() as AddressInfo).port}`
  })
  after(async () => {
    for (const c of clients) c.close()
    await Promise.all([close(plain), close(onSocket), close(tls)])
  })

  it('POSTs a body and returns status, reason phrase, headers and body', async () => {
    const r = await client().request(`${base}/echo`, { method: 'POST', body: 'hello' })
    assert.equal(r.status, 200)
    assert.equal(r.statusText, '200 OK')
    assert.equal(r.headers['x-seen'], `POST ${base.slice('http://'.length)}`)
    assert.equal(r.body.toString(), 'hello')
    assert.equal(r.url, `${base}/echo`)
  })

  it('each URL of a client keeps its own path, query and Host; other schemes are refused', async () => {
    const c = client()
    const port = base.slice(base.lastIndexOf(':') + 1)
    for (let i = 0; i < 2; i++) {
      for (const url of [`${base}/echo?a=1`, `http://localhost:${port}/echo`]) {
        const r = await c.request(url, { method: 'POST', body: url })
        assert.equal(r.body.toString(), url)
        assert.equal(r.headers['x-seen'], `POST ${new URL(url).host}`)
        assert.equal(r.url, url)
      }
      await assert.rejects(c.request('ftp://localhost/echo', { method: 'GET' }), {
        message: 'unsupported URL scheme ftp:',
      })
      await assert.rejects(c.request('not a url', { method: 'GET' }), TypeError)
    }
  })

  it('talks over a unix socket, the URL giving only path and Host', async () => {
    const r = await client({ socketPath }).request('http://localhost/echo', {
      method: 'POST',
      body: '{}',
    })
    assert.equal(r.body.toString(), '{}')
    assert.equal(r.headers['x-seen'], 'POST localhost')
  })

  it('does mutual TLS with its own trust anchors and reports the server certificate', async () => {
    const r = await client({
      tls: { ca: ca.pem, cert: clientCert.pem, key: clientKey.pkcs8Pem() },
    }).request(`${tlsBase}/`, { method: 'GET' })
    assert.equal(r.body.toString(), 'Dstack Client Temp CA')
    assert.deepEqual(r.peerCertDer, serverCert.der)
    // without the anchor the server is refused
    await assert.rejects(
      client({ tls: { cert: clientCert.pem, key: clientKey.pkcs8Pem() } }).request(`${tlsBase}/`, {
        method: 'GET',
      }),
      /self-signed certificate|unable to verify|unable to get local issuer/,
    )
  })

  it('returns a redirect as the reply unless told to follow, and then follows a bounded number', async () => {
    assert.equal((await client().request(`${base}/see-other`, { method: 'GET' })).status, 303)
    const follow = client({ maxRedirects: 3 })
    const seeOther = await follow.request(`${base}/see-other`, { method: 'POST', body: 'x' })
    assert.equal(seeOther.headers['x-seen']?.toString().split(' ')[0], 'GET')
    assert.equal(seeOther.body.toString(), '')
    assert.equal(seeOther.url, `${base}/echo`)
    const kept = await follow.request(`${base}/keep-method`, { method: 'POST', body: 'x' })
    assert.equal(kept.body.toString(), 'x')
    const loop = await follow.request(`${base}/loop`, { method: 'GET' })
    assert.equal(loop.status, 302)
  })

  // a socket idle timeout would never fire here: a byte arrives every 50 ms
  it('one deadline over the whole exchange: a trickling server is cut off', async () => {
    await assert.rejects(
      client({ timeoutMs: 300, maxResponseBytes: 1 << 20 }).request(`${base}/trickle`, {
        method: 'GET',
      }),
      (e: unknown) => e instanceof HttpTimeoutError && e.message === 'timed out after 300 ms',
    )
  })

  it('refuses replies over the cap, declared or streamed', async () => {
    for (const path of ['/big', '/big-chunked']) {
      await assert.rejects(
        client().request(`${base}${path}`, { method: 'GET' }),
        (e: unknown) =>
          e instanceof HttpReplyTooLargeError && e.message === 'response larger than 1024 bytes',
      )
    }
  })
})

describe('HttpClient keep-alive', () => {
  it('retries once on a fresh socket when the server closed a pooled one as it was reused', async () => {
    // The server answers the first request of a connection and drops the connection on any
    // later one without a reply: exactly what a keep-alive race with the server's idle close
    // looks like from the client.
    const served = new WeakMap<object, number>()
    let dropped = 0
    const server = createServer((req, res) => {
      const n = served.get(req.socket) ?? 0
      served.set(req.socket, n + 1)
      if (n > 0) {
        dropped++
        req.socket.destroy()
        return
      }
      res.end('ok')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    const client = new HttpClient({ timeoutMs: 5000, maxResponseBytes: 1024 })
    try {
      const url = `http://127.0.0.1:${port}/x`
      const first = await client.request(url, { method: 'POST', body: '{}' })
      assert.equal(first.body.toString(), 'ok')
      const second = await client.request(url, { method: 'POST', body: '{}' })
      assert.equal(second.body.toString(), 'ok')
      assert.equal(dropped, 1, 'the second request went out on the pooled socket first')
    } finally {
      client.close()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
