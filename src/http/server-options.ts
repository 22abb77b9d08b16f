// Fastify instances for every listener, HTTP or HTTPS, with one set of server settings.
// Timeouts follow fastify/demo: a slow or idle client must not pin a connection forever.
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer, type ServerOptions as HttpsOptions } from 'node:https'
import type { TLSSocket } from 'node:tls'
import type { Logger } from 'pino'

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

function baseServerOptions(logger: Logger, closeAll: boolean): FastifyServerOptions {
  return {
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

export interface ListenerOptions {
  /** on close, also cut connections that are busy (default: only idle ones) */
  closeAllConnections?: boolean
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
  if (tls === null) return logRequests(Fastify(base))
  const server = createHttpsServer(tls.tls)
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

function logRequests(app: FastifyInstance): FastifyInstance {
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
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
