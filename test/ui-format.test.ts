// What the wizard derives in the browser, checked against the server code it must agree with:
// the source URL the KMS's Onboard will use, the CA fingerprint InspectSource reports, and a
// policy snippet auth-simple really admits the KMS with.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { checkBoot } from '../src/auth-simple/check.js'
import { authSimpleConfigSchema } from '../src/auth-simple/config.js'
import { P256Key } from '../src/crypto/p256.js'
import { caCertFingerprint } from '../src/onboard/replicate.js'
import { normalizeSourceUrl } from '../src/onboard/source-client.js'
import { issueCertificate } from '../src/x509/certificate.js'
import {
  authSimpleSnippet,
  certFingerprint,
  hex0x,
  normaliseSourceUrl,
  onChainRegistration,
} from '../ui/src/format.js'

describe('wizard formatting', () => {
  it('normalises a source URL exactly as Onboard does (after trimming what was typed)', () => {
    for (const url of [
      'https://kms.example:8000',
      'https://kms.example:8000/',
      'https://kms.example:8000///',
      'https://kms.example:8000/prpc',
      'https://kms.example:8000/prpc/',
      'https://kms.example/base/path',
    ]) {
      assert.equal(normaliseSourceUrl(url), normalizeSourceUrl(url), url)
      // inspecting the normalised URL again changes nothing: Onboard gets what was shown
      assert.equal(normalizeSourceUrl(normaliseSourceUrl(url)), normaliseSourceUrl(url), url)
    }
    assert.equal(normaliseSourceUrl('  https://a:1/ \n'), 'https://a:1/prpc')
  })

  it('computes the CA fingerprint InspectSource reports', () => {
    const cert = issueCertificate(P256Key.generate(), {
      subject: { commonName: 'fingerprint test' },
      ca: { pathLen: 1 },
    })
    assert.equal(certFingerprint(cert.pem), caCertFingerprint(cert.pem))
    assert.match(certFingerprint(cert.pem), /^[0-9a-f]{64}$/)
    assert.throws(() => certFingerprint('not a certificate'), /no CERTIFICATE PEM block/)
  })

  it('prints an auth-simple snippet that admits exactly this KMS', () => {
    const id = {
      mrAggregated: randomBytes(32).toString('hex'),
      deviceId: randomBytes(32).toString('hex'),
      osImageHash: randomBytes(32).toString('hex'),
    }
    const cfg = authSimpleConfigSchema.parse(JSON.parse(authSimpleSnippet(id)))
    const boot = {
      attestationMode: 'dstack-tdx',
      teeVariant: 'dstack-tdx',
      mrAggregated: id.mrAggregated,
      osImageHash: id.osImageHash,
      appId: '',
      composeHash: '',
      instanceId: '',
      deviceId: id.deviceId,
      tcbStatus: 'UpToDate',
      advisoryIds: [],
      mrSystem: '',
    }
    assert.equal(checkBoot(cfg, boot, true).isAllowed, true)
    const other = randomBytes(32).toString('hex')
    assert.equal(checkBoot(cfg, { ...boot, mrAggregated: other }, true).isAllowed, false)
    assert.equal(checkBoot(cfg, { ...boot, deviceId: other }, true).isAllowed, false)
    assert.equal(checkBoot(cfg, { ...boot, osImageHash: other }, true).isAllowed, false)
  })

  it('lists the DstackKms allow-list calls with 0x bytes32 values', () => {
    const id = {
      mrAggregated: 'aa'.repeat(32),
      deviceId: 'bb'.repeat(32),
      osImageHash: 'cc'.repeat(32),
    }
    assert.deepEqual(onChainRegistration(id), [
      { signature: 'addKmsAggregatedMr(bytes32)', value: `0x${'aa'.repeat(32)}` },
      { signature: 'addKmsDevice(bytes32)', value: `0x${'bb'.repeat(32)}` },
      { signature: 'addOsImageHash(bytes32)', value: `0x${'cc'.repeat(32)}` },
    ])
    assert.equal(hex0x(''), '')
  })
})
