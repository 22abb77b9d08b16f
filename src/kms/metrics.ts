// /metrics: two in-memory counters over the attestation RPCs, counted from the raw
// request path in a response hook exactly as upstream does (any HTTP method, status >= 400 is a
// failure).
import type { FastifyInstance } from 'fastify'
import { observeResponses } from '../http/server-options.js'
import { stripServicePrefix } from '../prpc/plugin.js'

const COUNTED = new Set(['GetAppKey', 'GetKmsKey', 'SignCert'])

export interface MetricsTotals {
  requests: number
  failures: number
}

/** Where the counts live. With several main workers behind one port a scrape lands on any of
 * them, so the counters must be the supervisor's (see SupervisorMetricsStore); a lone process
 * keeps its own. */
export interface MetricsStore {
  add(failed: boolean): void
  totals(): Promise<MetricsTotals>
}

export class LocalMetricsStore implements MetricsStore {
  readonly counts: MetricsTotals = { requests: 0, failures: 0 }

  add(failed: boolean): void {
    this.counts.requests++
    if (failed) this.counts.failures++
  }

  async totals(): Promise<MetricsTotals> {
    return { ...this.counts }
  }
}

/** Whether a request counts, by the raw path after stripping every leading `KMS.`. */
export function isAttestationRequest(rawUrl: string): boolean {
  const q = rawUrl.indexOf('?')
  const path = q === -1 ? rawUrl : rawUrl.slice(0, q)
  if (!path.startsWith('/prpc/')) return false
  // the raw segment, not percent-decoded, exactly as upstream's hook sees it
  return COUNTED.has(stripServicePrefix(path.slice('/prpc/'.length), 'KMS.'))
}

export function renderMetrics(t: MetricsTotals): string {
  return (
    '# HELP dstack_kms_attestation_requests_total Total number of KMS attestation requests.\n' +
    '# TYPE dstack_kms_attestation_requests_total counter\n' +
    `dstack_kms_attestation_requests_total ${t.requests}\n` +
    '# HELP dstack_kms_attestation_failures_total Total number of failed KMS attestation requests.\n' +
    '# TYPE dstack_kms_attestation_failures_total counter\n' +
    `dstack_kms_attestation_failures_total ${t.failures}\n`
  )
}

export function registerMetrics(app: FastifyInstance, store: MetricsStore): void {
  observeResponses(app, (request, reply) => {
    // any HTTP method, status >= 400 is a failure (upstream's hook)
    if (isAttestationRequest(request.raw.url ?? '')) store.add(reply.statusCode >= 400)
  })
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', 'text/plain; charset=utf-8')
    return reply.send(Buffer.from(renderMetrics(await store.totals()), 'utf8'))
  })
}
