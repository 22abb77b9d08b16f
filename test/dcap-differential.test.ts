// The node:crypto DCAP verifier against @phala/dcap-qvl on every fixture and simulator quote and
// a fixed-seed sample of mutations (the full run is test/fuzz/dcap-differential.fuzz.ts).
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  DifferentialRunner,
  type Outcome,
  Rng,
  SAMPLES,
  fixtureCases,
  flipSignedByte,
  mutateSimulator,
  simulatorCases,
} from './helpers/dcap-differential.js'

const SEED = 12
const MUTATIONS = 80

describe('DCAP verifier: node:crypto against dcap-qvl', () => {
  const runner = new DifferentialRunner()

  it('fixture and simulator quotes: same outcome, the genuine ones accepted', async () => {
    const outcomes = new Map<string, Outcome>()
    for (const c of [...fixtureCases(), ...simulatorCases()]) {
      outcomes.set(c.name, await runner.check(c))
    }
    const [tdx, sgx] = SAMPLES
    assert.deepEqual(outcomes.get('dcap-qvl TDX sample'), {
      ok: true,
      status: tdx?.status,
      advisoryIds: tdx?.advisory_ids,
    })
    assert.deepEqual(outcomes.get('dcap-qvl SGX sample'), {
      ok: true,
      status: sgx?.status,
      advisoryIds: sgx?.advisory_ids,
    })
    assert.deepEqual(outcomes.get('simulator 0'), { ok: true, status: 'UpToDate', advisoryIds: [] })
    assert.deepEqual(outcomes.get('simulator 0 debug TD'), {
      ok: false,
      code: 'KMS_ERR_ATTESTATION',
      message: 'Debug mode is enabled',
    })
    assert.equal(outcomes.get('TDX sample, collateral expired')?.ok, false)
  })

  it(`${MUTATIONS} seeded mutations of quotes and collateral: same outcome`, async () => {
    const rng = new Rng(SEED)
    const bases = [...fixtureCases().slice(0, 2), ...simulatorCases()]
    let accepted = 0
    for (let i = 0; i < MUTATIONS; i++) {
      const c =
        i % 3 === 0 ? flipSignedByte(rng, rng.pick(bases)) : mutateSimulator(rng, rng.int(2))
      if ((await runner.check(c)).ok) accepted++
    }
    // both sides of the decision are exercised
    assert.ok(accepted > 0 && accepted < MUTATIONS, `accepted ${accepted} of ${MUTATIONS}`)
  })
})
