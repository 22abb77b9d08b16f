// The one way tests get Intel's sample quote collateral (dcap-qvl's TDX and SGX samples, see
// test/fixtures/vectors/PROVENANCE.md): as the JSON text a PCCS-backed cache or the CLI reads, its
// file path, or parsed by the production parser.
import { type Collateral, parseCollateralJson } from '../../src/attestation/collateral.js'
import { VECTORS_DIR, readVectorFile } from './crypto-vectors.js'

export type CollateralSample = 'tdx' | 'sgx'

/** The vector file holding the collateral of the `tee` sample quote (`dcap-qvl-<tee>_quote`). */
export function collateralFixtureName(tee: CollateralSample): string {
  return `dcap-qvl-${tee}_quote_collateral.json`
}

export function collateralFixturePath(tee: CollateralSample): string {
  return VECTORS_DIR + collateralFixtureName(tee)
}

export function collateralFixtureJson(tee: CollateralSample): string {
  return readVectorFile(collateralFixtureName(tee)).toString('utf8')
}

export function loadCollateralFixture(tee: CollateralSample): Collateral {
  return parseCollateralJson(collateralFixtureJson(tee))
}
