// The main KMS worker's listeners: HTTPS with optional-but-verified client certificates
// (docs/design.md#trust-model) and, when enabled, the plain-HTTP admin listener on loopback
// (docs/design.md#two-ways-to-authorize-clearimagecache).
import { constants as cryptoConstants } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { createAdminAuthenticator, registerAdminAuthHook } from '../admin/header-auth.js'
import type { KmsConfig } from '../config/types.js'
import { registerCommonHttp, appVersionString } from '../http/common.js'
import { createFastify } from '../http/server-options.js'
import { registerPrpc, type BodyBudget } from '../prpc/plugin.js'
import { VERSION } from '../version.js'
import type { ClientCertVerifier } from './client-cert.js'
import { LocalMetricsStore, registerMetrics, type MetricsStore } from './metrics.js'
import { adminMethods, kmsMethods } from './routes.js'
import type { KmsService } from './service.js'
import { loadListenerTls } from './state.js'

/** Public, read-only RPCs answered from memory: a success is logged at debug. */
const ROUTINE_METHODS: ReadonlySet<string> = new Set(['GetAppEnvEncryptPubKey', 'GetMeta'])

export interface KmsAppOptions {
  config: KmsConfig
  service: KmsService
  logger: Logger
  /** verifies the attestation of presented client certificates (main listener only) */
  clientCerts: ClientCertVerifier
  /** where /metrics counts (default: this process only) */
  metrics?: MetricsStore
  /** the process's ceiling on buffered request bodies, shared with the admin listener */
  bodyBudget: BodyBudget
}

export async function buildKmsApp(opts: KmsAppOptions): Promise<FastifyInstance> {
  const { config, service, logger, clientCerts } = opts
  const tls = loadListenerTls(config.rpc.tls)
  const mandatory = config.rpc.tls.mutual.mandatory
  const app = createFastify(
    logger,
    {
      tls: {
        key: tls.key,
        cert: tls.cert,
        ca: tls.ca,
        requestCert: true,
        // A client without a certificate is welcome unless mandatory; a client with one that does
        // not chain to the temp CA is not (checked right after the handshake).
        rejectUnauthorized: mandatory,
        ALPNProtocols: ['http/1.1'],
        minVersion: 'TLSv1.2',
        // A connection's client certificate is read and checked once (ClientCertVerifier keeps
        // it per connection), so a TLS 1.2 renegotiation must not swap it; upstream's rustls
        // has no renegotiation either. No stateless session tickets: OpenSSL serialises the
        // session, the guest's ~6 KB RA-TLS certificate included, into two tickets after every
        // handshake (~20% of the server's CPU per new connection, measured), and a guest makes
        // a new certificate, hence a new connection, for every boot: nobody resumes.
        secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION | cryptoConstants.SSL_OP_NO_TICKET,
      },
      onSecureConnection: (socket) => {
        // an authorized connection presented a certificate that chains: nothing to read here
        if (socket.authorized) return
        const peer = socket.getPeerX509Certificate()
        if (peer !== undefined) {
          logger.warn(
            { reason: String(socket.authorizationError), subject: peer.subject },
            'rejected a client certificate that does not chain to the temp CA',
          )
          socket.destroy()
        }
      },
    },
    { limits: config.limits },
  )
  registerCommonHttp(app, { appVersion: appVersionString(VERSION) })
  if (config.core.metrics.enabled) registerMetrics(app, opts.metrics ?? new LocalMetricsStore())
  await registerPrpc(app, {
    servicePrefix: 'KMS.',
    methods: kmsMethods(service),
    limits: config.rpc.limits,
    preDispatch: async (request) => clientCerts.context(request.raw.socket),
    bodyBudget: opts.bodyBudget,
    failureLog: { logger, message: 'rpc failed' },
    routineMethods: ROUTINE_METHODS,
  })
  return app
}

export async function buildAdminApp(
  opts: Pick<KmsAppOptions, 'config' | 'service' | 'logger' | 'bodyBudget'>,
): Promise<FastifyInstance> {
  const { config, service, logger } = opts
  const auth = createAdminAuthenticator(config.core.admin)
  if (auth.mode === 'insecure') {
    logger.warn('admin API authentication is DISABLED (core.admin.insecure_no_auth = true)')
  }
  const app = createFastify(logger.child({ listener: 'admin' }), null, { limits: config.limits })
  registerAdminAuthHook(app, auth)
  registerCommonHttp(app, {})
  await registerPrpc(app, {
    servicePrefix: 'Admin.',
    methods: adminMethods(service),
    bodyBudget: opts.bodyBudget,
    failureLog: { logger, message: 'admin rpc failed' },
  })
  return app
}
