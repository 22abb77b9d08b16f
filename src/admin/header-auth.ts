// Header authentication of the optional admin listener
// (docs/design.md#two-ways-to-authorize-clearimagecache), the decision list of upstream HEAD's
// shared API authenticator with the KMS settings: realm "dstack-kms admin", token header
// X-Admin-Token, no `?token=` query form.
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyInstance } from 'fastify'
import type { AdminConfig } from '../config/types.js'
import { ADMIN_NO_AUTH_MESSAGE, resolveAdminToken } from '../config/validate.js'
import { KmsError } from '../errors.js'
import { loadHtpasswd, verifyBcrypt } from './htpasswd.js'
import { trimLikeRust } from '../util/rust-text.js'
import { sha256Utf8 } from '../util/token-digest.js'
import { digestEquals } from './token.js'

export const ADMIN_REALM = 'dstack-kms admin'
export const WWW_AUTHENTICATE = `Basic realm="${ADMIN_REALM}"`

export interface AdminAuthenticator {
  /** `insecure` = `insecure_no_auth`: every request passes (the caller logs a warning) */
  readonly mode: 'enforced' | 'insecure'
  /** `rawHeaders` (from `IncomingMessage`), when given, supplies the first value of a repeated
   * header, as upstream reads it; `headers` joins repeats with ", ". */
  authenticate(headers: IncomingHttpHeaders, rawHeaders?: readonly string[]): Promise<boolean>
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Node hands header values over as latin1 strings; upstream hashes the UTF-8 text. Values that
 * are not UTF-8 count as absent. */
function headerText(value: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  if (/[^\u0000-\u00ff]/.test(value)) return value // not from the wire (e.g. app.inject)
  try {
    return utf8.decode(Buffer.from(value, 'latin1'))
  } catch {
    return undefined
  }
}

function firstHeader(
  headers: IncomingHttpHeaders,
  rawHeaders: readonly string[] | undefined,
  name: string,
): string | undefined {
  let value: string | undefined
  if (rawHeaders !== undefined) {
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      if (rawHeaders[i]?.toLowerCase() === name) {
        value = rawHeaders[i + 1]
        break
      }
    }
  } else {
    const v = headers[name]
    value = Array.isArray(v) ? v[0] : v
  }
  return value === undefined ? undefined : headerText(value)
}

/** Strict standard base64 with canonical padding (Rust `base64::STANDARD`); Node's decoder is
 * lenient, so the value must re-encode to itself. */
function decodeBase64Strict(text: string): Buffer | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined
  const bytes = Buffer.from(text, 'base64')
  return bytes.toString('base64') === text ? bytes : undefined
}

function decodeBasic(encoded: string): { user: string; password: string } | undefined {
  const bytes = decodeBase64Strict(encoded)
  if (bytes === undefined) return undefined
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    return undefined
  }
  const colon = text.indexOf(':')
  if (colon < 0) return { user: text, password: '' }
  return { user: text.slice(0, colon), password: text.slice(colon + 1) }
}

/** Builds the authenticator at start-up; throws KMS_ERR_CONFIG when the listener would be open
 * by accident (no token, no htpasswd, no explicit `insecure_no_auth`) or the htpasswd file does
 * not load. Call it only when `[core.admin] enabled`. */
export function createAdminAuthenticator(
  cfg: AdminConfig,
  env: NodeJS.ProcessEnv = process.env,
): AdminAuthenticator {
  if (cfg.insecureNoAuth) {
    return { mode: 'insecure', authenticate: async () => true }
  }
  const token = resolveAdminToken(cfg, env)
  if (token === '' && cfg.htpasswdFile === '') {
    throw new KmsError('KMS_ERR_CONFIG', ADMIN_NO_AUTH_MESSAGE)
  }
  const digests = token === '' ? [] : [sha256Utf8(token)]
  const htpasswd = cfg.htpasswdFile === '' ? undefined : loadHtpasswd(cfg.htpasswdFile)

  const verifyToken = (candidate: string): boolean => {
    const digest = sha256Utf8(candidate)
    // no early exit: every configured digest is compared
    return digests.reduce((ok, expected) => digestEquals(digest, expected) || ok, false)
  }

  const verifyBasic = async (user: string, password: string): Promise<boolean> => {
    const hash = htpasswd?.get(user)
    if (hash !== undefined && (await verifyBcrypt(password, hash))) return true
    // Upstream keeps the old dashboard aliases: `user:<token>` and `<token>:`.
    return verifyToken(password) || (password === '' && verifyToken(user))
  }

  return {
    mode: 'enforced',
    async authenticate(headers, rawHeaders) {
      const adminToken = firstHeader(headers, rawHeaders, 'x-admin-token')
      if (adminToken !== undefined && verifyToken(adminToken)) return true
      const authorization = firstHeader(headers, rawHeaders, 'authorization')
      if (authorization !== undefined) {
        // Both schemes are final decisions; the prefixes are case-sensitive, as upstream's.
        if (authorization.startsWith('Bearer ')) {
          return verifyToken(trimLikeRust(authorization.slice('Bearer '.length)))
        }
        if (authorization.startsWith('Basic ')) {
          const basic = decodeBasic(trimLikeRust(authorization.slice('Basic '.length)))
          if (basic !== undefined) return verifyBasic(basic.user, basic.password)
        }
      }
      return false
    },
  }
}

function isOpenRoute(method: string, url: string): boolean {
  const q = url.indexOf('?')
  const path = q < 0 ? url : url.slice(0, q)
  return method === 'GET' && path === '/health'
}

/** Guards every route of `app` (register it before the routes): a denied request gets 401 with
 * the Basic challenge and an empty body from `onRequest`, before its body is read or parsed, as
 * upstream's fairing does. `GET /health` stays open (docs/design.md#health-on-every-listener). */
export function registerAdminAuthHook(app: FastifyInstance, auth: AdminAuthenticator): void {
  app.addHook('onRequest', async (request, reply) => {
    if (isOpenRoute(request.method, request.url)) return
    if (await auth.authenticate(request.headers, request.raw.rawHeaders)) return
    return reply.code(401).header('WWW-Authenticate', WWW_AUTHENTICATE).send()
  })
}
