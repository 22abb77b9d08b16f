// The key-release audit log: every decision to release or refuse key material is one row of a
// SQLite table, each row carrying the SHA-256 of the row before it, so an edited, removed or
// reordered row breaks the chain. Rows describe callers and keys by measurements and
// fingerprints only; key bytes never reach this file. Several worker processes append to the
// same file: the chain head is read and extended inside one IMMEDIATE transaction.
import { createHash } from 'node:crypto'
import { closeSync, fsync, fsyncSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { KmsError, errorMessage, withContext, type KmsErrorCode } from '../errors.js'
import { fsyncDir } from '../fs/atomic-write.js'
import { enableWal } from '../util/sqlite-wal.js'

/** prev_hash of the first row ever written */
export const GENESIS_HASH = '0'.repeat(64)

export type AuditRpc = 'GetAppKey' | 'GetKmsKey' | 'SignCert'
export type AuditDecision = 'release' | 'refuse'

/** What is known about the caller when the decision is taken; hex strings, absent = unknown. */
export interface AuditCaller {
  appId?: string
  instanceId?: string
  deviceId?: string
  mrAggregated?: string
  composeHash?: string
  osImageHash?: string
  tcbStatus?: string
  /** SHA-256 of the client certificate DER (hex) */
  clientCertSha256?: string
}

export interface ReleasedKey {
  name: string
  /** SHA-256 of the public key or certificate (hex), never of secret bytes alone */
  fingerprint: string
}

export interface AuditEvent {
  rpc: AuditRpc
  decision: AuditDecision
  reason: string
  caller: AuditCaller
  released: ReleasedKey[]
}

export interface AuditRow extends AuditEvent {
  seq: number
  /** unix milliseconds */
  time: number
  prevHash: string
  rowHash: string
}

export interface AuditRetention {
  /** keep at most this many bytes of database (pages in use); 0 = no size limit */
  maxBytes: number
  /** drop rows older than this (ms); null = keep forever */
  maxAgeMs: number | null
}

export interface AuditLogOptions {
  retention?: AuditRetention
  now?: () => number
  busyTimeoutMs?: number
}

/** Where the chain starts after retention dropped its beginning: the seq and hash of the last
 * dropped row. */
interface Anchor {
  seq: number
  hash: string
}

interface DbRow {
  seq: number
  time: number
  rpc: string
  decision: string
  reason: string
  caller: string
  released: string
  prev_hash: string
  row_hash: string
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY NOT NULL,
    time INTEGER NOT NULL,
    rpc TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    app_id TEXT,
    caller TEXT NOT NULL,
    released TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    row_hash TEXT NOT NULL
  ) STRICT;
  CREATE INDEX IF NOT EXISTS audit_by_app ON audit (app_id, seq);
  CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time);
  CREATE TABLE IF NOT EXISTS audit_anchor (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
  ) STRICT;
