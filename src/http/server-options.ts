// Fastify instances for every listener, HTTP or HTTPS, with one set of server settings and the
// listener's resource limits (docs/design.md#resource-limits-on-every-listener): a slow or idle
// client must not pin a connection, a file descriptor or memory forever.
import Fastify, {
  LogController,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify'
import {
  createServer as createHttpServer,
  type Server as HttpServer,
  type ServerOptions as HttpOptions,
} from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import {
  createServer as createHttpsServer,
  type Server as HttpsServer,
  type ServerOptions as HttpsOptions,
} from 'node:https'
import type { TLSSocket } from 'node:tls'
import type { Logger } from 'pino'
import { KmsError } from '../errors.js'
import { CountsByKey } from '../util/counts-by-key.js'

/** Request log lines carry the path without the query string: a GET pRPC call puts its whole
 * request there, and `ClearImageCache?token=…` must not end up in the logs. */
function requestLogFields(req: {
  method?: string
  url?: string
  socket?: { remoteAddress?: string }
}): Record<string, unknown> {
  const url = req.url ?? ''
  const q = url.indexOf('?')
  return {
    method: req.method,
    url: q === -1 ? url : `${url.slice(0, q)}?…`,
    remoteAddress: req.socket?.remoteAddress,
  }
}

/** Every error answered by the HTTP layer itself has the pRPC error shape, `{"error": "…"}`. */
export function errorJson(message: string): Buffer {
  return Buffer.from(JSON.stringify({ error: message }, null, 2), 'utf8')
}

const CLIENT_ERRORS: Readonly<Record<string, [number, string, string]>> = {
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', 'request headers too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'request timed out'],
}

