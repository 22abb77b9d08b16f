import assert from 'node:assert/strict'
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs'
import { join, relative } from 'node:path'
import { after, describe, test } from 'node:test'
import Database from 'better-sqlite3'
import { CACHE_DB_FILE, CacheDb } from '../src/cache/cache-db.js'
import { parseCacheKey } from '../src/cache/cache-key.js'
import { clearImageCache } from '../src/cache/clear-cache.js'
import { KmsError } from '../src/errors.js'
import { readVectorJson } from './helpers/crypto-vectors.js'
import { holdSqliteWriteLock } from './helpers/sqlite-write-lock.js'
import { tempDir as scratchDir } from './helpers/temp-dir.js'

const vectors = readVectorJson<{
  misc: { vm_config_hash_of_empty_config: { sha256: string } }
}>('vectors.json')
// a real config hash (of the empty vm_config)
const CONFIG_A = vectors.misc.vm_config_hash_of_empty_config.sha256
const CONFIG_B = 'ab'.repeat(32)
const MEASUREMENT = JSON.stringify({
  version: 3,
  measurements: { mrtd: '00'.repeat(48), rtmr0: '11'.repeat(48) },
})

const roots: string[] = []
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

function tempDir(): string {
  const dir = scratchDir('kms-cache-test-')
  roots.push(dir)
  return dir
}

/** Every path under `dir` (not following links) with file contents; the database files, whose
 * bytes change on any read, are compared through dbRows instead. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      if (name.startsWith(CACHE_DB_FILE)) continue
      const p = join(d, name)
      const rel = relative(dir, p)
      const st = lstatSync(p)
      if (st.isSymbolicLink()) out[rel] = 'link'
      else if (st.isDirectory()) {
        out[rel + '/'] = 'dir'
        walk(p)
      } else out[rel] = readFileSync(p, 'utf8')
    }
  }
  walk(dir)
  return out
}

/** The database content, read through a second connection (WAL lets it read alongside). */
function dbRows(cacheDir: string): { images: unknown[]; measurements: unknown[] } {
  const db = new Database(join(cacheDir, CACHE_DB_FILE), { readonly: true })
  try {
    return {
      images: db.prepare('SELECT * FROM os_images ORDER BY os_image_hash').all(),
      measurements: db.prepare('SELECT * FROM measurements ORDER BY config_hash').all(),
    }
  } finally {
    db.close()
  }
}

interface Fixture {
  cacheDir: string
  outside: string
  db: CacheDb
  snapshot(): { files: Record<string, string>; rows: ReturnType<typeof dbRows> }
}

/** images/cafe and images/beef (indexed), an in-flight download under images/tmp, a directory
 * `escape` next to images/ (the target of `../escape`), and two measurement rows. */
function fixture(): Fixture {
  const cacheDir = tempDir()
  const outside = tempDir()
  writeFileSync(join(outside, 'precious'), 'keep me')
  const db = CacheDb.open(cacheDir, { now: () => 1_700_000_000 })
  for (const hash of ['cafe', 'beef']) {
    mkdirSync(join(db.imagesDir, hash))
    writeFileSync(join(db.imagesDir, hash, 'metadata.json'), `{"image":"${hash}"}`)
    db.putImage(hash, { sizeBytes: 100, verifiedAt: 1_700_000_000 })
  }
  mkdirSync(join(db.imagesDir, 'tmp', 'tmp-download-abc123'), { recursive: true })
  writeFileSync(join(db.imagesDir, 'tmp', 'tmp-download-abc123', 'image.tar.gz'), 'partial')
  mkdirSync(join(cacheDir, 'escape'))
  writeFileSync(join(cacheDir, 'escape', 'file'), 'not a cache entry')
  db.putMeasurement(CONFIG_A, 'cafe', MEASUREMENT)
  db.putMeasurement(CONFIG_B, 'beef', MEASUREMENT)
  return {
    cacheDir,
    outside,
    db,
    snapshot: () => ({
      files: { ...tree(cacheDir), ...tree(outside) },
      rows: dbRows(cacheDir),
    }),
  }
}

function imageDirs(f: Fixture): string[] {
  return readdirSync(f.db.imagesDir).sort()
}

