// OS-image verification costs: the TDX lite check in process (the real 0.6.0 fixture; computed
// from the document, and with the image-derived values from the SQLite measurement cache, which
// is what a KMS does for every request after the first), and GetAppKey hot on the TEE simulator
// with `[core.image] verify` true and false in the same run (target: true ≥ 80% of false).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { parseTdxEventLogJson } from '../src/attestation/event-log.js'
import { parseQuote, tdReportOf } from '../src/attestation/quote.js'
import { CacheDb } from '../src/cache/cache-db.js'
import { assertRegistersMatch } from '../src/image/compare.js'
import { OsImageVerifier } from '../src/image/image-verifier.js'
import { createLegacyVerifier } from '../src/image/legacy/index.js'
import { liteExpected } from '../src/image/lite.js'
import type { TdxRegisters } from '../src/image/tdx-registers.js'
import { parseVmConfig } from '../src/image/vm-config.js'
import { appKeyValidator, guestFactory, startAttestedKms, stopAttestedKms } from './app-key-load.js'
import { runLoad, type LoadResult } from './load.js'
import { measure, type MicroOptions, type MicroResult } from './micro.js'

export const LITE_UNCACHED_CASE =
  'TDX lite OS-image check (document, CBOR, TD HOB, RTMR0-2, compare)'
export const LITE_CACHED_CASE =
  'TDX lite OS-image check, measurement cache hit (vm_config parse + SQLite + RTMR0)'

const FIXTURE = new URL('../test/fixtures/vectors/tdx-lite-getquote.json', import.meta.url)

export function imageVerifyMicro(o: MicroOptions): MicroResult[] {
  const f = JSON.parse(readFileSync(FIXTURE, 'utf8')) as {
    quote: string
    event_log: string
    vm_config: string
  }
  const events = parseTdxEventLogJson(f.event_log)
  const td = tdReportOf(parseQuote(Buffer.from(f.quote, 'hex')))
  if (td === null) throw new Error('fixture quote is not TDX')
  const quoted: TdxRegisters = { mrtd: td.mrTd, rtmr0: td.rtmr0, rtmr1: td.rtmr1, rtmr2: td.rtmr2 }
  const dir = mkdtempSync(join(tmpdir(), 'dstack-kms-bench-image-'))
  const cache = CacheDb.open(dir)
  const log = pino({ level: 'silent' })
  try {
    const verifier = new OsImageVerifier({
      cache,
      cacheMaxBytes: 1 << 30,
      log,
      legacy: createLegacyVerifier({
        imageCacheDir: cache.imagesDir,
        downloadUrl: 'http://127.0.0.1:9/{OS_IMAGE_HASH}',
        maxImageBytes: 1,
        downloadTimeoutMs: 1,
        acpiTablesCommand: null,
        acpiTimeoutMs: 1,
        legacyRtmr0: 'require',
        log,
      }),
    })
    const results = [
      measure(
        LITE_UNCACHED_CASE,
        () =>
          assertRegistersMatch(liteExpected(parseVmConfig(f.vm_config), events).expected, quoted),
        o,
      ),
    ]
    // fill the cache once, then every check is a hit
    verifier.checkLite(parseVmConfig(f.vm_config), events, quoted)
    results.push(
      measure(
        LITE_CACHED_CASE,
        () => {
          const c = verifier.checkLite(parseVmConfig(f.vm_config), events, quoted)
          if (!c.cacheHit || c.mismatches.length > 0) {
            throw new Error('expected a verified cache hit')
          }
        },
        o,
      ),
    )
    return results
  } finally {
    cache.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

export interface VerifyComparison {
  off: LoadResult
  on: LoadResult
  /** on.rps / off.rps */
  ratio: number
  problems: string[]
}

async function hotAppKey(
  imageVerify: boolean,
  o: { concurrency: number; warmupMs: number; durationMs: number; progress(l: string): void },
): Promise<LoadResult> {
  o.progress(`GetAppKey hot, [core.image] verify = ${imageVerify}, ${o.concurrency} clients…`)
  const k = await startAttestedKms(1, undefined, 'node-crypto', { imageVerify })
  try {
    const guests = await guestFactory(k)
    const certs = Array.from({ length: o.concurrency }, () => guests.make())
    return await runLoad({
      url: `${k.base}/prpc/GetAppKey?json`,
      body: guests.body,
      headers: {},
      concurrency: o.concurrency,
      warmupMs: o.warmupMs,
      durationMs: o.durationMs,
      validate: appKeyValidator(k),
      serverPid: k.workerPids,
      clientTls: (i) => certs[i] ?? guests.make(),
    })
  } finally {
    await stopAttestedKms(k)
  }
}

/** One worker each, the same client load; verify = false first, then true. */
export async function runVerifyComparison(o: {
  concurrency: number
  warmupMs: number
  durationMs: number
  progress(l: string): void
}): Promise<VerifyComparison> {
  const off = await hotAppKey(false, o)
  const on = await hotAppKey(true, o)
  const problems = [off, on]
    .filter((r) => r.errors > 0)
    .map((r) => `GetAppKey hot: ${r.firstError ?? 'errors'}`)
  return { off, on, ratio: off.rps > 0 ? on.rps / off.rps : 0, problems }
}
