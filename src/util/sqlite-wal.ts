// Switching an SQLite file to WAL when several processes may open it at the same moment (the
// main workers all open the audit log at start).
import Database from 'better-sqlite3'

/** pause between two attempts; the other opener's conversion is one small transaction */
const RETRY_PAUSE_MS = 10

const pause = new Int32Array(new SharedArrayBuffer(4))

/**
 * Runs `PRAGMA journal_mode = WAL` and returns the mode SQLite reports. While another connection
 * holds the write lock of a file still in rollback mode (as it does during its own conversion),
 * the conversion fails with SQLITE_BUSY at once: SQLite does not run the busy handler for it. Two
 * processes converting a new file together can so make one of them fail straight away. WAL is a
 * property of the file, so an attempt after the other's conversion has nothing left to do;
 * attempts go on for `budgetMs`, like the busy timeout of every other statement, and any other
 * error is thrown as it is.
 */
export function enableWal(db: Database.Database, budgetMs: number): unknown {
  const deadline = Date.now() + budgetMs
  for (;;) {
    try {
      return db.pragma('journal_mode = WAL', { simple: true })
    } catch (err) {
      const busy = err instanceof Database.SqliteError && err.code === 'SQLITE_BUSY'
      if (!busy || Date.now() >= deadline) throw err
      // synchronous like the rest of opening a database; the holder is another connection
      Atomics.wait(pause, 0, 0, RETRY_PAUSE_MS)
    }
  }
}
