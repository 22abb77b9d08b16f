// Another process in the middle of converting a new SQLite file to WAL: it holds the file's
// write lock (a rollback-mode write transaction) for a while, then lets go. Opening the file
// meanwhile is what two workers starting together do to each other, forced deterministically.
import { spawn } from 'node:child_process'

export interface WriteLockHolder {
  /** ends the child (it keeps its connection open until then) */
  stop(): void
}

/** Resolves once a child process holds the write lock of the SQLite file at `path` (created when
 * missing); the child releases it `holdMs` later on its own clock, whatever this process does. */
export async function holdSqliteWriteLock(path: string, holdMs: number): Promise<WriteLockHolder> {
  const script = `
    import Database from 'better-sqlite3'
    const db = new Database(process.argv[1])
    db.exec('BEGIN IMMEDIATE')
    process.stdout.write('holding\\n')
    setTimeout(() => db.exec('ROLLBACK'), ${holdMs})
    process.stdin.resume()
  `
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, path], {
    cwd: new URL('../../', import.meta.url).pathname,
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  let out = ''
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      if (out.includes('holding\n')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`lock holder exited early (${String(code)})`)))
  })
  return { stop: () => child.kill() }
}