describe('CacheDb', () => {
  test('open creates the layout, WAL mode and schema version 2', () => {
    const cacheDir = join(tempDir(), 'nested', 'cache')
    const db = CacheDb.open(cacheDir)
    assert.equal(db.imagesDir, join(cacheDir, 'images'))
    assert.equal(db.dbPath, join(cacheDir, 'kms-cache.sqlite3'))
    assert.equal(statSync(cacheDir).mode & 0o777, 0o700)
    assert.equal(statSync(db.imagesDir).mode & 0o777, 0o700)
    db.putCollateral('k', '{}', 10)

    // journal_mode=WAL is persistent in the file; a second connection sees it
    const other = new Database(db.dbPath)
    assert.equal(other.pragma('journal_mode', { simple: true }), 'wal')
    assert.equal(other.pragma('user_version', { simple: true }), 2)
    const tables = other
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .pluck()
      .all()
    assert.deepEqual(tables, ['cache_meta', 'collateral', 'measurements', 'os_images'])
    other.close()
    db.close()
  })

  test('opening a new cache file while another process converts it still succeeds', async () => {
    // SQLite fails a WAL conversion with SQLITE_BUSY at once, busy timeout or not, while another
    // connection holds the new file's write lock (as during its own conversion)
    const cacheDir = tempDir()
    const holder = await holdSqliteWriteLock(join(cacheDir, CACHE_DB_FILE), 300)
    try {
      const db = CacheDb.open(cacheDir)
      db.putCollateral('k', '{}', 10)
      assert.equal(db.getCollateral('k', 0), '{}')
      db.close()
    } finally {
      holder.stop()
    }
  })

  test('reopening keeps the data and does not re-run the migration', () => {
    const cacheDir = tempDir()
    let db = CacheDb.open(cacheDir, { now: () => 42 })
    db.putImage('ABCDEF', { sizeBytes: 123_456_789, verifiedAt: 1_700_000_001 })
    db.putMeasurement(CONFIG_A, 'abcdef', MEASUREMENT)
    db.putCollateral('00906ED50000:processor', '{"tcb":1}', 2_000_000_000)
    db.close()

    db = CacheDb.open(cacheDir, { now: () => 99 })
    assert.deepEqual(db.getImage('abcdef'), {
      osImageHash: 'abcdef',
      sizeBytes: 123_456_789,
      verifiedAt: 1_700_000_001,
      lastUsedAt: 1_700_000_001,
    })
    assert.deepEqual(db.getMeasurement(CONFIG_A.toUpperCase()), {
      configHash: CONFIG_A,
      osImageHash: 'abcdef',
      value: MEASUREMENT,
      createdAt: 42,
    })
    assert.equal(db.getCollateral('00906ED50000:processor', 1_999_999_999), '{"tcb":1}')
    assert.equal(db.getImage('abcd'), undefined)
    assert.equal(db.getMeasurement(CONFIG_B), undefined)

    db.putMeasurement(CONFIG_A, 'abcdef', '{"version":3}')
    assert.equal(db.getMeasurement(CONFIG_A)?.value, '{"version":3}')
    assert.equal(db.getMeasurement(CONFIG_A)?.createdAt, 99)
    assert.equal(db.countMeasurements(), 1)
    db.close()
  })

  test('a database from a newer schema is refused', () => {
    const cacheDir = tempDir()
    CacheDb.open(cacheDir).close()
    const raw = new Database(join(cacheDir, CACHE_DB_FILE))
    raw.pragma('user_version = 3')
    raw.close()
    assert.throws(
      () => CacheDb.open(cacheDir),
      (err: unknown) =>
        err instanceof KmsError &&
        err.code === 'KMS_ERR_CONFIG' &&
        err.message.includes('has schema version 3, newer than this KMS supports (2)'),
    )
  })

  test('hash keys must be hex and are stored lowercase', () => {
    const db = CacheDb.open(tempDir())
    assert.throws(() => db.putImage('../x', { sizeBytes: 1, verifiedAt: 1 }), KmsError)
    assert.throws(() => db.putImage('', { sizeBytes: 1, verifiedAt: 1 }), KmsError)
    assert.throws(() => db.putMeasurement('all', 'ab', '{}'), KmsError)
    db.putImage('BEEF', { sizeBytes: 1, verifiedAt: 1 })
    assert.deepEqual(db.listImageHashes(), ['beef'])
    db.close()
  })

  test('collateral is returned strictly before nextUpdate, then expires', () => {
    const db = CacheDb.open(tempDir())
    db.putCollateral('fmspc:ca', '{"v":1}', 1000)
    assert.equal(db.getCollateral('fmspc:ca', 0), '{"v":1}')
    assert.equal(db.getCollateral('fmspc:ca', 999), '{"v":1}')
    assert.equal(db.getCollateral('fmspc:ca', 1000), undefined)
    assert.equal(db.getCollateral('fmspc:ca', 5000), undefined)
    assert.equal(db.getCollateral('other', 0), undefined)

    db.putCollateral('fmspc:ca', '{"v":2}', 6000)
    assert.equal(db.getCollateral('fmspc:ca', 5000), '{"v":2}')
    db.putCollateral('stale', '{}', 10)
    assert.equal(db.pruneCollateral(5000), 1)
    assert.equal(db.getCollateral('fmspc:ca', 5000), '{"v":2}')
    db.close()
  })
})

