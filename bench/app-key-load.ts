// GetAppKey the way guests call it, against a KMS on the TEE simulator (the e2e-attested setup:
// simulator seed, trust_mock_root, auth-simple sidecar with the demo policy, auto-bootstrapped for
// `localhost`, self-authorization on). Each client holds an RA-TLS client certificate made once,
// as a guest does (GetTempCaCert, a fresh P-256 key, a simulated quote bound to it), and calls
// `POST /prpc/GetAppKey?json` over its keep-alive connection: after the first request the KMS
// reuses the certificate's verified attestation (src/kms/client-cert.ts), so these "hot" figures
// are the webhook, self-authorization and key derivation. The "cold" rows give every request a
// certificate of its own on a new connection: TLS handshake with the client certificate plus a
// full quote verification each time, which is what one guest boot costs the KMS.
import { randomBytes } from 'node:crypto'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { toReportData } from '../src/attestation/report-data.js'
import type { QuoteVerifierEngine } from '../src/config/types.js'
import { deriveDhSecret, deriveKey } from '../src/crypto/kdf.js'
import { P256Key } from '../src/crypto/p256.js'
import { readRootK256 } from '../src/keys/key-set.js'
import {
  DEMO_APP_ID,
  DEMO_COMPOSE_HASH,
  demoPolicy,
  simulatedDemoAppMrSystem,
  simulatedKmsBootInfo,
} from '../src/quickstart/demo.js'
import { strippedAttestationBytes } from '../src/ratls/cert-attestation.js'
import { defaultOsImageHash, simulatedVmConfig } from '../src/tee/simulator/cvm.js'
import { simulateGuestAttestation } from '../src/tee/simulator/guest.js'
import { parseCertificate } from '../src/x509/parse.js'
import { pemDecode } from '../src/asn1/pem.js'
import { issueRaTlsClientCert } from '../src/x509/templates.js'
import { rawRequest } from '../test/helpers/https-client.js'
import { attestedConfigToml } from '../test/helpers/kms-config.js'
import { freePort, startKms, tempDir, type KmsProcess } from '../test/helpers/kms-process.js'
import { readyWorkerPids } from './kms-server.js'
import { type ClientTls } from './load.js'

export interface AttestedKms {
  kms: KmsProcess
  base: string
  dir: string
  certDir: string
  seed: Buffer
  workerPids: number[]
  sidecarPid: number | undefined
}

/** The e2e-attested KMS with `[rpc] workers = workers`, ready to serve (auto-bootstrapped);
 * `[core.image] verify = true` unless `opts.imageVerify` is false. */
