// The cache database (docs/design.md#caches-in-sqlite): one SQLite file holding the index of
// extracted images, the measurement cache and the PCCS collateral cache. Image files stay on disk
// under `images/<hash>/`; a row in `os_images` is what marks such a directory as complete and
// verified, so a directory without a row is never trusted.
import { existsSync, lstatSync, mkdirSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { KmsError, withContext } from '../errors.js'
import { normalizeHexKey } from './cache-key.js'
import { enableWal } from '../util/sqlite-wal.js'

export const CACHE_DB_FILE = 'kms-cache.sqlite3'
export const IMAGES_DIR = 'images'

const SCHEMA_VERSION = 2

// Every migration takes the schema from version i to i + 1; index i is the step from i.
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE os_images (
    os_image_hash TEXT PRIMARY KEY NOT NULL,
    size_bytes INTEGER NOT NULL,
    verified_at INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE measurements (
    config_hash TEXT PRIMARY KEY NOT NULL,
    os_image_hash TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX measurements_by_image ON measurements (os_image_hash);
  CREATE TABLE collateral (
    key TEXT PRIMARY KEY NOT NULL,
    json TEXT NOT NULL,
    next_update INTEGER NOT NULL,
    stored_at INTEGER NOT NULL
  ) STRICT;
  `,
  // 2: LRU bookkeeping of downloaded images, and a generation counter that every ClearImageCache
  // bumps, so that a measurement computed before a clear is never stored after it (any worker).
  `
  ALTER TABLE os_images ADD COLUMN last_used_at INTEGER NOT NULL DEFAULT 0;
  CREATE TABLE cache_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
  ) STRICT;
  INSERT INTO cache_meta (key, value) VALUES ('clear_generation', 0);
  `,
]

export interface ImageEntry {
  osImageHash: string
  sizeBytes: number
  verifiedAt: number
  /** unix seconds of the last verification that used the image (LRU order) */
  lastUsedAt: number
}

export interface MeasurementEntry {
  configHash: string
  osImageHash: string
  value: string
  createdAt: number
}

export interface CacheDbOptions {
  /** unix seconds; injectable for tests */
  now?: () => number
  /** how long a writer waits for another connection's lock (ms) */
  busyTimeoutMs?: number
  /** told when a damaged database file was moved aside and an empty cache created */
  onCorrupt?: (info: { dbPath: string; movedTo: string; reason: string }) => void
}

export interface CollateralEntry {
  json: string
  /** unix seconds */
  nextUpdate: number
  storedAt: number
}

interface CollateralRow {
  json: string
  next_update: number
  stored_at: number
}

interface ImageRow {
  os_image_hash: string
  size_bytes: number
  verified_at: number
  last_used_at: number
}

interface MeasurementRow {
  config_hash: string
  os_image_hash: string
  value: string
  created_at: number
}

function imageEntry(row: ImageRow): ImageEntry {
  return {
    osImageHash: row.os_image_hash,
    sizeBytes: row.size_bytes,
    verifiedAt: row.verified_at,
    lastUsedAt: row.last_used_at,
  }
}

type Statement<P extends unknown[] = unknown[], R = unknown> = Database.Statement<P, R>

/** Every statement the cache runs, prepared once when the database is opened: better-sqlite3
 * compiles a statement on every prepare(), and the measurement and collateral look-ups run on
 * every key release. */
function prepareStatements(db: Database.Database) {
  const prepare = <P extends unknown[] = unknown[], R = unknown>(sql: string): Statement<P, R> =>
    db.prepare<P, R>(sql)
  return {
    putImage: prepare<[string, number, number, number]>(
      `INSERT INTO os_images (os_image_hash, size_bytes, verified_at, last_used_at)
         VALUES (?, ?, ?, ?)
         ON CONFLICT (os_image_hash) DO UPDATE
           SET size_bytes = excluded.size_bytes, verified_at = excluded.verified_at,
               last_used_at = excluded.last_used_at`,
    ),
    touchImage: prepare<[number, string]>(
      'UPDATE os_images SET last_used_at = ? WHERE os_image_hash = ?',
    ),
    listImagesLru: prepare<[], ImageRow>(
      `SELECT os_image_hash, size_bytes, verified_at, last_used_at FROM os_images
         ORDER BY last_used_at, os_image_hash`,
    ),
    totalImageBytes: prepare<[], number>(
      'SELECT coalesce(sum(size_bytes), 0) FROM os_images',
    ).pluck(),
    clearGeneration: prepare<[], number>(
      "SELECT value FROM cache_meta WHERE key = 'clear_generation'",
    ).pluck(),
    bumpClearGeneration: prepare<[]>(
      "UPDATE cache_meta SET value = value + 1 WHERE key = 'clear_generation'",
    ),
    getImage: prepare<[string], ImageRow>(
      `SELECT os_image_hash, size_bytes, verified_at, last_used_at FROM os_images
         WHERE os_image_hash = ?`,
    ),
    listImageHashes: prepare<[], string>(
      'SELECT os_image_hash FROM os_images ORDER BY os_image_hash',
    ).pluck(),
    deleteImage: prepare<[string]>('DELETE FROM os_images WHERE os_image_hash = ?'),
    deleteAllImages: prepare<[]>('DELETE FROM os_images'),
    putMeasurement: prepare<[string, string, string, number]>(
      `INSERT INTO measurements (config_hash, os_image_hash, value, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (config_hash) DO UPDATE
           SET os_image_hash = excluded.os_image_hash, value = excluded.value,
               created_at = excluded.created_at`,
    ),
    putMeasurementIfGeneration: prepare<[string, string, string, number, number]>(
      `INSERT INTO measurements (config_hash, os_image_hash, value, created_at)
         SELECT ?, ?, ?, ?
         WHERE (SELECT value FROM cache_meta WHERE key = 'clear_generation') = ?
         ON CONFLICT (config_hash) DO UPDATE
           SET os_image_hash = excluded.os_image_hash, value = excluded.value,
               created_at = excluded.created_at`,
    ),
    getMeasurement: prepare<[string], MeasurementRow>(
      `SELECT config_hash, os_image_hash, value, created_at FROM measurements
         WHERE config_hash = ?`,
    ),
    countMeasurements: prepare<[], number>('SELECT count(*) FROM measurements').pluck(),
    deleteMeasurement: prepare<[string]>('DELETE FROM measurements WHERE config_hash = ?'),
    deleteAllMeasurements: prepare<[]>('DELETE FROM measurements'),
    putCollateral: prepare<[string, string, number, number]>(
      `INSERT INTO collateral (key, json, next_update, stored_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (key) DO UPDATE
           SET json = excluded.json, next_update = excluded.next_update,
               stored_at = excluded.stored_at`,
    ),
    getCollateral: prepare<[string, number], string>(
      'SELECT json FROM collateral WHERE key = ? AND next_update > ?',
    ).pluck(),
    getCollateralEntry: prepare<[string], CollateralRow>(
      'SELECT json, next_update, stored_at FROM collateral WHERE key = ?',
    ),
    pruneCollateral: prepare<[number]>('DELETE FROM collateral WHERE next_update <= ?'),
    deleteCollateral: prepare<[string]>('DELETE FROM collateral WHERE key = ?'),
    clearCollateral: prepare<[]>('DELETE FROM collateral'),
  }
}

function unixNow(): number {
  return Math.floor(Date.now() / 1000)
}

/** The images directory is emptied recursively by ClearImageCache "all"; if it were a symlink,
 * that would empty whatever it points to. */
export function assertRealDirectory(path: string): void {
  const st = lstatSync(path)
  if (st.isSymbolicLink() || !st.isDirectory()) {
    throw new KmsError(
      'KMS_ERR_CONFIG',
      `${path} must be a real directory, not a symlink or a file`,
    )
  }
}

export class CacheDb {
  readonly imagesDir: string
  readonly dbPath: string
  private readonly db: Database.Database
  private readonly now: () => number
  readonly #sql: ReturnType<typeof prepareStatements>

  private constructor(db: Database.Database, dbPath: string, imagesDir: string, now: () => number) {
    this.db = db
    this.#sql = prepareStatements(db)
    this.dbPath = dbPath
    this.imagesDir = imagesDir
    this.now = now
  }

  static open(cacheDir: string, options: CacheDbOptions = {}): CacheDb {
    const imagesDir = join(cacheDir, IMAGES_DIR)
    try {
      // mode applies only to directories created here; an operator's existing layout is kept
      mkdirSync(imagesDir, { recursive: true, mode: 0o700 })
    } catch (err) {
      throw withContext(`Failed to create cache directory ${imagesDir}`, err, 'KMS_ERR_CONFIG')
    }
    assertRealDirectory(imagesDir)
    const dbPath = join(cacheDir, CACHE_DB_FILE)
    let db: Database.Database
    try {
      db = openChecked(dbPath, options)
    } catch (err) {
      const corrupt = corruption(err)
      if (corrupt === undefined) throw err
      // Every row here is rebuildable (docs/design.md#caches-in-sqlite): a damaged file is moved
      // aside, kept for inspection, and an empty cache takes its place. The supervisor opens the
      // cache before it forks any worker, so workers do not race this.
      const movedTo = moveAside(dbPath)
      options.onCorrupt?.({ dbPath, movedTo, reason: corrupt })
      db = openChecked(dbPath, options)
    }
    return new CacheDb(db, dbPath, imagesDir, options.now ?? unixNow)
  }

  close(): void {
    this.db.close()
  }

  /** Runs `fn` in one transaction (nested calls become savepoints). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)()
  }

  putImage(
    osImageHash: string,
    info: { sizeBytes: number; verifiedAt: number; lastUsedAt?: number },
  ): void {
    this.#sql.putImage.run(
      normalizeHexKey(osImageHash, 'os_image_hash'),
      info.sizeBytes,
      info.verifiedAt,
      info.lastUsedAt ?? info.verifiedAt,
    )
  }

  /** Marks an image as used now (LRU); a no-op for an image that is not indexed. */
  touchImage(osImageHash: string): void {
    this.#sql.touchImage.run(this.now(), normalizeHexKey(osImageHash, 'os_image_hash'))
  }

  /** Indexed images, least recently used first. */
  listImagesLru(): ImageEntry[] {
    return this.#sql.listImagesLru.all().map(imageEntry)
  }

  totalImageBytes(): number {
    return this.#sql.totalImageBytes.get() ?? 0
  }

  /** The counter ClearImageCache bumps (see migration 2). */
  clearGeneration(): number {
    return this.#sql.clearGeneration.get() ?? 0
  }

  bumpClearGeneration(): void {
    this.#sql.bumpClearGeneration.run()
  }

  getImage(osImageHash: string): ImageEntry | undefined {
    const row = this.#sql.getImage.get(normalizeHexKey(osImageHash, 'os_image_hash'))
    return row === undefined ? undefined : imageEntry(row)
  }

  listImageHashes(): string[] {
    return this.#sql.listImageHashes.all()
  }

  /** @returns the number of rows removed */
  deleteImage(osImageHash: string): number {
    return this.#sql.deleteImage.run(normalizeHexKey(osImageHash, 'os_image_hash')).changes
  }

  deleteAllImages(): number {
    return this.#sql.deleteAllImages.run().changes
  }

  putMeasurement(configHash: string, osImageHash: string, value: string): void {
    this.#sql.putMeasurement.run(
      normalizeHexKey(configHash, 'config_hash'),
      normalizeHexKey(osImageHash, 'os_image_hash'),
      value,
      this.now(),
    )
  }

  /** Stores a measurement only if no ClearImageCache ran since `generation` was read, in one
   * statement, so a clear racing a verification (in any worker) always wins.
   * @returns whether the row was written */
  putMeasurementIfGeneration(
    configHash: string,
    osImageHash: string,
    value: string,
    generation: number,
  ): boolean {
    return (
      this.#sql.putMeasurementIfGeneration.run(
        normalizeHexKey(configHash, 'config_hash'),
        normalizeHexKey(osImageHash, 'os_image_hash'),
        value,
        this.now(),
        generation,
      ).changes > 0
    )
  }

  getMeasurement(configHash: string): MeasurementEntry | undefined {
    const row = this.#sql.getMeasurement.get(normalizeHexKey(configHash, 'config_hash'))
    if (row === undefined) return undefined
    return {
      configHash: row.config_hash,
      osImageHash: row.os_image_hash,
      value: row.value,
      createdAt: row.created_at,
    }
  }

  countMeasurements(): number {
    return this.#sql.countMeasurements.get() ?? 0
  }

  deleteMeasurement(configHash: string): number {
    return this.#sql.deleteMeasurement.run(normalizeHexKey(configHash, 'config_hash')).changes
  }

  deleteAllMeasurements(): number {
    return this.#sql.deleteAllMeasurements.run().changes
  }

  putCollateral(key: string, json: string, nextUpdate: number): void {
    this.#sql.putCollateral.run(key, json, nextUpdate, this.now())
  }

  /** The collateral is valid strictly before its `nextUpdate`; at that second a fresh copy is
   * due, so the cached one is no longer returned. */
  getCollateral(key: string, now: number): string | undefined {
    return this.#sql.getCollateral.get(key, now)
  }

  /** The stored entry whatever its age, so that a failed refresh can say how stale it is. */
  getCollateralEntry(key: string): CollateralEntry | undefined {
    const row = this.#sql.getCollateralEntry.get(key)
    if (row === undefined) return undefined
    return { json: row.json, nextUpdate: row.next_update, storedAt: row.stored_at }
  }

  /** @returns the number of expired entries removed */
  pruneCollateral(now: number): number {
    return this.#sql.pruneCollateral.run(now).changes
  }

  /** Drops one entry (a copy that no longer checks out). @returns the number of rows removed */
  deleteCollateral(key: string): number {
    return this.#sql.deleteCollateral.run(key).changes
  }

  /** Empties the collateral cache (ClearImageCache "all"); the next verification of each
   * platform fetches and checks its collateral again. @returns the number of rows removed */
  clearCollateral(): number {
    return this.#sql.clearCollateral.run().changes
  }
}

class CorruptCacheError extends KmsError {
  constructor(message: string) {
    super('KMS_ERR_CONFIG', message)
    this.name = 'CorruptCacheError'
  }
}

function openChecked(dbPath: string, options: CacheDbOptions): Database.Database {
  let db: Database.Database
  try {
    db = new Database(dbPath)
  } catch (err) {
    throw withContext(`Failed to open cache database ${dbPath}`, err, 'KMS_ERR_CONFIG')
  }
  try {
    configure(db, options.busyTimeoutMs ?? 5000)
    // the cache holds a few thousand rows at most, so a full structural check is cheap
    const check = db.pragma('quick_check', { simple: true })
    if (check !== 'ok') {
      throw new CorruptCacheError(`cache database ${dbPath} failed quick_check: ${String(check)}`)
    }
    migrate(db, dbPath)
  } catch (err) {
    db.close()
    if (err instanceof KmsError) throw err
    throw withContext(`Failed to initialise cache database ${dbPath}`, err, 'KMS_ERR_CONFIG')
  }
  return db
}

/** The reason when `err` says the file is not a healthy SQLite database; undefined otherwise
 * (a permission problem or a full disk must not cost the cache). */
function corruption(err: unknown): string | undefined {
  const seen = new Set<unknown>()
  let cur: unknown = err
  while (cur instanceof Error && !seen.has(cur)) {
    seen.add(cur)
    if (cur instanceof CorruptCacheError) return cur.message
    if (
      cur instanceof Database.SqliteError &&
      (cur.code.startsWith('SQLITE_CORRUPT') || cur.code.startsWith('SQLITE_NOTADB'))
    ) {
      return `${cur.code}: ${cur.message}`
    }
    cur = cur.cause
  }
  return undefined
}

/** Renames the database and its WAL/SHM companions to `<name>.corrupt-<time>[-wal|-shm]`. */
function moveAside(dbPath: string): string {
  const movedTo = `${dbPath}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(dbPath + suffix)) renameSync(dbPath + suffix, movedTo + suffix)
  }
  return movedTo
}

function configure(db: Database.Database, busyTimeoutMs: number): void {
  // WAL: readers never block the writer, so a slow lookup cannot stall a cache store.
  // the supervisor, its workers and the verify commands may open a new cache file together
  const mode = enableWal(db, busyTimeoutMs)
  if (typeof mode !== 'string' || mode.toLowerCase() !== 'wal') {
    throw new KmsError('KMS_ERR_CONFIG', `cache database refused WAL mode (journal_mode=${mode})`)
  }
  // NORMAL in WAL mode skips the fsync per commit: a crash of the process loses nothing and
  // the file never corrupts; only a power loss can roll back the last commits. Every row here is
  // a cache entry that is recomputed or re-fetched when missing, so that loss is harmless.
  db.pragma('synchronous = NORMAL')
  db.pragma('foreign_keys = ON')
  // The onboarding and main workers, or an operator's sqlite3 shell, may hold the lock briefly.
  db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(busyTimeoutMs))}`)
}

function migrate(db: Database.Database, dbPath: string): void {
  const current = db.pragma('user_version', { simple: true })
  if (typeof current !== 'number') {
    throw new KmsError('KMS_ERR_CONFIG', `cache database ${dbPath}: unreadable user_version`)
  }
  if (current > SCHEMA_VERSION) {
    throw new KmsError(
      'KMS_ERR_CONFIG',
      `cache database ${dbPath} has schema version ${current}, newer than this KMS supports ` +
        `(${SCHEMA_VERSION}); remove the file to rebuild the cache`,
    )
  }
  for (let version = current; version < SCHEMA_VERSION; version++) {
    const step = MIGRATIONS[version]
    if (step === undefined) throw new KmsError('KMS_ERR_INTERNAL', `no migration from ${version}`)
    // one transaction per step: a crash mid-migration leaves the previous version intact
    db.transaction(() => {
      db.exec(step)
      db.pragma(`user_version = ${version + 1}`)
    }).immediate()
  }
}
