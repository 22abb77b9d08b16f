// systemd/dstack-kms.service: the keys the deployment relies on, and systemd's own verdict.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { test } from 'node:test'
import { defaultLimits, loadConfig } from '../src/config/load.js'
import { openFileShortfall } from '../src/util/open-file-limit.js'
import { tempDir } from './helpers/temp-dir.js'

const UNIT = resolve(import.meta.dirname, '../systemd/dstack-kms.service')

type Unit = Map<string, Map<string, string[]>>

/** systemd's unit syntax as far as this file uses it: sections, repeatable keys, comments. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map()
  let section: Map<string, string[]> | undefined
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const header = /^\[([A-Za-z]+)\]$/.exec(line)
    if (header?.[1] !== undefined) {
      section = new Map()
      unit.set(header[1], section)
      continue
    }
    const eq = line.indexOf('=')
    assert.ok(section !== undefined && eq > 0, `line ${i + 1} is not key=value in a section`)
    assert.ok(!line.endsWith('\\'), `line ${i + 1}: continuation lines are not expected`)
    const key = line.slice(0, eq)
    const values = section.get(key) ?? []
    values.push(line.slice(eq + 1))
    section.set(key, values)
  }
  return unit
}

const unit = parseUnit(readFileSync(UNIT, 'utf8'))
const service = unit.get('Service') ?? new Map<string, string[]>()

/** The value of a key that must appear exactly once. */
function one(key: string): string {
  const values = service.get(key)
  assert.equal(values?.length, 1, `${key} must appear exactly once, got ${String(values)}`)
  return values[0] ?? ''
}

test('the unit has the expected sections', () => {
  assert.deepEqual([...unit.keys()], ['Unit', 'Service', 'Install'])
  assert.deepEqual(unit.get('Install')?.get('WantedBy'), ['multi-user.target'])
})

test('start, readiness, restart and stop behaviour', () => {
  assert.equal(
    one('ExecStart'),
    '/usr/bin/node /opt/dstack-kms/dist/src/cli.js serve -c /etc/kms/kms.toml',
  )
  assert.equal(one('Type'), 'notify')
  assert.equal(one('NotifyAccess'), 'main')
  assert.equal(one('Restart'), 'on-failure')
  assert.equal(one('RestartSec'), '2')
  assert.equal(one('KillMode'), 'mixed')
  assert.equal(one('TimeoutStopSec'), '20')
  assert.equal(one('EnvironmentFile'), '-/etc/kms/dstack-kms.env')
})

test('sandboxing and hardening keys', () => {
  const expected: Record<string, string> = {
    NoNewPrivileges: 'yes',
    ProtectSystem: 'strict',
    PrivateTmp: 'yes',
    ProtectHome: 'yes',
    ProtectKernelTunables: 'yes',
    ProtectKernelModules: 'yes',
    ProtectKernelLogs: 'yes',
    ProtectControlGroups: 'yes',
    RestrictAddressFamilies: 'AF_UNIX AF_INET AF_INET6 AF_VSOCK',
    RestrictNamespaces: 'yes',
    LockPersonality: 'yes',
    MemoryDenyWriteExecute: 'no',
    SystemCallArchitectures: 'native',
    CapabilityBoundingSet: '',
    UMask: '0077',
    DevicePolicy: 'closed',
    DeviceAllow: '/dev/tdx_guest rw',
  }
  for (const [key, value] of Object.entries(expected)) assert.equal(one(key), value, key)
  assert.deepEqual(service.get('ReadWritePaths'), [
    '/etc/kms/certs /var/lib/dstack-kms',
    '-/sys/kernel/config/tsm/report',
  ])
  // no key may weaken the sandbox again
  for (const key of ['PrivateDevices', 'User', 'DynamicUser', 'PrivateUsers']) {
    assert.equal(service.get(key), undefined, key)
  }
})

test('every path kms.toml.example writes is writable under the sandbox', () => {
  const cwd = one('WorkingDirectory')
  const config = loadConfig({
    configFile: resolve(import.meta.dirname, '../kms.toml.example'),
    cwd,
    etcFile: join(tempDir('no-etc-'), 'none.toml'),
    env: {},
  })
  // ProtectSystem=strict leaves only these writable
  const writable = [
    ...(service.get('ReadWritePaths') ?? []).flatMap((v) => v.split(' ')),
    `/var/lib/${one('StateDirectory')}`,
    `/run/${one('RuntimeDirectory')}`,
  ].filter((p) => !p.startsWith('-'))
  const written: Record<string, string> = {
    'core.cert_dir': config.core.certDir,
    'core.audit.path (its directory)': dirname(config.core.audit.path),
    'core.image.cache_dir': config.core.image.cacheDir,
  }
  if (config.authSimple.enabled) {
    written['auth_simple.socket (its directory)'] = dirname(config.authSimple.socket)
  }
  for (const [key, path] of Object.entries(written)) {
    assert.ok(
      writable.some((w) => path === w || path.startsWith(`${w}/`)),
      `${key} = ${path} is not under a writable path of the unit (${writable.join(', ')})`,
    )
  }
})

test('LimitNOFILE leaves room for two full listeners per worker plus outbound work', () => {
  const nofile = Number(one('LimitNOFILE'))
  assert.ok(Number.isSafeInteger(nofile), `LimitNOFILE=${one('LimitNOFILE')}`)
  // a main worker holds the main and the admin listener; every other worker holds one
  assert.equal(openFileShortfall(nofile, defaultLimits().maxConnections, 2), null)
})

test('systemd-analyze verify accepts the unit without a warning', (t) => {
  const probe = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' })
  if (probe.error !== undefined) {
    // No systemd tools on this machine: the parse above is all we can check.
    t.diagnostic(`systemd-analyze unavailable (${probe.error.message}); checked the parse only`)
    assert.ok(service.size > 0)
    return
  }
  const dir = tempDir('dstack-kms-unit-')
  try {
    const copy = join(dir, 'dstack-kms.service')
    copyFileSync(UNIT, copy)
    if (!existsSync('/usr/bin/node')) {
      // verify checks that ExecStart's binary exists; point it at this machine's node.
      writeFileSync(copy, readFileSync(UNIT, 'utf8').replaceAll('/usr/bin/node', process.execPath))
    }
    const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' })
    // verify exits 0 on unknown keys and unparsable values, only warning: demand silence too.
    assert.equal(r.stderr, '')
    assert.equal(r.status, 0)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
