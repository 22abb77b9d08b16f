import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { INTEL_SGX_ROOT_CA_DER } from '../src/attestation/trust.js'
import { CacheDb } from '../src/cache/cache-db.js'
import { runVerifyAttestation } from '../src/commands/verify-attestation.js'
import { mockCollateral } from '../src/tee/simulator/collateral.js'
import { simulateGuestAttestation } from '../src/tee/simulator/guest.js'
import { deriveBytes, mockIntelPki } from '../src/tee/simulator/mock-pki.js'
import { pemEncode } from '../src/asn1/pem.js'
import { collateralFixturePath, loadCollateralFixture } from './helpers/collateral-fixtures.js'
import { VECTORS_DIR, readVectorFile, readVectorJson } from './helpers/crypto-vectors.js'
import { PccsStub } from './helpers/pccs-stub.js'
import { tempDir } from './helpers/temp-dir.js'

const NOW = '1751328000'
const v = (name: string) => join(VECTORS_DIR, name)
const TDX_QUOTE = v('dcap-qvl-tdx_quote')
const TDX_COLLATERAL = collateralFixturePath('tdx')

interface CliResult {
  code: number
  stdout: string
  stderr: string
}

async function cli(args: string[], db?: CacheDb): Promise<CliResult> {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const out: Buffer[] = []
  const err: Buffer[] = []
  stdout.on('data', (c: Buffer) => out.push(c))
  stderr.on('data', (c: Buffer) => err.push(c))
  const code = await runVerifyAttestation(args, { stdout, stderr, db })
  return {
    code,
    stdout: Buffer.concat(out).toString('utf8'),
    stderr: Buffer.concat(err).toString('utf8'),
  }
}

interface Output {
  status: string
  advisory_ids: string[]
  report: Record<string, string>
  boot_info: Record<string, unknown> | null
}

function json(r: CliResult): Output {
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stderr, '')
  return JSON.parse(r.stdout) as Output
}

const tdxCase = readVectorJson<{
  dcap_qvl_samples: {
    cases: { mr_td?: string; report_data?: string; ppid_via_workaround?: string }[]
  }
}>('vectors.json').dcap_qvl_samples.cases[0]

const dir = tempDir('kms-verify-cli-')
after(() => rmSync(dir, { recursive: true, force: true }))