describe('parseCacheKey', () => {
  test('none, all, hex (lowercased)', () => {
    assert.deepEqual(parseCacheKey(''), { kind: 'none' })
    assert.deepEqual(parseCacheKey('all'), { kind: 'all' })
    assert.deepEqual(parseCacheKey('DeadBEEF09'), { kind: 'hex', value: 'deadbeef09' })
  })

  test('everything else is an invalid key', () => {
    for (const key of [
      'ALL',
      'All',
      '../escape',
      'a/b',
      '/',
      'xyz',
      'é',
      '０',
      ' ab',
      'ab ',
      '.',
    ]) {
      assert.throws(
        () => parseCacheKey(key),
        (err: unknown) => err instanceof KmsError && err.message === 'Invalid cache key',
        key,
      )
    }
  })
})

describe('clearImageCache', () => {
  test('"" and "" change nothing', () => {
    const f = fixture()
    const before = f.snapshot()
    clearImageCache(f.db, '', '')
    assert.deepEqual(f.snapshot(), before)
    f.db.close()
  })

  test('image "all" removes every image directory, the download area and every index row', () => {
    const f = fixture()
    const before = f.snapshot()
    clearImageCache(f.db, 'all', '')
    assert.deepEqual(imageDirs(f), [])
    assert.ok(existsSync(f.db.imagesDir))
    const after = f.snapshot()
    assert.deepEqual(after.rows.images, [])
    assert.deepEqual(after.rows.measurements, before.rows.measurements)
    assert.equal(after.files['escape/file'], 'not a cache entry')
    f.db.close()
  })

  test('config "all" removes every measurement row and nothing else', () => {
    const f = fixture()
    const before = f.snapshot()
    clearImageCache(f.db, '', 'all')
    const after = f.snapshot()
    assert.deepEqual(after.rows.measurements, [])
    assert.deepEqual(after.rows.images, before.rows.images)
    assert.deepEqual(after.files, before.files)
    f.db.close()
  })

  test('removing beef keeps cafe (upstream HEAD test)', () => {
    const f = fixture()
    clearImageCache(f.db, 'beef', '')
    assert.deepEqual(imageDirs(f), ['cafe', 'tmp'])
    assert.deepEqual(f.db.listImageHashes(), ['cafe'])
    assert.equal(f.db.countMeasurements(), 2)
    f.db.close()
  })

  test('an uppercase key removes the lowercase entry (ours)', () => {
    const f = fixture()
    clearImageCache(f.db, 'BEEF', '')
    assert.deepEqual(imageDirs(f), ['cafe', 'tmp'])
    assert.deepEqual(f.db.listImageHashes(), ['cafe'])
    f.db.close()
  })

  for (const key of ['../escape', 'a/b', 'xyz', 'é', 'ALL', '/', '..']) {
    test(`invalid image key ${JSON.stringify(key)} is refused and changes nothing`, () => {
      const f = fixture()
      const before = f.snapshot()
      assert.throws(
        () => clearImageCache(f.db, key, 'all'),
        (err: unknown) =>
          err instanceof KmsError &&
          err.code === 'KMS_ERR_RPC' &&
          err.message === 'Failed to clear image cache: Invalid cache key',
      )
      assert.deepEqual(f.snapshot(), before)
      f.db.close()
    })
  }

  for (const key of ['../escape', 'a/b', 'xyz', 'é']) {
    test(`invalid config key ${JSON.stringify(key)} with a valid image key changes nothing`, () => {
      const f = fixture()
      const before = f.snapshot()
      assert.throws(
        () => clearImageCache(f.db, 'beef', key),
        (err: unknown) =>
          err instanceof KmsError &&
          err.code === 'KMS_ERR_RPC' &&
          err.message === 'Failed to clear measurement cache: Invalid cache key',
      )
      assert.deepEqual(f.snapshot(), before)
      assert.deepEqual(imageDirs(f), ['beef', 'cafe', 'tmp'])
      f.db.close()
    })
  }

  test('with both keys invalid the image key is reported', () => {
    const f = fixture()
    assert.throws(() => clearImageCache(f.db, 'zz', 'yy'), {
      message: 'Failed to clear image cache: Invalid cache key',
    })
    f.db.close()
  })

  test('a specific config hash deletes only its measurement row', () => {
    const f = fixture()
    const before = f.snapshot()
    clearImageCache(f.db, '', CONFIG_A)
    assert.equal(f.db.getMeasurement(CONFIG_A), undefined)
    assert.equal(f.db.getMeasurement(CONFIG_B)?.osImageHash, 'beef')
    assert.equal(f.db.countMeasurements(), 1)
    assert.deepEqual(f.snapshot().files, before.files)

    clearImageCache(f.db, '', CONFIG_B.toUpperCase())
    assert.equal(f.db.countMeasurements(), 0)
    f.db.close()
  })

  test('both keys at once', () => {
    const f = fixture()
    clearImageCache(f.db, 'cafe', CONFIG_B)
    assert.deepEqual(imageDirs(f), ['beef', 'tmp'])
    assert.deepEqual(f.db.listImageHashes(), ['beef'])
    assert.equal(f.db.getMeasurement(CONFIG_A)?.osImageHash, 'cafe')
    assert.equal(f.db.getMeasurement(CONFIG_B), undefined)
    f.db.close()
  })

  test('missing entries are a no-op; a row without a directory is still removed', () => {
    const f = fixture()
    const before = f.snapshot()
    clearImageCache(f.db, 'dead', 'ffff')
    assert.deepEqual(f.snapshot(), before)

    f.db.putImage('f00d', { sizeBytes: 1, verifiedAt: 1 })
    clearImageCache(f.db, 'f00d', '')
    assert.equal(f.db.getImage('f00d'), undefined)

    rmSync(f.db.imagesDir, { recursive: true })
    clearImageCache(f.db, 'all', '')
    clearImageCache(f.db, 'cafe', '')
    assert.deepEqual(f.db.listImageHashes(), [])
    f.db.close()
  })

  test('a plain file named like a hash is removed too (upstream removes files or dirs)', () => {
    const f = fixture()
    writeFileSync(join(f.db.imagesDir, 'abc1'), 'stray')
    clearImageCache(f.db, 'abc1', '')
    assert.deepEqual(imageDirs(f), ['beef', 'cafe', 'tmp'])
    f.db.close()
  })

  test('a symlink in the cache is removed as a link, never followed', () => {
    const f = fixture()
    symlinkSync(f.outside, join(f.db.imagesDir, 'abcd'))
    symlinkSync(f.outside, join(f.db.imagesDir, 'cafe', 'link'))
    symlinkSync(join(f.outside, 'precious'), join(f.db.imagesDir, 'beef', 'file-link'))

    clearImageCache(f.db, 'abcd', '')
    assert.equal(existsSync(join(f.db.imagesDir, 'abcd')), false)
    assert.equal(readFileSync(join(f.outside, 'precious'), 'utf8'), 'keep me')

    clearImageCache(f.db, 'cafe', '')
    assert.equal(readFileSync(join(f.outside, 'precious'), 'utf8'), 'keep me')

    symlinkSync(f.outside, join(f.db.imagesDir, 'dcba'))
    clearImageCache(f.db, 'all', '')
    assert.deepEqual(imageDirs(f), [])
    assert.deepEqual(tree(f.outside), { precious: 'keep me' })
    f.db.close()
  })
})

