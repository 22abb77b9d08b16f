// The onboarding wizard in a real browser (Debian's Chromium driven by playwright-core) against a
// real `dstack-kms serve` on the TEE simulator, through every step of the bootstrap path: the
// attested identity and the policy values it prints (which, pasted into the policy, really
// admit the KMS), a bad domain, a KMS its policy refuses, Bootstrap, the bootstrap-info.json
// download, Finish, and the main KMS answering on the same port.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
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
import { mockIntelPki } from '../src/tee/simulator/mock-pki.js'
import { focusedId, launchChromium, openWizard, textOf } from './helpers/browser.js'
import { prpc } from './helpers/https-client.js'
import { attestedConfigToml } from './helpers/kms-config.js'
import { freePort, startKms, tempDir, type KmsProcess } from './helpers/kms-process.js'

const hex0x = (b: Buffer) => `0x${b.toString('hex')}`

describe('onboarding wizard in Chromium: bootstrap path on the TEE simulator', () => {
  const seedHex = randomBytes(32).toString('hex')
  const seed = Buffer.from(seedHex, 'hex')
  let browser: Browser
  let kms: KmsProcess
  let base: string
  let dir: string
  let policyFile: string
  let kmsBoot: BootInfo
  let admitting: ReturnType<typeof demoPolicy>

  before(async () => {
    browser = await launchChromium()
    dir = tempDir()
    policyFile = join(dir, 'auth-config.json')
    kmsBoot = await simulatedKmsBootInfo(seed, join(dir, 'tee-simulator'))
    admitting = demoPolicy(kmsBoot, await simulatedDemoAppMrSystem(seed))
    // the KMS starts unknown to its own policy: the wizard must tell the operator what to add
    writeFileSync(
      policyFile,
      JSON.stringify({
        ...admitting,
        osImages: [],
        kms: { mrAggregated: [], devices: [], allowAnyDevice: false },
      }),
    )
    const port = await freePort()
    base = `https://localhost:${port}`
    kms = startKms({
      dir,
      configToml: attestedConfigToml({
        dir,
        port,
        authPort: await freePort(),
        seed: seedHex,
        policyFile,
      }),
    })
    await kms.waitForLog((l) => l.msg === 'onboarding worker ready', 60_000)
  })

  after(async () => {
    await browser?.close()
    if (kms.proc.exitCode === null && kms.proc.signalCode === null) {
      kms.kill('SIGTERM')
      await kms.waitForExit()
    }
  })

  it('leads from the attested identity to a serving KMS', async () => {
    const w = await openWizard(browser, base, 'bootstrap')
    const { page } = w
    await page.goto(`${base}/`)

    // 1. This KMS: the verified measurements, the onboarding certificate, the policy values
    await page.locator('#kms-details').waitFor({ state: 'visible', timeout: 30_000 })
    assert.equal(await page.title(), 'attested-site')
    assert.equal(await textOf(page, '#stepper [aria-current="step"]'), 'This KMS')
    assert.equal(await textOf(page, '#id-tee'), 'dstack-tdx')
    assert.equal(await textOf(page, '#id-mr'), hex0x(kmsBoot.mrAggregated))
    assert.equal(await textOf(page, '#id-device'), hex0x(kmsBoot.deviceId))
    assert.equal(await textOf(page, '#id-os'), hex0x(kmsBoot.osImageHash))
    assert.equal(await textOf(page, '#id-ppid'), mockIntelPki(seed).ppid.toString('hex'))
    const logged = await kms.waitForLog((l) => typeof l.fingerprint === 'string')
    assert.equal(await textOf(page, '#id-cert-fp'), logged.fingerprint)
    const calls = await page.locator('#onchain-calls').innerText()
    assert.match(
      calls,
      new RegExp(`addKmsAggregatedMr\\(bytes32\\)\\s+${hex0x(kmsBoot.mrAggregated)}`),
    )
    assert.match(calls, new RegExp(`addKmsDevice\\(bytes32\\)\\s+${hex0x(kmsBoot.deviceId)}`))
    assert.match(calls, new RegExp(`addOsImageHash\\(bytes32\\)\\s+${hex0x(kmsBoot.osImageHash)}`))
    // the copy button puts the snippet on the clipboard
    await page.click('button[data-copy="auth-simple-snippet"]')
    await page.getByText('Copied').first().waitFor()
    const snippet = await page.evaluate<string>('navigator.clipboard.readText()')
    assert.equal(snippet, await textOf(page, '#auth-simple-snippet'))
    await w.snap('1-this-kms')

    // keyboard: Continue, then the Bootstrap choice
    await page.focus('#kms-next')
    await page.keyboard.press('Enter')
    await page.locator('#step-mode').waitFor({ state: 'visible' })
    assert.equal(await focusedId(page), 'step-mode-title')
    await page.keyboard.press('Tab')
    assert.equal(await focusedId(page), 'choose-bootstrap')
    await page.keyboard.press('Enter')
    assert.equal(await focusedId(page), 'bootstrap-domain')

    // 2. a bad domain: the KMS's own words, in place, and nothing written
    await page.keyboard.type('bad_domain')
    await page.keyboard.press('Enter')
    await page.locator('#bootstrap-error').waitFor({ state: 'visible' })
    assert.equal(await textOf(page, '#bootstrap-error'), 'domain contains an invalid DNS label')
    assert.equal(existsSync(join(dir, 'certs', 'root-ca.key')), false)

    // a KMS its policy does not list cannot bootstrap
    await page.fill('#bootstrap-domain', 'localhost')
    await page.click('#bootstrap-submit')
    await page.getByText('KMS is not allowed to bootstrap').waitFor()
    assert.match(await textOf(page, '#bootstrap-error'), /^KMS is not allowed to bootstrap: /)
    assert.equal(existsSync(join(dir, 'certs', 'root-ca.key')), false)
    await w.snap('2-bootstrap-refused')

    // the copied snippet, merged into the policy, is what admits it (auth-simple rereads it)
    const values = JSON.parse(snippet) as {
      osImages: string[]
      kms: { mrAggregated: string[]; devices: string[] }
    }
    writeFileSync(
      policyFile,
      JSON.stringify({
        ...admitting,
        osImages: values.osImages,
        kms: { ...values.kms, allowAnyDevice: false },
      }),
    )
    // the controls stay disabled while the call is out (held here until checked)
    let release = () => {}
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    await page.route('**/prpc/Onboard.Bootstrap?json', async (route) => {
      await held
      await route.continue()
    })
    await page.click('#bootstrap-submit')
    for (const id of ['#bootstrap-submit', '#bootstrap-domain', '#choose-onboard', '#mode-back']) {
      assert.equal(await page.locator(id).isDisabled(), true, id)
    }
    release()

    // 3. Result: the keys as stored, and bootstrap-info.json byte for byte
    await page.locator('#step-result').waitFor({ state: 'visible', timeout: 60_000 })
    const stored = readFileSync(join(dir, 'certs', 'bootstrap-info.json'))
    const info = JSON.parse(stored.toString('utf8')) as Record<string, string>
    assert.equal(await textOf(page, '#res-ca-pubkey'), `0x${info.ca_pubkey}`)
    assert.equal(await textOf(page, '#res-k256'), `0x${info.k256_pubkey}`)
    assert.equal(await textOf(page, '#res-attestation'), `0x${info.attestation}`)
    assert.ok((info.attestation ?? '').length > 1000)
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click('#download-bootstrap-info'),
    ])
    assert.equal(download.suggestedFilename(), 'bootstrap-info.json')
    const saved = join(dir, 'downloaded-bootstrap-info.json')
    await download.saveAs(saved)
    assert.deepEqual(readFileSync(saved), stored)
    await w.snap('3-result')

    // 4. Finish: the onboarding worker stops, the KMS starts on the same port with its own
    // certificate, and the page follows it
    await page.click('#result-next')
    await page.locator('#step-finish').waitFor({ state: 'visible' })
    await w.snap('4-finish')
    await page.click('#finish-submit')
    await page.locator('#serving').waitFor({ state: 'visible', timeout: 90_000 })
    await kms.waitForLog((l) => l.msg === 'KMS worker ready')
    const meta = JSON.parse((await prpc(base, 'GetMeta', '{}')).text) as Record<string, string>
    assert.equal(await textOf(page, '#serving-k256'), `0x${meta.k256_pubkey}`)
    assert.equal(meta.k256_pubkey, info.k256_pubkey)
    const caFingerprint = createHash('sha256')
      .update(pemDecode(meta.ca_cert ?? '', 'CERTIFICATE'))
      .digest('hex')
    assert.equal(await textOf(page, '#serving-ca-fp'), caFingerprint)
    assert.equal(
      await textOf(page, '#serving-match'),
      'The serving KMS holds the key set shown in the result.',
    )
    assert.equal(await page.locator('#finish-hint').isVisible(), false)
    assert.equal(await page.locator('#finish-submit').isVisible(), false)
    assert.equal(await page.locator('#unauthenticated-warning').isVisible(), false)
    await w.snap('5-serving')
    assert.deepEqual(w.problems, [])
    await w.context.close()
  })
})
