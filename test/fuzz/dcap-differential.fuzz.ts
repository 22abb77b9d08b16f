// The full differential run of the node:crypto DCAP verifier against @phala/dcap-qvl (the fast
// subset is test/dcap-differential.test.ts). FUZZ_SEED and FUZZ_CASES choose the run; a failure
// names its case, and the same seed reproduces it.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  DifferentialRunner,
  Rng,
  fixtureCases,
  flipSignedByte,
  mutateSimulator,
  simulatorCases,
} from '../helpers/dcap-differential.js'

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_204)
const CASES = Number(process.env.FUZZ_CASES ?? 3000)

describe(`DCAP differential fuzzing (seed ${SEED}, ${CASES} cases)`, () => {
  it('byte flips in signed regions and re-signed quote and collateral edits agree', async () => {
    const runner = new DifferentialRunner()
    const rng = new Rng(SEED)
    const bases = [...fixtureCases(), ...simulatorCases()]
    for (const c of bases) await runner.check(c)
    const tally = new Map<string, number>()
    for (let i = 0; i < CASES; i++) {
      const c =
        i % 3 === 0 ? flipSignedByte(rng, rng.pick(bases)) : mutateSimulator(rng, rng.int(2))
      const o = await runner.check(c)
      const key = o.ok ? `accepted ${o.status}` : `refused: ${o.message.slice(0, 60)}`
      tally.set(key, (tally.get(key) ?? 0) + 1)
    }
    const summary = [...tally].sort((a, b) => b[1] - a[1])
    console.log(summary.map(([k, n]) => `${String(n).padStart(6)}  ${k}`).join('\n'))
    assert.ok(runner.accepted > 0 && runner.accepted < runner.cases)
  })
})
