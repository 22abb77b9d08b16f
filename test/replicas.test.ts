// A replica set on the TEE simulator: three real `dstack-kms serve` processes (distinct instance
// ids, so distinct mr_aggregated; distinct ports and data directories; each policy admits the
// others), the first bootstrapped, the second onboarded through Onboard.Onboard, the third by
// `auto_onboard_source` while its source is at first unreachable. Every replica must serve the
// same root: same GetMeta keys, same env-encryption key, byte-identical guest keys, SignCert
// chains to the same root. The refusals (policy either way, no attestation, a certificate
// swapped between connections, keys that do not match the source's GetMeta) write nothing.
import assert from 'node:assert/strict'
import { X509Certificate, createHash, randomBytes } from 'node:crypto'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import { connect as netConnect, createServer as createNetServer, type Server } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { BootInfo } from '../src/attestation/boot-info.js'
import { toReportData } from '../src/attestation/report-data.js'
import { P256Key } from '../src/crypto/p256.js'
import { generateSecp256k1Key } from '../src/crypto/secp256k1.js'
import type { GuestKeyResult } from '../src/guest/guest-client.js'
import {
  DEMO_APP_ID,
  DEMO_COMPOSE_HASH,
  demoPolicy,
  mockPlatformVerifier,
  requestSimulatedGuestKeys,
  simulatedDemoAppMrSystem,
} from '../src/quickstart/demo.js'
import { CSR_CONFIRM, encodeCsrV2 } from '../src/ratls/csr.js'
import { strippedAttestationBytes } from '../src/ratls/cert-attestation.js'
import { defaultOsImageHash, simulatedVmConfig } from '../src/tee/simulator/cvm.js'
import { simulateGuestAttestation } from '../src/tee/simulator/guest.js'
import { SimulatorBackend } from '../src/tee/simulator/simulator-backend.js'
import { issueCertificate } from '../src/x509/certificate.js'
import { issueRootCaCert, issueRpcCert, issueTempCaCert } from '../src/x509/templates.js'
import { prpc, rawRequest, type RawResponse } from './helpers/https-client.js'
import { attestedConfigToml } from './helpers/kms-config.js'
import { freePort, startKms, tempDir, type KmsProcess } from './helpers/kms-process.js'
import { csrConfig, signCertJson } from './helpers/csr-config.js'
import { simulatedKmsInstance } from './helpers/simulated-kms.js'

interface Replica {
  name: string
  dir: string
  certDir: string
  port: number
  authPort: number
  url: string
  policyFile: string
  boot: BootInfo
  proc?: KmsProcess
}

const KEY_FILES = ['root-ca.key', 'root-k256.key', 'tmp-ca.key', 'rpc.key', 'rpc-domain']

/** Nothing of a key set, committed or staged, in `certDir`. */
function assertNothingWritten(certDir: string): void {
  const present = existsSync(certDir) ? readdirSync(certDir) : []
  assert.deepEqual(
    present.filter((f) => KEY_FILES.includes(f) || f.endsWith('.crt') || f === '.staging'),
    [],
  )
}

function json(res: RawResponse): Record<string, unknown> {
  return JSON.parse(res.text) as Record<string, unknown>
}

function rpcError(res: RawResponse): string {
  assert.equal(res.status, 400, res.text)
  return String(json(res).error)
}

/** A TCP relay whose n-th connection (0-based) goes to `target(n)`; null = refuse. */
function relay(port: number, target: (n: number) => number | null): Promise<Server> {
  let n = 0
  const srv = createNetServer((client) => {
    const to = target(n++)
    if (to === null) {
      client.destroy()
      return
    }
    const upstream = netConnect(to, '127.0.0.1')
    client.pipe(upstream).pipe(client)
    const close = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on('error', close)
    upstream.on('error', close)
    client.on('close', close)
    upstream.on('close', close)
  })
  return new Promise((resolve, reject) => {
    srv.on('error', reject)
    srv.listen(port, '127.0.0.1', () => resolve(srv))
  })
}

const HAPROXY_CFG = join(import.meta.dirname, '../docs/deploy/haproxy.cfg')

