// Secrets never reach the logs: a quick-start KMS (supervisor, auth-simple sidecar, onboarding and
// main workers as real child processes; the KMS and its sidecar sharing a bearer secret)
// bootstraps, releases app keys to a simulated guest over RA-TLS, clears the cache with the admin
// token and refuses malformed requests; then every line it wrote is searched for its root keys,
// the simulator seed, the derived app keys, the admin token, the bearer secret and the request
// bodies. (Every other e2e run is scanned for the key files too, by test/helpers/kms-process.ts,
// when its KMS exits.) The run's audit log must verify afterwards.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { DEMO_APP_ID, demoAppGuest, requestSimulatedGuestKeys } from '../src/quickstart/demo.js'
import { prpc } from './helpers/https-client.js'
import { tempDir, type KmsProcess } from './helpers/kms-process.js'
import {
  bootstrapQuickstart,
  quickstartSeed,
  runCli,
  startQuickstartKms,
} from './helpers/quickstart-kms.js'
import { bytesSecret, findLeaks, secretsUnder, textSecret } from './helpers/secret-scan.js'

describe('secrets never logged (quick-start KMS, every RPC)', () => {
  let dir: string
  let kms: KmsProcess
  let base: string
  let adminToken: string

  let bearerSecret: string

  before(async () => {
    // the KMS and its sidecar share a bearer secret, which must stay out of the logs too
    bearerSecret = randomBytes(32).toString('hex')
    const tokenFile = join(tempDir(), 'bearer.token')
    writeFileSync(tokenFile, `${bearerSecret}\n`, { mode: 0o600 })
    ;({ kms, dir, base } = await startQuickstartKms({
      env: { RUST_LOG: 'debug' },
      extraToml: `[core.auth_api.webhook]\ntoken_file = "${tokenFile}"\n[auth_simple]\ntoken_file = "${tokenFile}"\n`,
    }))
    kms.addSecrets(textSecret('webhook bearer secret', bearerSecret))
    const token = /admin token for ClearImageCache[^\n]*\n\s+([0-9a-f]{64})/.exec(
      kms.stderr.join(''),
    )
    assert.ok(token?.[1] !== undefined, 'the quick start prints its admin token once')
    adminToken = token[1]
  })

  after(async () => {
    kms.kill('SIGTERM')
    await kms.waitForExit()
  })

  it('bootstraps, releases keys, refuses bad requests, and no log line carries a secret', async () => {
    await bootstrapQuickstart({ kms, dir, base })

    // GetAppKey over RA-TLS, like a guest
    const seed = quickstartSeed(dir)
    const { keys } = await requestSimulatedGuestKeys({
      kmsUrl: base,
      guest: demoAppGuest(seed),
    })
    assert.equal(keys.diskCryptKey.length, 32)
    kms.addSecrets(
      bytesSecret('disk_crypt_key', keys.diskCryptKey),
      bytesSecret('env_crypt_key', keys.envCryptKey),
      bytesSecret('k256_key', keys.k256Key),
    )

    // the temp CA key is handed out by design, but never logged
    assert.equal((await prpc(base, 'GetTempCaCert', '{}')).status, 200)
    assert.equal((await prpc(base, 'GetMeta', '{}')).status, 200)

    // request bodies, accepted and refused, must not be logged
    const canary = `canary-${randomBytes(24).toString('hex')}`
    const bodies = [
      JSON.stringify({ api_version: 1, vm_config: `{"note":"${canary}-a"}` }),
      JSON.stringify({ vm_config: `${canary}-b` }),
      JSON.stringify({
        api_version: 2,
        csr: Buffer.from(`${canary}-c`).toString('hex'),
        signature: '00'.repeat(64),
        vm_config: '',
      }),
      JSON.stringify({ app_id: Buffer.from(`${canary}-d`).toString('hex') }),
    ]
    for (const [method, body] of [
      ['GetAppKey', bodies[0]],
      ['GetKmsKey', bodies[1]],
      ['SignCert', bodies[2]],
      ['GetAppEnvEncryptPubKey', bodies[3]],
    ] as const) {
      const r = await prpc(base, method, body ?? '')
      assert.equal(r.status, 400, `${method} must refuse: ${r.text}`)
      kms.addSecrets(textSecret(`${method} request body`, body ?? ''))
    }
    kms.addSecrets(textSecret('request canary', canary))

    // the admin token in a request body: accepted once, refused when wrong
    const clear = await prpc(
      base,
      'ClearImageCache',
      JSON.stringify({ token: adminToken, image_hash: 'all', config_hash: '' }),
    )
    assert.equal(clear.status, 200, clear.text)
    const wrongToken = randomBytes(32).toString('hex')
    const refused = await prpc(
      base,
      'ClearImageCache',
      JSON.stringify({ token: wrongToken, image_hash: 'all', config_hash: '' }),
    )
    assert.equal(refused.status, 400)
    kms.addSecrets(textSecret('wrong admin token', wrongToken))

    // an unauthenticated env-key lookup is fine to log by app id; the env key itself is secret
    assert.equal(
      (
        await prpc(
          base,
          'GetAppEnvEncryptPubKey',
          JSON.stringify({ app_id: DEMO_APP_ID.toString('hex') }),
        )
      ).status,
      200,
    )

    // let the last log lines arrive
    await new Promise((resolve) => setTimeout(resolve, 500))
    const jsonLines = kms.logs.map((l) => JSON.stringify(l))
    assert.ok(jsonLines.length > 20, `expected a real log, got ${jsonLines.length} lines`)
    assert.deepEqual(kms.secretLeaks(), [])
    // the admin token: printed to stderr exactly once at first start, never in the JSON log
    assert.deepEqual(findLeaks(jsonLines, [textSecret('admin token', adminToken)]), [])
    assert.equal(kms.stderr.join('').split(adminToken).length - 1, 1)
  })

  it('the scan itself finds a planted key (it can fail)', () => {
    const secrets = secretsUnder(dir)
    const names = secrets.map((s) => s.name)
    for (const f of [
      'root-ca.key',
      'root-k256.key',
      'tmp-ca.key',
      'rpc.key',
      'tee-simulator.seed',
    ]) {
      assert.ok(
        names.some((n) => n.includes(f)),
        `${f} is among the scanned secrets: ${names.join(', ')}`,
      )
    }
    const rootCa = secrets.find((s) => s.name.endsWith('root-ca.key (scalar)'))
    const planted = [`{"msg":"oops","key":"${rootCa?.needles[0] ?? ''}"}`]
    assert.equal(findLeaks(planted, secrets).length, 1)
  })

  it('the release was audited and the audit chain verifies', async () => {
    const verify = await runCli(['audit', 'verify', '--quickstart'], dir)
    assert.equal(verify.code, 0, verify.stdout)
    const tail = await runCli(
      ['audit', 'tail', '--quickstart', '--app-id', DEMO_APP_ID.toString('hex')],
      dir,
    )
    assert.equal(tail.code, 0)
    const rows = tail.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { rpc: string; decision: string })
    assert.ok(rows.some((r) => r.rpc === 'GetAppKey' && r.decision === 'release'))
  })
})
