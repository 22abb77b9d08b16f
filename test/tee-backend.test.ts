// TEE backend selection (docs/design.md#tee-backend-chosen-explicitly-never-a-fallback): explicit
// choice, no silent fallback, fail closed. The detection tests use temp directories laid out like
// `/`; the CLI tests run the real `dstack-kms serve` on this machine, which has no TDX.
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { after, describe, it } from 'node:test'
import { KmsError } from '../src/errors.js'
import pino from 'pino'
import { decodeVersionedAttestation } from '../src/attestation/versioned.js'
import type { KmsConfig } from '../src/config/types.js'
import { NoneBackend } from '../src/tee/backend.js'
import { createTeeBackend } from '../src/tee/factory.js'
import { tdxPresence } from '../src/tee/tdx/detect.js'
import { NodeTdxIo } from '../src/tee/tdx/io.js'
import { buildConfig } from './helpers/config-builder.js'
import { testConfigToml } from './helpers/kms-config.js'
import { freePort, startKms, tempDir, type LogLine } from './helpers/kms-process.js'

const TSM = 'sys/kernel/config/tsm/report'

const NO_TDX_MESSAGE =
  'tee.backend = "tdx" but TDX attestation is not available on this machine: no /dev/tdx_guest; no TDX configfs-tsm provider (no tdx_guest provider under /sys/kernel/config/tsm/report); not supported: no quote method available (configfs not mounted, no vsock port configured)'

const created: string[] = []
after(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true })
})

/** A temp directory standing in for `/`, with the given files (path relative to the root). */
function fakeRoot(files: Record<string, string> = {}): string {
  const root = tempDir('dstack-kms-tee-root-')
  created.push(root)
  for (const [rel, content] of Object.entries(files)) {
    const p = join(root, rel)
    mkdirSync(dirname(p), { recursive: true })
    writeFileSync(p, content)
  }
  return root
}

function kmsError(code: string, message: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof KmsError, `expected a KmsError, got ${String(err)}`)
    assert.equal(err.code, code)
    assert.equal(err.message, message)
    return true
  }
}

/** The presence check with every file read under `root` (paths in the evidence are as seen from
 * inside it) and no DCAP_TDX_QUOTE_CONFIGFS_PATH. */
function detectTdx(root: string) {
  return tdxPresence(new NodeTdxIo({ root, env: {} }))
}

describe('tdxPresence', () => {
  it('finds the TDX guest device', async () => {
    const root = fakeRoot({ 'dev/tdx_guest': '' })
    assert.deepEqual(await detectTdx(root), { present: true, evidence: ['/dev/tdx_guest'] })
  })

  it('finds a configfs-tsm provider that says tdx_guest', async () => {
    const root = fakeRoot({ [`${TSM}/com.intel.dcap/provider`]: 'tdx_guest\n' })
    assert.deepEqual(await detectTdx(root), {
      present: true,
      evidence: [`/${TSM}/com.intel.dcap/provider`],
    })
  })

  it('ignores an sev_guest provider, other providers and entries without a provider file', async () => {
    const root = fakeRoot({
      [`${TSM}/snp/provider`]: 'sev_guest\n',
      // only a `tdx_guest…` provider counts (upstream's is_tdx_available)
      [`${TSM}/other/provider`]: 'tdx-lookalike\n',
    })
    mkdirSync(join(root, TSM, 'empty-entry'))
    assert.deepEqual(await detectTdx(root), { present: false, evidence: [] })
  })

  it('reports only the TDX provider when SEV and TDX providers are both there', async () => {
    const root = fakeRoot({
      'dev/tdx_guest': '',
      [`${TSM}/a-sev/provider`]: 'sev_guest\n',
      [`${TSM}/b-tdx/provider`]: 'tdx_guest\n',
    })
    assert.deepEqual(await detectTdx(root), {
      present: true,
      evidence: ['/dev/tdx_guest', `/${TSM}/b-tdx/provider`],
    })
  })

  it('finds nothing in an empty root', async () => {
    assert.deepEqual(await detectTdx(fakeRoot()), { present: false, evidence: [] })
  })
})

