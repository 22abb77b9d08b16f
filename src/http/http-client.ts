// The one outbound HTTP(S) client: the auth webhook, the PCCS collateral source, the guest-agent
// client and the guest's KMS client all go through it. Persistent keep-alive connections (the
// global fetch showed up as ~45% of a worker's CPU on GetAppKey), one deadline over the whole
// exchange (redirects included) so a server trickling bytes cannot stall a boot, and a cap on the
// reply size so a hostile server cannot make us buffer gigabytes. It speaks HTTP/1.1 itself over
// its own connection pool: node:http's ClientRequest/Agent cost about five times the CPU of the
// exchange proper, twice per key release (two auth-webhook calls per GetAppKey).
import { type IncomingHttpHeaders, STATUS_CODES } from 'node:http'
import { KmsError } from '../errors.js'
import { BoundedCache } from '../util/bounded-cache.js'
import {
  type Connection,
  ConnectionClosedError,
  ConnectionPool,
  type HttpTlsOptions,
  type Origin,
} from './connection-pool.js'
import { Http1ResponseParser, HttpProtocolError } from './http1-response.js'

export type { HttpTlsOptions } from './connection-pool.js'
export { HttpProtocolError, HttpReplyTooLargeError } from './http1-response.js'

export interface HttpReply {
  status: number
  /** `<code> <reason phrase>` as Rust's reqwest renders a status (e.g. `500 Internal Server Error`) */
  statusText: string
  /** lower-case names, as node:http delivers them */
  headers: IncomingHttpHeaders
  body: Buffer
  /** the URL that answered (differs from the one asked when a redirect was followed) */
  url: string
  /** the server's certificate (DER) on https: URLs */
  peerCertDer?: Buffer
}

export interface HttpClientOptions {
  /** the deadline over one whole exchange: connect, redirects, request and reply */
  timeoutMs: number
  maxResponseBytes: number
  /** when set, every request goes over this unix socket; the URL gives only path and Host */
  socketPath?: string
  tls?: HttpTlsOptions
  /** connections kept open between requests (default true) */
  keepAlive?: boolean
  /** connections per origin (default: unbounded, like node:http) */
  maxSockets?: number
  /** how many redirects are followed (default 0: a 3xx answer is the reply) */
  maxRedirects?: number
}

export interface HttpRequest {
  method: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string | Buffer
}

/** Raised when the deadline passes. Named like the platform's own timeout errors, so callers
 * that also see those can tell all of them by `name`. */
export class HttpTimeoutError extends KmsError {
  constructor(readonly timeoutMs: number) {
    super('KMS_ERR_TIMEOUT', `timed out after ${timeoutMs} ms`)
    this.name = 'TimeoutError'
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])

/** Distinct URL strings a client keeps parsed: its callers ask a handful of fixed URLs (the auth
 * webhook's two, the PCCS's few per platform), and a lookup (~0.1 µs) costs a fraction of parsing
 * the URL and building its origin (~0.5 µs) on every call. */
const MAX_PARSED_URLS = 32

/** A URL as an exchange needs it (shared by every request to that URL: never changed). */
interface Target {
  readonly href: string
  readonly isHttps: boolean
  readonly origin: Origin
  /** the Host header as node:http sends it: the URL's host, with the port when not the default */
  readonly host: string
  /** the request line's target: path and query */
  readonly path: string
}

/** idle connections kept per origin, as node:http's Agent kept by default here */
const MAX_IDLE_PER_ORIGIN = 16
/** An idle connection is closed after this long: below the usual server keep-alive timeouts
 * (Node's 5 s, nginx's 75 s, Rocket's 5 s), so a reuse rarely meets a server-side close. */
const IDLE_TIMEOUT_MS = 4000

// RFC 9110 token; field values as node:http accepts them (no CR, LF, NUL or other controls)
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
// eslint-disable-next-line no-control-regex -- a byte range, not a typo
const ASCII = /^[\x00-\x7f]*$/

export class HttpClient {
  readonly #opts: HttpClientOptions
  readonly #keepAlive: boolean
  readonly #pool: ConnectionPool
  readonly #targets = new BoundedCache<Target>(MAX_PARSED_URLS)

