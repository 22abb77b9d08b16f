// Fastify instances for every listener, HTTP or HTTPS, with one set of server settings.
// Timeouts follow fastify/demo: a slow or idle client must not pin a connection forever.
import Fastify, {
  LogController,
  type FastifyInstance,
  type FastifyReply,
  type FastifyServerOptions,
} from 'fastify'
import type { Server as HttpServer } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { createServer as createHttpsServer, type ServerOptions as HttpsOptions } from 'node:https'
import type { TLSSocket } from 'node:tls'
import type { Logger } from 'pino'
import { CountsByKey } from '../util/counts-by-key.js'

const TIMEOUTS = { connectionTimeout: 120_000, requestTimeout: 60_000, keepAliveTimeout: 10_000 }

/** Request log lines carry the path without the query string: a GET pRPC call puts its whole
 * request there, and `ClearImageCache?token=…` must not end up in the logs. */
export function requestLogFields(req: {
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
 * request timeout): answered in the error shape, then the connection is closed. */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  const [status, reason, message] = CLIENT_ERRORS[err.code ?? ''] ?? [
    400,
    'Bad Request',
    'malformed request',
  ]
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const body = errorJson(message)
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\n` +
      `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body.toString('utf8')}`,
  )
}

function baseServerOptions(logger: Logger, closeAll: boolean): FastifyServerOptions {
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
    loggerInstance: logger.child({}, { serializers: { req: requestLogFields } }),
    // one line per request (logRequests below) instead of Fastify's two: logging was ~9% of a
    // worker's CPU on the hot paths. Said through a LogController: the top-level option of the
    // same name prints a deprecation warning at every start.
    logController: new LogController({ disableRequestLogging: true }),
    ...TIMEOUTS,
    // the pRPC layer reads raw bodies itself, with its own per-method limits
    bodyLimit: 16 * 1024 * 1024,
    return503OnClosing: true,
  }
}

/** Open connections one listener accepts: below the fd limit the systemd unit sets
 * (LimitNOFILE), leaving room for outbound work (webhook, PCCS) and the other listeners. */
export const MAX_CONNECTIONS = 8192
/** Open connections one source address may hold on one listener. */
export const MAX_CONNECTIONS_PER_SOURCE = 2048
/** A TLS handshake not done by then is cut (Node's default is 120 s). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000

export interface ListenerOptions {
  /** on close, also cut connections that are busy (default: only idle ones) */
  closeAllConnections?: boolean
  /** default MAX_CONNECTIONS */
  maxConnections?: number
  /** default MAX_CONNECTIONS_PER_SOURCE */
  maxConnectionsPerSource?: number
}

/** Connections past the listener's or the source's cap are closed as they arrive, before any
 * TLS or HTTP work is spent on them. */
function capConnections(server: HttpServer, listener: ListenerOptions): void {
  server.maxConnections = listener.maxConnections ?? MAX_CONNECTIONS
  const perSource = listener.maxConnectionsPerSource ?? MAX_CONNECTIONS_PER_SOURCE
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

/** A Fastify instance on plain HTTP (`tls` null) or on an HTTPS server we create ourselves, so
 * that the TLS server's events are ours to handle. */
export function createFastify(
  logger: Logger,
  tls: TlsListenerOptions | null,
  listener: ListenerOptions = {},
): FastifyInstance {
  const base = baseServerOptions(logger, listener.closeAllConnections === true)
  if (tls === null) {
    const app = Fastify(base)
    capConnections(app.server, listener)
    return logRequests(app)
  }
  const server = createHttpsServer({ handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS, ...tls.tls })
  capConnections(server as unknown as HttpServer, listener)
  // Fastify applies its timeouts only to servers it creates itself.
  server.keepAliveTimeout = TIMEOUTS.keepAliveTimeout
  server.requestTimeout = TIMEOUTS.requestTimeout
  server.setTimeout(TIMEOUTS.connectionTimeout)
  if (tls.onSecureConnection !== undefined) server.on('secureConnection', tls.onSecureConnection)
  return logRequests(
    Fastify({
      ...base,
      // https.Server carries every http.Server member Fastify uses; Fastify's typings model
      // HTTPS only through an overload that our shared plugins are not generic over.
      serverFactory: (handler) => {
        server.on('request', handler)
        return server as unknown as HttpServer
      },
    }),
  )
}

const routineRequests = new WeakSet<object>()

/** Marks a request as routine (a public, read-only RPC that releases nothing): when it succeeds
 * its `request completed` line is logged at debug, not info. On the hot GetAppEnvEncryptPubKey
 * path that line was the largest cost of ours per request; failures and every key-releasing RPC
 * keep their line at info. */
export function markRoutineRequest(raw: object): void {
  routineRequests.add(raw)
}

function logRequests(app: FastifyInstance): FastifyInstance {
  app.addHook('onResponse', async (request, reply) => {
    const level = reply.statusCode < 400 && routineRequests.has(request.raw) ? 'debug' : 'info'
    request.log[level](
      { req: request.raw, res: { statusCode: reply.statusCode }, responseTime: reply.elapsedTime },
      'request completed',
    )
  })
  return app
}

export function listenUrl(scheme: 'http' | 'https', address: string, port: number): string {
  const host = address.includes(':') ? `[${address}]` : address
  return `${scheme}://${host}:${port}`
}
