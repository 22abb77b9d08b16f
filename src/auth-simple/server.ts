// The auth-simple webhook on Fastify: the upstream Hono app's routes, replies and
// validation answers, so a KMS (ours or upstream's) cannot tell the two apart.
import { chmodSync } from 'node:fs'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { digestEquals } from '../admin/token.js'
import { errorMessage } from '../errors.js'
import { sha256Utf8 } from '../util/token-digest.js'
import { createFastify, type ListenerLimits } from '../http/server-options.js'
import { bootInfoRequestSchema, checkBoot } from './check.js'
import { AuthSimpleConfigSource } from './config.js'

export interface AuthSimpleServerOptions {
  /** the policy file, read on every request and parsed when it changed (relative paths follow
   * the working directory) */
  configPath: string
  logger: Logger
  /** what the listener tolerates from its clients ([limits]) */
  limits: ListenerLimits
  /** when set, every request must carry `Authorization: Bearer <token>`; others get 401 and
   * never reach the policy (docs/design.md#auth-simple-on-a-private-unix-socket) */
  token?: string
}

export const UNAUTHORIZED_MESSAGE = 'missing or invalid bearer token'

/** Whether an Authorization header carries the bearer token whose SHA-256 is `expected`
 * (constant time in the token: both sides are compared as digests). */
function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  const m = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header)
  const presented = m?.[1] ?? ''
  return digestEquals(sha256Utf8(presented), expected) && presented !== ''
}

/** A BootInfo is a few hundred bytes; nothing legitimate comes near this. */
const BODY_LIMIT = 1024 * 1024

// Hono's validator: a JSON media type is parsed (malformed → 400 text); any other body is
// validated as `{}`, which then fails on the required keys.
const JSON_MEDIA_TYPE = /^application\/([a-z-.]+\+)?json(;\s*[a-zA-Z0-9-]+=([^;]+))*$/

export function buildAuthSimpleServer(opts: AuthSimpleServerOptions): FastifyInstance {
  const app = createFastify(opts.logger, null, { limits: opts.limits })
  const source = new AuthSimpleConfigSource(opts.configPath, app.log)
  const loadConfig = () => source.load()

  if (opts.token !== undefined) {
    // hashed once here; each request hashes only what it presents
    const expected = sha256Utf8(opts.token)
    app.addHook('onRequest', async (req, reply) => {
      if (bearerMatches(req.headers.authorization, expected)) return
      app.log.warn({ url: req.url.split('?')[0] }, 'refused a request without the bearer token')
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .send({ error: UNAUTHORIZED_MESSAGE })
    })
  }

  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_req, body, done) =>
    done(null, body),
  )

  app.get('/', async (_req, reply) => {
    try {
      const cfg = loadConfig()
      return {
        status: 'ok',
        kmsContractAddr: cfg.kmsContractAddr,
        gatewayAppId: cfg.gatewayAppId,
        chainId: cfg.chainId,
        // older KMS releases read this name
        appAuthImplementation: cfg.appImplementation,
        appImplementation: cfg.appImplementation,
      }
    } catch (err) {
      app.log.error({ err }, 'error in health check:')
      return reply.code(500).send({ status: 'error', message: errorMessage(err) })
    }
  })

  const bootAuth = (isKms: boolean) => {
    const label = isKms ? 'KMS' : 'app'
    return async (req: FastifyRequest, reply: FastifyReply) => {
      let input: unknown = {}
      const type = req.headers['content-type']
      if (type !== undefined && JSON_MEDIA_TYPE.test(type)) {
        try {
          input = JSON.parse(typeof req.body === 'string' ? req.body : '')
        } catch {
          return reply
            .code(400)
            .type('text/plain; charset=UTF-8')
            .send('Malformed JSON in request body')
        }
      }
      const parsed = bootInfoRequestSchema.safeParse(input)
      if (!parsed.success) {
        // @hono/zod-validator answers with the whole safeParse result; a ZodError serialises
        // as {issues, name}
        return reply.code(400).send({ success: false, error: parsed.error })
      }
      const bootInfo = parsed.data
      try {
        app.log.info(
          isKms
            ? {
                osImageHash: bootInfo.osImageHash,
                mrAggregated: bootInfo.mrAggregated,
                instanceId: bootInfo.instanceId,
              }
            : {
                appId: bootInfo.appId,
                composeHash: bootInfo.composeHash,
                instanceId: bootInfo.instanceId,
              },
          `${label} boot auth request:`,
        )
        const result = checkBoot(loadConfig(), bootInfo, isKms)
        app.log.info(result, `${label} boot auth result:`)
        return result
      } catch (err) {
        // a failing check is a denial, never an open door
        app.log.error({ err }, `error in ${label} boot auth:`)
        return { isAllowed: false, gatewayAppId: '', reason: errorMessage(err) }
      }
    }
  }

  app.post('/bootAuth/app', bootAuth(false))
  app.post('/bootAuth/kms', bootAuth(true))
  return app
}

/** Listens on `socket` (claimed with claimSocketPath first) and makes it mode 0600: the
 * directory already keeps everyone else out; the socket's own mode says the same. */
export async function listenOnSocket(app: FastifyInstance, socket: string): Promise<void> {
  await app.listen({ path: socket })
  chmodSync(socket, 0o600)
}