describe('verify-attestation with offline collateral', () => {
  it('the dcap-qvl TDX sample is UpToDate with no advisories', async () => {
    const out = json(await cli(['--quote', TDX_QUOTE, '--collateral', TDX_COLLATERAL, '--at', NOW]))
    assert.equal(out.status, 'UpToDate')
    assert.deepEqual(out.advisory_ids, [])
    assert.equal(out.report['type'], 'td10')
    assert.equal(out.report['mr_td'], tdxCase?.mr_td)
    assert.equal(out.report['rtmr3'], '00'.repeat(48))
    assert.equal(out.report['report_data'], tdxCase?.report_data)
    assert.equal(out.report['td_attributes'], '0000001000000000')
    assert.equal(out.report['xfam'], 'e702060000000000')
    assert.equal(out.report['ppid'], tdxCase?.ppid_via_workaround)
    for (const k of ['rtmr0', 'rtmr1', 'rtmr2', 'mr_config_id', 'tee_tcb_svn']) {
      assert.match(out.report[k] ?? '', /^[0-9a-f]+$/, k)
    }
    // a bare quote has no app-id event, hence no BootInfo
    assert.equal(out.boot_info, null)
  })

  it('reads hex input files and an empty JSON event log', async () => {
    const hexQuote = join(dir, 'quote.hex')
    writeFileSync(hexQuote, readVectorFile('dcap-qvl-tdx_quote').toString('hex') + '\n')
    const log = join(dir, 'log.json')
    writeFileSync(log, '[]')
    const out = json(
      await cli([
        '--quote',
        hexQuote,
        '--event-log',
        log,
        '--collateral',
        TDX_COLLATERAL,
        '--at',
        NOW,
      ]),
    )
    assert.equal(out.status, 'UpToDate')
  })

  it('the SGX sample reports its status and advisories', async () => {
    const out = json(
      await cli([
        '--quote',
        v('dcap-qvl-sgx_quote'),
        '--collateral',
        collateralFixturePath('sgx'),
        '--at',
        NOW,
      ]),
    )
    assert.equal(out.status, 'ConfigurationAndSWHardeningNeeded')
    assert.deepEqual(out.advisory_ids, ['INTEL-SA-00289', 'INTEL-SA-00615'])
    assert.equal(out.report['type'], 'sgx')
    assert.equal(out.boot_info, null)
  })

  it('fails with the verifier text after the collateral window', async () => {
    const r = await cli([
      '--quote',
      TDX_QUOTE,
      '--collateral',
      TDX_COLLATERAL,
      '--at',
      '1752969600',
    ])
    assert.equal(r.code, 1)
    assert.equal(r.stdout, '')
    assert.equal(
      r.stderr,
      'dstack-kms verify-attestation: Failed to get collateral: PCK CRL expired at 2025-07-19T10:00:35Z\n',
    )
  })

  it('fails on a tampered quote', async () => {
    const q = readVectorFile('dcap-qvl-tdx_quote')
    q[600] = (q[600] ?? 0) ^ 0xff
    const path = join(dir, 'tampered.bin')
    writeFileSync(path, q)
    const r = await cli(['--quote', path, '--collateral', TDX_COLLATERAL, '--at', NOW])
    assert.equal(r.code, 1)
    assert.equal(
      r.stderr,
      'dstack-kms verify-attestation: Failed to get collateral: ISV enclave report signature is invalid\n',
    )
  })

  it('attestation.bin decodes but its quote does not verify with foreign collateral', async () => {
    const r = await cli([
      '--attestation',
      v('attestation.bin'),
      '--collateral',
      TDX_COLLATERAL,
      '--at',
      NOW,
    ])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^dstack-kms verify-attestation: Failed to get collateral: /)
  })

  it('an explicit root CA needs the insecure flag, and then replaces Intel', async () => {
    const usage = await cli(['--quote', TDX_QUOTE, '--root-ca', '/x.pem'])
    assert.equal(usage.code, 2)
    assert.match(usage.stderr, /--insecure-allow-external-trust-anchors/)

    const intelPem = join(dir, 'intel.pem')
    writeFileSync(intelPem, pemEncode('CERTIFICATE', INTEL_SGX_ROOT_CA_DER))
    const ok = json(
      await cli([
        '--quote',
        TDX_QUOTE,
        '--collateral',
        TDX_COLLATERAL,
        '--at',
        NOW,
        '--root-ca',
        intelPem,
        '--insecure-allow-external-trust-anchors',
      ]),
    )
    assert.equal(ok.status, 'UpToDate')

    const pki = mockIntelPki(Buffer.alloc(32, 5))
    const mockRoot = join(dir, 'mock-root.der')
    writeFileSync(mockRoot, pki.root.der)
    const refused = await cli([
      '--quote',
      TDX_QUOTE,
      '--collateral',
      TDX_COLLATERAL,
      '--at',
      NOW,
      '--root-ca',
      mockRoot,
      '--insecure-allow-external-trust-anchors',
    ])
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /^dstack-kms verify-attestation: Failed to get collateral: /)
  })

  it('refuses bad usage with exit status 2', async () => {
    for (const args of [
      [],
      ['--quote', TDX_QUOTE, '--attestation', TDX_QUOTE],
      ['--attestation', TDX_QUOTE, '--event-log', TDX_QUOTE],
      ['--quote', TDX_QUOTE, '--at', 'yesterday'],
      ['--quote', TDX_QUOTE, '--collateral', TDX_COLLATERAL, '--pccs', 'http://x'],
      ['--quote', TDX_QUOTE, '--bogus'],
    ]) {
      const r = await cli(args)
      assert.equal(r.code, 2, args.join(' '))
      assert.match(
        r.stderr,
        /^dstack-kms verify-attestation: .*\nRun 'dstack-kms verify-attestation --help' for usage\.\n$/,
      )
    }
    const help = await cli(['--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /^Usage: dstack-kms verify-attestation/)
  })

  it('reports unreadable input files', async () => {
    const r = await cli(['--quote', join(dir, 'missing'), '--collateral', TDX_COLLATERAL])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /failed to read quote .*missing/)
  })
})