describe('a symlinked images directory', () => {
  test('is refused at open, so "all" can never empty the link target', () => {
    const cacheDir = tempDir()
    const victim = tempDir()
    writeFileSync(join(victim, 'precious'), 'x')
    symlinkSync(victim, join(cacheDir, 'images'))
    assert.throws(() => CacheDb.open(cacheDir), /must be a real directory/)
    assert.deepEqual(readdirSync(victim), ['precious'])
  })

  test('swapped in after open, "all" refuses and leaves the target alone', () => {
    const cacheDir = tempDir()
    const victim = tempDir()
    writeFileSync(join(victim, 'precious'), 'x')
    const db = CacheDb.open(cacheDir)
    try {
      rmSync(db.imagesDir, { recursive: true })
      symlinkSync(victim, db.imagesDir)
      assert.throws(
        () => clearImageCache(db, 'all', ''),
        /^KmsError: Failed to clear image cache: .*must be a real directory/,
      )
      assert.deepEqual(readdirSync(victim), ['precious'])
    } finally {
      db.close()
    }
  })

  test('swapped in after open, a single hex key refuses too and leaves the target alone', () => {
    const cacheDir = tempDir()
    const victim = tempDir()
    mkdirSync(join(victim, 'abcd'))
    writeFileSync(join(victim, 'abcd', 'precious'), 'x')
    const db = CacheDb.open(cacheDir)
    try {
      rmSync(db.imagesDir, { recursive: true })
      symlinkSync(victim, db.imagesDir)
      assert.throws(
        () => clearImageCache(db, 'abcd', ''),
        /^KmsError: Failed to clear image cache: .*must be a real directory/,
      )
      assert.deepEqual(readFileSync(join(victim, 'abcd', 'precious'), 'utf8'), 'x')
    } finally {
      db.close()
    }
  })

  test('a missing images directory is still a no-op for a single hex key', () => {
    const cacheDir = tempDir()
    const db = CacheDb.open(cacheDir)
    try {
      rmSync(db.imagesDir, { recursive: true })
      clearImageCache(db, 'abcd', '')
    } finally {
      db.close()
    }
  })
})

