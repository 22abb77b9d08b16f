// The onboarding page in a real browser (Debian's Chromium driven by playwright-core) against a
// real `dstack-kms serve`: load, attestation panel, Bootstrap, Finish, and the KMS coming up.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { chromium, type Browser } from 'playwright-core'
import { prpc } from './helpers/https-client.js'
import { testConfigToml } from './helpers/kms-config.js'
import { freePort, startKms, tempDir, type KmsProcess } from './helpers/kms-process.js'

const CHROMIUM = '/usr/bin/chromium'

describe('onboarding page in Chromium', () => {
  let browser: Browser
  let kms: KmsProcess
  let base: string
  let dir: string

  before(async () => {
    assert.ok(
      existsSync(CHROMIUM),
      `${CHROMIUM} is missing: run scripts/setup-system.sh (installs Debian's chromium)`,
    )
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    })
    dir = tempDir()
    const port = await freePort()
    base = `https://127.0.0.1:${port}`
    kms = startKms({ dir, configToml: testConfigToml({ dir, port }) })
    await kms.waitForLog((l) => l.msg === 'onboarding worker ready')
  })

  after(async () => {
    await browser?.close()
    if (kms.proc.exitCode === null && kms.proc.signalCode === null) {
      kms.kill('SIGTERM')
      await kms.waitForExit()
    }
  })

  it('bootstraps and finishes through the page', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true })
    const page = await context.newPage()
    const failed: string[] = []
    page.on('requestfailed', (r) => failed.push(r.url()))
    page.on('pageerror', (e) => failed.push(`pageerror: ${e.message}`))
    await page.goto(`${base}/`)

    // the attestation panel loads (no TEE: empty measurements, the configured site name)
    await page.locator('#attestation-fields').waitFor({ state: 'visible' })
    assert.equal(await page.title(), 'e2e-site')
    assert.equal(await page.locator('#title').textContent(), 'e2e-site')
    assert.equal(await page.locator('#chain').isVisible(), false)

    // a bad domain shows the KMS's error and writes nothing
    await page.click('#show-bootstrap')
    await page.fill('#bootstrap-domain', 'bad_domain')
    await page.click('#bootstrap-submit')
    await page.locator('#error').waitFor({ state: 'visible' })
    assert.equal(await page.locator('#error').textContent(), 'domain contains an invalid DNS label')
    assert.equal(existsSync(join(dir, 'certs', 'root-ca.key')), false)

    // the onboard form surfaces the not-implemented error
    await page.click('#bootstrap-form .back')
    assert.equal(await page.locator('#error').isVisible(), false)
    await page.click('#show-onboard')
    await page.fill('#onboard-source', 'https://source.example:8000/')
    await page.fill('#onboard-domain', 'kms.example.com')
    await page.click('#onboard-submit')
    await page.locator('#error').waitFor({ state: 'visible' })
    assert.match(String(await page.locator('#error').textContent()), /^Failed to onboard: /)

    // bootstrap
    await page.click('#onboard-form .back')
    await page.click('#show-bootstrap')
    await page.fill('#bootstrap-domain', 'localhost')
    await page.click('#bootstrap-submit')
    await page.locator('#result').waitFor({ state: 'visible' })
    assert.equal(await page.locator('#result-title').textContent(), 'Bootstrap successful!')
    const shown = JSON.parse(await page.locator('#result-json').inputValue()) as Record<
      string,
      string
    >
    assert.deepEqual(Object.keys(shown), ['caPubkey', 'k256Pubkey', 'attestation'])
    assert.match(shown.caPubkey ?? '', /^0x3059/)
    assert.match(shown.k256Pubkey ?? '', /^0x0[23][0-9a-f]{64}$/)
    assert.equal(shown.attestation, '')

    // finish: the page says so and the main KMS comes up with the keys the page showed
    await page.click('#finish')
    await page.locator('#done').waitFor({ state: 'visible' })
    await kms.waitForLog((l) => l.msg === 'KMS worker ready')
    const meta = JSON.parse((await prpc(base, 'GetMeta', '{}')).text) as Record<string, unknown>
    assert.equal(`0x${String(meta.k256_pubkey)}`, shown.k256Pubkey)
    assert.deepEqual(failed, [])
    await context.close()
  })
})
