// The KMS as upstream deploys it: an app inside a dstack CVM that attests through the guest agent
// (`[tee] backend = "guest-agent"`, DSTACK_AGENT_ADDRESS on a unix socket). The agent here hands
// out attestations of a simulated CVM; the KMS is told to trust that platform's root the way an
// operator replaces a trust anchor (root_ca_tdx + insecure_allow_external_trust_anchors), and it
// fetches collateral from a PCCS on loopback, caching it in SQLite.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { buildBootInfo, type BootInfo } from '../src/attestation/boot-info.js'
import { StaticCollateralSource } from '../src/attestation/collateral.js'
import { AttestationVerifier } from '../src/attestation/verify.js'
import { decodeVersionedAttestation } from '../src/attestation/versioned.js'
import { requestAppKeys } from '../src/guest/guest-client.js'
import {
  DEMO_APP_ID,
  DEMO_COMPOSE_HASH,
  demoPolicy,
  simulatedDemoAppMrSystem,
} from '../src/quickstart/demo.js'
import { mockCollateral } from '../src/tee/simulator/collateral.js'
import { defaultOsImageHash, simulatedVmConfig } from '../src/tee/simulator/cvm.js'
import { simulateGuestAttestation } from '../src/tee/simulator/guest.js'
import { mockIntelPki } from '../src/tee/simulator/mock-pki.js'
import { FakeGuestAgent } from './fixtures/fake-guest-agent.js'
import { prpc, rawRequest } from './helpers/https-client.js'
import { sharedToml } from './helpers/kms-config.js'
import { freePort, startKms, tempDir, type KmsProcess } from './helpers/kms-process.js'
import { PccsStub } from './helpers/pccs-stub.js'

describe('KMS inside a dstack CVM: guest-agent backend, external trust anchor, PCCS', () => {
  const seed = randomBytes(32)
  const pki = mockIntelPki(seed)
  const osImageHash = defaultOsImageHash(seed)
  // the KMS's own CVM, as the guest agent attests it
  const kmsCvm = {
    seed,
    appId: randomBytes(20),
    composeHash: randomBytes(32),
    instanceId: randomBytes(20),
  }
  let agent: FakeGuestAgent
  let pccs: PccsStub
  let kms: KmsProcess
  let base: string
  let kmsBoot: BootInfo

  before(async () => {
    const dir = tempDir()
    agent = await FakeGuestAgent.start({
      attest: {
        forReportData: (rd) => simulateGuestAttestation({ ...kmsCvm, reportData: rd }),
        vmConfig: simulatedVmConfig(seed, osImageHash),
      },
    })
    pccs = new PccsStub([{ tee: 'tdx', ca: 'platform', collateral: mockCollateral(pki) }])
    await pccs.start()
    const verifier = new AttestationVerifier({
      rootCaDer: pki.root.der,
      collateral: new StaticCollateralSource(mockCollateral(pki)),
    })
    const self = decodeVersionedAttestation(
      simulateGuestAttestation({ ...kmsCvm, reportData: Buffer.alloc(64) }),
    ).attestation
    kmsBoot = buildBootInfo(await verifier.verify(self), { useBoottimeMr: false, vmConfig: '' })
    const policyFile = join(dir, 'auth-config.json')
    writeFileSync(
      policyFile,
      JSON.stringify(demoPolicy(kmsBoot, await simulatedDemoAppMrSystem(seed)), null, 2),
    )
    const rootPem = join(dir, 'trusted-root.pem')
    writeFileSync(rootPem, pki.root.pem)
    const port = await freePort()
    const authPort = await freePort()
    base = `https://localhost:${port}`
    kms = startKms({
      dir,
      env: { DSTACK_AGENT_ADDRESS: agent.address },
      configToml: `${sharedToml({
        dir,
        port,
        workers: 1,
        enforceSelfAuthorization: true,
        siteName: 'cvm-site',
        core: `pccs_url = "${pccs.url}"`,
      })}
[core.attestation]
insecure_allow_external_trust_anchors = true
root_ca_tdx = "${rootPem}"
[core.auth_api]
type = "webhook"
[core.auth_api.webhook]
url = "http://127.0.0.1:${authPort}"
[core.onboard]
address = "127.0.0.1"
port = ${port}
[auth_simple]
enabled = true
# the TCP listener, still supported beside the default unix socket
listen = "tcp"
port = ${authPort}
config = "${policyFile}"
[tee]
backend = "guest-agent"
`,
    })
    await kms.waitForLog((l) => l.msg === 'onboarding worker ready', 60_000)
  })

  after(async () => {
    kms.kill('SIGTERM')
    await kms.waitForExit()
    await agent.close()
    await pccs.stop()
  })

  it('Bootstrap: self-authorized through the agent attestation, keys attested by the agent', async () => {
    const res = await prpc(base, 'Bootstrap', '{"domain":"localhost"}')
    assert.equal(res.status, 200, res.text)
    const attestation = (JSON.parse(res.text) as { attestation: string }).attestation
    assert.notEqual(attestation, '')
    assert.ok(agent.requests.some((r) => r.url === '/Attest?json'))
    assert.equal((await rawRequest({ url: `${base}/finish` })).text, 'OK')
    await kms.waitForLog((l) => l.msg === 'KMS worker ready', 60_000)
  })

  it('a guest of the same platform gets its keys; collateral came from the PCCS, cached', async () => {
    const guest = {
      seed,
      appId: DEMO_APP_ID,
      composeHash: DEMO_COMPOSE_HASH,
      instanceId: randomBytes(20),
      osImageHash,
    }
    const clientVerifier = new AttestationVerifier({
      rootCaDer: pki.root.der,
      collateral: new StaticCollateralSource(mockCollateral(pki)),
    })
    const get = () =>
      requestAppKeys({
        kmsUrl: base,
        vmConfig: simulatedVmConfig(seed, osImageHash),
        attest: async (rd) => simulateGuestAttestation({ ...guest, reportData: rd }),
        verifyKmsAttestation: async (a, spki) =>
          buildBootInfo(await clientVerifier.verifyWithRaPubkey(a, spki), {
            useBoottimeMr: false,
            vmConfig: '',
          }).mrAggregated,
      })
    const first = await get()
    assert.deepEqual(first.kmsMrAggregated, kmsBoot.mrAggregated)
    assert.equal(first.keys.diskCryptKey.length, 32)
    const fetched = pccs.count('/tdx/certification/v4/tcb')
    assert.ok(fetched >= 1, 'the TCB info came from the PCCS')
    await get()
    // the second round (self-authorization + client certificate) reused the SQLite cache
    assert.equal(pccs.count('/tdx/certification/v4/tcb'), fetched)
  })
})
