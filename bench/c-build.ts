// Compiles one of the bench's C programs (bench/c/) into a temp directory with the compiler in
// $CC (default cc). A missing compiler or library is not an error of the bench: the caller gets
// the reason as text and prints it where the figure would have been.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'

export interface BuiltC {
  /** the executable */
  exe: string
  /** its temp directory, for the caller's own files too; `dispose` removes it */
  dir: string
  dispose(): void
}

/** `source` is a file name in bench/c/; `flags` go between the source and `-o` (e.g. `-std=c11`),
 * `libs` after it. */
export function compileC(
  source: string,
  opts: { flags?: readonly string[]; libs: readonly string[] },
): BuiltC | { reason: string } {
  const dir = mkdtempSync(join(tmpdir(), 'dstack-kms-bench-c-'))
  const exe = join(dir, basename(source, '.c'))
  const [cc = 'cc', ...ccArgs] = (process.env.CC ?? 'cc').trim().split(/\s+/)
  const path = resolve(import.meta.dirname, 'c', source)
  const r = spawnSync(
    cc,
    [...ccArgs, '-O2', ...(opts.flags ?? []), path, '-o', exe, ...opts.libs],
    {
      encoding: 'utf8',
    },
  )
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true })
    const why =
      r.stderr?.trim().split('\n')[0] || (r.error?.message ?? `exit status ${String(r.status)}`)
    return { reason: `${cc} ${opts.libs.join(' ')} failed: ${why}` }
  }
  return { exe, dir, dispose: () => rmSync(dir, { recursive: true, force: true }) }
}