/** Malformed requests Node refuses before any route runs (bad syntax, oversized headers, a
 * request timeout): answered in the error shape, then the connection is closed. Anything else
 * reaching here is no HTTP request at all (a failed or timed-out TLS handshake, a reset): the
 * connection is cut, as Node does without a handler; an HTTP answer queued on a TLS session that
 * never came up would keep the connection open until the client leaves. */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  const code = err.code ?? ''
  const answer =
    CLIENT_ERRORS[code] ??
    (code.startsWith('HPE_') ? [400, 'Bad Request', 'malformed request'] : undefined)
  if (answer === undefined || !socket.writable) {
    socket.destroy()
    return
  }
  const [status, reason, message] = answer
  const body = errorJson(message)
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\n` +
      `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body.toString('utf8')}`,
  )
}

function baseServerOptions(listenerLogger: Logger, closeAll: boolean): FastifyServerOptions {
  return {
    // Fastify's own refusals (an undecodable URL, a bad Content-Type) in the error shape
    frameworkErrors: (error, _request, reply) => {
      const plain = reply as FastifyReply
      plain.code(400).header('content-type', 'application/json').send(errorJson(error.message))
    },
    clientErrorHandler: answerClientError,
    // Closing never waits for idle keep-alive connections; with closeAll (the onboarding
    // listener, closed right after Finish has been answered) busy ones are cut as well.
    forceCloseConnections: closeAll ? true : 'idle',
    loggerInstance: listenerLogger,
    // Every request shares the listener's logger instead of a child per request carrying its
    // `reqId` (a pino child per request was ~2% of a worker on the hot paths); the lines that
    // name a request add `reqId` themselves.
    childLoggerFactory: (shared) => shared,
    // one line per request (logRequests below) instead of Fastify's two: logging was ~9% of a
    // worker's CPU on the hot paths. Said through a LogController: the top-level option of the
    // same name prints a deprecation warning at every start.
    logController: new LogController({ disableRequestLogging: true }),
    // the pRPC layer reads raw bodies itself, with its own per-method limits
    bodyLimit: 16 * 1024 * 1024,
    return503OnClosing: true,
  }
}

/** What one listener tolerates from its clients, in milliseconds, counts and bytes; kms.toml's
 * `[limits]` table resolves to this shape. */
export interface ListenerLimits {
  /** for a request head to arrive, counted from its first byte (or from the connection) */
  readonly headersTimeoutMs: number
  /** for a whole request, head and body, to arrive */
  readonly requestTimeoutMs: number
  /** a kept-alive connection idle between requests */
  readonly keepAliveTimeoutMs: number
  /** a connection without traffic in either direction */
  readonly idleTimeoutMs: number
  /** requests one kept-alive connection may carry; 0 = no limit */
  readonly maxRequestsPerSocket: number
  /** for a TLS handshake to finish, however slowly its bytes trickle in */
  readonly tlsHandshakeTimeoutMs: number
  /** open connections of the listener: below the fd limit the systemd unit sets (LimitNOFILE),
   * leaving room for outbound work (webhook, PCCS) and the process's other listener */
  readonly maxConnections: number
  /** open connections of one source address on the listener */
  readonly maxConnectionsPerSource: number
  /** size of a request head (request line and headers) */
  readonly maxHeaderBytes: number
}

export interface ListenerOptions {
  limits: ListenerLimits
  /** on close, also cut connections that are busy (default: only idle ones) */
  closeAllConnections?: boolean
}

/** Node checks the head and request deadlines of open connections on an interval (30 s by
 * default), so a deadline is met up to one interval late: a quarter of the shorter deadline keeps
 * that lateness at 25%. */
function deadlineCheckInterval(limits: ListenerLimits): number {
  const shorter = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs)
  return Math.min(30_000, Math.max(100, Math.floor(shorter / 4)))
}

/** Connections past the listener's or the source's cap are closed as they arrive, before any
 * HTTP work (and, on HTTPS, before the handshake's first byte is read) is spent on them. */
function capConnections(server: HttpServer | HttpsServer, limits: ListenerLimits): void {
  server.maxConnections = limits.maxConnections
  const perSource = limits.maxConnectionsPerSource
  const open = new CountsByKey()
  server.on('connection', (socket: Socket) => {
    const source = socket.remoteAddress ?? ''
    if (open.get(source) + 1 > perSource) {
      socket.destroy()
      return
    }
    open.add(source, 1)
    socket.once('close', () => open.subtract(source, 1))
  })
}

export interface TlsListenerOptions {
  tls: HttpsOptions
  /** inspects each TLS connection after the handshake (client-certificate policy) */
  onSecureConnection?: (socket: TLSSocket) => void
}

/** The Node server under a listener, plain HTTP (`tls` null) or HTTPS, with every limit set:
 * created here rather than by Fastify, which applies only some of them and only to servers it
 * creates itself. */
function createNodeServer(
  tls: TlsListenerOptions | null,
  limits: ListenerLimits,
): HttpServer | HttpsServer {
  const options: HttpOptions = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionsCheckingInterval: deadlineCheckInterval(limits),
    maxHeaderSize: limits.maxHeaderBytes,
  }
  // Node's handshakeTimeout is one deadline from the connection, not an idle timer: a
  // ClientHello trickled byte by byte is cut at it too.
  const server =
    tls === null
      ? createHttpServer(options)
      : createHttpsServer({
          ...tls.tls,
          ...options,
          handshakeTimeout: limits.tlsHandshakeTimeoutMs,
        })
  server.keepAliveTimeout = limits.keepAliveTimeoutMs
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket
  server.setTimeout(limits.idleTimeoutMs)
  capConnections(server, limits)
  if (tls?.onSecureConnection !== undefined) server.on('secureConnection', tls.onSecureConnection)
  return server
}

/** A Fastify instance on a plain HTTP (`tls` null) or HTTPS server with the listener's limits. */
export function createFastify(
  logger: Logger,
  tls: TlsListenerOptions | null,
  listener: ListenerOptions,
): FastifyInstance {
  const server = createNodeServer(tls, listener.limits)
  const listenerLogger = logger.child({}, { serializers: { req: requestLogFields } })
  return logRequests(
    listenerLogger,
    Fastify({
      ...baseServerOptions(listenerLogger, listener.closeAllConnections === true),
      // https.Server carries every http.Server member Fastify uses; Fastify's typings model
      // HTTPS only through an overload that our shared plugins are not generic over.
      serverFactory: (handler) => {
        server.on('request', handler)
        return server as HttpServer
      },
    }),
  )
}

declare module 'fastify' {
  interface FastifyRequest {
    /** see markRoutineRequest */
    routineRequest: boolean
  }
}

/** Marks a request as routine (a public, read-only RPC that releases nothing): when it succeeds
 * its `request completed` line is logged at debug, not info. On the hot GetAppEnvEncryptPubKey
 * path that line was the largest cost of ours per request; failures and every key-releasing RPC
 * keep their line at info. */
export function markRoutineRequest(request: FastifyRequest): void {
  request.routineRequest = true
}

/** Something told of every finished response of a listener (after its request log line). */
export type ResponseObserver = (request: FastifyRequest, reply: FastifyReply) => void

const responseObservers = new WeakMap<FastifyInstance, ResponseObserver[]>()

/** Adds `observer` to the one onResponse hook of a listener made by createFastify: each
 * onResponse hook costs a request ~4 µs of worker CPU (measured), so the listener has one. */
export function observeResponses(app: FastifyInstance, observer: ResponseObserver): void {
  const observers = responseObservers.get(app)
  if (observers === undefined) {
    throw new KmsError('KMS_ERR_INTERNAL', 'observeResponses needs a listener from createFastify')
  }
  observers.push(observer)
}

function logRequests(logger: Logger, app: FastifyInstance): FastifyInstance {
  app.decorateRequest('routineRequest', false)
  const observers: ResponseObserver[] = []
  responseObservers.set(app, observers)
  app.addHook('onResponse', (request, reply, done) => {
    const level = reply.statusCode < 400 && request.routineRequest ? 'debug' : 'info'
    if (logger.isLevelEnabled(level)) {
      logger[level](
        {
          reqId: request.id,
          req: request.raw,
          res: { statusCode: reply.statusCode },
          responseTime: reply.elapsedTime,
        },
        'request completed',
      )
    }
    for (const observe of observers) observe(request, reply)
    done()
  })
  return app
}

export function listenUrl(scheme: 'http' | 'https', address: string, port: number): string {
  const host = address.includes(':') ? `[${address}]` : address
  return `${scheme}://${host}:${port}`
}
