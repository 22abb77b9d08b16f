// `verify_os_image_hash` (upstream `verifier/src/verification.rs`, called from the KMS's
// `ensure_app_attestation_allowed` after the auth webhook allowed the boot): picks the scheme the
// vm_config names, computes the expected MRTD/RTMR0–2 (from the SQLite measurement cache when it
// has them) and compares them with the DCAP-verified TD report. Only expected values are ever
// cached, never verdicts, and a clear always beats a computation that started before it.
// See docs/design.md#os-image-verification.
import { lstat, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { tdReportOf } from '../attestation/quote.js'
import type { TdxEvent } from '../attestation/types.js'
import type { VerifiedAttestation } from '../attestation/verify.js'
import type { CacheDb } from '../cache/cache-db.js'
import { clearImageCache, parseClearKeys } from '../cache/clear-cache.js'
import { BoundedCache } from '../util/bounded-cache.js'
import { isNotFound } from '../fs/errno.js'
import { KmsError, errorMessage } from '../errors.js'
import { type RegisterMismatch, assertRegistersMatch, registerMismatches } from './compare.js'
import type { LegacyVerifier } from './legacy/index.js'
import {
  type LiteImageMeasurements,
  acpiDigestsInContext,
  liteExpected,
  liteRegisters,
} from './lite.js'
import type { RegisterName, TdxRegisters } from './tdx-registers.js'
import { type VmConfig, parseVmConfig, vmConfigHash } from './vm-config.js'

export type ImageScheme = 'lite' | 'legacy'

/** Bumped whenever the meaning of a cached row changes; older rows are recomputed. */
export const MEASUREMENT_CACHE_VERSION = 1

export type ExpectedMrs = { [K in RegisterName]: Buffer | null }

export interface ImageCheck {
  scheme: ImageScheme
  osImageHash: Buffer
  configHash: string
  expected: ExpectedMrs
  actual: TdxRegisters
  mismatches: RegisterMismatch[]
  /** registers that were not recomputed (legacy `skip` mode) */
  skipped: string[]
  /** the image-derived values came from the measurement cache */
  cacheHit: boolean
}

export interface OsImageVerifierOptions {
  cache: CacheDb
  legacy: LegacyVerifier
  /** LRU cap on the images directory (bytes) */
  cacheMaxBytes: number
  log: Logger
}

interface LiteRow {
  v: number
  scheme: 'lite'
  mrtd: string
  td_hob: string
  rtmr1: string
  rtmr2: string
}

interface LegacyRow {
  v: number
  scheme: 'legacy'
  mrtd: string
  rtmr0: string
  rtmr1: string
  rtmr2: string
}

const HEX48 = /^[0-9a-f]{96}$/

function hex48(v: unknown): Buffer | null {
  return typeof v === 'string' && HEX48.test(v) ? Buffer.from(v, 'hex') : null
}

function notSupported(variant: string): KmsError {
  return new KmsError(
    'KMS_ERR_NOT_IMPLEMENTED',
    `OS image verification of ${variant} attestations is not supported by dstack-kms-ts`,
  )
}

/** The TDX registers the hardware signed. */
export function quotedRegisters(att: VerifiedAttestation): TdxRegisters {
  const td = tdReportOf(att.report.quote)
  if (td === null) throw new KmsError('KMS_ERR_ATTESTATION', 'No TDX report')
  return { mrtd: td.mrTd, rtmr0: td.rtmr0, rtmr1: td.rtmr1, rtmr2: td.rtmr2 }
}

/** The parameters the legacy measurement needs, from the vm_config. */
async function directorySize(dir: string): Promise<number> {
  let total = 0
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if (isNotFound(err)) return 0
    throw err
  }
  for (const name of names) {
    const p = join(dir, name)
    const st = await lstat(p)
    // symlinks are counted as themselves, never followed
    total += st.isDirectory() ? await directorySize(p) : st.size
  }
  return total
}

/** A vm_config text whose lite image measurements are known, and the clear generation of the
 * measurement cache they were read or computed under. */
interface KnownLite {
  vm: VmConfig
  configHash: string
  image: LiteImageMeasurements
  generation: number
}

/** vm_config texts remembered (a KMS serves few images) and the longest one remembered. */
const KNOWN_LITE_ENTRIES = 256
const KNOWN_LITE_MAX_TEXT = 64 * 1024

/** The lite comparison: the image part plus the quote-bound ACPI digests of this boot. */
function liteCheck(
  vm: VmConfig,
  configHash: string,
  image: LiteImageMeasurements,
  events: readonly TdxEvent[],
  actual: TdxRegisters,
  cacheHit: boolean,
): ImageCheck {
  const expected = liteRegisters(image, acpiDigestsInContext(events))
  return {
    scheme: 'lite',
    osImageHash: vm.osImageHash,
    configHash,
    actual,
    expected,
    mismatches: registerMismatches(expected, actual),
    skipped: [],
    cacheHit,
  }
}

