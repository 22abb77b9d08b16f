// What every listener shares with upstream's Rocket servers: `/health`
// (docs/design.md#health-on-every-listener), Rocket's Shield headers, the optional `X-App-Version`,
// and the default 404 catcher.
import { Buffer } from 'node:buffer'
import type { FastifyInstance } from 'fastify'

export interface CommonHttpOptions {
  /** set → `X-App-Version` on every response, 404s included (main listener only) */
  appVersion?: string
}

/** Rocket's Shield defaults (no HSTS: the fairing only adds it when configured). */
export const SHIELD_HEADERS: Readonly<Record<string, string>> = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'SAMEORIGIN',
  'permissions-policy': 'interest-cohort=()',
}

const NOT_FOUND_JSON = `{
  "error": {
    "code": 404,
    "reason": "Not Found",
    "description": "The requested resource could not be found."
  }
}`

const NOT_FOUND_HTML = `<!DOCTYPE html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <meta name="color-scheme" content="light dark">
    <title>404 Not Found</title>
</head>
<body align="center">
    <div role="main" align="center">
        <h1>404: Not Found</h1>
        <p>The requested resource could not be found.</p>
        <hr />
    </div>
    <div role="contentinfo" align="center">
        <small>Rocket</small>
    </div>
</body>
</html>`

interface AcceptEntry {
  readonly top: string
  readonly sub: string
  readonly params: number
  readonly weight: number | null
}

function parseAccept(header: string): AcceptEntry[] | null {
  const entries: AcceptEntry[] = []
  for (const part of header.split(',')) {
    if (part.trim() === '') continue
    const [mediaType = '', ...params] = part.split(';').map((p) => p.trim())
    const slash = mediaType.indexOf('/')
    const top = mediaType.slice(0, slash).toLowerCase()
    const sub = mediaType.slice(slash + 1).toLowerCase()
    if (slash <= 0 || sub === '') return null
    let weight: number | null = null
    for (const p of params) {
      const eq = p.indexOf('=')
      if (eq > 0 && p.slice(0, eq).trim().toLowerCase() === 'q') {
        const q = Number(p.slice(eq + 1).trim())
        if (!Number.isFinite(q)) return null
        weight = q
      }
    }
    entries.push({ top, sub, params: params.length, weight })
  }
  return entries
}

/** Rocket's `Accept::preferred()`: unweighted beats weighted, then higher q, then more specific,
 * then more parameters; otherwise the earlier entry stays. */
function preferredMediaType(entries: readonly AcceptEntry[]): AcceptEntry | undefined {
  let preferred = entries[0]
  if (preferred === undefined) return undefined
  const specificity = (m: AcceptEntry): number => (m.top !== '*' ? 1 : 0) + (m.sub !== '*' ? 1 : 0)
  for (const m of entries.slice(1)) {
    if (m.weight === null && preferred.weight !== null) preferred = m
    else if ((m.weight ?? 0) > (preferred.weight ?? 1)) preferred = m
    else if (specificity(m) > specificity(preferred)) preferred = m
    else if (m.top === preferred.top && m.sub === preferred.sub && m.params > preferred.params) {
      preferred = m
    }
  }
  return preferred
}

/** Whether Rocket's default catcher would answer JSON for this Accept header. */
export function acceptPrefersJson(accept: string | undefined): boolean {
  if (accept === undefined) return false
  const entries = parseAccept(accept)
  if (entries === null) return false
  const preferred = preferredMediaType(entries)
  return preferred !== undefined && preferred.top === 'application' && preferred.sub === 'json'
}

/** Upstream's `X-App-Version` format: `v<version> (git:<20 hex>[-modified])` from
 * `git describe --always --abbrev=20 --dirty=-modified`, or `v<version> (unknown)`. */
export function appVersionString(version: string, gitCommit?: string, modified?: boolean): string {
  if (gitCommit === undefined || gitCommit === '') return `v${version} (unknown)`
  return `v${version} (git:${gitCommit.slice(0, 20)}${modified === true ? '-modified' : ''})`
}

/** Registers the shared surface (before `ready()`; it may come before or after the pRPC plugin).
 * It owns the root not-found handler, so nothing else may set one. */
export function registerCommonHttp(app: FastifyInstance, opts: CommonHttpOptions): void {
  const appVersion = opts.appVersion
  const headers: Record<string, string> = { ...SHIELD_HEADERS }
  if (appVersion !== undefined && appVersion !== '') headers['x-app-version'] = appVersion
  // callback style: an async hook costs a promise and a microtask on every request
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(headers)
    done()
  })

  app.route({
    method: ['GET', 'HEAD'],
    url: '/health',
    exposeHeadRoute: false,
    handler: async (_request, reply) =>
      reply.code(200).header('content-type', 'text/plain; charset=utf-8').send(Buffer.from('OK')),
  })

  app.setNotFoundHandler(async (request, reply) => {
    const json = acceptPrefersJson(request.headers.accept)
    return reply
      .code(404)
      .header('content-type', json ? 'application/json' : 'text/html; charset=utf-8')
      .send(Buffer.from(json ? NOT_FOUND_JSON : NOT_FOUND_HTML, 'utf8'))
  })
}