describe('verify-attestation with a BootInfo (simulated guest on the mock platform)', () => {
  const seed = Buffer.alloc(32, 0x42)
  const pki = mockIntelPki(seed)
  const attestationFile = join(dir, 'guest.hex')
  const rootFile = join(dir, 'sim-root.pem')
  const collateralFile = join(dir, 'sim-collateral.json')
  const at = '1800000000'

  before(() => {
    const att = simulateGuestAttestation({
      seed,
      reportData: Buffer.alloc(64, 1),
      fullBoot: true,
      now: Number(at),
    })
    writeFileSync(attestationFile, att.toString('hex'))
    writeFileSync(rootFile, pki.root.pem)
    writeFileSync(collateralFile, JSON.stringify(mockCollateral(pki)))
  })

  const args = (...extra: string[]) => [
    '--attestation',
    attestationFile,
    '--collateral',
    collateralFile,
    '--root-ca',
    rootFile,
    '--insecure-allow-external-trust-anchors',
    '--at',
    at,
    ...extra,
  ]

  it('prints the BootInfo the webhook would receive', async () => {
    const out = json(await cli(args()))
    assert.equal(out.status, 'UpToDate')
    const b = out.boot_info
    assert.ok(b !== null)
    assert.deepEqual(Object.keys(b).slice(0, 2), ['attestationMode', 'teeVariant'])
    assert.equal(b['attestationMode'], 'dstack-tdx')
    assert.equal(b['teeVariant'], 'dstack-tdx')
    assert.equal(b['appId'], deriveBytes(seed, 'guest-app-id', 20).toString('hex'))
    assert.equal(b['deviceId'], createHash('sha256').update(pki.ppid).digest('hex'))
    assert.equal(out.report['ppid'], pki.ppid.toString('hex'))
    assert.equal(b['tcbStatus'], 'UpToDate')
    assert.notEqual(b['keyProviderInfo'], '')
    const boot = json(await cli(args('--boottime')))
    assert.ok(boot.boot_info !== null)
    assert.equal(boot.boot_info['keyProviderInfo'], '')
    assert.notEqual(boot.boot_info['mrAggregated'], b['mrAggregated'])
  })

  it('takes the osImageHash from --vm-config', async () => {
    const vmConfig = join(dir, 'vm-config.json')
    writeFileSync(vmConfig, JSON.stringify({ os_image_hash: 'ab'.repeat(32) }))
    const out = json(await cli(args('--vm-config', vmConfig)))
    assert.equal(out.boot_info?.['osImageHash'], 'ab'.repeat(32))
  })
})

describe('verify-attestation against a PCCS on loopback', () => {
  const stub = new PccsStub([
    {
      tee: 'tdx',
      ca: 'platform',
      collateral: loadCollateralFixture('tdx'),
    },
  ])
  let cacheDir: string
  let db: CacheDb
  before(async () => {
    await stub.start()
    cacheDir = tempDir('kms-verify-cli-cache-')
    db = CacheDb.open(cacheDir)
  })
  after(async () => {
    db.close()
    rmSync(cacheDir, { recursive: true, force: true })
    await stub.stop()
  })

  it('fetches once into the given cache and reuses it', async () => {
    const args = ['--quote', TDX_QUOTE, '--pccs', stub.url, '--at', NOW]
    assert.equal(json(await cli(args, db)).status, 'UpToDate')
    assert.equal(stub.total(), 4)
    assert.equal(json(await cli(args, db)).status, 'UpToDate')
    assert.equal(stub.total(), 4)
    // without a cache database it uses a throw-away one
    assert.equal(json(await cli(args)).status, 'UpToDate')
    assert.equal(stub.total(), 8)
  })

  it('reports an unreachable PCCS', async () => {
    const r = await cli(['--quote', TDX_QUOTE, '--pccs', 'http://127.0.0.1:1', '--at', NOW])
    assert.equal(r.code, 1)
    assert.match(
      r.stderr,
      /^dstack-kms verify-attestation: Failed to get collateral: Failed to get collateral for FMSPC B0C06F000000 \(tdx, platform CA\) from http:\/\/127\.0\.0\.1:1: /,
    )
  })
})

describe('verify-attestation as a process', () => {
  const wrapper = fileURLToPath(new URL('./fixtures/verify-attestation-cli.ts', import.meta.url))
  const run = (args: string[]) =>
    new Promise<CliResult>((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', wrapper, ...args],
        { cwd: fileURLToPath(new URL('..', import.meta.url)) },
        (error, stdout, stderr) => {
          const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1
          resolve({ code, stdout, stderr })
        },
      )
    })

  it('prints one JSON object and exits 0', async () => {
    const r = await run(['--quote', TDX_QUOTE, '--collateral', TDX_COLLATERAL, '--at', NOW])
    const out = json(r)
    assert.equal(out.status, 'UpToDate')
    assert.deepEqual(out.advisory_ids, [])
  })

  it('exits 1 with the error on stderr', async () => {
    const r = await run(['--quote', TDX_QUOTE, '--collateral', TDX_COLLATERAL, '--at', '1'])
    assert.equal(r.code, 1)
    assert.equal(r.stdout, '')
    assert.equal(
      r.stderr,
      'dstack-kms verify-attestation: Failed to get collateral: Invalid PCK certificate chain: certificate "Intel SGX PCK Certificate" is not valid before 2025-02-06T23:25:51Z\n',
    )
  })
})
