// KMS self-authorization's own BootInfo: computed through the real simulator backend and the real
// verifier, reused for an hour (it carries the TCB status), recomputed after that, and never
// cached when computing it failed.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { StaticCollateralSource } from '../src/attestation/collateral.js'
import { AttestationVerifier } from '../src/attestation/verify.js'
import { DevAuthApi } from '../src/auth/auth-api.js'
import { SELF_BOOT_INFO_TTL_MS, SelfAuthorizer } from '../src/auth/self-auth.js'
import type { TeeBackend } from '../src/tee/backend.js'
import { SimulatorBackend } from '../src/tee/simulator/simulator-backend.js'
import { tempDir } from './helpers/kms-process.js'

describe('SelfAuthorizer', () => {
  it('reuses its BootInfo for the TTL only, and retries after a failure', async () => {
    const sim = await SimulatorBackend.create({
      seed: randomBytes(32),
      stateDir: join(tempDir(), 'sim'),
    })
    let attests = 0
    let failNext = false
    // counts the real backend's work; a failure stands for a guest-agent outage
    const tee: TeeBackend = Object.assign(Object.create(sim) as TeeBackend, {
      attest: async (rd: Uint8Array) => {
        attests++
        if (failNext) {
          failNext = false
          throw new Error('agent down')
        }
        return sim.attest(rd)
      },
    })
    const verifier = new AttestationVerifier({
      rootCaDer: sim.mockRootCaDer,
      collateral: new StaticCollateralSource(sim.collateral()),
    })
    let clock = 1_000_000
    const auth = new SelfAuthorizer({
      enforce: true,
      tee,
      verifier,
      authApi: new DevAuthApi('any'),
      now: () => clock,
    })
    const first = await auth.ensureSelfAllowed()
    assert.ok(first !== null)
    assert.equal(first.appId.length, 20)
    await auth.ensureSelfAllowed()
    assert.equal(attests, 1)
    clock += SELF_BOOT_INFO_TTL_MS
    failNext = true
    await assert.rejects(auth.ensureSelfAllowed(), {
      message:
        'Failed to load cached self boot info: Failed to get local KMS attestation: agent down',
    })
    assert.deepEqual(await auth.ensureSelfAllowed(), first)
    assert.equal(attests, 3)
    await sim.close()
  })

  it('does nothing when not enforced', async () => {
    let attests = 0
    const sim = await SimulatorBackend.create({
      seed: randomBytes(32),
      stateDir: join(tempDir(), 'sim'),
    })
    const tee: TeeBackend = Object.assign(Object.create(sim) as TeeBackend, {
      attest: async () => {
        attests++
        return Buffer.alloc(0)
      },
    })
    const auth = new SelfAuthorizer({
      enforce: false,
      tee,
      verifier: new AttestationVerifier({
        rootCaDer: sim.mockRootCaDer,
        collateral: new StaticCollateralSource(sim.collateral()),
      }),
      authApi: new DevAuthApi('any'),
    })
    assert.equal(await auth.ensureSelfAllowed(), null)
    await auth.ensureSelfKmsAllowed()
    assert.equal(attests, 0)
  })
})
