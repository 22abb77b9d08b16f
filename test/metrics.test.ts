// /metrics text and counting rules exactly as spec 01 §7.2.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { AttestationMetrics } from '../src/kms/metrics.js'

describe('attestation metrics', () => {
  it('renders the six upstream lines', () => {
    const m = new AttestationMetrics()
    m.record('/prpc/GetAppKey?json', 400)
    m.record('/prpc/SignCert', 200)
    assert.equal(
      m.render(),
      '# HELP dstack_kms_attestation_requests_total Total number of KMS attestation requests.\n' +
        '# TYPE dstack_kms_attestation_requests_total counter\n' +
        'dstack_kms_attestation_requests_total 2\n' +
        '# HELP dstack_kms_attestation_failures_total Total number of failed KMS attestation requests.\n' +
        '# TYPE dstack_kms_attestation_failures_total counter\n' +
        'dstack_kms_attestation_failures_total 1\n',
    )
  })

  it('counts by the raw path after stripping every leading KMS.', () => {
    const m = new AttestationMetrics()
    for (const url of [
      '/prpc/KMS.KMS.GetKmsKey',
      '/prpc/GetAppKey',
      '/prpc/SignCert?x=1',
      '/prpc/GetMeta', // not an attestation RPC
      '/prpc/Get%41ppKey', // not percent-decoded, like upstream's hook
      '/prpcGetAppKey',
      '/prpc/GetAppKey/extra',
    ]) {
      m.record(url, 404)
    }
    assert.equal(m.requests, 3)
    assert.equal(m.failures, 3)
  })
})
