// The node:crypto DCAP verifier against @phala/dcap-qvl on every fixture and simulator quote and
// a fixed-seed sample of mutations (the full run is test/fuzz/dcap-differential.fuzz.ts).
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { BoundedCache } from '../src/util/bounded-cache.js'
import { DcapQuoteVerifier } from '../src/attestation/dcap/quote-verifier.js'
import { type ParsedQuote, parseQuote } from '../src/attestation/quote.js'
import { errorMessage } from '../src/errors.js'
import {
  type DiffCase,
  DifferentialRunner,
  type Outcome,
  Rng,
  SAMPLES,
  fixtureCases,
  flipSignedByte,
  mutateSimulator,
  simulatorCases,
  simulatorV5,
  unboundByteCases,
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
    // dstack's validate_tcb runs before either engine, so both give its text
    assert.deepEqual(outcomes.get('simulator 0 debug TD'), {
      ok: false,
      code: 'KMS_ERR_ATTESTATION',
      message: 'Debug mode is not allowed',
    })
    assert.equal(outcomes.get('TDX sample, collateral expired')?.ok, false)
  })

  it('the exception: bytes no signature covers are refused by the KMS on both engines, though both bare engines accept them', async () => {
    const [tdx] = fixtureCases()
    assert.ok(tdx !== undefined)
    // the genuine quote carries 70 bytes of zero padding, which stays accepted
    assert.ok(parseQuote(tdx.quote).length < tdx.quote.length)
    assert.equal((await runner.check(tdx)).ok, true)
    for (const c of unboundByteCases(tdx)) {
      const core = new DcapQuoteVerifier(c.rootCaDer)
      assert.equal(
        core.verify(c.quote, parseQuote(c.quote), c.collateral, c.now).status,
        'UpToDate',
      )
      assert.deepEqual(
        await runner.check(c),
        { ok: false, code: 'KMS_ERR_ATTESTATION', message: c.refusal },
        c.name,
      )
    }
    // a v5 quote's body size field is signed but read by neither engine: it must be the truth
    assert.deepEqual(await runner.check(simulatorV5(584)), {
      ok: true,
      status: 'UpToDate',
      advisoryIds: [],
    })
    const lying = simulatorV5(600)
    assert.equal(
      new DcapQuoteVerifier(lying.rootCaDer).verify(
        lying.quote,
        parseQuote(lying.quote),
        lying.collateral,
        lying.now,
      ).status,
      'UpToDate',
    )
    assert.deepEqual(await runner.check(lying), {
      ok: false,
      code: 'KMS_ERR_ATTESTATION',
      message: 'Quote body size field is 600, the body is 584 bytes',
    })
  })

  it('a stray byte after a chain certificate is refused by both bare engines, as by the KMS', async () => {
    // found by the differential fuzz (seed 96465346): the SGX sample's last PEM padding `=` turned
    // into a base64 digit leaves one byte after the chain's root certificate; dcap-qvl's PEM
    // reader fails on it, the node:crypto engine (reading DER) used to ignore it
    const sgx = fixtureCases().find((c) => c.name === 'dcap-qvl SGX sample')
    assert.ok(sgx !== undefined)
    const at = sgx.quote.lastIndexOf('=\n-----END CERTIFICATE-----')
    assert.ok(at > 0)
    for (const digit of ['9', '5', 'A']) {
      const quote = Buffer.from(sgx.quote)
      quote.write(digit, at, 'latin1')
      const c: DiffCase = { ...sgx, name: `SGX sample, root padding -> ${digit}`, quote }
      assert.throws(
        () =>
          new DcapQuoteVerifier(c.rootCaDer).verify(quote, parseQuote(quote), c.collateral, c.now),
        /Failed to parse certificate: 1 bytes after it/,
      )
      assert.deepEqual(await runner.check(c), {
        ok: false,
        code: 'KMS_ERR_ATTESTATION',
        message:
          'Invalid PCK certificate chain certificate 2: unparsable certificate: invalid certificate: DER: trailing data after the value',
      })
    }
  })

  it('a seeded flip changes one byte, inside the region its name says', () => {
    const rng = new Rng(SEED)
    for (const base of fixtureCases().slice(0, 2)) {
      const q = parseQuote(base.quote)
      for (let i = 0; i < 60; i++) {
        const c = flipSignedByte(rng, base)
        const m = / \/ flip (.+) @(\d+)$/.exec(c.name)
        assert.ok(m !== null, c.name)
        const offset = Number(m[2])
        const changed = [...c.quote.keys()].filter((k) => c.quote[k] !== base.quote[k])
        assert.deepEqual(changed, [offset], c.name)
        const region: Record<string, Buffer> = {
          signature: q.ecdsaSignature,
          'attestation key': q.attestationKey,
          'QE report': q.qeReport,
          'QE report signature': q.qeReportSignature,
          'QE auth data': q.qeAuthData,
        }
        const bytes = region[m[1] ?? '']
        if (bytes !== undefined) {
          const start = base.quote.indexOf(bytes)
          assert.ok(offset >= start && offset < start + bytes.length, c.name)
        }
      }
    }
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

describe('DCAP verifier caches', () => {
  it('re-evaluate validity windows on every call: cached collateral expires and recovers', () => {
    const [tdxCase] = fixtureCases()
    assert.ok(tdxCase !== undefined)
    const core = new DcapQuoteVerifier(tdxCase.rootCaDer)
    const parsed = parseQuote(tdxCase.quote)
    const at = (now: number) => {
      try {
        return core.verify(tdxCase.quote, parsed, tdxCase.collateral, now).status
      } catch (err) {
        return errorMessage(err)
      }
    }
    assert.equal(at(tdxCase.now), 'UpToDate')
    assert.equal(at(tdxCase.now + 40 * 86400), 'TCBInfo expired')
    assert.equal(at(tdxCase.now - 40 * 86400), 'TCBInfo issue date is in the future')
    assert.equal(at(tdxCase.now), 'UpToDate')
    // a copy of the collateral (another object, same content) is found by its content hash
    assert.equal(
      core.verify(tdxCase.quote, parsed, { ...tdxCase.collateral }, tdxCase.now).status,
      'UpToDate',
    )
  })

  it('a refused quote does not poison the PCK or collateral entries', () => {
    const [tdxCase] = fixtureCases()
    assert.ok(tdxCase !== undefined)
    const core = new DcapQuoteVerifier(tdxCase.rootCaDer)
    const bad = Buffer.from(tdxCase.quote)
    bad[100] = (bad[100] ?? 0) ^ 0x40
    assert.throws(
      () => core.verify(bad, parseQuote(bad), tdxCase.collateral, tdxCase.now),
      /ISV enclave report signature is invalid/,
    )
    const ok = core.verify(
      tdxCase.quote,
      parseQuote(tdxCase.quote),
      tdxCase.collateral,
      tdxCase.now,
    )
    assert.equal(ok.status, 'UpToDate')
  })

  it('a remembered QE report check holds only for the exact bytes it checked', () => {
    const [tdxCase] = fixtureCases()
    assert.ok(tdxCase !== undefined)
    const good = parseQuote(tdxCase.quote)
    const flipped = (b: Buffer, at: number): Buffer => {
      const copy = Buffer.from(b)
      copy[at] = (copy[at] ?? 0) ^ 0x01
      return copy
    }
    const badSignature = { ...good, qeReportSignature: flipped(good.qeReportSignature, 40) }
    const badAuthData = { ...good, qeAuthData: flipped(good.qeAuthData, 0) }
    const badKey = { ...good, attestationKey: flipped(good.attestationKey, 63) }
    const run = (core: DcapQuoteVerifier, q: ParsedQuote): string => {
      try {
        return core.verify(tdxCase.quote, q, tdxCase.collateral, tdxCase.now).status
      } catch (err) {
        return errorMessage(err)
      }
    }
    const expectations: [ParsedQuote, string][] = [
      [badSignature, 'Signature is invalid for qe_report in quote'],
      [badAuthData, 'QE report hash mismatch'],
      [badKey, 'QE report hash mismatch'],
    ]
    // a success for the genuine signature, key and auth data lets no other one through
    const warm = new DcapQuoteVerifier(tdxCase.rootCaDer)
    assert.equal(run(warm, good), 'UpToDate')
    for (const [q, message] of expectations) assert.equal(run(warm, q), message)
    assert.equal(run(warm, good), 'UpToDate')
    // and a failure is not remembered: the genuine quote passes after it, the bad one still fails
    for (const [q, message] of expectations) {
      const cold: DcapQuoteVerifier = new DcapQuoteVerifier(tdxCase.rootCaDer)
      assert.equal(run(cold, q), message)
      assert.equal(run(cold, good), 'UpToDate')
      assert.equal(run(cold, q), message)
    }
  })

  it('BoundedCache keeps the most recently used entries up to its capacity', () => {
    const cache = new BoundedCache<number>(2)
    cache.set('a', 1)
    cache.set('b', 2)
    assert.equal(cache.get('a'), 1) // a is now the most recent
    cache.set('c', 3)
    assert.equal(cache.get('b'), undefined)
    assert.equal(cache.get('a'), 1)
    assert.equal(cache.get('c'), 3)
    assert.equal(cache.size, 2)
    assert.throws(() => new BoundedCache(0), RangeError)
  })
})
