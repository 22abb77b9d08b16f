// The CLI as users run it: a real child process, checking stdout, stderr and the exit status.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { test } from 'node:test'

const CLI = resolve(import.meta.dirname, '../src/cli.ts')
const ROOT = resolve(import.meta.dirname, '..')

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

function packageVersion(): string {
  const pkg: unknown = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8'))
  assert.ok(typeof pkg === 'object' && pkg !== null && 'version' in pkg)
  assert.equal(typeof pkg.version, 'string')
  return String(pkg.version)
}

test('--help prints usage on stdout and exits 0', () => {
  for (const flag of ['--help', '-h', 'serve --help']) {
    const r = run(...flag.split(' '))
    assert.equal(r.status, 0, r.stderr)
    assert.ok(r.stdout.startsWith('Usage: dstack-kms [serve] [-c FILE] [--quickstart]\n'))
    assert.match(r.stdout, /^ {2}-c, --config FILE {4}configuration file/m)
    assert.match(r.stdout, /^ {6}--quickstart {5}/m)
    assert.match(r.stdout, /^ {2}-V, --version {8}print the version and exit$/m)
    assert.equal(r.stderr, '')
  }
})

test('--version prints the package version', () => {
  const expected = `dstack-kms ${packageVersion()}\n`
  assert.deepEqual(run('--version'), { status: 0, stdout: expected, stderr: '' })
  assert.deepEqual(run('-V'), { status: 0, stdout: expected, stderr: '' })
})

test('usage errors name the problem and exit 2', () => {
  const cases: Array<[string[], string]> = [
    [['--bogus'], "unknown option '--bogus'"],
    [['serve', '--bogus'], "unknown option '--bogus'"],
    [['serve', '-x'], "unknown option '-x'"],
    [['serve', '-c'], "option '-c, --config' needs a file name"],
    [['serve', 'extra'], "unexpected argument 'extra'"],
    [['frobnicate'], "unknown command 'frobnicate'"],
  ]
  for (const [args, message] of cases) {
    const r = run(...args)
    assert.deepEqual(
      r,
      {
        status: 2,
        stdout: '',
        stderr: `dstack-kms: ${message}\nRun 'dstack-kms --help' for usage.\n`,
      },
      args.join(' '),
    )
  }
})
