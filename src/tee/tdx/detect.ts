// Is this a TDX guest we can attest from, and if not, exactly why not. `[tee] backend = "tdx"`
// on a machine without TDX must refuse to start with the reason: a KMS that believes it attests
// while it does not would hand out keys on the strength of nothing. The simulator asks the same
// question the other way round: it refuses to stand in for TDX where TDX exists.
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

export interface TdxPresence {
  present: boolean
  /** what was found (the device, `provider` files saying tdx_guest), for the error message */
  evidence: string[]
}

/** Upstream `is_tdx_available`, with what it found: the TDX guest device, or a configfs-tsm
 * report directory whose provider is TDX (an SEV-SNP guest has the same configfs directory). A
 * set `DCAP_TDX_QUOTE_CONFIGFS_PATH` names the only directory looked at; set but invalid, it
 * finds nothing. The one presence check: the TDX backend's start-up and the simulator's refusal
 * to run where real TDX exists both ask it. */
export async function tdxPresence(io: TdxIo): Promise<TdxPresence> {
  const evidence: string[] = []
  if (await io.exists(TDX_GUEST_DEVICE)) evidence.push(TDX_GUEST_DEVICE)
  const found = (dir: string) => evidence.push(joinPath(dir, 'provider'))
  const override = io.env[CONFIGFS_PATH_ENV]
  if (override !== undefined) {
    let dir: string | undefined
    try {
      dir = absoluteOverride(CONFIGFS_PATH_ENV, override)
    } catch {
      dir = undefined
    }
    if (dir !== undefined && (await tdxProvider(io, dir))) found(dir)
    return { present: evidence.length > 0, evidence }
  }
  let entries: string[]
  try {
    entries = (await io.readdir(CONFIGFS_BASE)).sort()
  } catch {
    entries = []
  }
  for (const entry of entries) {
    const dir = joinPath(CONFIGFS_BASE, entry)
    if (await tdxProvider(io, dir)) found(dir)
  }
  // the default directory counts even when the base cannot be listed
  if (!entries.includes('com.intel.dcap') && (await tdxProvider(io, CONFIGFS_DEFAULT))) {
    found(CONFIGFS_DEFAULT)
  }
  return { present: evidence.length > 0, evidence }
}

/** Upstream `is_tdx_available`. */
export async function isTdxAvailable(io: TdxIo): Promise<boolean> {
  return (await tdxPresence(io)).present
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

/** The method selection of `get_quote` in upstream `tdx-attest`, preparing the configfs directory. */
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