export class OsImageVerifier {
  readonly #o: OsImageVerifierOptions
  // The parse, hash and cache read of a vm_config already seen, skipped while no clear has come
  // in between (~70 µs of every GetAppKey); only expected values, never verdicts, and the
  // generation is read from the shared cache on every use, so a clear by any worker wins.
  readonly #knownLite = new BoundedCache<KnownLite>(KNOWN_LITE_ENTRIES)

  constructor(opts: OsImageVerifierOptions) {
    this.#o = opts
  }

  /** Verifies and throws on any refusal or mismatch (texts as upstream; the caller adds the
   * `Failed to verify os image hash` context). */
  async verify(vmConfigText: string, att: VerifiedAttestation): Promise<ImageCheck> {
    const check = await this.check(vmConfigText, att)
    assertRegistersMatch(check.expected, check.actual)
    return check
  }

  /** Computes expected and quoted registers and their differences without throwing on a
   * mismatch (the verify-image command reports them all). Refusals before the comparison throw. */
  async check(vmConfigText: string, att: VerifiedAttestation): Promise<ImageCheck> {
    const q = att.attestation.quote
    if (q.kind !== 'dstack-tdx') throw notSupported(att.variant)
    return this.checkText(vmConfigText, q.eventLog, quotedRegisters(att))
  }

  /** `check` for a TDX boot given as its vm_config text, event log and quoted registers. */
  async checkText(
    vmConfigText: string,
    events: readonly TdxEvent[],
    actual: TdxRegisters,
  ): Promise<ImageCheck> {
    const known = this.#knownLite.get(vmConfigText)
    if (known !== undefined && known.generation === this.#o.cache.clearGeneration()) {
      return liteCheck(known.vm, known.configHash, known.image, events, actual, true)
    }
    const vm = parseVmConfig(vmConfigText)
    if (vm.tdxAttestationVariant !== 'lite') return this.checkTdx(vm, events, actual)
    return this.checkLite(vm, events, actual, vmConfigText)
  }

  async checkTdx(
    vm: VmConfig,
    events: readonly TdxEvent[],
    actual: TdxRegisters,
  ): Promise<ImageCheck> {
    if (vm.tdxAttestationVariant === 'lite') return this.checkLite(vm, events, actual)
    const configHash = vmConfigHash(vm)
    const base = { osImageHash: vm.osImageHash, configHash, actual }
    const { expected, skipped, cacheHit } = await this.#legacy(vm, configHash)
    return {
      ...base,
      scheme: 'legacy',
      expected,
      mismatches: registerMismatches(expected, actual),
      skipped,
      cacheHit,
    }
  }

  /** The lite scheme, synchronous (no download, no subprocess). Given the vm_config text `vm`
   * was parsed from, the image measurements are remembered under it for `checkText`. */
  checkLite(
    vm: VmConfig,
    events: readonly TdxEvent[],
    actual: TdxRegisters,
    vmConfigText?: string,
  ): ImageCheck {
    const configHash = vmConfigHash(vm)
    const memoKey =
      vmConfigText !== undefined && vmConfigText.length <= KNOWN_LITE_MAX_TEXT
        ? vmConfigText
        : undefined
    // read before the row: a clear from any worker after this point makes the memo stale
    const generation = memoKey === undefined ? 0 : this.#o.cache.clearGeneration()
    const { image, cacheHit } = this.#lite(vm, configHash, events)
    if (memoKey !== undefined) this.#knownLite.set(memoKey, { vm, configHash, image, generation })
    return liteCheck(vm, configHash, image, events, actual, cacheHit)
  }

