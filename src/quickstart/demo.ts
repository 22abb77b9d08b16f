// The demo app of the quick start and the auth-simple policy generated for it: the policy admits
// exactly the simulated KMS (its mr_aggregated and device) and one demo app (its compose hash), on
// the simulated platform's OS image. Everything derives from the simulator seed, through the same
// attest → verify → BootInfo path the KMS uses for itself, so the policy says what the KMS will see.
import { createHash, randomBytes } from 'node:crypto'
import { buildBootInfo, type BootInfo } from '../attestation/boot-info.js'
import { StaticCollateralSource } from '../attestation/collateral.js'
import { AttestationVerifier } from '../attestation/verify.js'
import { decodeVersionedAttestation } from '../attestation/versioned.js'
import { requestAppKeys, type GuestKeyResult } from '../guest/guest-client.js'
import { mockCollateral } from '../tee/simulator/collateral.js'
import { defaultOsImageHash, simulatedVmConfig } from '../tee/simulator/cvm.js'
import { simulateGuestAttestation, type GuestOptions } from '../tee/simulator/guest.js'
import { mockIntelPki } from '../tee/simulator/mock-pki.js'
import { SimulatorBackend } from '../tee/simulator/simulator-backend.js'

/** The app-compose of the demo app; its SHA-256 is the compose hash the policy allows. */
export const DEMO_APP_COMPOSE = JSON.stringify({
  manifest_version: 2,
  name: 'dstack-kms-ts-demo',
  runner: 'docker-compose',
  docker_compose_file: 'services:\n  demo:\n    image: busybox\n    command: sleep infinity\n',
  kms_enabled: true,
})

export const DEMO_APP_ID = createHash('sha256')
  .update('dstack-kms-ts demo app')
  .digest()
  .subarray(0, 20)
export const DEMO_COMPOSE_HASH = createHash('sha256').update(DEMO_APP_COMPOSE).digest()

/** A verifier trusting the simulated platform of `seed`: its mock Intel root and collateral, what a
 * guest on that platform (and a KMS with `trust_mock_root`) trusts. */
export function mockPlatformVerifier(seed: Buffer): AttestationVerifier {
  const pki = mockIntelPki(seed)
  return new AttestationVerifier({
    rootCaDer: pki.root.der,
    collateral: new StaticCollateralSource(mockCollateral(pki)),
  })
}

/** A CVM of the demo app on the simulator's platform: the quick-start policy admits it. */
export function demoAppGuest(
  seed: Buffer,
  instanceId: Buffer = randomBytes(20),
): Omit<GuestOptions, 'reportData'> {
  return {
    seed,
    appId: DEMO_APP_ID,
    composeHash: DEMO_COMPOSE_HASH,
    instanceId,
    osImageHash: defaultOsImageHash(seed),
  }
}

export interface SimulatedGuestKeyRequest {
  kmsUrl: string
  /** the simulated CVM: seed, app id, compose hash, instance id, OS image (no report data) */
  guest: Omit<GuestOptions, 'reportData'>
  /** default: the simulated CVM's own vm_config for `guest.osImageHash` */
  vmConfig?: string
  /** default: mockPlatformVerifier(guest.seed) */
  verifier?: AttestationVerifier
  timeoutMs?: number
}

/** GetAppKey as a simulated guest does it: an RA-TLS client certificate around the guest's
 * attestation, and the KMS RPC certificate's attestation checked against the same platform. */
export async function requestSimulatedGuestKeys(
  r: SimulatedGuestKeyRequest,
): Promise<GuestKeyResult> {
  const { guest } = r
  const verifier = r.verifier ?? mockPlatformVerifier(guest.seed)
  return requestAppKeys({
    kmsUrl: r.kmsUrl,
    vmConfig:
      r.vmConfig ??
      simulatedVmConfig(guest.seed, guest.osImageHash ?? defaultOsImageHash(guest.seed)),
    attest: async (reportData) => simulateGuestAttestation({ ...guest, reportData }),
    verifyKmsAttestation: async (a, spki) => {
      const v = await verifier.verifyWithRaPubkey(a, spki)
      return buildBootInfo(v, { useBoottimeMr: false, vmConfig: '' }).mrAggregated
    },
    ...(r.timeoutMs === undefined ? {} : { timeoutMs: r.timeoutMs }),
  })
}

/** The simulated KMS's own BootInfo, exactly as its self-authorization will compute it. */
export async function simulatedKmsBootInfo(seed: Buffer, stateDir: string): Promise<BootInfo> {
  const sim = await SimulatorBackend.create({ seed, stateDir })
  try {
    const verifier = new AttestationVerifier({
      rootCaDer: sim.mockRootCaDer,
      collateral: new StaticCollateralSource(sim.collateral()),
    })
    const { attestation } = decodeVersionedAttestation(await sim.attest(new Uint8Array(64)))
    const verified = await verifier.verify(attestation)
    return buildBootInfo(verified, { useBoottimeMr: false, vmConfig: '' })
  } finally {
    await sim.close()
  }
}

/** The demo app's measured OS identity on this platform (the KMS's image, no key provider yet:
 * what GetAppKey sees), so the policy can pin it instead of trusting the claimed osImageHash. */
export async function simulatedDemoAppMrSystem(seed: Buffer): Promise<Buffer> {
  const verifier = mockPlatformVerifier(seed)
  const attestation = simulateGuestAttestation({
    seed,
    reportData: Buffer.alloc(64),
    appId: DEMO_APP_ID,
    composeHash: DEMO_COMPOSE_HASH,
  })
  const verified = await verifier.verify(decodeVersionedAttestation(attestation).attestation)
  return buildBootInfo(verified, { useBoottimeMr: false, vmConfig: '' }).mrSystem
}

export interface DemoPolicy {
  gatewayAppId: string
  osImages: string[]
  allowedTcbStatuses: string[]
  kms: { mrAggregated: string[]; devices: string[]; allowAnyDevice: boolean }
  apps: Record<
    string,
    { composeHashes: string[]; devices: string[]; allowAnyDevice: boolean; mrSystem: string[] }
  >
}

const hex = (b: Buffer) => `0x${b.toString('hex')}`

/** An auth-simple policy (docs/api.md#auth-simple) admitting the simulated KMS and the demo app. With
 * `[core.image] verify = true` (the quick start) osImages is a verified fact; the app's mrSystem
 * pin (ours) also binds its OS image by measurement for KMSs running with verify = false. */
export function demoPolicy(kms: BootInfo, demoMrSystem: Buffer): DemoPolicy {
  return {
    gatewayAppId: '',
    osImages: [hex(kms.osImageHash)],
    allowedTcbStatuses: ['UpToDate'],
    kms: {
      mrAggregated: [hex(kms.mrAggregated)],
      devices: [hex(kms.deviceId)],
      allowAnyDevice: false,
    },
    apps: {
      [hex(DEMO_APP_ID)]: {
        composeHashes: [hex(DEMO_COMPOSE_HASH)],
        devices: [hex(kms.deviceId)],
        allowAnyDevice: false,
        mrSystem: [hex(demoMrSystem)],
      },
    },
  }
}