describe('a damaged cache database at open', () => {
  const damage: Array<[string, (path: string) => void]> = [
    ['not a database at all', (p) => writeFileSync(p, 'this is not sqlite '.repeat(300))],
    ['truncated to half its size', (p) => truncateSync(p, Math.floor(statSync(p).size / 2))],
    [
      'a table page overwritten',
      (p) => {
        const bytes = readFileSync(p)
        // page 1 is the header and schema; every later page belongs to a table or an index
        bytes.fill(0xa5, 4096 + 8, bytes.length)
        writeFileSync(p, bytes)
      },
    ],
  ]
  for (const [what, harm] of damage) {
    test(`${what}: moved aside (kept for inspection) and rebuilt empty, and the cache works`, () => {
      const cacheDir = tempDir()
      const first = CacheDb.open(cacheDir)
      for (let i = 0; i < 200; i++) {
        first.putMeasurement(i.toString(16).padStart(64, '0'), 'aa'.repeat(32), MEASUREMENT)
      }
      const dbPath = first.dbPath
      first.close()
      harm(dbPath)
      const damagedBytes = readFileSync(dbPath)
      const reports: Array<{ dbPath: string; movedTo: string; reason: string }> = []
      const db = CacheDb.open(cacheDir, { onCorrupt: (info) => reports.push(info) })
      try {
        assert.equal(reports.length, 1)
        const [report] = reports
        assert.ok(report !== undefined)
        assert.equal(report.dbPath, dbPath)
        assert.match(report.movedTo, /kms-cache\.sqlite3\.corrupt-/)
        assert.deepEqual(readFileSync(report.movedTo), damagedBytes)
        db.putMeasurement(CONFIG_B, 'bb'.repeat(32), MEASUREMENT)
        assert.equal(db.getMeasurement(CONFIG_B)?.value, MEASUREMENT)
      } finally {
        db.close()
      }
    })
  }

  test('a healthy database is opened as it is, without a report', () => {
    const cacheDir = tempDir()
    const first = CacheDb.open(cacheDir)
    first.putMeasurement(CONFIG_B, 'bb'.repeat(32), MEASUREMENT)
    first.close()
    const reports: unknown[] = []
    const db = CacheDb.open(cacheDir, { onCorrupt: (info) => reports.push(info) })
    assert.equal(db.getMeasurement(CONFIG_B)?.value, MEASUREMENT)
    db.close()
    assert.deepEqual(reports, [])
  })
})
