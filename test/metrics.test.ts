// /metrics text and counting rules exactly as upstream's.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isAttestationRequest, renderMetrics } from '../src/kms/metrics.js'

describe('attestation metrics', () => {
  it('renders the six upstream lines', () => {
    assert.equal(
      renderMetrics({ requests: 2, failures: 1 }),
      '# HELP dstack_kms_attestation_requests_total Total number of KMS attestation requests.\n' +
        '# TYPE dstack_kms_attestation_requests_total counter\n' +
        'dstack_kms_attestation_requests_total 2\n' +
        '# HELP dstack_kms_attestation_failures_total Total number of failed KMS attestation requests.\n' +
        '# TYPE dstack_kms_attestation_failures_total counter\n' +
        'dstack_kms_attestation_failures_total 1\n',
    )
  })

  it('counts by the raw path after stripping every leading KMS.', () => {
    const counted: string[] = []
    for (const url of [
      '/prpc/KMS.KMS.GetKmsKey',
      '/prpc/GetAppKey',
      '/prpc/SignCert?x=1',
      '/prpc/GetMeta', // not an attestation RPC
      '/prpc/Get%41ppKey', // not percent-decoded, like upstream's hook
      '/prpcGetAppKey',
      '/prpc/GetAppKey/extra',
    ]) {
      if (isAttestationRequest(url)) counted.push(url)
    }
    assert.deepEqual(counted, ['/prpc/KMS.KMS.GetKmsKey', '/prpc/GetAppKey', '/prpc/SignCert?x=1'])
  })
})
