// The README's quick start, end to end: `dstack-kms serve --quickstart` (TEE simulator, generated
// auth-simple policy, self-authorization on), bootstrap, then the documented
// `dstack-kms demo-guest --quickstart` in the same directory. Only the ports are moved (by a
// ./kms.toml, which the profile allows) so the test never collides with a real KMS on 8000.
import assert from 'node:assert/strict'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { decodeVersionedAttestation } from '../src/attestation/versioned.js'
import { DEMO_APP_ID, DEMO_COMPOSE_HASH } from '../src/quickstart/demo.js'
import type { KmsProcess } from './helpers/kms-process.js'
import { bootstrapQuickstart, runCli, startQuickstartKms } from './helpers/quickstart-kms.js'

describe('quick start on the TEE simulator', () => {
  let dir: string
  let kms: KmsProcess
  let base: string

  before(async () => {
    ;({ kms, dir, base } = await startQuickstartKms())
  })

  after(async () => {
    kms.kill('SIGTERM')
    await kms.waitForExit()
  })

  it('first start creates the seed, the admin token and a policy for this KMS and the demo app', () => {
    const data = join(dir, 'data')
    assert.equal(statSync(join(data, 'tee-simulator.seed')).mode & 0o777, 0o600)
    assert.match(kms.stderr.join(''), /admin token for ClearImageCache/)
    const policy = JSON.parse(readFileSync(join(data, 'auth-config.json'), 'utf8')) as {
      kms: { mrAggregated: string[] }
      apps: Record<string, { composeHashes: string[] }>
    }
    assert.equal(policy.kms.mrAggregated.length, 1)
    assert.deepEqual(policy.apps[`0x${DEMO_APP_ID.toString('hex')}`]?.composeHashes, [
      `0x${DEMO_COMPOSE_HASH.toString('hex')}`,
    ])
    assert.ok(existsSync(join(data, 'tee-simulator', 'mock-root-ca.pem')))
    const generated = kms.logs.find((l) =>
      /generated the quick-start auth-simple policy/.test(l.msg ?? ''),
    )
    assert.equal(generated?.kmsMrAggregated, policy.kms.mrAggregated[0]?.slice(2))
  })

  it('bootstrap (self-authorized through the sidecar) and finish', async () => {
    const res = await bootstrapQuickstart({ kms, dir, base })
    assert.notEqual((JSON.parse(res.text) as { attestation: string }).attestation, '')
  })

  it('`dstack-kms demo-guest --quickstart` gets the demo app keys and explains why', async () => {
    const r = await runCli(['demo-guest', '--quickstart'], dir)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /RPC certificate attestation: verified, KMS mr_aggregated [0-9a-f]{64}/)
    assert.match(r.stdout, new RegExp(`app_id +${DEMO_APP_ID.toString('hex')}`))
    assert.match(r.stdout, /disk_crypt_key +sha256:[0-9a-f]{16}/)
    assert.match(r.stdout, /^OS image verified \(lite\): /m)
    // verify = true: no start-up warning about unverified OS images
    assert.ok(!kms.logs.some((l) => /core\.image\.verify = false/.test(l.msg ?? '')))
  })

  it('`demo-guest --os-image-hash <other>`: the policy refuses it; once listed, OS-image verification does', async () => {
    const other = 'ab'.repeat(32)
    const denied = await runCli(['demo-guest', '--quickstart', '--os-image-hash', other], dir)
    assert.equal(denied.code, 1)
    assert.match(denied.stderr, /App not allowed: Boot denied: OS image is not allowed/)
    const file = join(dir, 'data', 'auth-config.json')
    const original = readFileSync(file, 'utf8')
    const policy = JSON.parse(original) as { osImages: string[] }
    writeFileSync(file, JSON.stringify({ ...policy, osImages: [...policy.osImages, `0x${other}`] }))
    try {
      const r = await runCli(['demo-guest', '--quickstart', '--os-image-hash', other], dir)
      assert.equal(r.code, 1)
      assert.match(
        r.stderr,
        new RegExp(
          `App not allowed: Failed to verify os image hash: Failed to verify os image hash: tdx lite measurement material does not match os_image_hash: os_image_hash mismatch: expected sha256\\(sha256sum\\.txt\\)=${other}, `,
        ),
      )
      assert.doesNotMatch(r.stdout, /disk_crypt_key/)
    } finally {
      writeFileSync(file, original)
    }
  })

  it('verify-attestation --cert checks the attested RPC certificate against the mock root', async () => {
    const r = await runCli(
      [
        'verify-attestation',
        '--cert',
        'data/certs/rpc.crt',
        '--collateral',
        'data/tee-simulator/collateral.json',
        '--root-ca',
        'data/tee-simulator/mock-root-ca.pem',
        '--insecure-allow-external-trust-anchors',
      ],
      dir,
    )
    assert.equal(r.code, 0, r.stderr)
    const out = JSON.parse(r.stdout) as { status: string; boot_info: { mrAggregated: string } }
    assert.equal(out.status, 'UpToDate')
    const policy = JSON.parse(readFileSync(join(dir, 'data', 'auth-config.json'), 'utf8')) as {
      kms: { mrAggregated: string[] }
    }
    assert.equal(`0x${out.boot_info.mrAggregated}`, policy.kms.mrAggregated[0])
    // against Intel's real root the same certificate is refused
    const intel = await runCli(
      [
        'verify-attestation',
        '--cert',
        'data/certs/rpc.crt',
        '--collateral',
        'data/tee-simulator/collateral.json',
      ],
      dir,
    )
    assert.equal(intel.code, 1)
    assert.match(intel.stderr, /^dstack-kms verify-attestation: /)
  })

  it('sim-attest --quickstart prints an attestation of this mock platform', async () => {
    const r = await runCli(['sim-attest', '--quickstart', '--report-data', 'ab'.repeat(64)], dir)
    assert.equal(r.code, 0, r.stderr)
    const att = decodeVersionedAttestation(Buffer.from(r.stdout.trim(), 'hex')).attestation
    assert.deepEqual(att.reportData, Buffer.alloc(64, 0xab))
    assert.deepEqual(
      att.runtimeEvents.map((e) => e.event),
      ['system-preparing', 'app-id', 'compose-hash', 'instance-id', 'boot-mr-done'],
    )
  })

  it('demo-guest with a compose hash the policy does not list is denied, with the reason', async () => {
    const r = await runCli(['demo-guest', '--quickstart', '--compose-hash', 'ab'.repeat(32)], dir)
    assert.equal(r.code, 1)
    assert.match(r.stderr, /App not allowed: Boot denied: compose hash not allowed/)
    assert.equal(r.stdout, '')
  })
})
