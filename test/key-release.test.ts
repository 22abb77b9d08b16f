// Key release decisions of KmsService with real collaborators: a real key set on disk, the real
// attestation verifier over simulator quotes (mock root), a real auth webhook over HTTP on
// loopback that can allow, deny, fail, hang or answer garbage, and the real client-certificate
// verifier. Every refusal carries upstream's error chain and returns no key material.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { StaticCollateralSource } from '../src/attestation/collateral.js'
import { toReportData } from '../src/attestation/report-data.js'
import { AttestationVerifier, type VerifiedAttestation } from '../src/attestation/verify.js'
import {
  decodeVersionedAttestation,
  encodeVersionedAttestation,
} from '../src/attestation/versioned.js'
import { decode as msgpackDecode } from '@msgpack/msgpack'
import { stripAttestation } from '../src/attestation/stripped.js'
import { runtimeEventToTdxEvent } from '../src/attestation/runtime-events.js'
import type { Attestation } from '../src/attestation/types.js'
import { CacheDb } from '../src/cache/cache-db.js'
import { P256Key } from '../src/crypto/p256.js'
import { KmsError } from '../src/errors.js'
import { ClientCertVerifier } from '../src/kms/client-cert.js'
import type { KmsService } from '../src/kms/service.js'
import { CSR_CONFIRM, encodeCsrV1, encodeCsrV2 } from '../src/ratls/csr.js'
import { strippedAttestationBytes } from '../src/ratls/cert-attestation.js'
import { mockCollateral } from '../src/tee/simulator/collateral.js'
import { simulateGuestAttestation } from '../src/tee/simulator/guest.js'
import { defaultOsImageHash, simulatedVmConfig } from '../src/tee/simulator/cvm.js'
import { mockIntelPki } from '../src/tee/simulator/mock-pki.js'
import { encodeTdxEventLogJson } from '../src/attestation/event-log.js'
import { issueRaTlsClientCert, issueTempCaCert } from '../src/x509/templates.js'
import { parseCertificate, readRaTlsExtension } from '../src/x509/parse.js'
import { RATLS_OID } from '../src/asn1/oids.js'
import { buildConfig } from './helpers/config-builder.js'
import { tempDir } from './helpers/kms-process.js'
import { bootstrapKeySet, testKmsService } from './helpers/kms-service.js'
import { csrConfig, csrConfigV1 } from './helpers/csr-config.js'
import { mockPlatformVerifier } from '../src/quickstart/demo.js'

type Mode = 'allow' | 'deny' | 'garbage' | 'hang' | 'fail'

