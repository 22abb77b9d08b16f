// /metrics (spec 01 §7.2): two in-memory counters over the attestation RPCs, counted from the raw
// request path in a response hook exactly as upstream does (any HTTP method, status >= 400 is a
// failure).
import type { FastifyInstance } from 'fastify'
import { stripServicePrefix } from '../prpc/plugin.js'

const COUNTED = new Set(['GetAppKey', 'GetKmsKey', 'SignCert'])

export class AttestationMetrics {
  requests = 0
  failures = 0

  record(rawUrl: string, status: number): void {
    const q = rawUrl.indexOf('?')
    const path = q === -1 ? rawUrl : rawUrl.slice(0, q)
    if (!path.startsWith('/prpc/')) return
    // the raw segment, not percent-decoded, exactly as upstream's hook sees it
    if (!COUNTED.has(stripServicePrefix(path.slice('/prpc/'.length), 'KMS.'))) return
    this.requests++
    if (status >= 400) this.failures++
  }

  render(): string {
    return (
      '# HELP dstack_kms_attestation_requests_total Total number of KMS attestation requests.\n' +
      '# TYPE dstack_kms_attestation_requests_total counter\n' +
      `dstack_kms_attestation_requests_total ${this.requests}\n` +
      '# HELP dstack_kms_attestation_failures_total Total number of failed KMS attestation requests.\n' +
      '# TYPE dstack_kms_attestation_failures_total counter\n' +
      `dstack_kms_attestation_failures_total ${this.failures}\n`
    )
  }
}

export function registerMetrics(app: FastifyInstance, metrics: AttestationMetrics): void {
  app.addHook('onResponse', async (request, reply) => {
    metrics.record(request.raw.url ?? '', reply.statusCode)
  })
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', 'text/plain; charset=utf-8')
    return reply.send(Buffer.from(metrics.render(), 'utf8'))
  })
}
