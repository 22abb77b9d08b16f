// The onboarding worker's listener
// (docs/design.md#onboarding-over-https-with-an-ephemeral-certificate): the page, the Onboard pRPC
// service, /finish and /health.
import fastifyStatic from '@fastify/static'
import type { FastifyInstance } from 'fastify'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { KmsError, errorMessage } from '../errors.js'
import { toBootstrapResponse } from '../keys/bootstrap-info.js'
import { registerCommonHttp } from '../http/common.js'
import { decidePath } from '../http/request-path.js'
import { createFastify } from '../http/server-options.js'
import {
  AttestationInfoResponseType,
  BootstrapRequestType,
  BootstrapResponseType,
  InspectSourceRequestType,
  InspectSourceResponseType,
  OnboardRequestType,
  OnboardResponseType,
} from '../prpc/messages.js'
import {
  defineMethod,
  encodeErrorBody,
  registerPrpc,
  type AnyRpcMethod,
  type BodyBudget,
} from '../prpc/plugin.js'
import type { LimitsConfig } from '../config/types.js'
import { UI_DIR } from '../paths.js'
import type { EphemeralTls } from './ephemeral-tls.js'
import type { OnboardService } from './service.js'
import { caCertFingerprint } from './replicate.js'

export interface OnboardAppOptions {
  service: OnboardService
  logger: Logger
  /** null = plain HTTP (`[core.onboard] tls = false`, upstream's transport) */
  tls: EphemeralTls | null
  /** called once the reply to Finish (RPC or GET /finish) has been sent */
  onFinish(): void
  /** what the listener tolerates from its clients ([limits]) */
  limits: LimitsConfig
  /** the process's ceiling on buffered request bodies */
  bodyBudget: BodyBudget
}

function onboardMethods(
  service: OnboardService,
  tls: EphemeralTls | null,
  requestFinish: () => void,
): Record<string, AnyRpcMethod<undefined>> {
  return {
    Bootstrap: defineMethod(BootstrapRequestType, BootstrapResponseType, async (req) => {
      return toBootstrapResponse(await service.bootstrap(req.domain))
    }),
    Onboard: defineMethod(OnboardRequestType, OnboardResponseType, async (req) => {
      // OnboardService.onboard validates the domain first thing
      const r = await service.onboard(req.source_url, req.domain)
      return { k256_pubkey: r.k256Pubkey }
    }),
    InspectSource: defineMethod(
      InspectSourceRequestType,
      InspectSourceResponseType,
      async (req) => {
        const { source, meta, decision } = await service.inspectSource(req.source_url)
        return {
          source_url: source.url,
          mr_aggregated: source.bootInfo.mrAggregated,
          device_id: source.bootInfo.deviceId,
          os_image_hash: source.bootInfo.osImageHash,
          tcb_status: source.bootInfo.tcbStatus,
          advisory_ids: source.bootInfo.advisoryIds,
          tee_variant: source.bootInfo.attestationMode,
          ca_cert_fingerprint: caCertFingerprint(meta.caCertPem),
          k256_pubkey: meta.k256Pubkey,
          allowed: decision.allowed,
          reason: decision.reason,
        }
      },
    ),
    GetAttestationInfo: defineMethod(null, AttestationInfoResponseType, async () => {
      const a = await service.attestationInfo()
      return {
        device_id: a.deviceId,
        mr_aggregated: a.mrAggregated,
        os_image_hash: a.osImageHash,
        attestation_mode: a.attestationMode,
        site_name: a.siteName,
        eth_rpc_url: a.ethRpcUrl,
        kms_contract_address: a.kmsContractAddress,
        ppid: a.ppid,
        onboard_cert_fingerprint: tls?.fingerprint ?? '',
      }
    }),
    Finish: defineMethod(null, null, async () => {
      await service.ensureFinishable()
      requestFinish()
      return null
    }),
  }
}

/** The onboarding endpoints are unauthenticated and change state (Bootstrap, Finish) even over
 * GET. Once an operator has accepted the self-signed certificate, any page they open could
 * drive them from the browser; browsers label such requests (Sec-Fetch-Site, Origin), so refuse
 * them. curl, scripts and the page itself send neither label or a same-origin one. */
