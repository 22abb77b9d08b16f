// The short soak inside `npm test` (`npm run soak` runs 10 minutes): a quick-start KMS with two
// main workers under mixed load, one worker SIGKILLed every few seconds. No wrong answer, no lost
// request outside a kill, every victim restarted, RSS and open fds flat.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { formatSoak, runSoak, soakProblems } from '../scripts/soak.js'

describe('soak (short)', () => {
  it('mixed RPC load with worker SIGKILLs: no wrong answers, only in-flight requests lost', async (t) => {
    const report = await runSoak({
      durationMs: Number(process.env.SOAK_TEST_MS ?? 40_000),
      killEveryMs: 10_000,
      concurrency: 3,
      sampleEveryMs: 2000,
    })
    t.diagnostic(formatSoak(report))
    assert.deepEqual(soakProblems(report), [])
    assert.ok(report.kills >= 2, `expected at least 2 worker kills, got ${report.kills}`)
    for (const name of ['GetAppKey (RA-TLS)', 'GetMeta', 'GetKmsKey (no attestation)']) {
      assert.ok((report.byMethod[name] ?? 0) > 0, `${name} was exercised`)
    }
  })
})
