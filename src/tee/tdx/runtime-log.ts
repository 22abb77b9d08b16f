// The runtime (RTMR3) event log of a dstack guest, /run/log/dstack/runtime_events.log,
// with upstream HEAD's emission protocol: a system-wide flock on runtime_event.lock, the
// digest format from runtime_event_version, then extend first and append second, so a device
// failure never leaves an unmeasured event in the log that verifiers replay.
import { formatRuntimeEventLine, parseRuntimeEventLog } from '../../attestation/event-log.js'
import { runtimeEventDigest } from '../../attestation/runtime-events.js'
import type { RuntimeEvent } from '../../attestation/types.js'
import { KmsError, withContext } from '../../errors.js'
import { isNotFound } from '../../fs/errno.js'
import { ioErrorText } from './errors.js'
import { joinPath, readText, writeAll, type TdxFile, type TdxIo } from './io.js'

export const RUNTIME_EVENT_DIR = '/run/log/dstack'

export interface RuntimeLogPaths {
  dir: string
  /** runtime_events.log: one JSON object per line, mode 0600 */
  log: string
  /** runtime_event.lock: flock'd around extend + append, across processes */
  lock: string
  /** runtime_event_version: `1` or `2`, written by dstack-util during system setup */
  version: string
}

export function runtimeLogPaths(dir: string = RUNTIME_EVENT_DIR): RuntimeLogPaths {
  return {
    dir,
    log: joinPath(dir, 'runtime_events.log'),
    lock: joinPath(dir, 'runtime_event.lock'),
    version: joinPath(dir, 'runtime_event_version'),
  }
}

/** anyhow's `context: inner` chain over an I/O error (upstream's fs_err adds the path between
 * the two; the errno error kept as `cause` has it). */
function ioContext(context: string, err: unknown): KmsError {
  return new KmsError('KMS_ERR_TDX', `${context}: ${ioErrorText(err)}`, { cause: err })
}

/** Upstream `RuntimeEvent::read_all`: a missing file is an empty log. */
export async function readRuntimeEvents(
  io: TdxIo,
  paths: RuntimeLogPaths,
): Promise<RuntimeEvent[]> {
  let text: string
  try {
    text = await readText(io, paths.log)
  } catch (err) {
    if (isNotFound(err)) return []
    throw ioContext('Failed to read user event log', err)
  }
  // `Failed to decode user event log: …` for a bad line
  return parseRuntimeEventLog(text)
}

/** Upstream `RuntimeEvent::emit`: one line appended to the log, directory created as needed. */
export async function appendRuntimeEvent(
  io: TdxIo,
  paths: RuntimeLogPaths,
  event: RuntimeEvent,
): Promise<void> {
  const line = Buffer.from(formatRuntimeEventLine(event) + '\n', 'utf8')
  try {
    await io.mkdir(paths.dir, { recursive: true })
  } catch (err) {
    throw ioContext('failed to create event log directory', err)
  }
  let file: TdxFile
  try {
    file = await io.open(paths.log, 'append')
  } catch (err) {
    throw ioContext('failed to open event log file', err)
  }
  try {
    // One write for the whole line: O_APPEND keeps concurrent appenders' lines whole.
    await writeAll(file, line)
  } catch (err) {
    throw ioContext('failed to write to event log file', err)
  } finally {
    await file.close().catch(() => undefined)
  }
}

/** Runs `fn` under the system-wide runtime event lock (an unbounded wait, as upstream: giving up
 * would either break the extend/append ordering or abort a merely slow boot). */
export async function withRuntimeEventLock<T>(
  io: TdxIo,
  paths: RuntimeLogPaths,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    await io.mkdir(paths.dir, { recursive: true })
  } catch (err) {
    throw ioContext('failed to create runtime event log directory', err)
  }
  let lock: TdxFile
  try {
    lock = await io.open(paths.lock, 'lock')
  } catch (err) {
    throw ioContext('failed to open runtime event lock', err)
  }
  try {
    try {
      await lock.lockExclusive()
    } catch (err) {
      throw ioContext('failed to lock runtime event emission', err)
    }
    return await fn()
  } finally {
    await lock.close().catch(() => undefined)
  }
}

export const RUNTIME_EVENT_VERSION_MISSING =
  'runtime event version is not configured; complete dstack system setup before emitting events'

/** The digest format system setup chose for this boot. */
export async function readRuntimeEventVersion(io: TdxIo, paths: RuntimeLogPaths): Promise<1 | 2> {
  let text: string
  try {
    text = await readText(io, paths.version)
  } catch (err) {
    throw ioContext(RUNTIME_EVENT_VERSION_MISSING, err)
  }
  const value = text.trim()
  if (value === '1') return 1
  if (value === '2') return 2
  throw new KmsError('KMS_ERR_TDX', `invalid runtime event version: ${value}`)
}

/** Upstream HEAD `emit_runtime_event` for TDX: lock → version → extend RTMR3 → append. */
export async function emitRuntimeEvent(
  io: TdxIo,
  paths: RuntimeLogPaths,
  name: string,
  payload: Uint8Array,
  extendRtmr3: (digest: Buffer) => Promise<void>,
): Promise<RuntimeEvent> {
  return withRuntimeEventLock(io, paths, async () => {
    const version = await readRuntimeEventVersion(io, paths)
    const event: RuntimeEvent = { event: name, payload: Buffer.from(payload) }
    if (version === 2) event.version = 2
    try {
      await extendRtmr3(runtimeEventDigest(event))
    } catch (err) {
      throw withContext('Failed to extend TDX RTMR', err, 'KMS_ERR_TDX')
    }
    try {
      await appendRuntimeEvent(io, paths, event)
    } catch (err) {
      throw withContext('Failed to emit runtime event', err, 'KMS_ERR_TDX')
    }
    return event
  })
}
