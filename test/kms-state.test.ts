// What the main worker loads from cert_dir and [rpc.tls] at start.
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { P256Key } from '../src/crypto/p256.js'
import { nobleSecp256k1 } from '../src/crypto/secp256k1.js'
import { listenerTlsWarnings, loadKmsState, loadListenerTls } from '../src/kms/state.js'
import { issueRootCaCert, issueTempCaCert } from '../src/x509/templates.js'
import { tempDir } from './helpers/kms-process.js'
import { bootstrapKeySet } from './helpers/kms-service.js'

async function bootstrapped(): Promise<string> {
  const dir = tempDir()
  await bootstrapKeySet(dir, 'kms.example.com')
  return dir
}

const tlsOf = (dir: string) => ({
  key: join(dir, 'rpc.key'),
  certs: join(dir, 'rpc.crt'),
  mutual: { caCerts: join(dir, 'tmp-ca.crt'), mandatory: false },
})

describe('loadKmsState', () => {
  it('loads a bootstrapped cert dir', async () => {
    const dir = await bootstrapped()
    const state = loadKmsState(dir, nobleSecp256k1)
    assert.equal(state.k256Pubkey.length, 33)
    assert.match(state.rootCaCertPem, /^-----BEGIN CERTIFICATE-----/)
  })

  it('refuses a temp CA certificate that does not match its key', async () => {
    const dir = await bootstrapped()
    writeFileSync(join(dir, 'tmp-ca.crt'), issueTempCaCert(P256Key.generate()).pem)
    assert.throws(() => loadKmsState(dir, nobleSecp256k1), {
      message: 'Failed to read temp ca key: tmp-ca.crt does not match tmp-ca.key',
    })
  })

  it('refuses a root CA certificate that does not match its key', async () => {
    const dir = await bootstrapped()
    writeFileSync(join(dir, 'root-ca.crt'), issueRootCaCert(P256Key.generate()).pem)
    assert.throws(() => loadKmsState(dir, nobleSecp256k1), {
      message: 'Failed to load root CA certificate: root-ca.crt does not match root-ca.key',
    })
  })
})

describe('listener TLS from [rpc.tls]', () => {
  it('reads the configured paths, not cert_dir', async () => {
    const dir = await bootstrapped()
    const other = tempDir()
    writeFileSync(join(other, 'k.pem'), 'KEY')
    writeFileSync(join(other, 'c.pem'), 'CERT')
    writeFileSync(join(other, 'ca.pem'), 'CA')
    const tls = {
      key: join(other, 'k.pem'),
      certs: join(other, 'c.pem'),
      mutual: { caCerts: join(other, 'ca.pem'), mandatory: false },
    }
    assert.deepEqual(loadListenerTls(tls), { key: 'KEY', cert: 'CERT', ca: 'CA' })
    assert.deepEqual(
      listenerTlsWarnings(dir, tls).map((w) => w.split(' = ')[0]),
      ['rpc.tls.key', 'rpc.tls.certs', 'rpc.tls.mutual.ca_certs'],
    )
    assert.deepEqual(listenerTlsWarnings(dir, tlsOf(dir)), [])
  })

  it('names the key of a missing file', () => {
    const dir = tempDir()
    assert.throws(() => loadListenerTls(tlsOf(dir)), /^KmsError: failed to read rpc\.tls\.key = /)
  })
})
