// The receiver's pRPC client for a source KMS (upstream `ra_rpc::client::RaClient` as used by
// `kms/src/onboard_service.rs` `Keys::onboard`): `POST <base>/<Method>?json`, no Content-Type,
// connect timeout 5 s, total 60 s, HTTP/1.1, a non-200 reply becomes
// `Request failed with status=<status>, error=<body>`.
//
// Stricter than upstream: every connection is made by hand (tls.connect), the server certificate
// is inspected once the handshake is done and before a single request byte is written, and after
// the first connection every later one must present the very SPKI verified on the first. A
// man-in-the-middle that swaps certificates between connection A and B is caught before it can
// receive the receiver's RA-TLS client certificate or hand back keys.
import { request } from 'node:http'
import { connect, type TLSSocket } from 'node:tls'
import { KmsError } from '../errors.js'

export const SOURCE_CONNECT_TIMEOUT_MS = 5_000
export const SOURCE_TOTAL_TIMEOUT_MS = 60_000
/** GetKmsKey and GetTempCaCert replies are a few PEMs; a megabyte is far more than any of them. */
export const SOURCE_MAX_REPLY_BYTES = 1024 * 1024

export interface SourceClientOptions {
  connectTimeoutMs?: number
  totalTimeoutMs?: number
  maxReplyBytes?: number
}

export interface ClientIdentity {
  certPem: string
  keyPem: string
}

/** What a connection's server certificate must satisfy before the request is sent. */
export type PeerCheck = (peerCertDer: Buffer | null) => void | Promise<void>

/** A transport failure (refused, reset, timed out): the source may come back, so auto-onboard
 * retries on these and on nothing else. */
export class SourceUnreachableError extends KmsError {
  constructor(message: string, cause?: unknown) {
    super('KMS_ERR_RPC', message, { cause })
    this.name = 'SourceUnreachableError'
  }
}

/** True when `err` (or an error it wraps, e.g. `Failed to onboard: …`) is a transport failure. */
export function isUnreachableCause(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 16; depth++) {
    if (e instanceof SourceUnreachableError) return true
    e = e.cause
  }
  return false
}

/** upstream `onboard`: trailing `/` trimmed, `/prpc` appended unless already there. */
export function normalizeSourceUrl(sourceUrl: string): string {
  const trimmed = sourceUrl.replace(/\/+$/, '')
  return trimmed.endsWith('/prpc') ? trimmed : `${trimmed}/prpc`
}

interface Target {
  host: string
  port: number
  servername: string | undefined
  basePath: string
}