`

const CALLER_FIELDS: readonly (keyof AuditCaller)[] = [
  'appId',
  'instanceId',
  'deviceId',
  'mrAggregated',
  'composeHash',
  'osImageHash',
  'tcbStatus',
  'clientCertSha256',
]

/** A fixed field order, so the stored JSON and the hash do not depend on how an object was
 * built. */
function canonicalCaller(c: AuditCaller): AuditCaller {
  const out: AuditCaller = {}
  for (const k of CALLER_FIELDS) {
    const v = c[k]
    if (v !== undefined) out[k] = v
  }
  return out
}

function canonicalReleased(keys: readonly ReleasedKey[]): ReleasedKey[] {
  return keys.map((k) => ({ name: k.name, fingerprint: k.fingerprint }))
}

/** SHA-256 over every stored column, length-prefixed so no two rows serialise alike. */
export function auditRowHash(r: Omit<DbRow, 'row_hash'>): string {
  const parts = [
    String(r.seq),
    String(r.time),
    r.rpc,
    r.decision,
    r.reason,
    r.caller,
    r.released,
    r.prev_hash,
  ]
  let size = 0
  for (const part of parts) size += 4 + Buffer.byteLength(part, 'utf8')
  // one buffer and one update: the row is hashed on the event loop inside the transaction
  const input = Buffer.allocUnsafe(size)
  let at = 0
  for (const part of parts) {
    const n = input.write(part, at + 4, 'utf8')
    input.writeUInt32BE(n, at)
    at += 4 + n
  }
  return createHash('sha256').update(input).digest('hex')
}

function toRow(r: DbRow): AuditRow {
  return {
    seq: r.seq,
    time: r.time,
    rpc: r.rpc as AuditRpc,
    decision: r.decision as AuditDecision,
    reason: r.reason,
    caller: JSON.parse(r.caller) as AuditCaller,
    released: JSON.parse(r.released) as ReleasedKey[],
    prevHash: r.prev_hash,
    rowHash: r.row_hash,
  }
}

interface QueuedRow {
  event: AuditEvent
  resolve: (row: AuditRow) => void
  reject: (err: unknown) => void
}

interface RetentionStatements {
  olderThan: Database.Statement<[number], { seq: number | null }>
  stats: Database.Statement<[], { lo: number | null; hi: number | null; n: number }>
  rowAt: Database.Statement<[number], { seq: number; row_hash: string }>
  setAnchor: Database.Statement<[number, string]>
  deleteUpTo: Database.Statement<[number]>
  /** `db.pragma()` prepares its statement on every call; the size check runs on every append */
  pageCount: Database.Statement<[], number>
  freelistCount: Database.Statement<[], number>
  pageSize: Database.Statement<[], number>
}

function prepareRetention(db: Database.Database): RetentionStatements {
  return {
    olderThan: db.prepare(
      'SELECT MAX(seq) AS seq FROM audit WHERE time < ? AND seq < (SELECT MAX(seq) FROM audit)',
    ),
    stats: db.prepare('SELECT MIN(seq) AS lo, MAX(seq) AS hi, COUNT(*) AS n FROM audit'),
    rowAt: db.prepare('SELECT seq, row_hash FROM audit WHERE seq = ?'),
    setAnchor: db.prepare(
      `INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?)
       ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`,
    ),
    deleteUpTo: db.prepare('DELETE FROM audit WHERE seq <= ?'),
    pageCount: db.prepare<[], number>('PRAGMA page_count').pluck(),
    freelistCount: db.prepare<[], number>('PRAGMA freelist_count').pluck(),
    pageSize: db.prepare<[], number>('PRAGMA page_size').pluck(),
  }
}

export interface VerifyResult {
  ok: boolean
  rows: number
  /** the first problem found, with the seq it concerns */
  problem?: { seq: number; message: string }
}

export class AuditLog {
  readonly path: string
  readonly #db: Database.Database
  readonly #now: () => number
  readonly #retention: AuditRetention
  readonly #append: (events: readonly AuditEvent[]) => AuditRow[]
  /** rows waiting for the next transaction (see record) */
  #queued: QueuedRow[] = []
  #flushScheduled = false
  /** null for a read-only log */
  readonly #wal: WalSync | null
  /** Prepared on the first append that needs them: retention runs inside every append, and
   * preparing its statements there cost more than the insert itself. */
  #retentionStmts: RetentionStatements | undefined

  private constructor(
    db: Database.Database,
    path: string,
    opts: AuditLogOptions,
    wal: WalSync | null,
  ) {
    this.#db = db
    this.path = path
    this.#wal = wal
    this.#now = opts.now ?? Date.now
    this.#retention = opts.retention ?? { maxBytes: 0, maxAgeMs: null }
    const head = db.prepare<[], { seq: number; row_hash: string }>(
      'SELECT seq, row_hash FROM audit ORDER BY seq DESC LIMIT 1',
    )
    const anchor = db.prepare<[], Anchor>('SELECT seq, hash FROM audit_anchor WHERE id = 1')
    const insert = db.prepare(
      `INSERT INTO audit (seq, time, rpc, decision, reason, app_id, caller, released, prev_hash, row_hash)
       VALUES (@seq, @time, @rpc, @decision, @reason, @app_id, @caller, @released, @prev_hash, @row_hash)`,
    )
    // One transaction for every row queued since the last one: each row chains to the one
    // before it, and retention runs once per transaction.
    const tx = db.transaction((events: readonly AuditEvent[]): AuditRow[] => {
      const last = head.get() ?? anchor.get()
      let prev =
        last === undefined
          ? { seq: 0, hash: GENESIS_HASH }
          : 'row_hash' in last
            ? { seq: last.seq, hash: last.row_hash }
            : last
      const time = this.#now()
      const rows: AuditRow[] = []
      for (const event of events) {
        const caller = canonicalCaller(event.caller)
        const released = canonicalReleased(event.released)
        const row = {
          seq: prev.seq + 1,
          time,
          rpc: event.rpc,
          decision: event.decision,
          reason: event.reason,
          caller: JSON.stringify(caller),
          released: JSON.stringify(released),
          prev_hash: prev.hash,
        }
        const rowHash = auditRowHash(row)
        insert.run({ ...row, row_hash: rowHash, app_id: event.caller.appId ?? null })
        // the objects the stored JSON was made from: what reading the row back would give
        rows.push({
          seq: row.seq,
          time,
          rpc: event.rpc,
          decision: event.decision,
          reason: event.reason,
          caller,
          released,
          prevHash: prev.hash,
          rowHash,
        })
        prev = { seq: row.seq, hash: rowHash }
      }
      this.#applyRetention(time)
      return rows
    })
    this.#append = (events) => tx.immediate(events)
  }

  /** Opens (creating when missing) the audit database at `path`. */
  static open(path: string, opts: AuditLogOptions = {}): AuditLog {
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    } catch (err) {
      throw withContext(
        `Failed to create audit log directory ${dirname(path)}`,
        err,
        'KMS_ERR_AUDIT',
      )
    }
    let db: Database.Database
    try {
      // created 0600 before SQLite opens it; SQLite gives its -wal and -shm files the same mode
      closeSync(openSync(path, 'a', 0o600))
      db = new Database(path)
    } catch (err) {
      throw withContext(`Failed to open audit log ${path}`, err, auditFailureCode(err))
    }
    let wal: WalSync
    try {
      const busyTimeoutMs = opts.busyTimeoutMs ?? 5000
      db.pragma(`busy_timeout = ${busyTimeoutMs}`)
      // every main worker opens the log at start, so on a new file they convert it together
      enableWal(db, busyTimeoutMs)
      // NORMAL: a commit writes its WAL frames without an fsync; record() then fsyncs the WAL
      // itself, off the event loop and shared by every row committed meanwhile (group commit).
      // A release is still answered only once its row is durable.
      db.pragma('synchronous = NORMAL')
      db.exec(SCHEMA)
      wal = WalSync.open(`${path}-wal`)
    } catch (err) {
      db.close()
      const code = auditFailureCode(err)
      // Unlike the caches, the audit log is evidence: a damaged file is never moved aside and
      // replaced by an empty one, which would look like a KMS that never released anything.
      const advice =
        code === 'KMS_ERR_AUDIT_DAMAGED'
          ? `; it is kept as it is: inspect it, then move it away to start a new log (core.audit.path)`
          : ''
      throw new KmsError(
        code,
        `Failed to initialise audit log ${path}: ${errorMessage(err)}${advice}`,
        { cause: err },
      )
    }
    return new AuditLog(db, path, opts, wal)
  }

  /** Opens an existing audit database without writing to it (for `dstack-kms audit`). */
  static openReadOnly(path: string): AuditLog {
    let db: Database.Database
    try {
      db = new Database(path, { readonly: true, fileMustExist: true })
    } catch (err) {
      throw withContext(`Failed to open audit log ${path}`, err, 'KMS_ERR_AUDIT')
    }
    return new AuditLog(db, path, {}, null)
  }

  /** fsyncs of the WAL made so far (one per group of rows committed while the previous ran). */
  get syncs(): number {
    return this.#wal?.syncs ?? 0
  }

  close(): void {
    // rows recorded before the close still get their transaction
    if (this.#queued.length > 0 && this.#wal !== null) this.#flush(this.#wal)
    this.#db.close()
    this.#wal?.close()
  }

  /** Appends one decision and resolves once the row is durable. Rejects with KMS_ERR_AUDIT when
   * the row could not be written or synced: the caller must then refuse the release.
   *
   * Rows recorded while the event loop is busy are written in one transaction when it turns
   * (setImmediate), then the WAL is fsynced once for them (shared with other transactions
   * committed while an fsync runs): under load one commit and one fsync serve many releases. A transaction that fails fails every
   * row in it; each of their releases is refused. */
  async record(event: AuditEvent): Promise<AuditRow> {
    const wal = this.#wal
    if (wal === null) {
      throw new KmsError('KMS_ERR_AUDIT', 'Failed to write the key-release audit log: read-only')
    }
    try {
      wal.assertUsable()
      return await new Promise<AuditRow>((resolve, reject) => {
        this.#queued.push({ event, resolve, reject })
        if (!this.#flushScheduled) {
          this.#flushScheduled = true
          setImmediate(() => this.#flush(wal))
        }
      })
    } catch (err) {
      throw withContext('Failed to write the key-release audit log', err, 'KMS_ERR_AUDIT')
    }
  }

  /** Writes the queued rows in one transaction, then resolves each once the WAL is fsynced. */
  #flush(wal: WalSync): void {
    this.#flushScheduled = false
    const batch = this.#queued
    this.#queued = []
    let rows: AuditRow[]
    try {
      rows = this.#append(batch.map((q) => q.event))
    } catch (err) {
      for (const q of batch) q.reject(err)
      return
    }
    wal.sync().then(
      () => {
        batch.forEach((q, i) => {
          const row = rows[i]
          if (row === undefined) q.reject(new KmsError('KMS_ERR_INTERNAL', 'audit row missing'))
          else q.resolve(row)
        })
      },
      (err: unknown) => {
        for (const q of batch) q.reject(err)
      },
    )
  }

  #applyRetention(now: number): void {
    const { maxAgeMs, maxBytes } = this.#retention
    if (maxAgeMs === null && maxBytes <= 0) return
    const q = (this.#retentionStmts ??= prepareRetention(this.#db))
    let cutoffSeq = 0
    if (maxAgeMs !== null) {
      cutoffSeq = q.olderThan.get(now - maxAgeMs)?.seq ?? 0
    }
    if (maxBytes > 0) {
      const pageSize = q.pageSize.get() ?? 0
      const pages = q.pageCount.get() ?? 0
      const free = q.freelistCount.get() ?? 0
      const used = (pages - free) * pageSize
      if (used > maxBytes) {
        // drop the oldest tenth of the rows (at least one), keeping the newest row
        const stats = q.stats.get()
        if (stats !== undefined && stats.lo !== null && stats.hi !== null && stats.n > 1) {
          const drop = Math.max(1, Math.floor(stats.n / 10))
          cutoffSeq = Math.max(cutoffSeq, Math.min(stats.lo + drop - 1, stats.hi - 1))
        }
      }
    }
    if (cutoffSeq === 0) return
    const last = q.rowAt.get(cutoffSeq)
    if (last === undefined) return
    q.setAnchor.run(last.seq, last.row_hash)
    q.deleteUpTo.run(cutoffSeq)
  }

  /** Walks the whole chain from the retention anchor (or genesis) to the newest row. */
  verify(): VerifyResult {
    const anchor = this.#db
      .prepare<[], Anchor>('SELECT seq, hash FROM audit_anchor WHERE id = 1')
      .get()
    let expectSeq = (anchor?.seq ?? 0) + 1
    let expectPrev = anchor?.hash ?? GENESIS_HASH
    let rows = 0
    const stmt = this.#db.prepare<[], DbRow>(
      'SELECT seq, time, rpc, decision, reason, caller, released, prev_hash, row_hash FROM audit ORDER BY seq',
    )
    for (const r of stmt.iterate()) {
      rows++
      if (r.seq !== expectSeq) {
        return { ok: false, rows, problem: { seq: r.seq, message: `expected row ${expectSeq}` } }
      }
      if (r.prev_hash !== expectPrev) {
        return {
          ok: false,
          rows,
          problem: { seq: r.seq, message: 'prev_hash does not match the previous row' },
        }
      }
      const { row_hash: stored, ...rest } = r
      if (auditRowHash(rest) !== stored) {
        return { ok: false, rows, problem: { seq: r.seq, message: 'row content was altered' } }
      }
      expectSeq = r.seq + 1
      expectPrev = stored
    }
    return { ok: true, rows }
  }

  /** Rows in order, optionally of one app (hex app id) and from a time (unix ms) on. */
  *rows(filter: { appId?: string; sinceMs?: number } = {}): Generator<AuditRow> {
    const where: string[] = []
    const args: (string | number)[] = []
    if (filter.appId !== undefined) {
      where.push('app_id = ?')
      args.push(filter.appId.toLowerCase().replace(/^0x/, ''))
    }
    if (filter.sinceMs !== undefined) {
      where.push('time >= ?')
      args.push(filter.sinceMs)
    }
    const sql = `SELECT seq, time, rpc, decision, reason, caller, released, prev_hash, row_hash FROM audit${
      where.length === 0 ? '' : ` WHERE ${where.join(' AND ')}`
    } ORDER BY seq`
    for (const r of this.#db.prepare<(string | number)[], DbRow>(sql).iterate(...args)) {
      yield toRow(r)
    }
  }
}

/** KMS_ERR_AUDIT_DAMAGED when SQLite says the file is not a healthy database (no restart can
 * change that); KMS_ERR_AUDIT for everything else (a full disk, permissions, a lock). */
function auditFailureCode(err: unknown): KmsErrorCode {
  return err instanceof Database.SqliteError &&
    (err.code.startsWith('SQLITE_CORRUPT') || err.code.startsWith('SQLITE_NOTADB'))
    ? 'KMS_ERR_AUDIT_DAMAGED'
    : 'KMS_ERR_AUDIT'
}

/**
 * Group commit of the WAL: every row committed before an fsync starts is covered by it, so the
 * rows committed while one fsync runs all wait for the next one, and the event loop never blocks
 * on the disk. An fsync failure poisons the log for the rest of the process: the kernel may have
 * dropped the pages it could not write, so no later row could be called durable either (every
 * later release is refused until the KMS restarts and reopens the file).
 */
class WalSync {
  #syncs = 0
  readonly #fd: number
  #waiting: Array<{ resolve: () => void; reject: (err: Error) => void }> = []
  #running = false
  #closed = false
  #failed: Error | null = null

  private constructor(fd: number) {
    this.#fd = fd
  }

  /** The WAL exists once the schema has been written; its directory entry is made durable once
   * here, as a rollback journal's would be. */
  static open(walPath: string): WalSync {
    const fd = openSync(walPath, 'r')
    try {
      fsyncDir(dirname(walPath))
      fsyncSync(fd)
    } catch (err) {
      closeSync(fd)
      throw err
    }
    return new WalSync(fd)
  }

  /** fsyncs started so far */
  get syncs(): number {
    return this.#syncs
  }

  assertUsable(): void {
    if (this.#failed !== null) {
      throw new KmsError('KMS_ERR_AUDIT', `an earlier fsync failed: ${this.#failed.message}`, {
        cause: this.#failed,
      })
    }
    if (this.#closed) throw new KmsError('KMS_ERR_AUDIT', 'the audit log is closed')
  }

  /** Resolves once everything committed before the call is on disk. */
  sync(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject })
      if (!this.#running) this.#start()
    })
  }

  #start(): void {
    const batch = this.#waiting
    this.#waiting = []
    this.#running = true
    this.#syncs++
    fsync(this.#fd, (err) => {
      this.#running = false
      if (err !== null) this.#failed ??= err
      const failed = this.#failed
      for (const w of batch) {
        if (failed === null) w.resolve()
        else w.reject(failed)
      }
      if (this.#closed) closeSync(this.#fd)
      else if (this.#waiting.length > 0) this.#start()
    })
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    const pending = this.#waiting
    this.#waiting = []
    for (const w of pending) w.reject(new KmsError('KMS_ERR_AUDIT', 'the audit log was closed'))
    // an fsync in flight closes the descriptor when it completes
    if (!this.#running) closeSync(this.#fd)
  }
}

/** Fails with a KmsError unless `value` looks like a hex app id; used by the CLI filter. */
export function normalizeAuditAppId(value: string): string {
  const hex = value.toLowerCase().replace(/^0x/, '')
  if (!/^[0-9a-f]{40}$/.test(hex)) {
    throw new KmsError('KMS_ERR_BAD_REQUEST', `app id must be 20 bytes of hex, got ${value}`)
  }
  return hex
}