/** The shipped HAProxy configuration with loopback addresses: the test runs the very file
 * operators copy, so a change to it that breaks the replica set fails here. */
function haproxyConfig(lbPort: number, statsSocket: string, replicaPorts: number[]): string {
  let cfg = readFileSync(HAPROXY_CFG, 'utf8')
  const replace = (re: RegExp, to: string) => {
    assert.match(cfg, re, `docs/deploy/haproxy.cfg no longer has ${String(re)}`)
    cfg = cfg.replace(re, to)
  }
  replace(/^(\s*)bind :8000$/m, `$1bind 127.0.0.1:${lbPort}`)
  replace(/stats socket \S+/, `stats socket ${statsSocket}`)
  replicaPorts.forEach((port, i) => {
    replace(
      new RegExp(`^(\\s*)server kms-${i + 1} \\S+$`, 'm'),
      `$1server kms-${i + 1} 127.0.0.1:${port}`,
    )
  })
  return cfg
}

/** `show stat` on the admin socket: one record per proxy/server. */
function haproxyStat(socketPath: string): Promise<Array<Record<string, string>>> {
  return new Promise((resolve, reject) => {
    const c = netConnect({ path: socketPath })
    let text = ''
    c.on('data', (d: Buffer) => (text += d.toString('utf8')))
    c.on('error', reject)
    c.on('end', () => {
      const lines = text.split('\n').filter((l) => l !== '')
      const header = (lines[0] ?? '').replace(/^# /, '').split(',')
      resolve(
        lines.slice(1).map((l) => Object.fromEntries(l.split(',').map((v, i) => [header[i], v]))),
      )
    })
    c.end('show stat\n')
  })
}

async function serverStatus(socketPath: string, server: string): Promise<string> {
  const rows = await haproxyStat(socketPath)
  const row = rows.find((r) => r.pxname === 'kms_replicas' && r.svname === server)
  return row?.status ?? 'missing'
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

describe('a replica set of three KMS on the TEE simulator', () => {
  const seedHex = randomBytes(32).toString('hex')
  const seed = Buffer.from(seedHex, 'hex')
  const verifier = mockPlatformVerifier(seed)
  const replicas: Replica[] = []
  let appMrSystem: Buffer
  let fakeSourceBoot: BootInfo
  let fakeSourceDir: string
  let relayPort: number
  let autoRelay: Server | undefined
  const servers: Array<Server | HttpsServer> = []
  const guestInstance = randomBytes(20)
  /** the demo app's guest, one instance throughout */
  const demoGuest = {
    seed,
    appId: DEMO_APP_ID,
    composeHash: DEMO_COMPOSE_HASH,
    instanceId: guestInstance,
    osImageHash: defaultOsImageHash(seed),
  }

  /** The simulated CVM of a replica with its own instance id (hence its own mr_aggregated). */
  async function simulatedKms(dir: string): Promise<BootInfo> {
    const stateDir = join(dir, 'tee-simulator')
    return simulatedKmsInstance(seed, stateDir)
  }

  const policyAdmitting = (boots: BootInfo[]) => {
    const p = demoPolicy(boots[0] as BootInfo, appMrSystem)
    return {
      ...p,
      kms: { ...p.kms, mrAggregated: boots.map((b) => b.mrAggregated.toString('hex')) },
    }
  }
  const allKms = () => [...replicas.map((r) => r.boot), fakeSourceBoot]
  const writePolicy = (r: Replica, boots: BootInfo[]) =>
    writeFileSync(r.policyFile, JSON.stringify(policyAdmitting(boots), null, 2))

  async function newReplica(name: string): Promise<Replica> {
    const dir = tempDir(`dstack-kms-${name}-`)
    const port = await freePort()
    const r: Replica = {
      name,
      dir,
      certDir: join(dir, 'certs'),
      port,
      authPort: await freePort(),
      url: `https://localhost:${port}`,
      policyFile: join(dir, 'auth-config.json'),
      boot: await simulatedKms(dir),
    }
    return r
  }

  function start(r: Replica, onboardToml = ''): KmsProcess {
    const toml = attestedConfigToml({
      dir: r.dir,
      port: r.port,
      authPort: r.authPort,
      seed: seedHex,
      policyFile: r.policyFile,
    })
    // the replica's own onboarding settings go into the [core.onboard] table the helper wrote
    r.proc = startKms({
      dir: r.dir,
      configToml: toml.replace(
        'auto_bootstrap_domain = ""',
        `auto_bootstrap_domain = ""\n${onboardToml}`,
      ),
    })
    return r.proc
  }

  const at = (i: number): Replica => {
    const r = replicas[i]
    assert.ok(r !== undefined)
    return r
  }

  /** An attested (simulated) KMS the receivers admit, publishing the real set's GetMeta but
   * handing out keys of its own. Started once. */
  let fakePort: number | undefined
  async function fakeSource(): Promise<number> {
    if (fakePort !== undefined) return fakePort
    const a = at(0)
    // an attested (simulated) KMS the receiver admits, publishing the real set's GetMeta but
    // handing out keys of its own
    const sim = await SimulatorBackend.create({
      seed,
      stateDir: join(fakeSourceDir, 'tee-simulator'),
    })
    const rootKey = P256Key.generate()
    const root = issueRootCaCert(rootKey)
    const rpcKey = P256Key.generate()
    const att = strippedAttestationBytes(
      await sim.attest(toReportData('ratls-cert', rpcKey.spkiDer())),
    )
    const rpcCert = issueRpcCert(
      'localhost',
      rpcKey,
      { key: rootKey, subjectDer: root.subjectDer },
      att,
    )
    const tmpKey = P256Key.generate()
    const tmpCert = issueTempCaCert(tmpKey)
    const realMeta = (await prpc(a.url, 'GetMeta', '{}')).text
    const fake = createHttpsServer(
      { key: rpcKey.pkcs8Pem(), cert: rpcCert.pem, requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        const path = (req.url ?? '').split('?')[0]
        if (path === '/prpc/GetTempCaCert') {
          res.end(
            JSON.stringify({
              temp_ca_cert: tmpCert.pem,
              temp_ca_key: tmpKey.pkcs8Pem(),
              ca_cert: root.pem,
            }),
          )
        } else if (path === '/prpc/GetMeta') {
          res.end(realMeta)
        } else if (path === '/prpc/GetKmsKey') {
          res.end(
            JSON.stringify({
              temp_ca_key: tmpKey.pkcs8Pem(),
              keys: [
                {
                  ca_key: rootKey.pkcs8Pem(),
                  k256_key: generateSecp256k1Key().toString('hex'),
                },
              ],
            }),
          )
        } else {
          res.statusCode = 400
          res.end('{"error":"no such method"}')
        }
      },
    )
    servers.push(fake)
    fakePort = await new Promise<number>((resolve) =>
      fake.listen(0, '127.0.0.1', () => {
        const addr = fake.address()
        resolve(typeof addr === 'object' && addr !== null ? addr.port : 0)
      }),
    )
    return fakePort
  }

  before(async () => {
    appMrSystem = await simulatedDemoAppMrSystem(seed)
    for (const name of ['kms-a', 'kms-b', 'kms-c']) replicas.push(await newReplica(name))
    fakeSourceDir = tempDir('dstack-kms-fake-source-')
    fakeSourceBoot = await simulatedKms(fakeSourceDir)
    const [a, b, c] = [at(0), at(1), at(2)]
    assert.notDeepEqual(a.boot.instanceId, b.boot.instanceId)
    assert.notDeepEqual(a.boot.mrAggregated, b.boot.mrAggregated)
    assert.notDeepEqual(b.boot.mrAggregated, c.boot.mrAggregated)
    for (const r of replicas) writePolicy(r, allKms())
    relayPort = await freePort()
    start(a)
    start(b)
    await Promise.all(
      [a, b].map((r) => r.proc?.waitForLog((l) => l.msg === 'onboarding worker ready', 60_000)),
    )
  })

  after(async () => {
    for (const s of servers) s.close()
    autoRelay?.close()
    for (const r of replicas) r.proc?.kill('SIGTERM')
    await Promise.all(replicas.map((r) => r.proc?.waitForExit().catch(() => undefined)))
  })

  it('the first replica bootstraps and serves', async () => {
    const a = at(0)
    const res = await prpc(a.url, 'Onboard.Bootstrap?json', '{"domain":"localhost"}')
    assert.equal(res.status, 200, res.text)
    assert.equal((await rawRequest({ url: `${a.url}/finish` })).text, 'OK')
    await a.proc?.waitForLog((l) => l.msg === 'KMS worker ready', 60_000)
  })

  it('InspectSource shows the verified source and whether this KMS admits it; writes nothing', async () => {
    const [a, b] = [at(0), at(1)]
    const res = await prpc(
      b.url,
      'Onboard.InspectSource?json',
      JSON.stringify({ source_url: `${a.url}/` }),
    )
    assert.equal(res.status, 200, res.text)
    const r = json(res)
    const meta = json(await prpc(a.url, 'GetMeta', '{}'))
    const caDer = new X509Certificate(String(meta.ca_cert)).raw
    assert.equal(r.source_url, `${a.url}/prpc`)
    assert.equal(r.mr_aggregated, a.boot.mrAggregated.toString('hex'))
    assert.equal(r.device_id, a.boot.deviceId.toString('hex'))
    assert.equal(r.os_image_hash, a.boot.osImageHash.toString('hex'))
    assert.equal(r.tcb_status, 'UpToDate')
    assert.equal(r.tee_variant, 'dstack-tdx')
    assert.equal(r.ca_cert_fingerprint, createHash('sha256').update(caDer).digest('hex'))
    assert.equal(r.k256_pubkey, meta.k256_pubkey)
    assert.equal(r.allowed, true)
    assert.equal(r.reason ?? '', '')

    // this KMS's policy without the source: the same answer, not allowed, with the reason
    writePolicy(b, [b.boot])
    const denied = json(
      await prpc(b.url, 'Onboard.InspectSource?json', JSON.stringify({ source_url: a.url })),
    )
    assert.equal(denied.allowed ?? false, false)
    assert.equal(denied.reason, 'aggregated MR not allowed')
    assert.equal(denied.mr_aggregated, a.boot.mrAggregated.toString('hex'))
    writePolicy(b, allKms())

    // a browser page of another site may not drive it
    const cross = await prpc(
      b.url,
      'Onboard.InspectSource?json',
      JSON.stringify({ source_url: a.url }),
      { 'content-type': 'application/json', 'sec-fetch-site': 'cross-site' },
    )
    assert.equal(rpcError(cross), 'cross-site request refused')
    assertNothingWritten(b.certDir)
  })

  describe('refusals write nothing', () => {
    it('a source this KMS does not admit', async () => {
      const [a, b] = [at(0), at(1)]
      writePolicy(b, [b.boot, at(2).boot])
      try {
        const err = rpcError(
          await prpc(b.url, 'Onboard', JSON.stringify({ source_url: a.url, domain: 'localhost' })),
        )
        assert.equal(
          err,
          'Failed to onboard: Source KMS is not allowed for onboarding: boot denied: aggregated MR not allowed',
        )
      } finally {
        writePolicy(b, allKms())
      }
      assertNothingWritten(b.certDir)
    })

    it('a receiver the source does not admit (the source says why)', async () => {
      const [a, b] = [at(0), at(1)]
      writePolicy(a, [a.boot, at(2).boot])
      try {
        const err = rpcError(
          await prpc(b.url, 'Onboard', JSON.stringify({ source_url: a.url, domain: 'localhost' })),
        )
        // the source's own 400 body, embedded as upstream's client does
        assert.equal(
          err,
          `Failed to onboard: Request failed with status=400 Bad Request, error=${JSON.stringify({ error: 'Boot denied: aggregated MR not allowed' }, null, 2)}`,
        )
      } finally {
        writePolicy(a, allKms())
      }
      assertNothingWritten(b.certDir)
    })

    it('a source whose certificate carries no attestation', async () => {
      const b = at(1)
      const key = P256Key.generate()
      const cert = issueCertificate(key, {
        subject: { commonName: 'localhost' },
        subjectAltNames: ['localhost'],
        extendedKeyUsage: { serverAuth: true, clientAuth: false },
      })
      const plain = createHttpsServer({ key: key.pkcs8Pem(), cert: cert.pem }, (_req, res) => {
        res.end('null')
      })
      servers.push(plain)
      const port = await new Promise<number>((resolve) =>
        plain.listen(0, '127.0.0.1', () => {
          const addr = plain.address()
          resolve(typeof addr === 'object' && addr !== null ? addr.port : 0)
        }),
      )
      const body = JSON.stringify({ source_url: `https://127.0.0.1:${port}`, domain: 'localhost' })
      assert.equal(
        rpcError(await prpc(b.url, 'Onboard', body)),
        'Failed to onboard: Source KMS certificate does not contain attestation',
      )
      assert.equal(
        rpcError(
          await prpc(
            b.url,
            'Onboard.InspectSource?json',
            JSON.stringify({ source_url: `https://127.0.0.1:${port}` }),
          ),
        ),
        'Source KMS certificate does not contain attestation',
      )
      assertNothingWritten(b.certDir)
    })

    it('a man in the middle that swaps the server certificate after the first connection', async () => {
      const [a, b] = [at(0), at(1)]
      // another attested KMS, admitted by the receiver, answers every connection after the first
      const decoyPort = await fakeSource()
      const mitmPort = await freePort()
      const mitm = await relay(mitmPort, (n) => (n === 0 ? a.port : decoyPort))
      servers.push(mitm)
      try {
        const err = rpcError(
          await prpc(
            b.url,
            'Onboard',
            JSON.stringify({ source_url: `https://localhost:${mitmPort}`, domain: 'localhost' }),
          ),
        )
        assert.equal(
          err,
          'Failed to onboard: Source KMS presented a different certificate key than the one whose attestation was verified',
        )
      } finally {
        mitm.close()
      }
      assertNothingWritten(b.certDir)
    })

    it('a source that answers keys other than those of its GetMeta', async () => {
      const b = at(1)
      const port = await fakeSource()
      const err = rpcError(
        await prpc(
          b.url,
          'Onboard',
          JSON.stringify({ source_url: `https://localhost:${port}`, domain: 'localhost' }),
        ),
      )
      assert.equal(
        err,
        'Failed to onboard: Source KMS sent a CA key that does not match the ca_cert of its GetMeta',
      )
      assertNothingWritten(b.certDir)
    })

    it('one Onboard at a time; a source that never completes the TLS handshake times out after 5 s', async () => {
      const b = at(1)
      // accepts TCP connections and then says nothing
      const silent = createNetServer(() => {})
      servers.push(silent)
      const port = await new Promise<number>((resolve) =>
        silent.listen(0, '127.0.0.1', () => {
          const addr = silent.address()
          resolve(typeof addr === 'object' && addr !== null ? addr.port : 0)
        }),
      )
      const body = JSON.stringify({ source_url: `https://127.0.0.1:${port}`, domain: 'localhost' })
      const first = prpc(b.url, 'Onboard', body)
      // the first call is inside its connect timeout: a second one is refused at once
      await sleep(500)
      assert.equal(
        rpcError(await prpc(b.url, 'Onboard', body)),
        'Failed to onboard: another Bootstrap or Onboard is in progress',
      )
      assert.equal(
        rpcError(await first),
        `Failed to onboard: error sending request for url (https://127.0.0.1:${port}/prpc/GetTempCaCert?json): connect timed out after 5000 ms`,
      )
      assertNothingWritten(b.certDir)
    })

    it('a bad domain, before anything is fetched', async () => {
      const [a, b] = [at(0), at(1)]
      const err = rpcError(
        await prpc(b.url, 'Onboard', JSON.stringify({ source_url: a.url, domain: 'kms-.example' })),
      )
      assert.equal(err, 'domain contains an invalid DNS label')
      assertNothingWritten(b.certDir)
    })
  })

  it('the second replica onboards through Onboard.Onboard', async () => {
    const [a, b] = [at(0), at(1)]
    const res = await prpc(
      b.url,
      'Onboard',
      JSON.stringify({ source_url: `${a.url}/`, domain: 'localhost' }),
    )
    assert.equal(res.status, 200, res.text)
    const meta = json(await prpc(a.url, 'GetMeta', '{}'))
    assert.deepEqual(json(res), { k256_pubkey: meta.k256_pubkey })
    // no bootstrap-info.json: the replica did not generate the keys
    assert.equal(existsSync(join(b.certDir, 'bootstrap-info.json')), false)
    assert.equal(readFileSync(join(b.certDir, 'rpc-domain'), 'utf8'), 'localhost')
    assert.equal(
      rpcError(
        await prpc(b.url, 'Onboard', JSON.stringify({ source_url: a.url, domain: 'localhost' })),
      ),
      'KMS has already been onboarded',
    )
    assert.equal((await rawRequest({ url: `${b.url}/finish` })).text, 'OK')
    await b.proc?.waitForLog((l) => l.msg === 'KMS worker ready', 60_000)
  })

  it('the third replica onboards itself from auto_onboard_source, retrying while it is unreachable', async () => {
    const [a, c] = [at(0), at(2)]
    // the source URL points at a relay that refuses until the test lets it through
    let open = false
    autoRelay = await relay(relayPort, () => (open ? a.port : null))
    const proc = start(
      c,
      `auto_onboard_source = "https://localhost:${relayPort}"\nauto_onboard_domain = "localhost"`,
    )
    await proc.waitForLog((l) => /^source KMS unreachable/.test(String(l.msg)), 60_000)
    await proc.waitForLog(
      (l) => /^source KMS unreachable/.test(String(l.msg)) && l.attempt === 2,
      60_000,
    )
    open = true
    await proc.waitForLog((l) => l.msg === 'auto-onboarded', 60_000)
    await proc.waitForLog((l) => l.msg === 'KMS worker ready', 60_000)
    assert.equal(
      proc.logs.some((l) => l.msg === 'onboarding worker ready'),
      false,
      'auto-onboard opens no onboarding listener',
    )
    assert.equal(existsSync(join(c.certDir, 'bootstrap-info.json')), false)
  })

  describe('every replica serves the same root', () => {
    const metas: Array<Record<string, unknown>> = []
    before(async () => {
      for (const r of replicas) metas.push(json(await prpc(r.url, 'GetMeta', '{}')))
    })

    it('GetMeta: same ca_cert and k256_pubkey; each replica its own RPC key', async () => {
      const [m0, ...rest] = metas
      assert.ok(m0 !== undefined)
      for (const m of rest) {
        assert.equal(m.ca_cert, m0.ca_cert)
        assert.equal(m.k256_pubkey, m0.k256_pubkey)
      }
      const rpcKeys = replicas.map((r) => readFileSync(join(r.certDir, 'rpc.key'), 'utf8'))
      assert.equal(new Set(rpcKeys).size, 3)
      // the shared keys, and the source's CA certificates byte for byte
      for (const f of ['root-ca.key', 'root-k256.key', 'tmp-ca.key', 'root-ca.crt', 'tmp-ca.crt']) {
        const contents = replicas.map((r) => readFileSync(join(r.certDir, f)).toString('hex'))
        assert.equal(new Set(contents).size, 1, f)
      }
    })

    it('GetAppEnvEncryptPubKey: the same public key from each', async () => {
      const keys = await Promise.all(
        replicas.map(async (r) =>
          json(
            await prpc(
              r.url,
              'GetAppEnvEncryptPubKey',
              JSON.stringify({ app_id: DEMO_APP_ID.toString('hex') }),
            ),
          ),
        ),
      )
      for (const k of keys) {
        assert.equal(typeof k.public_key, 'string')
        assert.equal(k.public_key, keys[0]?.public_key)
      }
    })

    it('a guest gets byte-identical keys from each replica, each replica attested as itself', async () => {
      const results: GuestKeyResult[] = []
      for (const r of replicas) {
        results.push(await requestSimulatedGuestKeys({ kmsUrl: r.url, guest: demoGuest, verifier }))
      }
      const [first, ...rest] = results
      assert.ok(first !== undefined)
      for (const res of rest) assert.deepEqual(res.keys, first.keys)
      assert.deepEqual(
        results.map((x) => x.kmsMrAggregated?.toString('hex')),
        replicas.map((r) => r.boot.mrAggregated.toString('hex')),
      )
    })

    it('SignCert: chains to the same root from each replica', async () => {
      const key = P256Key.generate()
      const osImageHash = defaultOsImageHash(seed)
      const attestation = simulateGuestAttestation({
        seed,
        reportData: toReportData('ratls-cert', key.spkiDer()),
        appId: DEMO_APP_ID,
        composeHash: DEMO_COMPOSE_HASH,
        instanceId: guestInstance,
        osImageHash,
      })
      const csr = encodeCsrV2({
        confirm: CSR_CONFIRM,
        pubkey: key.spkiDer(),
        config: csrConfig({ subject: 'demo.example.com', subjectAltNames: ['demo.example.com'] }),
        attestation,
      })
      const body = signCertJson(key, csr, simulatedVmConfig(seed, osImageHash))
      const roots = new Set<string>()
      for (const r of replicas) {
        const res = await prpc(r.url, 'SignCert?json', body, {})
        assert.equal(res.status, 200, res.text)
        const chain = (json(res).certificate_chain ?? []) as string[]
        const [leaf, appCa, root] = chain.map((p) => new X509Certificate(p))
        assert.ok(leaf !== undefined && appCa !== undefined && root !== undefined)
        assert.ok(leaf.verify(appCa.publicKey) && appCa.verify(root.publicKey))
        assert.equal(chain[2], metas[0]?.ca_cert)
        roots.add(root.fingerprint256)
      }
      assert.equal(roots.size, 1)
    })
  })

  describe('behind HAProxy (TCP mode, health checks on /health)', () => {
    let haproxy: ChildProcess
    const haproxyLines: Array<{ at: number; line: string }> = []
    let lbUrl: string
    let statsSocket: string
    const guestCall = () =>
      requestSimulatedGuestKeys({ kmsUrl: lbUrl, guest: demoGuest, verifier, timeoutMs: 30_000 })

    before(async () => {
      const probe = spawnSync('haproxy', ['-v'])
      assert.equal(
        probe.error,
        undefined,
        'haproxy is missing: run scripts/setup-system.sh --test (installs Debian haproxy)',
      )
      const dir = tempDir('dstack-kms-haproxy-')
      const lbPort = await freePort()
      lbUrl = `https://localhost:${lbPort}`
      statsSocket = join(dir, 'haproxy.sock')
      const cfgPath = join(dir, 'haproxy.cfg')
      writeFileSync(
        cfgPath,
        haproxyConfig(
          lbPort,
          statsSocket,
          replicas.map((r) => r.port),
        ),
      )
      // -db: foreground, server state changes on stderr
      haproxy = spawn('haproxy', ['-db', '-f', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] })
      haproxy.on('error', (err) => haproxyLines.push({ at: Date.now(), line: String(err) }))
      const collect = (chunk: Buffer) => {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (line !== '') haproxyLines.push({ at: Date.now(), line })
        }
      }
      haproxy.stdout?.on('data', collect)
      haproxy.stderr?.on('data', collect)
      const deadline = Date.now() + 30_000
      for (;;) {
        const states = await Promise.all(
          ['kms-1', 'kms-2', 'kms-3'].map((s) => serverStatus(statsSocket, s).catch(() => '')),
        )
        if (states.every((st) => st === 'UP')) break
        if (Date.now() > deadline || haproxy.exitCode !== null) {
          assert.fail(
            `HAProxy did not see three healthy replicas: ${states.join(', ')}\n${haproxyLines.map((l) => l.line).join('\n')}`,
          )
        }
        await sleep(200)
      }
    })

    after(() => {
      haproxy?.kill('SIGTERM')
    })

    it('guests get identical keys whichever replica serves them', async () => {
      const served = new Set<string>()
      let reference: GuestKeyResult['keys'] | undefined
      for (let i = 0; i < 6; i++) {
        const r = await guestCall()
        reference ??= r.keys
        assert.deepEqual(r.keys, reference)
        served.add(r.kmsMrAggregated?.toString('hex') ?? '')
      }
      assert.deepEqual(
        [...served].sort(),
        replicas.map((r) => r.boot.mrAggregated.toString('hex')).sort(),
      )
    })

    it('SIGKILL of a replica under load: no failure once HAProxy marks it down; it rejoins', async (t) => {
      const b = at(1)
      const bMr = b.boot.mrAggregated.toString('hex')
      const reference = (await guestCall()).keys
      interface Outcome {
        start: number
        ok: boolean
        mr: string
        err: string
      }
      const outcomes: Outcome[] = []
      const load = { stop: false }
      const loop = async () => {
        while (!load.stop) {
          const start = Date.now()
          try {
            const r = await guestCall()
            assert.deepEqual(r.keys, reference)
            outcomes.push({
              start,
              ok: true,
              mr: r.kmsMrAggregated?.toString('hex') ?? '',
              err: '',
            })
          } catch (err) {
            outcomes.push({ start, ok: false, mr: '', err: String(err) })
          }
        }
      }
      // a bounded load: two guests asking in a loop, stopped however the test ends
      const loops = [loop(), loop()]
      t.after(async () => {
        load.stop = true
        await Promise.all(loops)
      })
      await sleep(1000)

      const readyCount = () =>
        (b.proc?.logs ?? []).filter((l) => l.msg === 'KMS worker ready').length
      const workerPid = () => {
        const started = (b.proc?.logs ?? []).filter((l) => l.msg === 'started kms worker')
        return Number(started[started.length - 1]?.childPid)
      }
      const downLine = /Server kms_replicas\/kms-2 is DOWN/
      let downAt: number | undefined
      let rejoinedAt: number | undefined
      // The supervisor restarts a killed worker within about a second; should HAProxy not have
      // noticed that short outage, kill again (restart delays grow) until it has.
      for (let kill = 0; kill < 4 && downAt === undefined; kill++) {
        const readyBefore = readyCount()
        const pid = workerPid()
        assert.ok(pid > 0)
        process.kill(pid, 'SIGKILL')
        const deadline = Date.now() + 60_000
        for (;;) {
          const status = await serverStatus(statsSocket, 'kms-2')
          const logged = haproxyLines.find((l) => downLine.test(l.line))
          if (logged !== undefined) downAt ??= logged.at
          else if (status.startsWith('DOWN')) downAt ??= Date.now()
          if (readyCount() > readyBefore && status === 'UP') {
            if (downAt !== undefined) rejoinedAt = Date.now()
            break
          }
          assert.ok(Date.now() < deadline, `replica did not come back: ${status}`)
          await sleep(50)
        }
      }
      assert.ok(downAt !== undefined, 'HAProxy never marked the killed replica down')
      assert.ok(rejoinedAt !== undefined)
      // keep the load on until the rejoined replica has served guests again
      const deadline = Date.now() + 60_000
      while (!outcomes.some((o) => o.ok && o.mr === bMr && o.start > (rejoinedAt ?? 0))) {
        assert.ok(Date.now() < deadline, 'the restarted replica never served again')
        await sleep(100)
      }
      load.stop = true
      await Promise.all(loops)

      const afterDown = outcomes.filter((o) => o.start >= (downAt ?? 0))
      const failedAfterDown = afterDown.filter((o) => !o.ok)
      const failedBefore = outcomes.filter((o) => !o.ok && o.start < (downAt ?? 0))
      process.stderr.write(
        `haproxy failover: ${outcomes.length} guest key requests, ${failedBefore.length} failed before the replica was marked down, ${afterDown.length} after (${failedAfterDown.length} failed)\n`,
      )
      assert.deepEqual(
        failedAfterDown.map((o) => o.err),
        [],
      )
      assert.ok(afterDown.length > 0)
    })
  })
})
