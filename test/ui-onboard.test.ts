// The onboarding wizard's replicate path in Chromium against two real `dstack-kms serve`
// processes on the TEE simulator: a source KMS (auto-bootstrapped) and a fresh one onboarded from
// it through the page. Errors on the way: an unreachable source, a source that holds the call
// (the controls stay locked), a source this KMS's policy does not admit (nothing can be
// confirmed), a bad domain; then the replication, Finish, and the new KMS serving the source's
// keys.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Browser } from 'playwright-core'
import type { BootInfo } from '../src/attestation/boot-info.js'
import { pemDecode } from '../src/asn1/pem.js'
import {
  demoPolicy,
  simulatedDemoAppMrSystem,
  simulatedKmsBootInfo,
} from '../src/quickstart/demo.js'
import { focusedId, launchChromium, openWizard, textOf } from './helpers/browser.js'
import { prpc } from './helpers/https-client.js'
import { attestedConfigToml } from './helpers/kms-config.js'
import { freePort, startKms, tempDir, type KmsProcess } from './helpers/kms-process.js'

const hex0x = (b: Buffer) => `0x${b.toString('hex')}`

interface Meta {
  ca_cert: string
  k256_pubkey: string
}

async function getMeta(url: string): Promise<Meta> {
  const res = await prpc(url, 'GetMeta', '{}')
  assert.equal(res.status, 200, res.text)
  return JSON.parse(res.text) as Meta
}

const caFingerprint = (pem: string) =>
  createHash('sha256').update(pemDecode(pem, 'CERTIFICATE')).digest('hex')

