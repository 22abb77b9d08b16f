// The one outbound HTTP(S) client: the auth webhook, the PCCS collateral source, the guest-agent
// client and the guest's KMS client all go through it. Persistent keep-alive connections (the
// global fetch showed up as ~45% of a worker's CPU on GetAppKey), one deadline over the whole
// exchange (redirects included) so a server trickling bytes cannot stall a boot, and a cap on the
// reply size so a hostile server cannot make us buffer gigabytes.
import {
  Agent as HttpAgent,
  type IncomingHttpHeaders,
  type IncomingMessage,
  STATUS_CODES,
  request as httpRequest,
} from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { TLSSocket } from 'node:tls'
import { KmsError } from '../errors.js'

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

export interface HttpTlsOptions {
  /** trust anchors (PEM) replacing the system store */
  ca?: string
  /** client certificate and key (PEM) for mutual TLS */
  cert?: string
  key?: string
  /** false: the server's certificate is not checked (a deliberate, documented use only) */
  rejectUnauthorized?: boolean
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
  readonly timeoutMs: number
  constructor(ms: number) {
    super('KMS_ERR_TIMEOUT', `timed out after ${ms} ms`)
    this.name = 'TimeoutError'
    this.timeoutMs = ms
  }
}

/** Raised when a reply (declared or streamed) is larger than `maxResponseBytes`. */
export class HttpReplyTooLargeError extends KmsError {
  readonly limit: number
  constructor(limit: number) {
    super('KMS_ERR_PAYLOAD_TOO_LARGE', `response larger than ${limit} bytes`)
    this.name = 'HttpReplyTooLargeError'
    this.limit = limit
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])

export class HttpClient {
  readonly #opts: HttpClientOptions
  readonly #http: HttpAgent
  readonly #https: HttpsAgent

  constructor(opts: HttpClientOptions) {
    this.#opts = opts
    const keepAlive = opts.keepAlive ?? true
    const pool = {
      keepAlive,
      maxFreeSockets: 16,
      ...(opts.maxSockets === undefined ? {} : { maxSockets: opts.maxSockets }),
    }
    this.#http = new HttpAgent(pool)
    this.#https = new HttpsAgent(pool)
  }

  async request(url: string, req: HttpRequest): Promise<HttpReply> {
    const { timeoutMs, maxRedirects = 0 } = this.#opts
    const deadline = Date.now() + timeoutMs
    let target = new URL(url)
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
      target = new URL(location, target)
      // 303 (and, as every browser and fetch do, 301/302 after a POST) turns into a bodiless GET
      if (reply.status !== 307 && reply.status !== 308 && current.method === 'POST') {
        current = { method: 'GET', ...(current.headers ? { headers: current.headers } : {}) }
      }
    }
  }

  #exchange(target: URL, req: HttpRequest, deadline: number, fresh = false): Promise<HttpReply> {
    const isHttps = target.protocol === 'https:'
    if (!isHttps && target.protocol !== 'http:') {
      return Promise.reject(new Error(`unsupported URL scheme ${target.protocol}`))
    }
    const body =
      req.body === undefined
        ? undefined
        : typeof req.body === 'string'
          ? Buffer.from(req.body, 'utf8')
          : req.body
    const headers: Record<string, string> = { ...req.headers }
    if (body !== undefined) headers['content-length'] = String(body.length)
    const { timeoutMs, maxResponseBytes, socketPath, tls } = this.#opts
    return new Promise<HttpReply>((resolve, reject) => {
      let settled = false
      const fail = (err: Error): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        r.destroy()
        reject(err)
      }
      let replied = false
      const onReply = (res: IncomingMessage): void => {
        replied = true
        const status = res.statusCode ?? 0
        const declared = Number(res.headers['content-length'] ?? NaN)
        if (Number.isFinite(declared) && declared > maxResponseBytes) {
          fail(new HttpReplyTooLargeError(maxResponseBytes))
          return
        }
        const peerCertDer = isHttps
          ? (res.socket as TLSSocket).getPeerX509Certificate?.()?.raw
          : undefined
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (chunk: Buffer) => {
          size += chunk.length
          if (size > maxResponseBytes) {
            fail(new HttpReplyTooLargeError(maxResponseBytes))
            return
          }
          chunks.push(chunk)
        })
        res.on('end', () => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          const phrase = res.statusMessage ?? STATUS_CODES[status] ?? ''
          resolve({
            status,
            statusText: phrase === '' ? String(status) : `${status} ${phrase}`,
            headers: res.headers,
            body: Buffer.concat(chunks),
            url: target.href,
            ...(peerCertDer === undefined ? {} : { peerCertDer }),
          })
        })
        res.on('error', fail)
        res.on('close', () => {
          if (!res.complete) fail(new Error('connection closed mid-reply'))
        })
      }
      const r = (isHttps ? httpsRequest : httpRequest)(
        target,
        {
          method: req.method,
          headers,
          // the retry after a stale pooled socket must not draw another pooled one
          agent: fresh ? false : isHttps ? this.#https : this.#http,
          ...(socketPath === undefined ? {} : { socketPath }),
          ...(isHttps && tls !== undefined ? tls : {}),
        },
        onReply,
      )
      const timer = setTimeout(
        () => fail(new HttpTimeoutError(timeoutMs)),
        Math.max(0, deadline - Date.now()),
      )
      r.on('error', (err: NodeJS.ErrnoException) => {
        const stale =
          !replied && r.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')
        fail(stale ? new StaleSocketError(err) : err)
      })
      r.end(body)
    })
  }

  close(): void {
    this.#http.destroy()
    this.#https.destroy()
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
