// End to end with the TEE simulator: a real `dstack-kms serve` (supervisor, auth-simple sidecar,
// onboard and main workers) on loopback, and simulated guests that behave like real dstack guests
// (src/guest/guest-client.ts): GetTempCaCert without verification, an RA-TLS client certificate
// signed by the temp CA, `POST /prpc/GetAppKey?json` without a Content-Type, the server checked
// against `ca_cert`, the host name and `kms:rpc`. Keys are compared with independent derivations.
import assert from 'node:assert/strict'
import { X509Certificate, createDecipheriv, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { encryptEnvVars } from '@phala/dstack-sdk/encrypt-env-vars'
import { x25519 } from '@noble/curves/ed25519'
import { buildBootInfo, type BootInfo } from '../src/attestation/boot-info.js'
import { StaticCollateralSource } from '../src/attestation/collateral.js'
import { toReportData } from '../src/attestation/report-data.js'
import { AttestationVerifier } from '../src/attestation/verify.js'
import {
  decodeVersionedAttestation,
  encodeVersionedAttestation,
} from '../src/attestation/versioned.js'
import { deriveDhSecret, deriveKey, deriveP256Key } from '../src/crypto/kdf.js'
import { P256Key } from '../src/crypto/p256.js'
import { keccak256, nobleSecp256k1 } from '../src/crypto/secp256k1.js'
import { x25519PublicKey } from '../src/crypto/x25519.js'
import { readRootK256 } from '../src/keys/key-set.js'
import {
  DEMO_APP_ID,
  DEMO_COMPOSE_HASH,
  demoPolicy,
  mockPlatformVerifier,
  requestSimulatedGuestKeys,
  simulatedDemoAppMrSystem,
  simulatedKmsBootInfo,
} from '../src/quickstart/demo.js'
import { CSR_CONFIRM, encodeCsrV2 } from '../src/ratls/csr.js'
import {
  attestationFromCertificate,
  strippedAttestationBytes,
} from '../src/ratls/cert-attestation.js'
import { mockCollateral } from '../src/tee/simulator/collateral.js'
import { defaultOsImageHash, simulatedVmConfig } from '../src/tee/simulator/cvm.js'
import { simulatedOsImage } from '../src/tee/simulator/os-image.js'
import { CacheDb } from '../src/cache/cache-db.js'
import { parseVmConfig, vmConfigHash } from '../src/image/vm-config.js'
import { simulateGuestAttestation } from '../src/tee/simulator/guest.js'
import { mockIntelPki } from '../src/tee/simulator/mock-pki.js'
import { RATLS_OID } from '../src/asn1/oids.js'
import { parseCertificate, readCertUsage, readRaTlsExtension } from '../src/x509/parse.js'
import { pemDecode } from '../src/asn1/pem.js'
import { issueRaTlsClientCert } from '../src/x509/templates.js'
import { prpc, rawRequest, type RawResponse } from './helpers/https-client.js'
import { ADMIN_TOKEN, attestedConfigToml } from './helpers/kms-config.js'
import { freePort, startKms, tempDir, type KmsProcess } from './helpers/kms-process.js'
import { csrConfig, signCertJson } from './helpers/csr-config.js'

function assertRpcError(res: RawResponse, message: string | RegExp): void {
  assert.equal(res.status, 400, res.text)
  const body = JSON.parse(res.text) as { error: string }
  if (typeof message === 'string') assert.equal(body.error, message)
  else assert.match(body.error, message)
  assert.doesNotMatch(res.text, /disk_crypt_key|k256_key|certificate_chain/)
}

interface Guest {
  appId: Buffer
  composeHash: Buffer
  instanceId: Buffer
  osImageHash: Buffer
}

describe('attested KMS on the TEE simulator', () => {
  const seedHex = randomBytes(32).toString('hex')
  const seed = Buffer.from(seedHex, 'hex')
  const pki = mockIntelPki(seed)
  const verifier = mockPlatformVerifier(seed)
  let dir: string
  let certDir: string
  let policyFile: string
  let kmsUrl: string
  let kms: KmsProcess
  let kmsBoot: BootInfo
  let policy: ReturnType<typeof demoPolicy>

  const demoGuest = (over: Partial<Guest> = {}): Guest => ({
    appId: DEMO_APP_ID,
    composeHash: DEMO_COMPOSE_HASH,
    instanceId: randomBytes(20),
    osImageHash: defaultOsImageHash(seed),
    ...over,
  })
  const fetchKeys = (g: Guest, vmConfig = simulatedVmConfig(seed, g.osImageHash)) =>
    requestSimulatedGuestKeys({ kmsUrl, guest: { seed, ...g }, vmConfig, verifier })
  const writePolicy = (p: unknown) => writeFileSync(policyFile, JSON.stringify(p, null, 2))

  /** `method` over mTLS with a hand-made RA-TLS client certificate around `attestation`, signed
   * by the KMS's temp CA as a guest's is. */
  async function callWithCert(
    method: string,
    body: unknown,
    attestation: Buffer,
    key: P256Key,
  ): Promise<RawResponse> {
    const tmp = JSON.parse((await prpc(kmsUrl, 'GetTempCaCert', '{}')).text) as Record<
      string,
      string
    >
    const tempCa = {
      key: P256Key.fromPem(tmp.temp_ca_key ?? ''),
      subjectDer: parseCertificate(pemDecode(tmp.temp_ca_cert ?? '', 'CERTIFICATE')).subjectDer,
    }
    const cert = issueRaTlsClientCert(key, tempCa, attestation)
    return rawRequest({
      url: `${kmsUrl}/prpc/${method}?json`,
      method: 'POST',
      body: JSON.stringify(body),
      cert: cert.pem,
      key: key.pkcs8Pem(),
    })
  }

  before(async () => {
    dir = tempDir()
    certDir = join(dir, 'certs')
    policyFile = join(dir, 'auth-config.json')
    const port = await freePort()
    const authPort = await freePort()
    kmsUrl = `https://localhost:${port}`
    kmsBoot = await simulatedKmsBootInfo(seed, join(dir, 'tee-simulator'))
    policy = demoPolicy(kmsBoot, await simulatedDemoAppMrSystem(seed))
    writePolicy(policy)
    kms = startKms({
      dir,
      configToml: attestedConfigToml({ dir, port, authPort, seed: seedHex, policyFile }),
    })
    await kms.waitForLog((l) => l.msg === 'onboarding worker ready', 60_000)
  })

  after(async () => {
    kms.kill('SIGTERM')
    await kms.waitForExit()
  })

  it('GetAttestationInfo reports the verified measurements of this (simulated) KMS', async () => {
    const res = await prpc(kmsUrl, 'Onboard.GetAttestationInfo?json', '{}')
    assert.equal(res.status, 200, res.text)
    const info = JSON.parse(res.text) as Record<string, string>
    assert.equal(info.attestation_mode, 'dstack-tdx')
    assert.equal(info.tee_variant, 'dstack-tdx')
    assert.equal(info.mr_aggregated, kmsBoot.mrAggregated.toString('hex'))
    assert.equal(info.device_id, kmsBoot.deviceId.toString('hex'))
    assert.equal(info.ppid, pki.ppid.toString('hex'))
    assert.equal(info.os_image_hash, kmsBoot.osImageHash.toString('hex'))
    assert.equal(info.site_name, 'attested-site')
  })

  it('Bootstrap attests the generated keys (dstack-kms-genereted-keys-v1)', async () => {
    const res = await prpc(kmsUrl, 'Bootstrap', '{"domain":"localhost"}')
    assert.equal(res.status, 200, res.text)
    const r = JSON.parse(res.text) as Record<string, string>
    const caPubkey = Buffer.from(r.ca_pubkey ?? '', 'hex')
    const k256Pubkey = Buffer.from(r.k256_pubkey ?? '', 'hex')
    const { attestation } = decodeVersionedAttestation(Buffer.from(r.attestation ?? '', 'hex'))
    const v = await verifier.verify(attestation)
    const statement = `dstack-kms-genereted-keys-v1:${caPubkey.toString('hex')};${k256Pubkey.toString('hex')};`
    assert.deepEqual(
      v.attestation.reportData,
      Buffer.concat([keccak256(Buffer.from(statement)), Buffer.alloc(32)]),
    )
    const fin = await rawRequest({ url: `${kmsUrl}/finish` })
    assert.equal(fin.text, 'OK')
    await kms.waitForLog((l) => l.msg === 'KMS worker ready', 60_000)
  })

  it('the RPC certificate carries a verifiable attestation bound to its key, usage kms:rpc', async () => {
    const res = await prpc(kmsUrl, 'GetMeta', '{}')
    assert.ok(res.peerCertDer !== undefined)
    const cert = parseCertificate(res.peerCertDer)
    assert.equal(readCertUsage(cert), 'kms:rpc')
    const att = attestationFromCertificate(cert)
    assert.ok(att !== null)
    // stripped: only ACPI DATA and RTMR3 events are embedded (upstream `into_stripped`)
    assert.ok(att.quote.kind === 'dstack-tdx')
    assert.ok(att.quote.eventLog.every((e) => e.imr === 3 || e.eventType === 10))
    const v = await verifier.verifyWithRaPubkey(att, cert.spkiDer)
    const boot = buildBootInfo(v, { useBoottimeMr: false, vmConfig: '' })
    assert.deepEqual(boot.mrAggregated, kmsBoot.mrAggregated)
    // bound to the RPC key: another SPKI fails
    await assert.rejects(
      verifier.verifyWithRaPubkey(att, P256Key.generate().spkiDer()),
      /report data mismatch/,
    )
  })

  it('a guest gets its keys, equal to the upstream derivations', async () => {
    const g = demoGuest()
    const r = await fetchKeys(g)
    assert.deepEqual(r.kmsMrAggregated, kmsBoot.mrAggregated)
    const rootCa = P256Key.fromPem(readFileSync(join(certDir, 'root-ca.key'), 'utf8'))
    const rootK256 = readRootK256(certDir)
    assert.deepEqual(
      r.keys.diskCryptKey,
      deriveDhSecret(rootCa, [g.appId, g.instanceId, 'app-disk-crypt-key']),
    )
    assert.deepEqual(r.keys.envCryptKey, deriveDhSecret(rootCa, [g.appId, 'env-encrypt-key']))
    const appK256 = deriveKey(rootK256, [g.appId, 'app-key'], 32)
    assert.deepEqual(r.keys.k256Key, appK256)
    // k256_signature: the root k256 key signed keccak(prefix:appid‖pubkey) (upstream sign_message)
    const digest = keccak256(
      Buffer.from('dstack-kms-issued:'),
      g.appId,
      nobleSecp256k1.publicKeyCompressed(appK256),
    )
    assert.deepEqual(
      nobleSecp256k1.recoverCompressed(digest, r.keys.k256Signature),
      nobleSecp256k1.publicKeyCompressed(rootK256),
    )
    assert.equal(r.keys.caCert, readFileSync(join(certDir, 'root-ca.crt'), 'utf8'))
    assert.deepEqual(r.keys.osImageHash, g.osImageHash)
    assert.equal(r.keys.gatewayAppId, policy.gatewayAppId)
    // the same instance gets the same keys again; another instance another disk key
    const again = await fetchKeys(g)
    assert.deepEqual(again.keys.diskCryptKey, r.keys.diskCryptKey)
    const other = await fetchKeys(demoGuest())
    assert.notDeepEqual(other.keys.diskCryptKey, r.keys.diskCryptKey)
    assert.deepEqual(other.keys.envCryptKey, r.keys.envCryptKey)
  })

  it('@phala/dstack-sdk encryptEnvVars to GetAppEnvEncryptPubKey decrypts with env_crypt_key', async () => {
    const g = demoGuest()
    const res = await prpc(
      kmsUrl,
      'GetAppEnvEncryptPubKey',
      JSON.stringify({ app_id: g.appId.toString('hex') }),
    )
    assert.equal(res.status, 200, res.text)
    const pub = (JSON.parse(res.text) as { public_key: string }).public_key
    const envs = [{ key: 'SECRET', value: 'attested hello' }]
    const sealed = Buffer.from(await encryptEnvVars(envs, pub), 'hex')
    const { keys } = await fetchKeys(g)
    assert.equal(x25519PublicKey(keys.envCryptKey).toString('hex'), pub)
    const shared = x25519.getSharedSecret(keys.envCryptKey, sealed.subarray(0, 32))
    const decipher = createDecipheriv('aes-256-gcm', shared, sealed.subarray(32, 44))
    decipher.setAuthTag(sealed.subarray(sealed.length - 16))
    const plain = Buffer.concat([
      decipher.update(sealed.subarray(44, sealed.length - 16)),
      decipher.final(),
    ])
    assert.deepEqual(JSON.parse(plain.toString('utf8')), { env: envs })
  })

  it('SignCert issues a leaf that chains to the root and carries the right extensions', async () => {
    const g = demoGuest()
    const key = P256Key.generate()
    const attestation = simulateGuestAttestation({
      seed,
      reportData: toReportData('ratls-cert', key.spkiDer()),
      ...g,
    })
    const csr = encodeCsrV2({
      confirm: CSR_CONFIRM,
      pubkey: key.spkiDer(),
      config: csrConfig({
        orgName: 'Demo Org',
        subject: 'demo.example.com',
        subjectAltNames: ['demo.example.com', '127.0.0.1'],
        usageClientAuth: true,
        extQuote: true,
        extAppInfo: true,
      }),
      attestation,
    })
    const res = await prpc(
      kmsUrl,
      'SignCert?json',
      signCertJson(key, csr, simulatedVmConfig(seed, g.osImageHash)),
      {},
    )
    assert.equal(res.status, 200, res.text)
    const chain = (JSON.parse(res.text) as { certificate_chain: string[] }).certificate_chain
    assert.equal(chain.length, 3)
    const [leaf, appCa, root] = chain.map((p) => new X509Certificate(p))
    assert.ok(leaf !== undefined && appCa !== undefined && root !== undefined)
    assert.equal(chain[2], readFileSync(join(certDir, 'root-ca.crt'), 'utf8'))
    assert.ok(leaf.verify(appCa.publicKey))
    assert.ok(appCa.verify(root.publicKey))
    assert.ok(leaf.checkIssued(appCa) && appCa.checkIssued(root))
    const leafParsed = parseCertificate(leaf.raw)
    assert.deepEqual(readRaTlsExtension(leafParsed, RATLS_OID.appId), g.appId)
    assert.equal(readCertUsage(leafParsed), 'app:custom')
    assert.ok(readRaTlsExtension(leafParsed, RATLS_OID.appInfo) !== undefined)
    assert.deepEqual(
      readRaTlsExtension(leafParsed, RATLS_OID.attestation),
      strippedAttestationBytes(attestation),
    )
    assert.deepEqual(leafParsed.spkiDer, key.spkiDer())
    // the App CA key is the upstream derivation, the same for every SignCert of the app
    const rootCa = P256Key.fromPem(readFileSync(join(certDir, 'root-ca.key'), 'utf8'))
    assert.deepEqual(
      parseCertificate(appCa.raw).spkiDer,
      deriveP256Key(rootCa, [g.appId, 'app-ca']).spkiDer(),
    )
    const appCaParsed = parseCertificate(appCa.raw)
    assert.equal(readCertUsage(appCaParsed), 'app:ca')
  })

  describe('denials release nothing and say why', () => {
    it('an app the policy does not list', async () => {
      const other = demoGuest({ appId: randomBytes(20) })
      await assert.rejects(
        fetchKeys(other),
        /GetAppKey failed with status 400: App not allowed: Boot denied: app not registered$/,
      )
    })

    it('a compose hash the policy does not list', async () => {
      await assert.rejects(
        fetchKeys(demoGuest({ composeHash: randomBytes(32) })),
        /App not allowed: Boot denied: compose hash not allowed$/,
      )
    })

    it('an OS image the policy does not list', async () => {
      await assert.rejects(
        fetchKeys(demoGuest({ osImageHash: randomBytes(32) })),
        /App not allowed: Boot denied: OS image is not allowed$/,
      )
    })

    it('another measured OS image claiming the allowed one: the mrSystem pin refuses it', async () => {
      // without OS-image verification the claimed osImageHash (vm_config) passes osImages...
      const other = demoGuest({ osImageHash: randomBytes(32) })
      await assert.rejects(
        fetchKeys(other, simulatedVmConfig(seed, defaultOsImageHash(seed))),
        /App not allowed: Boot denied: system MR not allowed$/,
      )
    })

    it('a device the policy does not list (policy re-read on change)', async () => {
      const appKey = `0x${DEMO_APP_ID.toString('hex')}`
      const restricted = structuredClone(policy)
      const app = restricted.apps[appKey]
      assert.ok(app !== undefined)
      app.devices = [`0x${'ab'.repeat(32)}`]
      writePolicy(restricted)
      try {
        await assert.rejects(
          fetchKeys(demoGuest()),
          /App not allowed: Boot denied: app is not allowed to boot on this device$/,
        )
      } finally {
        writePolicy(policy)
      }
      await fetchKeys(demoGuest())
    })

    it('a KMS MR the policy no longer lists stops every trusted RPC (decision never cached)', async () => {
      writePolicy({ ...policy, kms: { ...policy.kms, mrAggregated: [`0x${'00'.repeat(32)}`] } })
      try {
        assertRpcError(
          await prpc(kmsUrl, 'GetTempCaCert', '{}'),
          'KMS self authorization failed: KMS is not allowed: aggregated MR not allowed',
        )
        assertRpcError(
          await prpc(kmsUrl, 'GetAppEnvEncryptPubKey', JSON.stringify({ app_id: '00'.repeat(20) })),
          'KMS self authorization failed: KMS is not allowed: aggregated MR not allowed',
        )
      } finally {
        writePolicy(policy)
      }
      assert.equal((await prpc(kmsUrl, 'GetTempCaCert', '{}')).status, 200)
    })

    /** A hand-made RA-TLS client certificate around `attestation`, for GetAppKey. */
    const getAppKeyWith = (attestation: Buffer, key: P256Key = P256Key.generate()) =>
      callWithCert(
        'GetAppKey',
        { api_version: 1, vm_config: simulatedVmConfig(seed, defaultOsImageHash(seed)) },
        attestation,
        key,
      )

    it('a certificate whose attestation is bound to another key', async () => {
      const g = demoGuest()
      const otherKey = P256Key.generate()
      const att = simulateGuestAttestation({
        seed,
        reportData: toReportData('ratls-cert', otherKey.spkiDer()),
        ...g,
      })
      assertRpcError(
        await getAppKeyWith(strippedAttestationBytes(att)),
        'invalid quote: report data mismatch',
      )
    })

    it('runtime events that do not replay to the quoted RTMR3', async () => {
      const key = P256Key.generate()
      const att = decodeVersionedAttestation(
        simulateGuestAttestation({
          seed,
          reportData: toReportData('ratls-cert', key.spkiDer()),
          ...demoGuest(),
        }),
      )
      att.attestation.runtimeEvents.push({ event: 'injected', payload: Buffer.from('evil') })
      assertRpcError(
        await getAppKeyWith(encodeVersionedAttestation(att), key),
        /^invalid quote: RTMR3 mismatch/,
      )
    })

    it('a quote from another (untrusted) platform', async () => {
      const key = P256Key.generate()
      const foreign = simulateGuestAttestation({
        seed: randomBytes(32),
        reportData: toReportData('ratls-cert', key.spkiDer()),
        ...demoGuest(),
      })
      assertRpcError(
        await getAppKeyWith(strippedAttestationBytes(foreign), key),
        /^invalid quote: /,
      )
    })

    it('no client certificate at all', async () => {
      assertRpcError(
        await prpc(kmsUrl, 'GetAppKey', '{"api_version":1,"vm_config":"{}"}'),
        'App not allowed: No attestation provided',
      )
      assertRpcError(await prpc(kmsUrl, 'GetKmsKey', '{"vm_config":""}'), 'No attestation provided')
    })

    it('a SignCert whose attestation is bound to another key', async () => {
      const key = P256Key.generate()
      const csr = encodeCsrV2({
        confirm: CSR_CONFIRM,
        pubkey: key.spkiDer(),
        config: csrConfig({ subject: 'x' }),
        attestation: simulateGuestAttestation({
          seed,
          reportData: toReportData('ratls-cert', P256Key.generate().spkiDer()),
          ...demoGuest(),
        }),
      })
      const res = await prpc(kmsUrl, 'SignCert?json', signCertJson(key, csr, ''), {})
      assertRpcError(res, 'Quote verification failed: report data mismatch')
    })
  })

  it('the verifier rejects the simulated platform once its collateral has expired', async () => {
    const att = decodeVersionedAttestation(
      simulateGuestAttestation({ seed, reportData: Buffer.alloc(64), ...demoGuest() }),
    ).attestation
    const late = new AttestationVerifier({
      rootCaDer: pki.root.der,
      collateral: new StaticCollateralSource(mockCollateral(pki)),
      now: () => Date.UTC(2101, 0, 1) / 1000,
    })
    await assert.rejects(late.verify(att), {
      message:
        'Failed to get collateral: Invalid PCK certificate chain: certificate "Mock Intel SGX PCK Certificate" expired at 2100-01-01T00:00:00Z',
    })
  })

  describe('OS-image verification (core.image.verify = true)', () => {
    /** The demo guest's real vm_config with another image hash claimed (the document still
     * belongs to the image it boots). */
    const claimingVmConfig = (claimed: Buffer): string =>
      JSON.stringify({
        ...(JSON.parse(simulatedVmConfig(seed, defaultOsImageHash(seed))) as object),
        os_image_hash: claimed.toString('hex'),
      })
    /** A self-consistent document and hash of an image the guest does not boot. */
    const otherImageVmConfig = (): { vmConfig: string; hash: Buffer } => {
      const other = simulatedOsImage(seed, `other-${randomBytes(4).toString('hex')}`)
      const vmConfig = JSON.stringify({
        ...(JSON.parse(simulatedVmConfig(seed, defaultOsImageHash(seed))) as object),
        os_image_hash: other.osImageHash.toString('hex'),
        tdx_measurement: {
          checksum_file: other.checksumFile.toString('base64'),
          measurement: other.measurementCbor.toString('base64'),
        },
      })
      return { vmConfig, hash: other.osImageHash }
    }
    const allowImages = (...hashes: Buffer[]) =>
      writePolicy({
        ...policy,
        osImages: [...policy.osImages, ...hashes.map((h) => `0x${h.toString('hex')}`)],
      })

    it('GetAppKey: a claimed image the policy allows is refused when the document is not its', async () => {
      const claimed = randomBytes(32)
      allowImages(claimed)
      try {
        await assert.rejects(
          fetchKeys(demoGuest(), claimingVmConfig(claimed)),
          new RegExp(
            `App not allowed: Failed to verify os image hash: Failed to verify os image hash: tdx lite measurement material does not match os_image_hash: os_image_hash mismatch: expected sha256\\(sha256sum\\.txt\\)=${claimed.toString('hex')}, actual=${defaultOsImageHash(seed).toString('hex')}$`,
          ),
        )
      } finally {
        writePolicy(policy)
      }
    })

    it('GetAppKey and SignCert: a consistent document of an image the guest did not boot fails on the registers', async () => {
      const { vmConfig, hash } = otherImageVmConfig()
      allowImages(hash)
      try {
        await assert.rejects(
          fetchKeys(demoGuest(), vmConfig),
          /App not allowed: Failed to verify os image hash: Failed to verify os image hash: MRs do not match: MRTD mismatch: expected=[0-9a-f]{96}, actual=[0-9a-f]{96}$/,
        )
        const key = P256Key.generate()
        const attestation = simulateGuestAttestation({
          seed,
          reportData: toReportData('ratls-cert', key.spkiDer()),
          ...demoGuest(),
        })
        const csr = encodeCsrV2({
          confirm: CSR_CONFIRM,
          pubkey: key.spkiDer(),
          config: csrConfig({ subject: 'demo.example.com' }),
          attestation,
        })
        const res = await prpc(kmsUrl, 'SignCert?json', signCertJson(key, csr, vmConfig), {})
        assertRpcError(
          res,
          /^Failed to verify os image hash: Failed to verify os image hash: MRs do not match: MRTD mismatch: /,
        )
      } finally {
        writePolicy(policy)
      }
    })

    it('GetKmsKey: a KMS the policy admits is refused when it claims another image', async () => {
      const g = demoGuest()
      const key = P256Key.generate()
      const guestAtt = simulateGuestAttestation({
        seed,
        reportData: toReportData('ratls-cert', key.spkiDer()),
        ...g,
      })
      const claimed = randomBytes(32)
      const v = await verifier.verify(decodeVersionedAttestation(guestAtt).attestation)
      const mr = buildBootInfo(v, { useBoottimeMr: false, vmConfig: '' }).mrAggregated
      writePolicy({
        ...policy,
        osImages: [...policy.osImages, `0x${claimed.toString('hex')}`],
        kms: {
          ...policy.kms,
          mrAggregated: [...policy.kms.mrAggregated, `0x${mr.toString('hex')}`],
        },
      })
      try {
        const res = await callWithCert(
          'GetKmsKey',
          { vm_config: claimingVmConfig(claimed) },
          strippedAttestationBytes(guestAtt),
          key,
        )
        assertRpcError(
          res,
          /^Failed to verify os image hash: Failed to verify os image hash: tdx lite measurement material does not match os_image_hash: os_image_hash mismatch: /,
        )
      } finally {
        writePolicy(policy)
      }
    })

    it('the measurement cache: filled by a verification, cleared by ClearImageCache, filled again', async () => {
      const configHash = vmConfigHash(
        parseVmConfig(simulatedVmConfig(seed, defaultOsImageHash(seed))),
      )
      const clear = (imageHash: string, cfg: string) =>
        prpc(
          kmsUrl,
          'ClearImageCache',
          JSON.stringify({ token: ADMIN_TOKEN, image_hash: imageHash, config_hash: cfg }),
        )
      const db = CacheDb.open(join(dir, 'cache'))
      try {
        await fetchKeys(demoGuest())
        const first = db.getMeasurement(configHash)
        assert.ok(first !== undefined, 'a verified boot leaves its expected measurements')
        assert.equal(first.osImageHash, defaultOsImageHash(seed).toString('hex'))
        assert.equal((await clear('', configHash)).status, 200)
        assert.equal(db.getMeasurement(configHash), undefined)
        // verified again from the document, and cached again
        await fetchKeys(demoGuest())
        assert.ok(db.getMeasurement(configHash) !== undefined)
        assert.equal((await clear('all', 'all')).status, 200)
        assert.equal(db.countMeasurements(), 0)
        const keys = await fetchKeys(demoGuest())
        assert.deepEqual(keys.keys.osImageHash, defaultOsImageHash(seed))
        assert.ok(db.getMeasurement(configHash) !== undefined)
      } finally {
        db.close()
      }
    })
  })

  it('GetKmsKey releases the root keys to a KMS the policy admits, and only then', async () => {
    // A "KMS" guest: the simulator's own KMS identity is what the policy lists for KMSs.
    const g = demoGuest()
    const key = P256Key.generate()
    const guestAtt = simulateGuestAttestation({
      seed,
      reportData: toReportData('ratls-cert', key.spkiDer()),
      ...g,
    })
    const getKmsKey = () =>
      callWithCert(
        'GetKmsKey',
        { vm_config: simulatedVmConfig(seed, g.osImageHash) },
        strippedAttestationBytes(guestAtt),
        key,
      )
    const res = await getKmsKey()
    // an app guest is not a KMS the policy lists
    assertRpcError(res, 'Boot denied: aggregated MR not allowed')
    // admit this guest's MR as a KMS: now the root keys are released
    const v = await verifier.verify(decodeVersionedAttestation(guestAtt).attestation)
    const mr = buildBootInfo(v, {
      useBoottimeMr: false,
      vmConfig: simulatedVmConfig(seed, g.osImageHash),
    }).mrAggregated
    writePolicy({
      ...policy,
      kms: { ...policy.kms, mrAggregated: [...policy.kms.mrAggregated, `0x${mr.toString('hex')}`] },
    })
    try {
      const ok = await getKmsKey()
      assert.equal(ok.status, 200, ok.text)
      const r = JSON.parse(ok.text) as {
        temp_ca_key: string
        keys: Array<{ ca_key: string; k256_key: string }>
      }
      assert.equal(r.keys.length, 1)
      assert.deepEqual(
        P256Key.fromPem(r.keys[0]?.ca_key ?? '').spkiDer(),
        P256Key.fromPem(readFileSync(join(certDir, 'root-ca.key'), 'utf8')).spkiDer(),
      )
      assert.equal(r.keys[0]?.k256_key, readRootK256(certDir).toString('hex'))
    } finally {
      writePolicy(policy)
    }
  })
})
