// End to end: `dstack-kms serve` as a real child process, onboarding over HTTPS, Finish, the main
// worker, and every public RPC over real TLS, in JSON and protobuf.
import assert from 'node:assert/strict'
import { X509Certificate, createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { connect } from 'node:tls'
import { verifyEnvEncryptPublicKey, verifyEnvEncryptPublicKeyLegacy } from '@phala/dstack-sdk'
import { CacheDb } from '../src/cache/cache-db.js'
import { P256Key } from '../src/crypto/p256.js'
import { decodeMessage, encodeMessage } from '../src/prpc/schema.js'
import {
  AppIdType,
  ClearImageCacheRequestType,
  GetMetaResponseType,
  GetTempCaCertResponseType,
  ProtoErrorType,
  PublicKeyResponseType,
} from '../src/prpc/messages.js'
import { CSR_CONFIRM, encodeCsrV1, encodeCsrV2 } from '../src/ratls/csr.js'
import { RATLS_OID } from '../src/asn1/oids.js'
import { parseCertificate, readCertUsage } from '../src/x509/parse.js'
import { pemDecode } from '../src/asn1/pem.js'
import { issueCertificate } from '../src/x509/certificate.js'
import { issueRaTlsClientCert, issueTempCaCert } from '../src/x509/templates.js'
import { readVectorFile } from './helpers/crypto-vectors.js'
import { prpc, rawRequest, type RawResponse } from './helpers/https-client.js'
import { ADMIN_TOKEN, testConfigToml } from './helpers/kms-config.js'
import { freePort, startKms, tempDir, type KmsProcess } from './helpers/kms-process.js'
import { csrConfig, csrConfigV1, signCertBody } from './helpers/csr-config.js'

const APP_ID = '0123456789abcdef0123456789abcdef01234567'
const JSON_CT = { 'content-type': 'application/json' }
const PROTO_CT = { 'content-type': 'application/octet-stream' }

function json(res: RawResponse): Record<string, unknown> {
  assert.equal(res.headers['content-type'], 'application/json', res.text)
  return JSON.parse(res.text) as Record<string, unknown>
}

function assertRpcError(res: RawResponse, message: string): void {
  assert.equal(res.status, 400, res.text)
  assert.equal(res.headers['content-type'], 'application/json')
  assert.equal(res.text, JSON.stringify({ error: message }, null, 2))
}

/** Every file under `dir` with its bytes and mode, to prove a request changed nothing. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name)
      const st = statSync(p)
      if (st.isDirectory()) walk(p)
      // SQLite's WAL/shm files change on reads; the database content is checked separately
      else if (!/-(wal|shm)$/.test(name)) {
        out.set(p, `${(st.mode & 0o777).toString(8)}:${readFileSync(p).toString('hex')}`)
      }
    }
  }
  walk(dir)
  return out
}

describe('dstack-kms serve: onboarding, Finish and the public KMS RPCs', () => {
  let dir: string
  let certDir: string
  let base: string
  let kms: KmsProcess
  let bootstrap: Record<string, unknown>

  before(async () => {
    dir = tempDir()
    certDir = join(dir, 'certs')
    const port = await freePort()
    base = `https://127.0.0.1:${port}`
    kms = startKms({ dir, configToml: testConfigToml({ dir, port }) })
    await kms.waitForLog((l) => l.msg === 'onboarding worker ready')
  })

  after(async () => {
    if (kms.proc.exitCode === null && kms.proc.signalCode === null) {
      kms.kill('SIGKILL')
      await kms.waitForExit()
    }
  })

  it('serves the onboarding page, /health and attestation info over HTTPS', async () => {
    const page = await rawRequest({ url: `${base}/` })
    assert.equal(page.status, 200)
    assert.equal(page.headers['content-type'], 'text/html; charset=utf-8')
    assert.match(page.text, /<title>dstack KMS Setup<\/title>/)
    assert.equal((await rawRequest({ url: `${base}/ui/app.js` })).status, 200)
    const health = await rawRequest({ url: `${base}/health` })
    assert.equal(health.text, 'OK')
    // the ephemeral certificate's fingerprint is the one that was logged
    const logged = await kms.waitForLog((l) => typeof l.fingerprint === 'string')
    const fp = createHash('sha256')
      .update(page.peerCertDer ?? Buffer.alloc(0))
      .digest('hex')
      .toUpperCase()
      .match(/../g)
      ?.join(':')
    assert.equal(logged.fingerprint, fp)

    const info = json(await prpc(base, 'Onboard.GetAttestationInfo?json', '{}'))
    assert.deepEqual(info, {
      device_id: '',
      mr_aggregated: '',
      os_image_hash: '',
      attestation_mode: '',
      tee_variant: '',
      site_name: 'e2e-site',
      eth_rpc_url: '',
      kms_contract_address: '',
      ppid: '',
      onboard_cert_fingerprint: fp,
    })
  })

  it('rejects invalid domains without writing anything', async () => {
    assertRpcError(
      await prpc(base, 'Bootstrap', '{"domain":"bad_label.example.com"}'),
      'domain contains an invalid DNS label',
    )
    assertRpcError(
      await prpc(base, 'Bootstrap', '{"domain":""}'),
      'domain must be a non-empty ASCII DNS name of at most 253 bytes',
    )
    assert.deepEqual(
      readdirSync(certDir).filter((f) => !f.startsWith('.')),
      [],
    )
  })

  it('refuses cross-site browser requests to the state-changing onboarding endpoints', async () => {
    const refused = JSON.stringify({ error: 'cross-site request refused' }, null, 2)
    for (const headers of [
      { ...JSON_CT, origin: 'https://evil.example' },
      { ...JSON_CT, 'sec-fetch-site': 'cross-site' },
      { ...JSON_CT, origin: 'null' },
    ]) {
      const res = await prpc(base, 'Bootstrap', '{"domain":"localhost"}', headers)
      assert.equal(res.status, 400)
      assert.equal(res.text, refused)
    }
    const fin = await rawRequest({
      url: `${base}/finish`,
      headers: { 'sec-fetch-site': 'cross-site' },
    })
    assert.equal(fin.text, refused)
    assert.deepEqual(
      readdirSync(certDir).filter((f) => !f.startsWith('.')),
      [],
    )
    // the page itself (same origin) is fine
    const same = await prpc(base, 'GetAttestationInfo', '{}', {
      ...JSON_CT,
      origin: base,
      'sec-fetch-site': 'same-origin',
    })
    assert.equal(same.status, 200)
  })

  it('refuses Onboard at once without a TEE (a source only releases keys to an attested KMS)', async () => {
    const before = snapshot(certDir)
    const res = await prpc(
      base,
      'Onboard',
      '{"source_url":"https://127.0.0.1:1/prpc","domain":"kms.test"}',
    )
    assert.equal(res.status, 400)
    assert.equal(
      json(res).error,
      'Failed to onboard: this KMS has no TEE (tee.backend = "none") and cannot attest itself; a source KMS only releases its keys to an attested KMS',
    )
    assert.deepEqual(snapshot(certDir), before)
  })

  it('bootstraps once', async () => {
    const res = await prpc(base, 'Onboard.Bootstrap?json', '{"domain":"localhost"}')
    assert.equal(res.status, 200, res.text)
    bootstrap = json(res)
    assert.deepEqual(Object.keys(bootstrap), ['ca_pubkey', 'k256_pubkey', 'attestation'])
    assert.match(
      String(bootstrap.ca_pubkey),
      /^3059301306072a8648ce3d020106082a8648ce3d03010703420004[0-9a-f]{128}$/,
    )
    assert.match(String(bootstrap.k256_pubkey), /^0[23][0-9a-f]{64}$/)
    assert.equal(bootstrap.attestation, '')

    const before = snapshot(certDir)
    assertRpcError(
      await prpc(base, 'Bootstrap', '{"domain":"other.example"}'),
      'KMS has already been bootstrapped',
    )
    // protobuf request → protobuf error body
    const proto = await prpc(base, 'Bootstrap', Buffer.from('0a03612e62', 'hex'), PROTO_CT)
    assert.equal(proto.status, 400)
    assert.equal(proto.headers['content-type'], 'application/octet-stream')
    assert.equal(
      decodeMessage(ProtoErrorType, proto.body).message,
      'KMS has already been bootstrapped',
    )
    assert.deepEqual(snapshot(certDir), before)
  })

  it('finishes onboarding and starts the main worker on the same port', async () => {
    const fin = await rawRequest({ url: `${base}/finish` })
    assert.equal(fin.status, 200)
    assert.equal(fin.text, 'OK')
    assert.equal(fin.headers['content-type'], 'text/plain; charset=utf-8')
    await kms.waitForLog((l) => l.msg === 'KMS worker ready')
  })

  it('has written the cert dir exactly as upstream lays it out', () => {
    const files = readdirSync(certDir)
      .filter((f) => !f.startsWith('.'))
      .sort()
    assert.deepEqual(files, [
      'bootstrap-info.json',
      'root-ca.crt',
      'root-ca.key',
      'root-k256.key',
      'rpc-domain',
      'rpc.crt',
      'rpc.key',
      'tmp-ca.crt',
      'tmp-ca.key',
    ])
    for (const f of ['root-ca.key', 'tmp-ca.key', 'rpc.key', 'root-k256.key']) {
      assert.equal(statSync(join(certDir, f)).mode & 0o777, 0o600, `${f} must be 0600`)
    }
    for (const f of ['root-ca.key', 'tmp-ca.key', 'rpc.key']) {
      const pem = readFileSync(join(certDir, f), 'utf8')
      assert.match(
        pem,
        /^-----BEGIN PRIVATE KEY-----\n([A-Za-z0-9+/=]{64}\n)+[A-Za-z0-9+/=]{1,64}\n-----END PRIVATE KEY-----\n$/,
      )
      assert.equal(pemDecode(pem, 'PRIVATE KEY').length, 138)
    }
    for (const f of ['root-ca.crt', 'tmp-ca.crt', 'rpc.crt']) {
      const pem = readFileSync(join(certDir, f), 'utf8')
      assert.match(pem, /^-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n$/)
      assert.equal(pem.match(/BEGIN CERTIFICATE/g)?.length, 1, `${f} holds one certificate`)
    }
    assert.equal(readFileSync(join(certDir, 'root-k256.key')).length, 32)
    assert.equal(readFileSync(join(certDir, 'rpc-domain'), 'utf8'), 'localhost')
    assert.equal(
      readFileSync(join(certDir, 'bootstrap-info.json'), 'utf8'),
      JSON.stringify(bootstrap),
    )
    const rootKey = P256Key.fromPem(readFileSync(join(certDir, 'root-ca.key'), 'utf8'))
    assert.equal(rootKey.spkiDer().toString('hex'), bootstrap.ca_pubkey)
    const tmp = parseCertificate(
      pemDecode(readFileSync(join(certDir, 'tmp-ca.crt'), 'utf8'), 'CERTIFICATE'),
    )
    assert.equal(tmp.subjectCommonName, 'Dstack Client Temp CA')
  })

  let meta: Record<string, unknown>

  it('GetMeta answers the same in every JSON form and in protobuf', async () => {
    const forms = [
      await prpc(base, 'GetMeta', '{}', JSON_CT),
      await prpc(base, 'GetMeta?json', 'null', {}),
      await prpc(base, 'GetMeta', '{}', { 'content-type': 'application/x-www-form-urlencoded' }),
      await prpc(base, 'KMS.GetMeta', '', {}),
      await rawRequest({ url: `${base}/prpc/GetMeta` }),
    ]
    meta = json(forms[0] as RawResponse)
    for (const f of forms) assert.deepEqual(json(f), meta)
    assert.deepEqual(Object.keys(meta), [
      'ca_cert',
      'allow_any_upgrade',
      'k256_pubkey',
      'bootstrap_info',
      'is_dev',
      'gateway_app_id',
      'kms_contract_address',
      'chain_id',
      'app_auth_implementation',
    ])
    assert.equal(meta.ca_cert, readFileSync(join(certDir, 'root-ca.crt'), 'utf8'))
    assert.equal(meta.k256_pubkey, bootstrap.k256_pubkey)
    assert.deepEqual(meta.bootstrap_info, bootstrap)
    assert.equal(meta.allow_any_upgrade, true)
    assert.equal(meta.is_dev, true)
    assert.equal(meta.gateway_app_id, 'any')
    assert.equal(meta.kms_contract_address, null)
    assert.equal(meta.chain_id, null)
    assert.equal(meta.app_auth_implementation, null)

    const proto = await prpc(base, 'GetMeta', Buffer.alloc(0), {
      'content-type': 'application/x-protobuf',
    })
    assert.equal(proto.headers['content-type'], 'application/octet-stream')
    const m = decodeMessage(GetMetaResponseType, proto.body)
    assert.equal(m.ca_cert, meta.ca_cert)
    assert.equal(m.k256_pubkey.toString('hex'), meta.k256_pubkey)
    assert.equal(m.is_dev, true)
    assert.equal(m.gateway_app_id, 'any')
    assert.equal(m.chain_id, null)
    assert.deepEqual(
      m.bootstrap_info === null ? null : m.bootstrap_info.ca_pubkey.toString('hex'),
      bootstrap.ca_pubkey,
    )
  })

  it('presents an RPC certificate that chains to ca_cert and carries kms:rpc', async () => {
    const res = await rawRequest({
      url: `${base}/health`,
      ca: String(meta.ca_cert),
      servername: 'localhost',
    })
    assert.equal(res.status, 200)
    assert.ok(res.peerCertDer)
    const leaf = new X509Certificate(res.peerCertDer)
    const root = new X509Certificate(String(meta.ca_cert))
    assert.ok(leaf.checkIssued(root))
    assert.ok(leaf.verify(root.publicKey))
    assert.equal(leaf.checkHost('localhost'), 'localhost')
    const parsed = parseCertificate(res.peerCertDer)
    assert.equal(readCertUsage(parsed), 'kms:rpc')
    assert.equal(parsed.extensions.has(RATLS_OID.attestation), false)
    assert.deepEqual(
      res.peerCertDer,
      pemDecode(readFileSync(join(certDir, 'rpc.crt'), 'utf8'), 'CERTIFICATE'),
    )
    // the HTTPS listener refuses a verifying client that expects another host name
    await assert.rejects(
      rawRequest({ url: `${base}/health`, ca: String(meta.ca_cert), servername: 'evil.example' }),
    )
  })

  it('GetAppEnvEncryptPubKey signatures verify with @phala/dstack-sdk against GetMeta.k256_pubkey', async () => {
    for (const req of [
      () => prpc(base, 'GetAppEnvEncryptPubKey?json', JSON.stringify({ app_id: APP_ID }), {}),
      () =>
        prpc(base, 'GetAppEnvEncryptPubKey', JSON.stringify({ app_id: `0x${APP_ID}` }), JSON_CT),
      () =>
        prpc(base, 'GetAppEnvEncryptPubKey', `{"app_id": "${APP_ID}"}`, {
          'content-type': 'application/x-www-form-urlencoded',
        }),
      () => rawRequest({ url: `${base}/prpc/GetAppEnvEncryptPubKey?app_id=${APP_ID}` }),
    ]) {
      const res = await req()
      const body = json(res)
      assert.deepEqual(Object.keys(body), ['public_key', 'signature', 'timestamp', 'signature_v1'])
      assert.equal(typeof body.timestamp, 'number', 'timestamp is a JSON number')
      assert.match(res.text, /"timestamp":\d+,/)
      const pk = Buffer.from(String(body.public_key), 'hex')
      assert.equal(pk.length, 32)
      const expected = `0x${String(meta.k256_pubkey)}`
      assert.equal(
        verifyEnvEncryptPublicKey(
          pk,
          Buffer.from(String(body.signature_v1), 'hex'),
          APP_ID,
          Number(body.timestamp),
        ),
        expected,
      )
      assert.equal(
        verifyEnvEncryptPublicKeyLegacy(
          pk,
          Buffer.from(String(body.signature), 'hex'),
          `0x${APP_ID}`,
        ),
        expected,
      )
    }
    // deterministic: the same app id always gets the same key; another app id another key
    const a = json(await prpc(base, 'GetAppEnvEncryptPubKey', JSON.stringify({ app_id: APP_ID })))
    const b = json(
      await prpc(base, 'GetAppEnvEncryptPubKey', JSON.stringify({ app_id: 'ff'.repeat(20) })),
    )
    const a2 = json(await prpc(base, 'GetAppEnvEncryptPubKey', JSON.stringify({ app_id: APP_ID })))
    assert.equal(a.public_key, a2.public_key)
    assert.equal(a.signature, a2.signature)
    assert.notEqual(a.public_key, b.public_key)

    const proto = await prpc(
      base,
      'GetAppEnvEncryptPubKey',
      encodeMessage(AppIdType, { app_id: Buffer.from(APP_ID, 'hex') }),
      PROTO_CT,
    )
    assert.equal(proto.status, 200)
    const p = decodeMessage(PublicKeyResponseType, proto.body)
    assert.equal(p.public_key.toString('hex'), a.public_key)
    assert.equal(
      verifyEnvEncryptPublicKey(p.public_key, p.signature_v1, APP_ID, p.timestamp),
      `0x${String(meta.k256_pubkey)}`,
    )
  })

  it('GetTempCaCert returns the cert dir files verbatim', async () => {
    const r = json(await prpc(base, 'GetTempCaCert', 'null', {}))
    assert.deepEqual(r, {
      temp_ca_cert: readFileSync(join(certDir, 'tmp-ca.crt'), 'utf8'),
      temp_ca_key: readFileSync(join(certDir, 'tmp-ca.key'), 'utf8'),
      ca_cert: readFileSync(join(certDir, 'root-ca.crt'), 'utf8'),
    })
    const proto = await prpc(base, 'GetTempCaCert', Buffer.alloc(0), PROTO_CT)
    assert.equal(decodeMessage(GetTempCaCertResponseType, proto.body).temp_ca_key, r.temp_ca_key)
  })

  it('GetAppKey, GetKmsKey and SignCert never hand out keys without attestation', async () => {
    assertRpcError(
      await prpc(base, 'GetAppKey', '{"api_version":1,"vm_config":""}'),
      'App not allowed: No attestation provided',
    )
    assertRpcError(await prpc(base, 'GetAppKey', '{"api_version":2}'), 'Unsupported API version: 2')
    assertRpcError(await prpc(base, 'GetKmsKey', '{"vm_config":""}'), 'No attestation provided')
    assertRpcError(await prpc(base, 'SignCert', '{"api_version":3}'), 'Unsupported API version: 3')
  })

  it('SignCert checks the CSR encoding and signature, then the attestation key binding', async () => {
    const signCert = (apiVersion: number, csr: Buffer, signature: Buffer) =>
      prpc(base, 'SignCert', signCertBody({ apiVersion, csr, signature, vmConfig: '' }))
    assertRpcError(
      await signCert(2, Buffer.from('00', 'hex'), Buffer.from('00', 'hex')),
      'Failed to parse csr: Could not decode `CertSigningRequestV2::pubkey`:\n' +
        '\tNot enough data to fill buffer\n: Not enough data to fill buffer',
    )
    const key = P256Key.generate()
    const csr = encodeCsrV2({
      confirm: CSR_CONFIRM,
      pubkey: key.spkiDer(),
      config: csrConfig({ subjectAltNames: ['app.example.com'] }),
      attestation: readVectorFile('attestation.bin'),
    })
    assertRpcError(
      await signCert(2, csr, P256Key.generate().sign(csr)),
      'Failed to verify csr signature: Invalid signature',
    )
    // attestation.bin's report_data is not bound to this CSR key: refused before any collateral
    assertRpcError(
      await signCert(2, csr, key.sign(csr)),
      'Quote verification failed: report data mismatch',
    )
    // a legacy V1 CSR without quote and event log fails where upstream's upgrade to V2 fails
    const v1 = encodeCsrV1({
      confirm: CSR_CONFIRM,
      pubkey: key.spkiDer(),
      config: csrConfigV1(),
      quote: Buffer.alloc(0),
      eventLog: Buffer.alloc(0),
    })
    assertRpcError(
      await signCert(1, v1, key.sign(v1)),
      'Failed to upgrade csr v1 to v2: Failed to parse tdx_event_log: ' +
        'EOF while parsing a value at line 1 column 0',
    )
  })

  it('accepts a client certificate from the temp CA and refuses foreign ones at the handshake', async () => {
    const temp = json(await prpc(base, 'GetTempCaCert', 'null'))
    const tempKey = P256Key.fromPem(String(temp.temp_ca_key))
    const tempCert = parseCertificate(pemDecode(String(temp.temp_ca_cert), 'CERTIFICATE'))
    const clientKey = P256Key.generate()
    const good = issueCertificate(
      clientKey,
      { subject: { commonName: 'RA-TLS TEMP Cert' } },
      { key: tempKey, subjectDer: tempCert.subjectDer },
    )
    const withCert = { cert: good.pem, key: clientKey.pkcs8Pem() }
    assertRpcError(
      await prpc(base, 'GetAppKey', '{"api_version":1}', JSON_CT, withCert),
      'App not allowed: No attestation provided',
    )
    // a certificate with an attestation we cannot verify yet is refused, never trusted
    const attested = issueRaTlsClientCert(
      clientKey,
      { key: tempKey, subjectDer: tempCert.subjectDer },
      Buffer.from('00', 'hex'),
    )
    const res = await prpc(base, 'GetMeta', '{}', JSON_CT, {
      cert: attested.pem,
      key: clientKey.pkcs8Pem(),
    })
    assert.equal(res.status, 400)
    assert.match(String(json(res).error), /^invalid quote: /)
    // a certificate from another CA never gets past TLS
    const otherCaKey = P256Key.generate()
    const otherCa = issueTempCaCert(otherCaKey)
    const foreign = issueCertificate(
      clientKey,
      { subject: { commonName: 'RA-TLS TEMP Cert' } },
      { key: otherCaKey, subjectDer: otherCa.subjectDer },
    )
    await assert.rejects(
      prpc(base, 'GetMeta', '{}', JSON_CT, { cert: foreign.pem, key: clientKey.pkcs8Pem() }),
    )
    // and the listener still serves clients without certificates
    assert.equal((await prpc(base, 'GetMeta', '{}')).status, 200)
    // a connection keeps the certificate it was verified with: TLS 1.2 renegotiation, which
    // could present another one, is refused
    const url = new URL(base)
    const socket = connect({
      host: url.hostname,
      port: Number(url.port),
      rejectUnauthorized: false,
      maxVersion: 'TLSv1.2',
      ...withCert,
    })
    try {
      await once(socket, 'secureConnect')
      const outcome = await new Promise<string>((resolve) => {
        socket.once('error', (err) => resolve(err.message))
        socket.renegotiate({ rejectUnauthorized: false }, (err) =>
          resolve(err === null ? 'renegotiated' : err.message),
        )
      })
      assert.match(outcome, /no renegotiation/)
    } finally {
      socket.destroy()
    }
  })

  it('issues no resumable session tickets (guests never resume; making them was costly)', async () => {
    const url = new URL(base)
    const open = async (session?: Buffer) => {
      const socket = connect({
        host: url.hostname,
        port: Number(url.port),
        rejectUnauthorized: false,
        ...(session === undefined ? {} : { session }),
      })
      let ticket: Buffer | undefined
      socket.on('session', (s: Buffer) => (ticket = s))
      await once(socket, 'secureConnect')
      socket.write(`GET /health HTTP/1.1\r\nhost: ${url.host}\r\n\r\n`)
      await once(socket, 'data')
      const reused = socket.isSessionReused()
      socket.destroy()
      return { ticket, reused }
    }
    const first = await open()
    assert.ok(first.ticket, 'TLS 1.3 always sends a NewSessionTicket')
    assert.equal((await open(first.ticket)).reused, false)
  })

  it('ClearImageCache checks the token and clears by key', async () => {
    const cacheDir = join(dir, 'cache')
    const db = CacheDb.open(cacheDir)
    try {
      const h1 = 'ab'.repeat(32)
      const h2 = 'cd'.repeat(32)
      for (const h of [h1, h2]) {
        mkdirSync(join(db.imagesDir, h), { recursive: true })
        writeFileSync(join(db.imagesDir, h, 'metadata.json'), '{}')
        db.putImage(h, { sizeBytes: 2, verifiedAt: 1 })
      }
      db.putMeasurement('ee'.repeat(32), h1, '{}')
      db.putMeasurement('ff'.repeat(32), h2, '{}')

      const before = snapshot(cacheDir)
      assertRpcError(
        await prpc(
          base,
          'ClearImageCache',
          JSON.stringify({ token: 'wrong', image_hash: 'all', config_hash: 'all' }),
        ),
        'Invalid token',
      )
      assertRpcError(
        await prpc(
          base,
          'ClearImageCache',
          JSON.stringify({ token: ADMIN_TOKEN, image_hash: '../x', config_hash: '' }),
        ),
        'Failed to clear image cache: Invalid cache key',
      )
      assertRpcError(
        await prpc(
          base,
          'ClearImageCache',
          JSON.stringify({ token: ADMIN_TOKEN, image_hash: h1, config_hash: '../x' }),
        ),
        'Failed to clear measurement cache: Invalid cache key',
      )
      assert.deepEqual(snapshot(cacheDir), before)
      assert.ok(db.getImage(h1))
      assert.ok(db.getMeasurement('ee'.repeat(32)))

      // one image and one measurement (the entry that holds that config hash,
      // docs/design.md#clearing-one-config-hash-really-clears-it)
      const ok = await prpc(
        base,
        'ClearImageCache',
        JSON.stringify({ token: ADMIN_TOKEN, image_hash: h1, config_hash: 'ee'.repeat(32) }),
      )
      assert.equal(ok.status, 200, ok.text)
      assert.equal(ok.text, 'null')
      assert.equal(existsSync(join(db.imagesDir, h1)), false)
      assert.equal(existsSync(join(db.imagesDir, h2)), true)
      assert.equal(db.getImage(h1), undefined)
      assert.equal(db.getMeasurement('ee'.repeat(32)), undefined)
      assert.ok(db.getMeasurement('ff'.repeat(32)))

      // the GET form works too, and the token never reaches the logs
      const get = await rawRequest({
        url: `${base}/prpc/ClearImageCache?token=${ADMIN_TOKEN}&image_hash=&config_hash=`,
      })
      assert.equal(get.status, 200, get.text)
      await kms.waitForLog((l) => {
        const req = l.req as { method?: string; url?: string } | undefined
        return (
          l.msg === 'request completed' &&
          req?.method === 'GET' &&
          String(req.url).startsWith('/prpc/ClearImageCache')
        )
      })
      assert.equal(
        kms.logs.some((l) => JSON.stringify(l).includes(ADMIN_TOKEN)),
        false,
        'the admin token must not be logged',
      )

      // protobuf, spec-revision field layout (token = 1, image_hash = 2, config_hash = 3)
      const body = encodeMessage(ClearImageCacheRequestType, {
        token: ADMIN_TOKEN,
        image_hash: 'all',
        config_hash: 'all',
      })
      assert.equal(
        body.toString('hex'),
        '0a156d792d7365637265742d61646d696e2d746f6b656e1203616c6c1a03616c6c',
      )
      const all = await prpc(base, 'ClearImageCache', body, PROTO_CT)
      assert.equal(all.status, 200)
      assert.equal(all.body.length, 0)
      assert.deepEqual(readdirSync(db.imagesDir), [])
      assert.equal(db.countMeasurements(), 0)
    } finally {
      db.close()
    }
  })

  it('answers bad input with the upstream error and changes nothing on disk', async () => {
    const before = snapshot(certDir)
    const cases: Array<[string, string | Buffer, string | RegExp]> = [
      ['GetAppEnvEncryptPubKey', '{"app_id":', /./],
      ['GetAppEnvEncryptPubKey', '{"app_id":5}', /invalid type/],
      ['GetAppEnvEncryptPubKey', '{"app_id":"abc"}', 'Odd number of digits at line 1 column 16'],
      ['GetAppEnvEncryptPubKey', '{"app_id":"zz"}', /Invalid character/],
      [
        'GetAppEnvEncryptPubKey',
        JSON.stringify({ app_id: '00'.repeat(19) }),
        'app_id must be 20 bytes',
      ],
      [
        'GetAppEnvEncryptPubKey',
        JSON.stringify({ app_id: '00'.repeat(21) }),
        'app_id must be 20 bytes',
      ],
      ['GetAppKey', '{"api_version":"x"}', /./],
      ['Foo', '{}', 'Service not found: Foo'],
      [
        'GetAppEnvEncryptPubKey',
        Buffer.alloc(10 * 1024 * 1024 + 1, 0x20),
        'failed to read data: payload too large',
      ],
    ]
    for (const [method, body, expected] of cases) {
      const res = await prpc(base, method, body)
      assert.equal(res.status, 400, `${method} ${String(body).slice(0, 40)}: ${res.text}`)
      const err = json(res)
      assert.deepEqual(Object.keys(err), ['error'])
      if (typeof expected === 'string') assert.equal(err.error, expected)
      else assert.match(String(err.error), expected)
    }
    // unknown method in protobuf mode: ProtoError bytes
    const proto = await prpc(base, 'Foo', Buffer.alloc(0), PROTO_CT)
    assert.equal(proto.body.toString('hex'), '0a1653657276696365206e6f7420666f756e643a20466f6f')
    // not a pRPC route at all
    const nf = await rawRequest({
      url: `${base}/prpc/a/b`,
      headers: { accept: 'application/json' },
    })
    assert.equal(nf.status, 404)
    // Bootstrap does not exist on the main service
    assertRpcError(
      await prpc(base, 'Bootstrap', '{"domain":"x.example"}'),
      'Service not found: Bootstrap',
    )
    assert.deepEqual(snapshot(certDir), before)
  })

  it('serves /metrics, /health and the upstream headers', async () => {
    const metrics = await rawRequest({ url: `${base}/metrics` })
    assert.equal(metrics.headers['content-type'], 'text/plain; charset=utf-8')
    const m =
      /dstack_kms_attestation_requests_total (\d+)\n[\s\S]*dstack_kms_attestation_failures_total (\d+)\n$/.exec(
        metrics.text,
      )
    assert.ok(m, metrics.text)
    assert.ok(Number(m[1]) >= 7, metrics.text)
    assert.equal(m[1], m[2], 'every attestation request so far has failed')
    const health = await rawRequest({ url: `${base}/health` })
    assert.equal(health.text, 'OK')
    assert.match(String(health.headers['x-app-version']), /^v\d+\.\d+\.\d+ \(/)
    assert.equal(health.headers['x-content-type-options'], 'nosniff')
    assert.equal(health.headers['x-frame-options'], 'SAMEORIGIN')
    assert.equal(health.headers['permissions-policy'], 'interest-cohort=()')
  })

  it('logs a successful public read-only RPC at debug, failures and other requests at info', async () => {
    const completed = (path: string) =>
      kms.logs.filter((l) => {
        const req = l.req as { url?: string } | undefined
        return l.msg === 'request completed' && String(req?.url).startsWith(path)
      })
    const before = completed('/prpc/GetAppEnvEncryptPubKey').length
    const ok = await prpc(base, 'GetAppEnvEncryptPubKey', JSON.stringify({ app_id: APP_ID }))
    assert.equal(ok.status, 200)
    assert.equal((await prpc(base, 'GetMeta', '{}')).status, 200)
    const bad = await prpc(base, 'GetAppEnvEncryptPubKey', JSON.stringify({ app_id: 'ab' }))
    assert.equal(bad.status, 400)
    // one worker writes its lines in order: once a later 404's line is in, the others are too
    const marker = `/after-routine-${Date.now()}`
    assert.equal((await rawRequest({ url: `${base}${marker}` })).status, 404)
    await kms.waitForLog((l) => {
      const req = l.req as { url?: string } | undefined
      return l.msg === 'request completed' && req?.url === marker
    })
    const lines = completed('/prpc/GetAppEnvEncryptPubKey').slice(before)
    assert.deepEqual(
      lines.map((l) => (l.res as { statusCode: number }).statusCode),
      [400],
    )
    assert.equal(lines[0]?.level, 30)
  })

  it('restarts a killed main worker and keeps serving', async () => {
    const ready = await kms.waitForLog((l) => l.msg === 'KMS worker ready')
    const pid = Number(ready.childPid)
    assert.ok(pid > 0)
    process.kill(pid, 'SIGKILL')
    await kms.waitForLog((l) => l.msg === 'KMS worker ready' && Number(l.childPid) !== pid)
    const res = await prpc(base, 'GetMeta', '{}')
    assert.equal(json(res).k256_pubkey, meta.k256_pubkey)
    assert.ok(
      kms.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('restarting kms worker')),
    )
  })

  it('stops cleanly with exit code 0 on SIGTERM', async () => {
    const workers = kms.logs
      .filter((l) => l.msg === 'KMS worker ready')
      .map((l) => Number(l.childPid))
    kms.kill('SIGTERM')
    const exit = await kms.waitForExit()
    assert.deepEqual(exit, { code: 0, signal: null })
    for (const pid of workers) assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' })
    // and a restart goes straight to the main worker with the same keys
    const again = startKms({ dir, configToml: readFileSync(join(dir, 'kms.toml'), 'utf8') })
    try {
      await again.waitForLog((l) => l.msg === 'KMS worker ready')
      assert.equal(
        again.logs.some((l) => l.msg === 'onboarding worker ready'),
        false,
      )
      assert.equal(json(await prpc(base, 'GetMeta', '{}')).k256_pubkey, meta.k256_pubkey)
    } finally {
      again.kill('SIGTERM')
      assert.deepEqual(await again.waitForExit(), { code: 0, signal: null })
    }
  })
})
