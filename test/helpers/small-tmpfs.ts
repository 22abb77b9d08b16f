// Runs a TypeScript snippet in a child process that sees a small, real tmpfs mounted on a
// scratch directory: a full disk without filling the machine's. The mount lives in a private
// user + mount namespace (`unshare`), so it needs no privileges and vanishes with the child; the
// snippet therefore reports what it saw on stdout as one JSON line.
import { spawnSync } from 'node:child_process'
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