export function isCrossSite(headers: Record<string, string | string[] | undefined>): boolean {
  const site = headers['sec-fetch-site']
  if (site === 'cross-site' || site === 'same-site') return true
  const origin = headers.origin
  const host = headers.host
  if (typeof origin !== 'string' || origin === 'null') return typeof origin === 'string'
  try {
    return new URL(origin).host !== host
  } catch {
    return true
  }
}

/** Paths that only read static content: the page, its assets and /health. Everything else on
 * this listener, including paths no route knows, gets the cross-site check. */
function isStaticRead(method: string, path: string): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false
  return path === '/' || path === '/health' || path.startsWith('/ui/')
}

/** Runs first on every request: one decision about the path for the guard and the router, and
 * ambiguous paths refused outright (see `decidePath`). */
function refuseCrossSiteRequests(app: FastifyInstance): void {
  app.addHook('onRequest', async (request, reply) => {
    const refuse = (message: string) =>
      reply
        .code(400)
        .header('content-type', 'application/json')
        .send(encodeErrorBody(true, message))
    const decision = decidePath(request.raw.url ?? '')
    if (decision.kind === 'ambiguous') {
      request.log.warn(
        { reqId: request.id, reason: decision.reason },
        'ambiguous request path refused',
      )
      return refuse('ambiguous request path refused')
    }
    if (isStaticRead(request.method, decision.path)) return
    if (!isCrossSite(request.headers)) return
    return refuse('cross-site request refused')
  })
}

/** A source checkout that was never built has no page: say so instead of serving a broken one. */
function readOnboardingPage(): Buffer {
  const path = join(UI_DIR, 'index.html')
  if (!existsSync(path)) {
    throw new KmsError(
      'KMS_ERR_CONFIG',
      `the onboarding page is not built (${path} is missing): run npm run build`,
    )
  }
  return readFileSync(path)
}

export async function buildOnboardApp(opts: OnboardAppOptions): Promise<FastifyInstance> {
  const { logger, tls } = opts
  const app = createFastify(
    logger,
    tls === null
      ? null
      : {
          tls: { key: tls.key, cert: tls.cert, ALPNProtocols: ['http/1.1'], minVersion: 'TLSv1.2' },
        },
    // closed right after Finish has been answered: nothing may hold the port for the KMS
    { limits: opts.limits, closeAllConnections: true },
  )

  // Finish replies first and stops afterwards
  // (docs/design.md#finish-replies-before-the-worker-stops): the flag is read once the reply
  // is out.
  let finishRequested = false
  let finished = false
  const requestFinish = () => {
    finishRequested = true
  }
  app.addHook('onResponse', async () => {
    if (finishRequested && !finished) {
      finished = true
      opts.onFinish()
    }
  })

  registerCommonHttp(app, {})
  refuseCrossSiteRequests(app)
  const indexHtml = readOnboardingPage()
  app.get('/', async (_request, reply) =>
    reply
      .header('content-type', 'text/html; charset=utf-8')
      // the page is self-contained; framing it elsewhere would allow clickjacking the Bootstrap
      .header('content-security-policy', "default-src 'self'; frame-ancestors 'none'")
      .send(indexHtml),
  )
  await app.register(fastifyStatic, { root: UI_DIR, prefix: '/ui/', index: false })
  app.get('/finish', async (_request, reply) => {
    try {
      await opts.service.ensureFinishable()
    } catch (err) {
      return reply
        .code(400)
        .header('content-type', 'application/json')
        .send(encodeErrorBody(true, errorMessage(err)))
    }
    requestFinish()
    return reply.header('content-type', 'text/plain; charset=utf-8').send(Buffer.from('OK'))
  })
  await registerPrpc(app, {
    servicePrefix: 'Onboard.',
    methods: onboardMethods(opts.service, tls, requestFinish),
    bodyBudget: opts.bodyBudget,
    failureLog: { logger, message: 'rpc failed' },
  })
  return app
}