  constructor(opts: HttpClientOptions) {
    this.#opts = opts
    this.#keepAlive = opts.keepAlive ?? true
    this.#pool = new ConnectionPool({
      keepAlive: this.#keepAlive,
      maxIdle: MAX_IDLE_PER_ORIGIN,
      idleTimeoutMs: IDLE_TIMEOUT_MS,
      ...(opts.maxSockets === undefined ? {} : { maxSockets: opts.maxSockets }),
      ...(opts.tls === undefined ? {} : { tls: opts.tls }),
    })
  }

  async request(url: string, req: HttpRequest): Promise<HttpReply> {
    const { timeoutMs, maxRedirects = 0 } = this.#opts
    const deadline = Date.now() + timeoutMs
    let target = this.#targets.get(url)
    if (target === undefined) {
      target = this.#target(new URL(url))
      this.#targets.set(url, target)
    }
    let current = req
    for (let hop = 0; ; hop++) {
      let reply: HttpReply
      try {
        reply = await this.#exchange(target, current, deadline)
      } catch (err) {
        // A pooled keep-alive socket the server closed just as we reused it fails before any
        // reply byte; nothing reached the handler, so one retry on a fresh socket is safe.
        if (!(err instanceof StaleSocketError)) throw err
        reply = await this.#exchange(target, current, deadline, true)
      }
      const location = reply.headers.location
      if (!REDIRECTS.has(reply.status) || location === undefined || hop >= maxRedirects) {
        return reply
      }
      target = this.#target(new URL(location, target.href))
      // 303 (and, as every browser and fetch do, 301/302 after a POST) turns into a bodiless GET
      if (reply.status !== 307 && reply.status !== 308 && current.method === 'POST') {
        current = { method: 'GET', ...(current.headers ? { headers: current.headers } : {}) }
      }
    }
  }

  #target(url: URL): Target {
    const isHttps = url.protocol === 'https:'
    if (!isHttps && url.protocol !== 'http:') {
      throw new Error(`unsupported URL scheme ${url.protocol}`)
    }
    const { socketPath } = this.#opts
    const hostname = url.hostname
    return {
      href: url.href,
      isHttps,
      origin: {
        key: `${url.protocol}//${url.host}`,
        tls: isHttps,
        host: hostname.startsWith('[') ? hostname.slice(1, -1) : hostname,
        port: url.port === '' ? (isHttps ? 443 : 80) : Number(url.port),
        ...(socketPath === undefined ? {} : { socketPath }),
      },
      host: url.host,
      path: url.pathname + url.search,
    }
  }

  #exchange(target: Target, req: HttpRequest, deadline: number, fresh = false): Promise<HttpReply> {
    // the retry after a stale pooled socket goes out on a one-off connection
    const closeAfter = fresh || !this.#keepAlive
    let message: string | Buffer
    try {
      message = requestMessage(target, req, closeAfter)
    } catch (err) {
      return Promise.reject(err)
    }
    const { timeoutMs, maxResponseBytes } = this.#opts
    const { isHttps, origin } = target
    const pool = this.#pool
    return new Promise<HttpReply>((resolve, reject) => {
      const parser = new Http1ResponseParser({ maxBodyBytes: maxResponseBytes })
      let conn: Connection | undefined
      let settled = false
      // set once the pool has the request queued (acquire may answer before it returns)
      let withdraw = (): void => {}
      const fail = (err: Error): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        withdraw()
        if (conn !== undefined) pool.release(conn, false)
        reject(err)
      }
      // before any reply byte on a reused connection: the server closed it as we reused it
      const failOrStale = (err: Error): void => {
        const code = (err as NodeJS.ErrnoException).code
        const closed =
          code === 'ECONNRESET' ||
          code === 'EPIPE' ||
          err instanceof ConnectionClosedError ||
          err instanceof NoReplyError
        const reused = conn !== undefined && conn.uses > 0
        fail(reused && parser.received === 0 && closed ? new StaleSocketError(err) : err)
      }
      const finish = (c: Connection): void => {
        settled = true
        clearTimeout(timer)
        const h = parser.head!
        const peerCertDer = isHttps ? c.peerCertDer : undefined
        pool.release(c, !closeAfter && parser.reusable)
        const phrase = h.reason !== '' ? h.reason : (STATUS_CODES[h.status] ?? '')
        resolve({
          status: h.status,
          statusText: phrase === '' ? String(h.status) : `${h.status} ${phrase}`,
          headers: h.headers,
          body: parser.body(),
          url: target.href,
          ...(peerCertDer === undefined ? {} : { peerCertDer }),
        })
      }
      const timer = setTimeout(
        () => fail(new HttpTimeoutError(timeoutMs)),
        Math.max(0, deadline - Date.now()),
      )
      withdraw = pool.acquire(origin, fresh, (err, c) => {
        if (err !== undefined || c === undefined) {
          fail(err ?? new Error('no connection'))
          return
        }
        if (settled) {
          // the deadline passed while this request waited for its turn
          pool.release(c, true)
          return
        }
        conn = c
        c.attach({
          onData: (chunk) => {
            try {
              parser.push(chunk)
            } catch (e) {
              fail(e as Error)
              return
            }
            if (parser.done) finish(c)
          },
          onEnd: () => {
            if (parser.received === 0) {
              failOrStale(new NoReplyError())
              return
            }
            try {
              parser.end()
            } catch (e) {
              fail(e as Error)
              return
            }
            finish(c)
          },
          onError: failOrStale,
        })
        // one write, one syscall: the request is small
        if (typeof message === 'string') c.socket.write(message, 'latin1')
        else c.socket.write(message)
      })
    })
  }

  close(): void {
    this.#pool.close()
  }
}