describe('createTeeBackend', () => {
  const roots = () => [
    fakeRoot(),
    fakeRoot({ 'dev/tdx_guest': '' }),
    fakeRoot({ [`${TSM}/com.intel.dcap/provider`]: 'tdx_guest\n' }),
  ]
  const config = (backend: 'none' | 'simulator' | 'tdx', dir = fakeRoot()): KmsConfig =>
    buildConfig(
      {
        core: { cert_dir: join(dir, 'certs'), enforce_self_authorization: false },
        tee: { backend, simulator: { seed: '5a'.repeat(32) } },
      },
      { cwd: dir },
    )
  const logger = pino({ level: 'silent' })

  it('"none" works with or without TDX, and cannot attest', async () => {
    for (const root of roots()) {
      const tee = await createTeeBackend(config('none'), { logger, root })
      assert.equal(tee.constructor, NoneBackend)
      assert.equal(tee.name, 'none')
      assert.equal(tee.canAttest, false)
      await assert.rejects(
        tee.attest(new Uint8Array(64)),
        kmsError('KMS_ERR_TEE', 'attestation is not available with tee.backend = "none"'),
      )
      assert.equal(await tee.vmConfig(), '')
    }
  })

  it('"simulator" refuses to start where TDX exists, naming the evidence', async () => {
    const dev = fakeRoot({ 'dev/tdx_guest': '' })
    await assert.rejects(
      createTeeBackend(config('simulator'), { logger, root: dev }),
      kmsError(
        'KMS_ERR_TEE',
        `refusing to start the TEE simulator on a machine with real TDX (/dev/tdx_guest); set [tee] backend = "tdx"`,
      ),
    )
    const tsm = fakeRoot({ [`${TSM}/com.intel.dcap/provider`]: 'tdx_guest\n' })
    await assert.rejects(
      createTeeBackend(config('simulator'), { logger, root: tsm }),
      kmsError(
        'KMS_ERR_TEE',
        `refusing to start the TEE simulator on a machine with real TDX (/${TSM}/com.intel.dcap/provider); set [tee] backend = "tdx"`,
      ),
    )
  })

  it('"simulator" without TDX attests, next to cert_dir in tee-simulator/', async () => {
    for (const root of [fakeRoot(), fakeRoot({ [`${TSM}/snp/provider`]: 'sev_guest\n' })]) {
      const dir = fakeRoot()
      const tee = await createTeeBackend(config('simulator', dir), { logger, root })
      assert.equal(tee.name, 'simulator')
      assert.equal(tee.canAttest, true)
      const att = decodeVersionedAttestation(await tee.attest(Buffer.alloc(64, 7)))
      assert.deepEqual(att.attestation.reportData, Buffer.alloc(64, 7))
      assert.ok(existsSync(join(dir, 'tee-simulator', 'mock-root-ca.pem')))
      await tee.close()
    }
  })

  it('"tdx" on this machine (no TDX) fails closed with the exact reasons', async () => {
    assert.equal((await detectTdx('/')).present, false, 'these tests expect a machine without TDX')
    await assert.rejects(
      createTeeBackend(config('tdx'), { logger }),
      kmsError('KMS_ERR_TEE', NO_TDX_MESSAGE),
    )
  })
})

describe('dstack-kms serve on a machine without TDX', () => {
  async function serveFails(configToml: (dir: string, port: number) => string) {
    assert.equal((await detectTdx('/')).present, false, 'these tests expect a machine without TDX')
    const dir = tempDir()
    created.push(dir)
    const port = await freePort()
    const kms = startKms({
      dir,
      configToml: configToml(dir, port),
      env: { DSTACK_KMS_SYSTEM_CONFIG: join(dir, 'no-such-system-config.toml') },
    })
    const exit = await kms.waitForExit()
    assert.deepEqual(exit, { code: 1, signal: null })
    assert.equal(kms.stderr.join(''), `dstack-kms: ${NO_TDX_MESSAGE}\n`)
    const starting = kms.logs.find((l) => l.msg === 'dstack-kms starting')
    assert.ok(starting !== undefined, JSON.stringify(kms.logs))
    assert.equal(starting.tee, 'tdx')
    const forks = kms.logs.filter((l: LogLine) => /^started \w+ worker$/.test(l.msg ?? ''))
    assert.deepEqual(forks, [], 'no worker may be forked')
    // it failed before touching cert_dir
    assert.equal(existsSync(join(dir, 'certs')), false)
  }

  it('[tee] backend = "tdx" exits non-zero with the reason and forks no worker', async () => {
    await serveFails((dir, port) => {
      const base = testConfigToml({ dir, port })
      const toml = base.replace('[tee]\nbackend = "none"\n', '[tee]\nbackend = "tdx"\n')
      assert.notEqual(toml, base)
      return toml
    })
  })

  it('no [tee] section at all means the built-in default "tdx": same failure', async () => {
    await serveFails((dir, port) => {
      const base = testConfigToml({ dir, port })
      const toml = base.replace('[tee]\nbackend = "none"\n', '')
      assert.doesNotMatch(toml, /\[tee\]|backend/)
      return toml
    })
  })
})
