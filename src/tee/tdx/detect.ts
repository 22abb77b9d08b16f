// Is this a TDX guest we can attest from, and if not, exactly why not. `[tee] backend = "tdx"`
// on a machine without TDX must refuse to start with the reason
// (docs/design.md#tee-backend-chosen-explicitly-never-a-fallback): a KMS that believes it
// attests while it does not would hand out keys on the strength of nothing.
import { TDX_GUEST_DEVICE } from '../../native/tdx.js'
import {
  absoluteOverride,
  CONFIGFS_BASE,
  CONFIGFS_DEFAULT,
  CONFIGFS_PATH_ENV,
  ConfigfsTsmQuoter,
  hasTdxProvider,
  shouldUseConfigfs,
} from './configfs-tsm.js'
import { TdxError } from './errors.js'
import { joinPath, readText, type TdxIo } from './io.js'

export const TDX_ATTEST_CONFIG_PATH = '/etc/tdx-attest.conf'

async function tdxProvider(io: TdxIo, dir: string): Promise<boolean> {
  try {
    return await hasTdxProvider(io, dir)
  } catch {
    return false
  }
}

/** `is_tdx_available` of upstream `tdx-attest`. A set but invalid override answers
 * false without looking further. */
export async function isTdxAvailable(io: TdxIo): Promise<boolean> {
  if (await io.exists(TDX_GUEST_DEVICE)) return true
  const override = io.env[CONFIGFS_PATH_ENV]
  if (override !== undefined) {
    try {
      return await tdxProvider(io, absoluteOverride(CONFIGFS_PATH_ENV, override))
    } catch {
      return false
    }
  }
  if (await tdxProvider(io, CONFIGFS_DEFAULT)) return true
  let entries: string[]
  try {
    entries = await io.readdir(CONFIGFS_BASE)
  } catch {
    return false
  }
  for (const entry of entries) {
    if (await tdxProvider(io, joinPath(CONFIGFS_BASE, entry))) return true
  }
  return false
}

/** `/etc/tdx-attest.conf`: the first `port = <u32>` line outside comments; 0 when absent. */
export async function readVsockPort(io: TdxIo): Promise<number> {
  let text: string
  try {
    text = await readText(io, TDX_ATTEST_CONFIG_PATH)
  } catch {
    return 0
  }
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line.startsWith('#') || !line.startsWith('port')) continue
    const rest = line.slice(4).trimStart()
    if (!rest.startsWith('=')) continue
    const value = rest.slice(1).trim()
    if (/^\+?[0-9]+$/.test(value)) {
      const port = Number(value)
      if (port <= 0xffffffff) return port
    }
  }
  return 0
}

export type QuoteMethod = { kind: 'configfs'; dir: string } | { kind: 'vsock'; port: number }

/** The method selection of `get_quote` in upstream `tdx-attest`, preparing the configfs
 * directory. */
export async function selectQuoteMethod(
  io: TdxIo,
  quoter: ConfigfsTsmQuoter,
): Promise<QuoteMethod> {
  if (await shouldUseConfigfs(io)) return { kind: 'configfs', dir: await quoter.prepare() }
  const port = await readVsockPort(io)
  if (port > 0) return { kind: 'vsock', port }
  throw TdxError.notSupported(
    'no quote method available (configfs not mounted, no vsock port configured)',
  )
}

export interface TdxAvailability {
  /** upstream's is_tdx_available */
  available: boolean
  /** how quotes will be obtained, when they can be */
  quoteMethod: QuoteMethod | null
  /** why this machine cannot attest through TDX; empty when it can */
  reasons: string[]
}

/** Everything `createTdxBackend` checks before it agrees to start. */
export async function detectTdx(io: TdxIo, quoter: ConfigfsTsmQuoter): Promise<TdxAvailability> {
  const reasons: string[] = []
  const available = await isTdxAvailable(io)
  if (!available) {
    const device = (await io.exists(TDX_GUEST_DEVICE)) ? [] : [`no ${TDX_GUEST_DEVICE}`]
    reasons.push(
      ...device,
      'no TDX configfs-tsm provider (no tdx_guest provider under ' +
        `${io.env[CONFIGFS_PATH_ENV] ?? CONFIGFS_BASE})`,
    )
  }
  let quoteMethod: QuoteMethod | null = null
  try {
    quoteMethod = await selectQuoteMethod(io, quoter)
  } catch (err) {
    reasons.push(err instanceof Error ? err.message : String(err))
  }
  return { available, quoteMethod, reasons }
}