/** The request line, header block and body, refusing any header that could split the head.
 * Host as node:http sends it (the URL's host, with the port when not the default); a body always
 * goes with its Content-Length, never chunked. A string when it is all ASCII (the usual JSON
 * webhook call), bytes otherwise. */
function requestMessage(target: Target, req: HttpRequest, close: boolean): string | Buffer {
  let host: string | undefined = target.host
  let fields = ''
  const given = req.headers
  if (given !== undefined) {
    for (const name in given) {
      const value = given[name]!
      if (!HEADER_NAME.test(name)) {
        throw new KmsError('KMS_ERR_HTTP', `invalid header name ${JSON.stringify(name)}`)
      }
      if (!HEADER_VALUE.test(value)) {
        throw new KmsError('KMS_ERR_HTTP', `invalid character in header ${JSON.stringify(name)}`)
      }
      const lower = name.toLowerCase()
      if (lower === 'content-length') continue
      if (lower === 'transfer-encoding' || lower === 'connection') {
        throw new KmsError('KMS_ERR_HTTP', `the client sets ${name} itself`)
      }
      if (lower === 'host') host = undefined
      fields += `${name}: ${value}\r\n`
    }
  }
  let head = `${req.method} ${target.path} HTTP/1.1\r\n`
  if (host !== undefined) head += `Host: ${host}\r\n`
  head += fields
  const body = req.body
  const textBody = typeof body === 'string' && ASCII.test(body)
  const length = body === undefined ? undefined : textBody ? body.length : Buffer.byteLength(body)
  if (length !== undefined) head += `Content-Length: ${length}\r\n`
  else if (req.method === 'POST') head += 'Content-Length: 0\r\n'
  head += `Connection: ${close ? 'close' : 'keep-alive'}\r\n\r\n`
  // header values are sent as latin1, as node:http does; ASCII text is the same in latin1 and UTF-8
  if (body === undefined || textBody) return textBody ? head + body : head
  return Buffer.concat([
    Buffer.from(head, 'latin1'),
    typeof body === 'string' ? Buffer.from(body) : body,
  ])
}

/** The server closed the connection (EOF) before sending a byte of its reply. */
class NoReplyError extends HttpProtocolError {
  constructor() {
    super('connection closed before a reply')
  }
}

/** A reused keep-alive socket was closed by the server before any reply arrived. */
class StaleSocketError extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause })
    this.name = 'StaleSocketError'
  }
}

/** One header's value as a single string (repeated headers joined like the fetch API does). */
export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()]
  return Array.isArray(v) ? v.join(', ') : v
}
