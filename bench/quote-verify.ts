// Warm DCAP quote verification, side by side on the same quote and collateral (the dcap-qvl TDX
// sample with its collateral, at a time both are valid): @phala/dcap-qvl's `verify()` against the
// node:crypto verifier (quote parsing included), and the KMS's whole `verifyQuote` (its own PCK
// chain, collateral and CRL checks too) with each engine.
import dcap from '@phala/dcap-qvl'
import { StaticCollateralSource, parseCollateralJson } from '../src/attestation/collateral.js'
import { DcapQuoteVerifier } from '../src/attestation/dcap/quote-verifier.js'
import { parseQuote } from '../src/attestation/quote.js'
import { INTEL_SGX_ROOT_CA_DER } from '../src/attestation/trust.js'
import { AttestationVerifier } from '../src/attestation/verify.js'
import { readVectorFile, readVectorJson } from '../test/helpers/crypto-vectors.js'
import { measureInterleaved, type MicroOptions, type MicroResult } from './micro.js'

export interface QuoteVerifyFigures {
  libraryUs: number
  coreUs: number
  kmsCoreUs: number
  kmsLibraryUs: number
  results: MicroResult[]
}

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

/** µs per awaited call, median of `rounds` rounds of `roundMs`. */
async function measureAsync(fn: () => Promise<unknown>, o: MicroOptions): Promise<number> {
  const warmEnd = nowMs() + o.warmupMs
  while (nowMs() < warmEnd) await fn()
  const perOp: number[] = []
  for (let r = 0; r < o.rounds; r++) {
    let n = 0
    const t0 = nowMs()
    while (nowMs() - t0 < o.roundMs) {
      await fn()
      n++
    }
    perOp.push(((nowMs() - t0) / n) * 1000)
  }
  perOp.sort((a, b) => a - b)
  return perOp[Math.floor(perOp.length / 2)] ?? Number.NaN
}

export async function measureQuoteVerification(o: MicroOptions): Promise<QuoteVerifyFigures> {
  const sample = readVectorJson<{ dcap_qvl_samples: { cases: Array<{ now: number }> } }>(
    'vectors.json',
  ).dcap_qvl_samples.cases[0]
  if (sample === undefined) throw new Error('no dcap-qvl TDX sample in vectors.json')
  const now = sample.now
  const quote = readVectorFile('dcap-qvl-tdx_quote')
  const collateral = parseCollateralJson(
    readVectorFile('dcap-qvl-tdx_quote_collateral.json').toString('utf8'),
  )
  const library = dcap.QuoteVerifier.newWithRootCa(INTEL_SGX_ROOT_CA_DER)
  const core = new DcapQuoteVerifier(INTEL_SGX_ROOT_CA_DER)
  const a = library.verify(quote, collateral, now)
  const b = core.verify(quote, parseQuote(quote), collateral, now)
  if (a.status !== b.status) throw new Error(`engines disagree: ${a.status} vs ${b.status}`)
  const results = measureInterleaved(
    [
      { name: 'dcap-qvl verify()', fn: () => library.verify(quote, collateral, now) },
      {
        name: 'node:crypto verifier (parse + verify, warm)',
        fn: () => core.verify(quote, parseQuote(quote), collateral, now),
      },
    ],
    o,
  )
  const kms = (engine: 'node-crypto' | 'dcap-qvl') =>
    new AttestationVerifier({
      rootCaDer: INTEL_SGX_ROOT_CA_DER,
      collateral: new StaticCollateralSource(collateral),
      now: () => now,
      engine,
    })
  const fast = kms('node-crypto')
  const slow = kms('dcap-qvl')
  const kmsCoreUs = await measureAsync(() => fast.verifyQuote(quote), o)
  const kmsLibraryUs = await measureAsync(() => slow.verifyQuote(quote), o)
  return {
    libraryUs: results[0]?.usPerOp ?? Number.NaN,
    coreUs: results[1]?.usPerOp ?? Number.NaN,
    kmsCoreUs,
    kmsLibraryUs,
    results,
  }
}
