// `dstack-kms audit verify|tail`: reads the key-release audit log
// (docs/design.md#key-release-audit-log) without writing to it, so it can run beside a live KMS.
import { AuditLog, normalizeAuditAppId } from '../audit/audit-log.js'
import { type LoadOptions, loadConfig } from '../config/load.js'
import { parseDuration } from '../config/units.js'
import { errorMessage } from '../errors.js'
import { UsageError, parseCommandLine, parseFlags } from './usage.js'

export const AUDIT_USAGE = `Usage: dstack-kms audit verify [-c FILE | --db PATH]
       dstack-kms audit tail [-c FILE | --db PATH] [--app-id HEX] [--since TIME]

Reads the key-release audit log (core.audit.path; default kms-audit.sqlite3 in the parent
directory of core.cert_dir).

Commands:
  verify    check the hash chain of every row; exit 1 naming the first bad row
  tail      print rows as JSON lines, oldest first

Options:
  -c, --config FILE    configuration file (layered like 'dstack-kms serve')
      --quickstart     use the quick-start profile (./data), as 'serve --quickstart'
      --db PATH        the audit database itself (instead of the configured one)
      --app-id HEX     only rows of this app (20 bytes hex)
      --since TIME     only rows from TIME on: an RFC 3339 time, unix seconds, or a
                       duration ago such as "1h" or "7d"
  -h, --help           print this help and exit
`

export interface AuditIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  load?: Omit<LoadOptions, 'configFile'>
  now?: () => number
}

interface Options {
  action: 'verify' | 'tail'
  configFile?: string
  quickstart: boolean
  db?: string
  appId?: string
  since?: string
}

function parseOptions(argv: string[]): Options | 'help' {
  const [action, ...rest] = argv
  if (action === '-h' || action === '--help') return 'help'
  if (action !== 'verify' && action !== 'tail') {
    throw new UsageError(
      action === undefined ? 'expected verify or tail' : `unknown audit command '${action}'`,
    )
  }
  const values = parseFlags(rest, {
    config: { type: 'string', short: 'c' },
    quickstart: { type: 'boolean', default: false },
    db: { type: 'string' },
    'app-id': { type: 'string' },
    since: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  })
  if (values.help) return 'help'
  if (action === 'verify' && (values['app-id'] !== undefined || values.since !== undefined)) {
    throw new UsageError('--app-id and --since apply to tail only; verify checks the whole chain')
  }
  if (values.db !== undefined && values.config !== undefined) {
    throw new UsageError('give either --db or -c, not both')
  }
  return {
    action,
    configFile: values.config,
    quickstart: values.quickstart,
    db: values.db,
    appId: values['app-id'],
    since: values.since,
  }
}

/** RFC 3339, unix seconds, or a duration before now; anything else is a usage error. */
export function parseSince(text: string, now: number): number {
  if (/^[0-9]+$/.test(text)) return Number(text) * 1000
  if (/^[0-9]{4}-[0-9]{2}-[0-9]{2}/.test(text)) {
    const t = Date.parse(text)
    if (Number.isNaN(t)) throw new UsageError(`--since: not a valid time: ${text}`)
    return t
  }
  let ms: number | null
  try {
    ms = parseDuration(text)
  } catch {
    throw new UsageError(`--since: expected a time, unix seconds or a duration, got ${text}`)
  }
  if (ms === null) throw new UsageError('--since: "never" is not a point in time')
  return now - ms
}

export async function runAudit(argv: string[], io: AuditIo): Promise<number> {
  const opts = parseCommandLine('audit', AUDIT_USAGE, io, () => parseOptions(argv))
  if (typeof opts === 'number') return opts
  let filter: { appId?: string; sinceMs?: number }
  try {
    filter = {
      ...(opts.appId === undefined ? {} : { appId: normalizeAuditAppId(opts.appId) }),
      ...(opts.since === undefined
        ? {}
        : { sinceMs: parseSince(opts.since, (io.now ?? Date.now)()) }),
    }
  } catch (err) {
    io.stderr.write(
      `dstack-kms audit: ${errorMessage(err)}\nRun 'dstack-kms audit --help' for usage.\n`,
    )
    return 2
  }
  let log: AuditLog
  try {
    const path =
      opts.db ??
      loadConfig({ ...io.load, configFile: opts.configFile, quickstart: opts.quickstart }).core
        .audit.path
    log = AuditLog.openReadOnly(path)
  } catch (err) {
    io.stderr.write(`dstack-kms audit: ${errorMessage(err)}\n`)
    return 1
  }
  try {
    if (opts.action === 'verify') {
      const result = log.verify()
      if (result.ok) {
        io.stdout.write(`audit log ${log.path}: ${result.rows} rows, chain intact\n`)
        return 0
      }
      io.stderr.write(
        `dstack-kms audit: ${log.path}: row ${result.problem?.seq ?? '?'}: ${result.problem?.message ?? 'chain broken'}\n`,
      )
      return 1
    }
    for (const row of log.rows(filter)) {
      io.stdout.write(JSON.stringify({ ...row, time: new Date(row.time).toISOString() }) + '\n')
    }
    return 0
  } catch (err) {
    io.stderr.write(`dstack-kms audit: ${errorMessage(err)}\n`)
    return 1
  } finally {
    log.close()
  }
}
