// Small, real tmpfs mounts: a full (or read-only) disk without filling the machine's.
// `runOnSmallTmpfs` runs a TypeScript snippet in a child process whose private user + mount
// namespace (`unshare`) holds the mount, so it needs no privileges and vanishes with the child;
// the snippet reports what it saw on stdout as one JSON line. `mountTmpfs` mounts one for the
// whole test process (root only), for tests whose `dstack-kms serve` children must see it too.
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, statfsSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir } from './temp-dir.js'

export interface TmpfsRun<T> {
  /** the snippet's JSON result */
  result: T
  stderr: string
}

/** `body` is the inside of an async function receiving `dir` (the tmpfs) and returning a JSON
 * value; `imports` are module specifiers relative to the repository root, bound to names (`node:` specifiers as they are). */
export function runOnSmallTmpfs<T>(
  sizeKiB: number,
  imports: Record<string, string>,
  body: string,
  prepare = '',
): TmpfsRun<T> {
  const dir = tempDir('kms-tmpfs-')
  const root = new URL('../../', import.meta.url).pathname
  const importLines = Object.entries(imports)
    .map(([names, path]) => {
      const spec = path.startsWith('node:') ? path : root + path
      return `import ${names} from ${JSON.stringify(spec)}`
    })
    .join('\n')
  const script = `${importLines}
const dir = process.argv[1]
const run = async () => { ${body} }
run().then(
  (r) => process.stdout.write(JSON.stringify(r) + '\\n'),
  (e) => { process.stderr.write(String(e && e.stack || e)); process.exit(3) },
)`
  const shell =
    `mount -t tmpfs -o size=${sizeKiB}k,mode=700 tmpfs "$1" && ${prepare}` +
    ` exec "$0" --import tsx --input-type=module -e "$2" "$1"`
  const r = spawnSync(
    'unshare',
    ['--user', '--map-root-user', '--mount', 'sh', '-c', shell, process.execPath, dir, script],
    { encoding: 'utf8', timeout: 60_000 },
  )
  if (r.status !== 0) {
    throw new Error(`tmpfs child failed (status ${r.status}): ${r.stderr}${r.error?.message ?? ''}`)
  }
  return { result: JSON.parse(r.stdout.trim().split('\n').pop() ?? 'null') as T, stderr: r.stderr }
}

/** A small tmpfs mounted for the whole test process (we run as root), so that real
 * `dstack-kms serve` children and the test see the same full or read-only directory. */
export interface HostTmpfs {
  dir: string
  /** fills the free space with a filler file, so the next write meets ENOSPC */
  fill(): void
  /** removes the filler file */
  unfill(): void
  /** `mount -o remount,<options>`: `ro`, `rw`, `size=1m` */
  remount(options: string): void
  unmount(): void
}

const FILLER = '.filler'
const mounted = new Set<string>()

// before temp-dir's own exit handler, which cannot remove a directory that is a mount point
process.prependOnceListener('exit', () => {
  for (const dir of mounted) spawnSync('umount', ['-l', dir])
})

export function mountTmpfs(dir: string, sizeKiB: number): HostTmpfs {
  if (process.getuid?.() !== 0) throw new Error('mounting a tmpfs needs root')
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k,mode=700`, 'tmpfs', dir])
  mounted.add(dir)
  return {
    dir,
    fill() {
      // dd stops at ENOSPC with a non-zero status: that is the point
      spawnSync('dd', ['if=/dev/zero', `of=${join(dir, FILLER)}`, 'bs=4k'], { stdio: 'ignore' })
      assert.equal(statfsSync(dir).bavail, 0, `${dir} still has room`)
    },
    unfill() {
      rmSync(join(dir, FILLER), { force: true })
    },
    remount(options) {
      execFileSync('mount', ['-o', `remount,${options}`, dir])
    },
    unmount() {
      if (!mounted.delete(dir)) return
      execFileSync('umount', ['-l', dir])
    },
  }
}
