// The seeded subset of the decoder fuzzer (`npm run test:fuzz` runs the full campaign): every
// decoder gets a few hundred structure-aware mutations of real inputs plus random bytes, with a
// fixed seed so a failure reproduces. Only typed errors are allowed; each input has a deadline.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { checkTarget } from './fuzz/check.js'
import { TARGETS } from './fuzz/targets.js'

const RUNS = Number(process.env.FUZZ_SUBSET_RUNS ?? 200)
const SEED = 20261204

describe('decoder fuzzing (seeded subset)', () => {
  for (const target of TARGETS) {
    it(`${target.name}: ${RUNS} inputs, typed errors only`, () => {
      const r = checkTarget(target, { runs: RUNS, seed: SEED, deadlineMs: 2000 })
      assert.equal(
        r.failure,
        undefined,
        `${r.failure?.kind}: ${r.failure?.message}\ninput: ${r.failure?.inputHex.slice(0, 2000)}`,
      )
      assert.equal(r.runs, RUNS)
      // the mutations must reach the decoders' error paths, and some inputs must get through
      assert.ok(r.typedErrors > 0, 'no input was refused: the generator is not reaching errors')
    })
  }
})