  #readRow(configHash: string): Record<string, unknown> | null {
    const entry = this.#o.cache.getMeasurement(configHash)
    if (entry === undefined) return null
    try {
      const row: unknown = JSON.parse(entry.value)
      if (row !== null && typeof row === 'object' && !Array.isArray(row)) {
        const r = row as Record<string, unknown>
        if (r['v'] === MEASUREMENT_CACHE_VERSION) return r
      }
    } catch {
      // reported below
    }
    this.#o.log.warn({ configHash }, 'ignoring an unreadable or outdated measurement cache entry')
    return null
  }

  #store(configHash: string, osImageHash: Buffer, row: LiteRow | LegacyRow, generation: number) {
    if (osImageHash.length === 0) return // nothing to key the row's image by; recompute next time
    try {
      this.#o.cache.putMeasurementIfGeneration(
        configHash,
        osImageHash.toString('hex'),
        JSON.stringify(row),
        generation,
      )
    } catch (err) {
      // upstream: a store failure is only a warning; the verification itself stands
      this.#o.log.warn({ configHash, err: errorMessage(err) }, 'failed to store measurement')
    }
  }

  /** The image part of the lite registers: from the measurement cache, or computed (the
   * measurement document checked against the image) and stored. */
  #lite(
    vm: VmConfig,
    configHash: string,
    events: readonly TdxEvent[],
  ): { image: LiteImageMeasurements; cacheHit: boolean } {
    const row = this.#readRow(configHash)
    if (row !== null && row['scheme'] === 'lite') {
      const mrtd = hex48(row['mrtd'])
      const tdHob = hex48(row['td_hob'])
      const rtmr1 = hex48(row['rtmr1'])
      const rtmr2 = hex48(row['rtmr2'])
      if (mrtd !== null && tdHob !== null && rtmr1 !== null && rtmr2 !== null) {
        return { image: { mrtd, tdHobDigest: tdHob, rtmr1, rtmr2 }, cacheHit: true }
      }
    }
    const generation = this.#o.cache.clearGeneration()
    const { image } = liteExpected(vm, events)
    this.#store(
      configHash,
      vm.osImageHash,
      {
        v: MEASUREMENT_CACHE_VERSION,
        scheme: 'lite',
        mrtd: image.mrtd.toString('hex'),
        td_hob: image.tdHobDigest.toString('hex'),
        rtmr1: image.rtmr1.toString('hex'),
        rtmr2: image.rtmr2.toString('hex'),
      },
      generation,
    )
    return { image, cacheHit: false }
  }

  async #legacy(
    vm: VmConfig,
    configHash: string,
  ): Promise<{ expected: ExpectedMrs; skipped: string[]; cacheHit: boolean }> {
    const hex = vm.osImageHash.toString('hex')
    const row = this.#readRow(configHash)
    if (row !== null && row['scheme'] === 'legacy') {
      const mrtd = hex48(row['mrtd'])
      const rtmr0 = hex48(row['rtmr0'])
      const rtmr1 = hex48(row['rtmr1'])
      const rtmr2 = hex48(row['rtmr2'])
      if (mrtd !== null && rtmr0 !== null && rtmr1 !== null && rtmr2 !== null) {
        if (hex !== '') this.#o.cache.touchImage(hex)
        return { expected: { mrtd, rtmr0, rtmr1, rtmr2 }, skipped: [], cacheHit: true }
      }
    }
    const generation = this.#o.cache.clearGeneration()
    const { expected, skipped } = await this.#o.legacy.expectedRegisters(vm.osImageHash, vm)
    if (expected.rtmr0 !== null) {
      // A partial (skip-mode) result is never cached: switching to `require` must recompute.
      this.#store(
        configHash,
        vm.osImageHash,
        {
          v: MEASUREMENT_CACHE_VERSION,
          scheme: 'legacy',
          mrtd: expected.mrtd.toString('hex'),
          rtmr0: expected.rtmr0.toString('hex'),
          rtmr1: expected.rtmr1.toString('hex'),
          rtmr2: expected.rtmr2.toString('hex'),
        },
        generation,
      )
    }
    if (hex !== '') await this.#trackImage(hex)
    return { expected: { ...expected }, skipped, cacheHit: false }
  }

  /** Indexes the image directory the legacy path used and evicts least recently used images
   * beyond the cap (never the one just used). */
  async #trackImage(hex: string): Promise<void> {
    const { cache, log } = this.#o
    try {
      const sizeBytes = await directorySize(join(cache.imagesDir, hex))
      if (sizeBytes === 0) return
      const now = Math.floor(Date.now() / 1000)
      cache.putImage(hex, { sizeBytes, verifiedAt: now, lastUsedAt: now })
      let total = cache.totalImageBytes()
      for (const e of cache.listImagesLru()) {
        if (total <= this.#o.cacheMaxBytes) break
        if (e.osImageHash === hex) continue
        await this.clear(e.osImageHash, '')
        total -= e.sizeBytes
        log.info(
          { osImageHash: e.osImageHash, sizeBytes: e.sizeBytes },
          'image evicted from the cache (core.image.cache_max_bytes)',
        )
      }
    } catch (err) {
      log.warn({ osImageHash: hex, err: errorMessage(err) }, 'failed to index cached image')
    }
  }

  /** ClearImageCache: rows, directories and the legacy path's in-memory state. Keys are
   * validated before anything changes. */
  async clear(imageHash: string, configHash: string): Promise<void> {
    const { imageKey } = parseClearKeys(imageHash, configHash)
    // The rows and directories go under the legacy path's write lock, so a measurement that is
    // reading an image directory never sees it vanish under it.
    const removeRowsAndFiles = (): void => clearImageCache(this.#o.cache, imageHash, configHash)
    if (imageKey.kind === 'all') await this.#o.legacy.clear('all', removeRowsAndFiles)
    else if (imageKey.kind === 'hex' && imageKey.value.length === 64) {
      await this.#o.legacy.clear(Buffer.from(imageKey.value, 'hex'), removeRowsAndFiles)
    } else removeRowsAndFiles()
  }
}
