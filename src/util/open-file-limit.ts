// The process's open-file limit (RLIMIT_NOFILE), which Node does not expose, read from
// /proc/self/limits, and the rule that every listener's connection cap must fit below it
// (docs/design.md#resource-limits-on-every-listener).
import { readFileSync } from 'node:fs'

/** Descriptors a worker needs beyond its listeners' connections: outbound connections (auth
 * webhook, PCCS, image downloads), SQLite files, the IPC channel, logs. */
export const OUTBOUND_FILE_ROOM = 1024

/** The soft limit on open files (Infinity when unlimited), or null where the limits file cannot
 * be read or has no such line (not Linux). */
export function openFileLimit(limitsFile = '/proc/self/limits'): number | null {
  let text: string
  try {
    text = readFileSync(limitsFile, 'utf8')
  } catch {
    return null
  }
  const soft = /^Max open files\s+(\S+)/m.exec(text)?.[1]
  if (soft === undefined) return null
  if (soft === 'unlimited') return Infinity
  const n = Number(soft)
  return Number.isSafeInteger(n) ? n : null
}

/** The warning to log when `listeners` full listeners of `maxConnections` each, plus the
 * outbound room, do not fit below the open-file limit; null when they do. Past the limit a
 * connection flood exhausts descriptors before the cap applies, and key release (webhook, SQLite)
 * fails with it. */
export function openFileShortfall(
  limit: number,
  maxConnections: number,
  listeners: number,
): string | null {
  const needed = listeners * maxConnections + OUTBOUND_FILE_ROOM
  if (needed <= limit) return null
  return (
    `the open-file limit (${limit}) is below limits.max_connections (${maxConnections}) × ${listeners} ` +
    `listener(s) + ${OUTBOUND_FILE_ROOM} for outbound connections and files = ${needed}: a connection ` +
    'flood can exhaust file descriptors before the connection cap applies; raise LimitNOFILE ' +
    '(ulimit -n) or lower limits.max_connections'
  )
}