describe('key release (KmsService with real collaborators)', () => {
  const seed = randomBytes(32)
  const pki = mockIntelPki(seed)
  const verifier = mockPlatformVerifier(seed)
  const logger = pino({ level: 'silent' })
  let mode: Mode = 'allow'
  const requests: Array<{ url: string; body: Record<string, unknown> }> = []
  let server: Server
  let url: string
  let dir: string
  let cache: CacheDb
  const hung: Array<() => void> = []

  const appId = randomBytes(20)
  const guest = () => ({ seed, appId, composeHash: randomBytes(32), instanceId: randomBytes(20) })
  const verified = async (opts: { debug?: boolean } = {}): Promise<VerifiedAttestation> =>
    verifier.verify(
      decodeVersionedAttestation(
        simulateGuestAttestation({ ...guest(), reportData: Buffer.alloc(64), ...opts }),
      ).attestation,
    )

  function service(opts: { imageVerify?: boolean } = {}): KmsService {
    const config = buildConfig(
      {
        core: {
          cert_dir: join(dir, 'certs'),
          enforce_self_authorization: false,
          image: { verify: opts.imageVerify === true, cache_dir: join(dir, 'cache') },
          auth_api: { type: 'webhook', webhook: { url, timeout: '1s' } },
        },
        tee: { backend: 'none' },
      },
      { cwd: dir, fileName: `kms-${randomBytes(4).toString('hex')}.toml` },
    )
    return testKmsService({ config, verifier, cache, logger })
  }

  before(async () => {
    dir = tempDir()
    await bootstrapKeySet(join(dir, 'certs'))
    cache = CacheDb.open(join(dir, 'cache'))
    server = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => (body += c.toString()))
      req.on('end', () => {
        requests.push({
          url: req.url ?? '',
          body: JSON.parse(body || 'null') as Record<string, unknown>,
        })
        if (mode === 'hang') {
          hung.push(() => res.destroy())
          return
        }
        if (mode === 'fail') {
          res.writeHead(500).end('policy engine exploded')
          return
        }
        res.setHeader('content-type', 'application/json')
        if (mode === 'garbage') res.end('<html>not json</html>')
        else if (mode === 'deny') res.end('{"isAllowed":false,"gatewayAppId":"","reason":"nope"}')
        else res.end('{"isAllowed":true,"gatewayAppId":"gw-1","reason":""}')
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const addr = server.address()
    url = `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}`
  })

  after(async () => {
    for (const h of hung) h()
    cache.close()
    await new Promise((resolve) => server.close(resolve))
  })

  it('an allowed boot gets keys; the webhook saw the BootInfo of the verified attestation', async () => {
    mode = 'allow'
    requests.length = 0
    const v = await verified()
    const r = await service().getAppKey(1, '{"os_image_hash":"' + 'cd'.repeat(32) + '"}', v)
    assert.equal(r.gatewayAppId, 'gw-1')
    assert.equal(r.diskCryptKey.length, 32)
    assert.equal(requests.length, 1)
    assert.equal(requests[0]?.url, '/bootAuth/app')
    assert.equal(requests[0]?.body.appId, appId.toString('hex'))
    assert.equal(requests[0]?.body.attestationMode, 'dstack-tdx')
    assert.equal(requests[0]?.body.teeVariant, 'dstack-tdx')
    assert.equal(requests[0]?.body.osImageHash, 'cd'.repeat(32))
    assert.equal(requests[0]?.body.tcbStatus, 'UpToDate')
  })

  it('a denial, a failing, a hanging and a garbage webhook all refuse with upstream texts', async () => {
    const v = await verified()
    const svc = service()
    mode = 'deny'
    await assert.rejects(svc.getAppKey(1, '', v), { message: 'App not allowed: Boot denied: nope' })
    await assert.rejects(svc.getKmsKey('', v), { message: 'Boot denied: nope' })
    mode = 'fail'
    await assert.rejects(svc.getAppKey(1, '', v), {
      message: `App not allowed: auth api ${url}/bootAuth/app returned 500 Internal Server Error: policy engine exploded`,
    })
    mode = 'garbage'
    await assert.rejects(svc.getAppKey(1, '', v), {
      message: `App not allowed: failed to decode response from ${url}/bootAuth/app, status=200 OK, body=<html>not json</html>`,
    })
    mode = 'hang'
    await assert.rejects(svc.getAppKey(1, '', v), (err: Error) => {
      assert.match(
        err.message,
        new RegExp(`^App not allowed: auth api ${url}/bootAuth/app .*timed out`),
      )
      return true
    })
    mode = 'allow'
  })

  it('core.image.verify = true: a guest whose OS image verifies gets its keys, a claimed other image nothing', async () => {
    mode = 'allow'
    const svc = service({ imageVerify: true })
    const v = await verified()
    // an empty vm_config falls back to the attestation's: the simulated lite document
    const keys = await svc.getAppKey(1, '', v)
    assert.deepEqual(keys.osImageHash, defaultOsImageHash(seed))
    await svc.getKmsKey('', v)
    const claimed = JSON.stringify({
      ...(JSON.parse(simulatedVmConfig(seed, defaultOsImageHash(seed))) as object),
      os_image_hash: 'ab'.repeat(32),
    })
    const text = `Failed to verify os image hash: Failed to verify os image hash: tdx lite measurement material does not match os_image_hash: os_image_hash mismatch: expected sha256(sha256sum.txt)=${'ab'.repeat(32)}, actual=${defaultOsImageHash(seed).toString('hex')}`
    await assert.rejects(svc.getAppKey(1, claimed, v), { message: `App not allowed: ${text}` })
    await assert.rejects(svc.getKmsKey(claimed, v), { message: text })
    // the webhook was asked first (upstream order) and saw the claimed hash
    assert.equal(requests.at(-1)?.body['osImageHash'], 'ab'.repeat(32))
  })

  it('SignCert with a legacy V1 CSR (raw quote + JSON event log) issues a leaf for the app', async () => {
    mode = 'allow'
    const key = P256Key.generate()
    const g = guest()
    const { attestation } = decodeVersionedAttestation(
      simulateGuestAttestation({ ...g, reportData: toReportData('ratls-cert', key.spkiDer()) }),
    )
    assert.ok(attestation.quote.kind === 'dstack-tdx')
    const csr = encodeCsrV1({
      confirm: CSR_CONFIRM,
      pubkey: key.spkiDer(),
      config: csrConfigV1({ subject: 'v1.example.com', extQuote: true }),
      quote: attestation.quote.quote,
      eventLog: Buffer.from(encodeTdxEventLogJson(attestation.quote.eventLog)),
    })
    const chain = await service().signCert(1, csr, key.sign(csr), '')
    assert.equal(chain.length, 3)
    const leaf = parseCertificate(
      Buffer.from(chain[0]?.split('\n').slice(1, -2).join('') ?? '', 'base64'),
    )
    assert.deepEqual(readRaTlsExtension(leaf, RATLS_OID.appId), g.appId)
    assert.deepEqual(leaf.spkiDer, key.spkiDer())
    // the legacy CSR's JSON event log replays too: its stripped form is embedded, no config
    const ext = readRaTlsExtension(leaf, RATLS_OID.attestation)
    assert.ok(ext !== undefined)
    assert.deepEqual(
      decodeVersionedAttestation(ext).attestation,
      stripAttestation({ ...attestation, config: '' }),
    )
  })

  describe('SignCert copies only bound bytes into the leaf', () => {
    const leafOf = (chain: string[]) =>
      parseCertificate(Buffer.from(chain[0]?.split('\n').slice(1, -2).join('') ?? '', 'base64'))
    /** a CSR V2 asking for both extensions, over `edit(attestation)` re-encoded as V0 */
    const request = (edit: (a: Attestation) => void = () => {}) => {
      const key = P256Key.generate()
      const { attestation } = decodeVersionedAttestation(
        simulateGuestAttestation({
          ...guest(),
          reportData: toReportData('ratls-cert', key.spkiDer()),
        }),
      )
      edit(attestation)
      const csr = encodeCsrV2({
        confirm: CSR_CONFIRM,
        pubkey: key.spkiDer(),
        config: csrConfig({ extQuote: true, extAppInfo: true }),
        attestation: encodeVersionedAttestation({ version: 0, attestation }),
      })
      return { attestation, csr, signature: key.sign(csr) }
    }
    const embedded = (chain: string[]) => {
      const leaf = leafOf(chain)
      const ext = readRaTlsExtension(leaf, RATLS_OID.attestation)
      const info = readRaTlsExtension(leaf, RATLS_OID.appInfo)
      assert.ok(ext !== undefined && info !== undefined)
      const appInfo = msgpackDecode(info) as Uint8Array[]
      return { ext, attestation: decodeVersionedAttestation(ext).attestation, appInfo }
    }

    it('with the OS image verified: the stripped attestation, config and os_image_hash as measured', async () => {
      mode = 'allow'
      const r = request()
      const out = embedded(await service({ imageVerify: true }).signCert(2, r.csr, r.signature, ''))
      assert.deepEqual(
        out.ext,
        strippedAttestationBytes(
          encodeVersionedAttestation({ version: 0, attestation: r.attestation }),
        ),
      )
      assert.equal(out.attestation.config, r.attestation.config)
      assert.deepEqual(Buffer.from(out.appInfo[6] ?? []), defaultOsImageHash(seed))
      // a request vm_config other than the embedded one: the embedded config was not measured
      const other = JSON.stringify(
        JSON.parse(simulatedVmConfig(seed, defaultOsImageHash(seed))),
        null,
        1,
      )
      assert.notEqual(other, r.attestation.config)
      const r2 = request()
      const out2 = embedded(
        await service({ imageVerify: true }).signCert(2, r2.csr, r2.signature, other),
      )
      assert.equal(out2.attestation.config, '')
      assert.deepEqual(Buffer.from(out2.appInfo[6] ?? []), defaultOsImageHash(seed))
    })

    it('without an image check: no config and no os_image_hash, only claims', async () => {
      mode = 'allow'
      const r = request()
      const out = embedded(await service().signCert(2, r.csr, r.signature, ''))
      assert.equal(out.attestation.config, '')
      assert.equal(out.appInfo[6]?.length, 0)
      // everything else is the stripped attestation
      assert.deepEqual(out.attestation, stripAttestation({ ...r.attestation, config: '' }))
    })

    it('zero padding after the quote is not copied; a non-zero byte there is refused', async () => {
      mode = 'allow'
      let quote: Buffer = Buffer.alloc(0)
      const padded = request((a) => {
        assert.ok(a.quote.kind === 'dstack-tdx')
        quote = a.quote.quote
        a.quote.quote = Buffer.concat([quote, Buffer.alloc(70)])
      })
      const out = embedded(await service().signCert(2, padded.csr, padded.signature, ''))
      assert.ok(out.attestation.quote.kind === 'dstack-tdx')
      assert.deepEqual(out.attestation.quote.quote, quote)
      const tail = request((a) => {
        assert.ok(a.quote.kind === 'dstack-tdx')
        a.quote.quote = Buffer.concat([a.quote.quote, Buffer.from([0, 7])])
      })
      await assert.rejects(service().signCert(2, tail.csr, tail.signature, ''), {
        message: `Quote verification failed: Non-zero byte after the quote's signature data at offset ${quote.length + 1} (only zero padding may follow a quote)`,
      })
    })

    it('an event the RTMRs do not account for, or a boot event with a made-up name, is refused', async () => {
      mode = 'allow'
      const extra = request((a) => {
        assert.ok(a.quote.kind === 'dstack-tdx')
        a.quote.eventLog.push(
          runtimeEventToTdxEvent({ event: 'extra', payload: Buffer.from('unbound') }),
        )
      })
      await assert.rejects(service().signCert(2, extra.csr, extra.signature, ''), (err: Error) => {
        assert.match(
          err.message,
          /^Failed to sign certificate: Event log does not replay to RTMR3, quoted: [0-9a-f]{96}, replayed: [0-9a-f]{96}$/,
        )
        return true
      })
      const renamed = request((a) => {
        assert.ok(a.quote.kind === 'dstack-tdx')
        const boot = a.quote.eventLog.find((e) => e.imr === 0 && e.event === 'acpi-rsdp')
        assert.ok(boot !== undefined)
        boot.event = 'not-acpi'
      })
      await assert.rejects(service().signCert(2, renamed.csr, renamed.signature, ''), {
        message:
          'Failed to sign certificate: event 9: the name of a ACPI DATA boot event must be "" or "acpi-rsdp", not "not-acpi"',
      })
      // without the extension nothing of the log is copied, so nothing is refused
    })
  })

  describe('client certificates (verified per certificate, never trusted unverified)', () => {
    const tempCaKey = P256Key.generate()
    const tempCa = { key: tempCaKey, subjectDer: issueTempCaCert(tempCaKey).subjectDer }
    const socketWith = (der: Buffer) => ({ getPeerX509Certificate: () => ({ raw: der }) })
    const certFor = (opts: { debug?: boolean; bindTo?: P256Key } = {}) => {
      const key = P256Key.generate()
      const att = simulateGuestAttestation({
        ...guest(),
        reportData: toReportData('ratls-cert', (opts.bindTo ?? key).spkiDer()),
        ...(opts.debug === true ? { debug: true } : {}),
      })
      return issueRaTlsClientCert(key, tempCa, strippedAttestationBytes(att)).der
    }

    /** the shared verifier, counting the verifications that reach it */
    const countingVerifier = () => {
      const counting = {
        calls: 0,
        verifyWithRaPubkey: async (
          ...args: Parameters<AttestationVerifier['verifyWithRaPubkey']>
        ) => {
          counting.calls++
          return verifier.verifyWithRaPubkey(...args)
        },
      }
      return counting
    }

    it('a good certificate yields its verified attestation; a debug TD is refused', async () => {
      const certs = new ClientCertVerifier(verifier)
      const ok = await certs.context(socketWith(certFor()))
      assert.equal(ok.hasCertificate, true)
      assert.equal(ok.attestation?.variant, 'dstack-tdx')
      // refused for being a debug TD, with dstack's text, before any collateral is looked at
      await assert.rejects(certs.context(socketWith(certFor({ debug: true }))), {
        message: 'invalid quote: Debug mode is not allowed',
      })
      await assert.rejects(certs.context(socketWith(certFor({ bindTo: P256Key.generate() }))), {
        message: 'invalid quote: report data mismatch',
      })
    })

    it('expired collateral fails closed', async () => {
      const late = new AttestationVerifier({
        rootCaDer: pki.root.der,
        collateral: new StaticCollateralSource(mockCollateral(pki)),
        now: () => Date.UTC(2101, 0, 1) / 1000,
      })
      await assert.rejects(new ClientCertVerifier(late).context(socketWith(certFor())), {
        message:
          'invalid quote: Failed to get collateral: Invalid PCK certificate chain: certificate "Mock Intel SGX PCK Certificate" expired at 2100-01-01T00:00:00Z',
      })
    })

    it('reads the certificate of a connection once, however many requests it carries', async () => {
      let reads = 0
      const der = certFor()
      const socket = {
        getPeerX509Certificate: () => {
          reads++
          return { raw: der }
        },
      }
      const certs = new ClientCertVerifier(verifier)
      const first = await certs.context(socket)
      const second = await certs.context(socket)
      assert.equal(reads, 1)
      assert.equal(second.certSha256, first.certSha256)
      assert.equal(second.attestation, first.attestation)
    })

    it('results and deterministic failures are cached per certificate for the TTL only', async () => {
      let clock = 0
      const counting = countingVerifier()
      const certs = new ClientCertVerifier(counting, { ttlMs: 1000, now: () => clock })
      const der = certFor()
      await certs.context(socketWith(der))
      await certs.context(socketWith(der))
      assert.equal(counting.calls, 1)
      clock = 1001
      await certs.context(socketWith(der))
      assert.equal(counting.calls, 2)
      await certs.context(socketWith(certFor()))
      assert.equal(counting.calls, 3)
      // a report-data mismatch is a property of the bytes: verified once per TTL
      const bad = certFor({ bindTo: P256Key.generate() })
      for (let i = 0; i < 8; i++) {
        await assert.rejects(certs.context(socketWith(bad)), {
          message: 'invalid quote: report data mismatch',
        })
      }
      assert.equal(counting.calls, 4)
      clock = 3000
      await assert.rejects(certs.context(socketWith(bad)))
      assert.equal(counting.calls, 5)
    })

    it('remembers the most recently used maxEntries certificates', async () => {
      const counting = countingVerifier()
      const certs = new ClientCertVerifier(counting, { maxEntries: 2 })
      const [a, b, c] = [certFor(), certFor(), certFor()]
      for (const der of [a, b, a, c]) await certs.context(socketWith(der))
      assert.equal(counting.calls, 3)
      // a was used after b, so c pushed b out
      await certs.context(socketWith(a))
      assert.equal(counting.calls, 3)
      await certs.context(socketWith(b))
      assert.equal(counting.calls, 4)
    })

    it('at most maxConcurrent verifications run at once; the others wait and then finish', async () => {
      let running = 0
      let peak = 0
      const slow = {
        verifyWithRaPubkey: async (
          ...args: Parameters<AttestationVerifier['verifyWithRaPubkey']>
        ) => {
          running++
          peak = Math.max(peak, running)
          await new Promise((resolve) => setTimeout(resolve, 20))
          running--
          return verifier.verifyWithRaPubkey(...args)
        },
      }
      const certs = new ClientCertVerifier(slow, { maxConcurrent: 2 })
      const results = await Promise.all(
        Array.from({ length: 7 }, () => certs.context(socketWith(certFor()))),
      )
      assert.equal(peak, 2)
      assert.ok(results.every((r) => r.hasCertificate))
    })

    it('transient failures (collateral unavailable) are not cached', async () => {
      let calls = 0
      let outage = true
      const flaky = {
        verifyWithRaPubkey: async (
          ...args: Parameters<AttestationVerifier['verifyWithRaPubkey']>
        ) => {
          calls++
          if (outage) {
            throw new KmsError('KMS_ERR_COLLATERAL', 'Failed to get collateral: PCCS unreachable')
          }
          return verifier.verifyWithRaPubkey(...args)
        },
      }
      const certs = new ClientCertVerifier(flaky)
      const der = certFor()
      await assert.rejects(certs.context(socketWith(der)), /PCCS unreachable/)
      await assert.rejects(certs.context(socketWith(der)), /PCCS unreachable/)
      assert.equal(calls, 2)
      outage = false
      assert.equal((await certs.context(socketWith(der))).hasCertificate, true)
      assert.equal(calls, 3)
    })
  })
})