function parseTarget(baseUrl: string): Target {
  let url: URL
  try {
    url = new URL(baseUrl)
  } catch {
    throw new KmsError('KMS_ERR_RPC', `invalid source KMS URL: ${JSON.stringify(baseUrl)}`)
  }
  // A plain-HTTP source presents no certificate at all, which is exactly upstream's first check.
  if (url.protocol === 'http:') {
    throw new KmsError('KMS_ERR_RPC', 'Source KMS did not present a TLS certificate')
  }
  if (url.protocol !== 'https:') {
    throw new KmsError('KMS_ERR_RPC', `unsupported source KMS URL scheme ${url.protocol}`)
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  return {
    host,
    port: url.port === '' ? 443 : Number(url.port),
    // SNI carries names, never IP literals
    servername: /^[\d.]+$/.test(host) || host.includes(':') ? undefined : host,
    basePath: url.pathname.replace(/\/+$/, ''),
  }
}

export class SourceClient {
  readonly baseUrl: string
  readonly #target: Target
  readonly #connectTimeoutMs: number
  readonly #totalTimeoutMs: number
  readonly #maxReplyBytes: number

  constructor(baseUrl: string, opts: SourceClientOptions = {}) {
    this.baseUrl = baseUrl
    this.#target = parseTarget(baseUrl)
    this.#connectTimeoutMs = opts.connectTimeoutMs ?? SOURCE_CONNECT_TIMEOUT_MS
    this.#totalTimeoutMs = opts.totalTimeoutMs ?? SOURCE_TOTAL_TIMEOUT_MS
    this.#maxReplyBytes = opts.maxReplyBytes ?? SOURCE_MAX_REPLY_BYTES
  }

  /** `POST <base>/<method>?json` on a fresh connection whose server certificate passed `check`;
   * returns the parsed JSON reply. */
  async call(
    method: string,
    body: unknown,
    check: PeerCheck,
    identity?: ClientIdentity,
  ): Promise<unknown> {
    const url = `${this.baseUrl}/${method}?json`
    const deadline = Date.now() + this.#totalTimeoutMs
    const socket = await this.#connect(url, identity)
    try {
      const peer = socket.getPeerX509Certificate()
      await check(peer === undefined ? null : peer.raw)
      const remaining = deadline - Date.now()
      if (remaining <= 0) {
        throw new SourceUnreachableError(
          `error sending request for url (${url}): operation timed out`,
        )
      }
      const reply = await this.#exchange(socket, url, method, JSON.stringify(body), remaining)
      if (reply.status !== 200) {
        throw new KmsError(
          'KMS_ERR_RPC',
          `Request failed with status=${reply.statusText}, error=${reply.body.toString('utf8')}`,
        )
      }
      const text = reply.body.toString('utf8')
      try {
        return text === '' ? null : (JSON.parse(text) as unknown)
      } catch (err) {
        throw new KmsError('KMS_ERR_RPC', `error decoding response body: ${(err as Error).message}`)
      }
    } finally {
      socket.destroy()
    }
  }

  #connect(url: string, identity: ClientIdentity | undefined): Promise<TLSSocket> {
    const { host, port, servername } = this.#target
    return new Promise((resolve, reject) => {
      const socket = connect({
        host,
        port,
        ...(servername === undefined ? {} : { servername }),
        // the server's identity is its attestation, checked by the caller's PeerCheck
        rejectUnauthorized: false,
        ALPNProtocols: ['http/1.1'],
        ...(identity === undefined ? {} : { cert: identity.certPem, key: identity.keyPem }),
      })
      const timer = setTimeout(() => {
        socket.destroy()
        reject(
          new SourceUnreachableError(
            `error sending request for url (${url}): connect timed out after ${this.#connectTimeoutMs} ms`,
          ),
        )
      }, this.#connectTimeoutMs)
      socket.once('secureConnect', () => {
        clearTimeout(timer)
        socket.removeAllListeners('error')
        resolve(socket)
      })
      socket.once('error', (err) => {
        clearTimeout(timer)
        socket.destroy()
        reject(
          new SourceUnreachableError(`error sending request for url (${url}): ${err.message}`, err),
        )
      })
    })
  }

  #exchange(
    socket: TLSSocket,
    url: string,
    method: string,
    body: string,
    timeoutMs: number,
  ): Promise<{ status: number; statusText: string; body: Buffer }> {
    const { basePath, host, port } = this.#target
    const payload = Buffer.from(body, 'utf8')
    const maxBytes = this.#maxReplyBytes
    return new Promise((resolve, reject) => {
      const fail = (err: Error) => {
        clearTimeout(timer)
        reject(
          err instanceof KmsError
            ? err
            : new SourceUnreachableError(
                `error sending request for url (${url}): ${err.message}`,
                err,
              ),
        )
      }
      const req = request(
        {
          method: 'POST',
          path: `${basePath}/${method}?json`,
          headers: {
            host: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`,
            'content-length': String(payload.length),
          },
          // the already verified socket; nothing else may carry this request
          createConnection: () => socket,
        },
        (res) => {
          const chunks: Buffer[] = []
          let size = 0
          res.on('data', (chunk: Buffer) => {
            size += chunk.length
            if (size > maxBytes) {
              req.destroy(
                new KmsError('KMS_ERR_RPC', `source KMS reply is larger than ${maxBytes} bytes`),
              )
              return
            }
            chunks.push(chunk)
          })
          res.on('end', () => {
            clearTimeout(timer)
            const status = res.statusCode ?? 0
            const phrase = res.statusMessage ?? ''
            resolve({
              status,
              statusText: phrase === '' ? String(status) : `${status} ${phrase}`,
              body: Buffer.concat(chunks),
            })
          })
          res.on('error', fail)
        },
      )
      const timer = setTimeout(
        () => req.destroy(new Error(`operation timed out after ${timeoutMs} ms`)),
        timeoutMs,
      )
      req.on('error', fail)
      req.end(payload)
    })
  }
}
