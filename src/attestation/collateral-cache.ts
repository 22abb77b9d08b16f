// Collateral kept in the SQLite cache between PCCS fetches. Upstream asks the PCCS on every
// verification; we keep a checked copy until its earliest `nextUpdate`, so that one platform costs
// one PCCS round trip per collateral period and a PCCS outage does not stop a KMS whose copy is
// fresh. Nothing is stored before its chains, CRLs and signatures have checked out, and every read
// checks it again against the root the caller trusts (a copy left by an older version, or read
// after the clock moved, is dropped and refetched).
import type { Logger } from 'pino'
import type { CacheDb } from '../cache/cache-db.js'
import { asError } from '../errors.js'
import { type Collateral, parseCollateralJson } from './collateral.js'
import { type TrustAnchor, checkCollateral } from './collateral-trust.js'

interface Remembered {
  json: string
  collateral: Collateral
  validFrom: number
  validUntil: number
}

export class CollateralCache {
  private readonly db: CacheDb
  private readonly logger: Logger | undefined
  /** logged with every warning, to tell caches of several PCCSes apart */
  private readonly pccsUrl: string
  // the parsed and checked copy of each cache entry, so that a cache hit costs neither a JSON
  // parse nor the chain checks again (and the verifier's own memo sees the same object)
  private readonly remembered = new Map<string, Remembered>()

  constructor(db: CacheDb, pccsUrl: string, logger?: Logger) {
    this.db = db
    this.pccsUrl = pccsUrl
    this.logger = logger
  }

  /** The cached collateral under `key` when it is still valid at `now` and checks out against
   * `anchor`; undefined otherwise. */
  get(key: string, anchor: TrustAnchor, now: number): Collateral | undefined {
    const json = this.db.getCollateral(key, now)
    if (json === undefined) {
      this.remembered.delete(key)
      return undefined
    }
    const known = this.remembered.get(key)
    if (
      known !== undefined &&
      known.json === json &&
      known.validFrom <= now &&
      now < known.validUntil
    ) {
      return known.collateral
    }
    try {
      const collateral = parseCollateralJson(json)
      const trust = checkCollateral(collateral, anchor, now, { documents: true })
      this.remembered.set(key, {
        json,
        collateral,
        validFrom: trust.validFrom,
        validUntil: trust.validUntil,
      })
      return collateral
    } catch (err) {
      // stored by an older version, or a clock that moved: fetch a fresh copy instead
      this.logger?.warn(
        { pccs: this.pccsUrl, key, err: asError(err) },
        'cached collateral no longer checks out; refetching',
      )
      this.remembered.delete(key)
      try {
        this.db.deleteCollateral(key)
      } catch (deleteErr) {
        // the copy is refused on every read anyway, so a failed delete only costs the space
        this.logger?.warn(
          { pccs: this.pccsUrl, key, err: asError(deleteErr) },
          'failed to drop cached collateral that no longer checks out',
        )
      }
      return undefined
    }
  }

  /** Stores collateral that has already been checked, valid until `validUntil` (unix seconds),
   * and drops entries that expired by `now`. */
  put(key: string, collateral: Collateral, validUntil: number, now: number): void {
    try {
      this.db.putCollateral(key, JSON.stringify(collateral), validUntil)
      this.db.pruneCollateral(now)
    } catch (err) {
      // A cache that cannot be written (a full disk) costs a PCCS round trip per verification,
      // never the verification: the collateral in hand has been checked. SQLite rolls the
      // failed statement back, so the file stays consistent.
      this.logger?.warn(
        { pccs: this.pccsUrl, key, err: asError(err) },
        'failed to store quote collateral in the cache; verifying without caching it',
      )
    }
  }

  /** When the expired copy under `key` stopped being valid (unix seconds), if one is left. */
  expiredAt(key: string): number | undefined {
    return this.db.getCollateralEntry(key)?.nextUpdate
  }
}