/** A TCP server that accepts and then says nothing until told to hang up. */
async function silentServer(): Promise<{ port: number; hangUp(): void; close(): Promise<void> }> {
  const sockets: Socket[] = []
  const server: Server = createServer((s) => sockets.push(s))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  assert.ok(addr !== null && typeof addr === 'object')
  return {
    port: addr.port,
    hangUp: () => {
      for (const s of sockets.splice(0)) s.destroy()
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

describe('onboarding wizard in Chromium: replicate path on the TEE simulator', () => {
  // one simulated platform: both KMSs measure the same, so one policy can admit both
  const seedHex = randomBytes(32).toString('hex')
  const seed = Buffer.from(seedHex, 'hex')
  let browser: Browser
  let source: KmsProcess
  let receiver: KmsProcess
  let sourceUrl: string
  let base: string
  let receiverDir: string
  let receiverPolicy: string
  let kmsBoot: BootInfo
  let admitting: ReturnType<typeof demoPolicy>

  before(async () => {
    browser = await launchChromium()
    const sourceDir = tempDir()
    receiverDir = tempDir()
    kmsBoot = await simulatedKmsBootInfo(seed, join(sourceDir, 'tee-simulator'))
    admitting = demoPolicy(kmsBoot, await simulatedDemoAppMrSystem(seed))

    const sourcePolicy = join(sourceDir, 'auth-config.json')
    writeFileSync(sourcePolicy, JSON.stringify(admitting))
    const sourcePort = await freePort()
    sourceUrl = `https://localhost:${sourcePort}`
    source = startKms({
      dir: sourceDir,
      configToml: attestedConfigToml({
        dir: sourceDir,
        port: sourcePort,
        authPort: await freePort(),
        seed: seedHex,
        policyFile: sourcePolicy,
        autoBootstrapDomain: 'localhost',
      }),
    })

    // the receiver's policy starts without the source's measurement
    receiverPolicy = join(receiverDir, 'auth-config.json')
    writeFileSync(
      receiverPolicy,
      JSON.stringify({
        ...admitting,
        kms: { mrAggregated: [], devices: [], allowAnyDevice: false },
      }),
    )
    const port = await freePort()
    base = `https://localhost:${port}`
    receiver = startKms({
      dir: receiverDir,
      configToml: attestedConfigToml({
        dir: receiverDir,
        port,
        authPort: await freePort(),
        seed: seedHex,
        policyFile: receiverPolicy,
      }),
    })
    await source.waitForLog((l) => l.msg === 'KMS worker ready', 90_000)
    await receiver.waitForLog((l) => l.msg === 'onboarding worker ready', 90_000)
  })

  after(async () => {
    await browser?.close()
    for (const kms of [receiver, source]) {
      if (kms !== undefined && kms.proc.exitCode === null && kms.proc.signalCode === null) {
        kms.kill('SIGTERM')
        await kms.waitForExit()
      }
    }
  })

  it('inspects the source, refuses what must be refused, and replicates on confirmation', async () => {
    const sourceMeta = await getMeta(sourceUrl)
    const w = await openWizard(browser, base, 'onboard')
    const { page } = w
    await page.goto(`${base}/`)
    await page.locator('#kms-details').waitFor({ state: 'visible', timeout: 30_000 })
    await page.click('#kms-next')
    await page.click('#choose-onboard')
    assert.equal(await focusedId(page), 'onboard-source')
    const confirm = page.locator('#onboard-confirm')
    const inspectError = '#onboard-error'

    // an unreachable source: the reason, in place; nothing to confirm
    const closedPort = await freePort()
    await page.fill('#onboard-source', `https://127.0.0.1:${closedPort}`)
    await page.fill('#onboard-domain', 'localhost')
    await page.click('#inspect-submit')
    await page.locator(inspectError).waitFor({ state: 'visible', timeout: 30_000 })
    assert.match(
      await textOf(page, inspectError),
      new RegExp(`^error sending request for url \\(https://127\\.0\\.0\\.1:${closedPort}/prpc/`),
    )
    assert.equal(await page.locator('#source-identity').isVisible(), false)
    assert.equal(await confirm.isDisabled(), true)
    await w.snap('2-unreachable')

    // a source that holds the call: every control stays locked until it answers
    const silent = await silentServer()
    try {
      await page.fill('#onboard-source', `https://127.0.0.1:${silent.port}/`)
      await page.click('#inspect-submit')
      assert.equal(await page.locator(inspectError).isVisible(), false)
      for (const id of ['#inspect-submit', '#onboard-source', '#choose-bootstrap', '#mode-back']) {
        assert.equal(await page.locator(id).isDisabled(), true, id)
      }
      silent.hangUp()
      await page.locator(inspectError).waitFor({ state: 'visible', timeout: 30_000 })
      assert.equal(await page.locator('#inspect-submit').isDisabled(), false)
    } finally {
      silent.hangUp()
      await silent.close()
    }

    // the real source, not admitted by this KMS's policy: its verified identity, the policy's
    // reason, and no way to confirm
    await page.fill('#onboard-source', `${sourceUrl}/`)
    await page.click('#inspect-submit')
    await page.locator('#source-identity').waitFor({ state: 'visible', timeout: 30_000 })
    assert.equal(await textOf(page, '#src-url'), `${sourceUrl}/prpc`)
    assert.equal(await textOf(page, '#src-tee'), 'dstack-tdx')
    assert.equal(await textOf(page, '#src-mr'), hex0x(kmsBoot.mrAggregated))
    assert.equal(await textOf(page, '#src-device'), hex0x(kmsBoot.deviceId))
    assert.equal(await textOf(page, '#src-tcb'), 'UpToDate')
    assert.equal(await textOf(page, '#src-ca-fp'), caFingerprint(sourceMeta.ca_cert))
    assert.equal(await textOf(page, '#src-k256'), `0x${sourceMeta.k256_pubkey}`)
    assert.match(await textOf(page, '#source-admitted'), /^Not admitted by this KMS's policy: .*MR/)
    assert.equal(await confirm.isDisabled(), true)
    await w.snap('2-source-not-admitted')

    // once the policy lists it (auth-simple rereads the file), checking again admits it
    writeFileSync(receiverPolicy, JSON.stringify(admitting))
    await page.click('#inspect-submit')
    await page.getByText("Admitted by this KMS's policy.").waitFor({ timeout: 30_000 })
    assert.equal(await confirm.isDisabled(), false)
    await w.snap('2-source-admitted')

    // editing the URL withdraws the inspection: what is confirmed is what was shown
    await page.fill('#onboard-source', `${sourceUrl}/x`)
    assert.equal(await page.locator('#source-identity').isVisible(), false)
    assert.equal(await confirm.isDisabled(), true)
    await page.fill('#onboard-source', sourceUrl)
    await page.click('#inspect-submit')
    await page.getByText("Admitted by this KMS's policy.").waitFor({ timeout: 30_000 })

    // a bad domain: Onboard's own words, and nothing written
    await page.fill('#onboard-domain', 'bad_domain')
    await confirm.click()
    await page.getByText('domain contains an invalid DNS label').waitFor()
    assert.equal(existsSync(join(receiverDir, 'certs', 'root-ca.key')), false)

    // replicate
    await page.fill('#onboard-domain', 'localhost')
    await confirm.click()
    await page.locator('#step-result').waitFor({ state: 'visible', timeout: 90_000 })
    assert.equal(await textOf(page, '#res-onboard-k256'), `0x${sourceMeta.k256_pubkey}`)
    assert.equal(await textOf(page, '#res-onboard-ca-fp'), caFingerprint(sourceMeta.ca_cert))
    await w.snap('3-result')

    // Finish: the new KMS serves the source's key set on the page's origin
    await page.click('#result-next')
    await page.click('#finish-submit')
    await page.locator('#serving').waitFor({ state: 'visible', timeout: 90_000 })
    const meta = await getMeta(base)
    assert.equal(meta.k256_pubkey, sourceMeta.k256_pubkey)
    assert.equal(await textOf(page, '#serving-k256'), `0x${meta.k256_pubkey}`)
    assert.equal(await textOf(page, '#serving-ca-fp'), caFingerprint(meta.ca_cert))
    assert.equal(
      await textOf(page, '#serving-match'),
      'The serving KMS holds the key set shown in the result.',
    )
    assert.equal(await page.locator('#finish-submit').isVisible(), false)
    await w.snap('4-serving')
    assert.deepEqual(w.problems, [])
    await w.context.close()
  })
})