export async function startAttestedKms(
  workers: number,
  env?: Record<string, string>,
  quoteVerifier: QuoteVerifierEngine = 'node-crypto',
  opts: { imageVerify?: boolean } = {},
): Promise<AttestedKms> {
  const dir = tempDir('dstack-kms-bench-attested-')
  const seed = randomBytes(32)
  const port = await freePort()
  const authPort = await freePort()
  const policyFile = join(dir, 'auth-config.json')
  const boot = await simulatedKmsBootInfo(seed, join(dir, 'tee-simulator'))
  const demoMrSystem = await simulatedDemoAppMrSystem(seed)
  writeFileSync(policyFile, JSON.stringify(demoPolicy(boot, demoMrSystem), null, 2))
  const base = attestedConfigToml({
    dir,
    port,
    authPort,
    seed: seed.toString('hex'),
    policyFile,
    autoBootstrapDomain: 'localhost',
    core: `attestation.quote_verifier = "${quoteVerifier}"`,
    imageVerify: opts.imageVerify ?? true,
  })
  // The helper pins one worker (tests run many KMSs on two cores); the bench varies it.
  const toml = base.replace(/^workers = 1$/m, `workers = ${workers}`)
  if (!toml.includes(`workers = ${workers}\n`)) throw new Error('could not set [rpc] workers')
  const kms = startKms({ dir, configToml: toml, ...(env === undefined ? {} : { env }) })
  try {
    const workerPids = await readyWorkerPids(kms, workers, 120_000)
    const sidecar = kms.logs.find((l) => l.msg === 'auth-simple policy server ready')
    const sidecarPid = sidecar === undefined ? undefined : Number(sidecar.childPid)
    return {
      kms,
      base: `https://127.0.0.1:${port}`,
      dir,
      certDir: join(dir, 'certs'),
      seed,
      workerPids,
      sidecarPid,
    }
  } catch (err) {
    kms.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}

export async function stopAttestedKms(k: AttestedKms): Promise<{ code: number | null }> {
  k.kms.kill('SIGTERM')
  const exit = await k.kms.waitForExit().catch(() => ({ code: null, signal: null }))
  if (exit.code !== 0) k.kms.kill('SIGKILL')
  rmSync(k.dir, { recursive: true, force: true })
  return exit
}

/** What a guest gets from GetTempCaCert: the CA its RA-TLS certificate is signed by. */
export interface GuestFactory {
  /** a new guest certificate (fresh key, fresh instance id, simulated quote bound to the key) */
  make(): ClientTls
  /** the GetAppKey request body of the demo guest */
  body: string
}

export async function guestFactory(k: AttestedKms): Promise<GuestFactory> {
  const res = await rawRequest({
    url: `${k.base}/prpc/GetTempCaCert?json`,
    method: 'POST',
    body: '{}',
  })
  if (res.status !== 200) throw new Error(`GetTempCaCert: ${res.status} ${res.text}`)
  const tmp = JSON.parse(res.text) as { temp_ca_cert: string; temp_ca_key: string }
  const tempCa = {
    key: P256Key.fromPem(tmp.temp_ca_key),
    subjectDer: parseCertificate(pemDecode(tmp.temp_ca_cert, 'CERTIFICATE')).subjectDer,
  }
  const osImageHash = defaultOsImageHash(k.seed)
  return {
    make() {
      const key = P256Key.generate()
      const attestation = simulateGuestAttestation({
        seed: k.seed,
        reportData: toReportData('ratls-cert', key.spkiDer()),
        appId: DEMO_APP_ID,
        composeHash: DEMO_COMPOSE_HASH,
        instanceId: randomBytes(20),
        osImageHash,
      })
      const cert = issueRaTlsClientCert(key, tempCa, strippedAttestationBytes(attestation))
      return { cert: cert.pem, key: key.pkcs8Pem() }
    },
    body: JSON.stringify({ api_version: 1, vm_config: simulatedVmConfig(k.seed, osImageHash) }),
  }
}

/** Checks an answer's app-wide keys against derivations from the KMS's own key files (the disk
 * key depends on the certificate's instance id, which the validator does not see). */
export function appKeyValidator(k: AttestedKms): (body: Buffer) => string | undefined {
  const rootCaPem = readFileSync(join(k.certDir, 'root-ca.crt'), 'utf8')
  const rootCa = P256Key.fromPem(readFileSync(join(k.certDir, 'root-ca.key'), 'utf8'))
  const envKey = deriveDhSecret(rootCa, [DEMO_APP_ID, 'env-encrypt-key']).toString('hex')
  const k256Key = deriveKey(readRootK256(k.certDir), [DEMO_APP_ID, 'app-key'], 32).toString('hex')
  return (body) => {
    let r: Record<string, unknown>
    try {
      r = JSON.parse(body.toString('utf8')) as Record<string, unknown>
    } catch {
      return `not JSON: ${body.toString('utf8').slice(0, 200)}`
    }
    if (r.env_crypt_key !== envKey) return `env_crypt_key ${String(r.env_crypt_key)} is wrong`
    if (r.k256_key !== k256Key) return 'k256_key is not the derived key'
    if (r.ca_cert !== rootCaPem) return 'ca_cert is not root-ca.crt'
    if (typeof r.disk_crypt_key !== 'string' || r.disk_crypt_key.length !== 64) {
      return 'disk_crypt_key is not 32 bytes'
    }
    return undefined
  }
}
