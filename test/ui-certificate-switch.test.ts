// The wizard's Finish step when the browser cannot follow the KMS: Chromium trusting only the
// onboarding certificate (as an operator who accepted it) is refused by the KMS's own
// certificate after the switch, and the page must say what to do; a plain-HTTP onboarding page
// (`[core.onboard] tls = false`) cannot reach the HTTPS KMS at all. Both on a KMS without a TEE,
// which the first step must present as such.
import assert from 'node:assert/strict'
import { createHash, X509Certificate } from 'node:crypto'
import { after, describe, it } from 'node:test'
import type { Browser } from 'playwright-core'
import { launchChromium, openWizard, screenshotPath, textOf } from './helpers/browser.js'
import { prpc, rawRequest } from './helpers/https-client.js'
import { testConfigToml } from './helpers/kms-config.js'
import { freePort, startKms, tempDir, type KmsProcess } from './helpers/kms-process.js'

const started: KmsProcess[] = []
const browsers: Browser[] = []

async function startNoTeeKms(onboard: string): Promise<{ kms: KmsProcess; port: number }> {
  const dir = tempDir()
  const port = await freePort()
  const kms = startKms({ dir, configToml: testConfigToml({ dir, port, onboard }) })
  started.push(kms)
  await kms.waitForLog((l) => l.msg === 'onboarding worker ready')
  return { kms, port }
}

after(async () => {
  for (const b of browsers) await b.close()
  for (const kms of started) {
    if (kms.proc.exitCode === null && kms.proc.signalCode === null) {
      kms.kill('SIGTERM')
      await kms.waitForExit()
    }
  }
})

describe('onboarding wizard when the browser cannot follow the KMS', () => {
  it('tells an operator whose browser refuses the new certificate where to accept it', async () => {
    const { kms, port } = await startNoTeeKms('')
    const base = `https://localhost:${port}`
    // trust exactly the onboarding certificate, by its public key, as an operator does who
    // compared its fingerprint and accepted it
    const served = await rawRequest({ url: `${base}/health` })
    const spki = new X509Certificate(served.peerCertDer ?? Buffer.alloc(0)).publicKey.export({
      type: 'spki',
      format: 'der',
    })
    const spkiHash = createHash('sha256').update(spki).digest('base64')
    const browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spkiHash}`])
    browsers.push(browser)
    const context = await browser.newContext({ viewport: { width: 375, height: 900 } })
    const page = await context.newPage()
    const refusals: string[] = []
    page.on('requestfailed', (r) => refusals.push(r.failure()?.errorText ?? ''))
    await page.goto(`${base}/`)

    // no TEE: no measurements to authorise, said plainly
    await page.locator('#kms-details').waitFor({ state: 'visible' })
    assert.equal(await textOf(page, '#id-tee'), '(none)')
    assert.equal(await page.locator('#kms-no-tee').isVisible(), true)
    assert.equal(await page.locator('#authorise-panel').isVisible(), false)

    await page.click('#kms-next')
    await page.click('#choose-bootstrap')
    await page.fill('#bootstrap-domain', 'localhost')
    await page.click('#bootstrap-submit')
    await page.locator('#step-result').waitFor({ state: 'visible' })
    assert.equal(await textOf(page, '#res-attestation'), '(none: no TEE)')
    await page.click('#result-next')
    await page.click('#finish-submit')

    // the KMS is up and answers, but not to this browser
    await kms.waitForLog((l) => l.msg === 'KMS worker ready', 60_000)
    assert.equal((await prpc(base, 'GetMeta', '{}')).status, 200)
    await page.locator('#finish-hint').waitFor({ state: 'visible', timeout: 60_000 })
    const link = page.locator('#finish-hint a.meta-link')
    assert.equal(await link.getAttribute('href'), `${base}/prpc/GetMeta?json`)
    assert.match(await textOf(page, '#finish-status'), /^Waiting for the KMS to start \(\d+ s; /)
    assert.equal(await page.locator('#serving').isVisible(), false)
    assert.equal(await page.locator('#finish-error').isVisible(), false)
    // and it is the certificate the browser refuses, not a KMS that is down
    assert.ok(refusals.includes('net::ERR_CERT_AUTHORITY_INVALID'), refusals.join(', '))
    await page.screenshot({ path: screenshotPath('switch-refused-certificate'), fullPage: true })
    await context.close()
  })

  it('a plain-HTTP onboarding page points to the HTTPS KMS instead of polling it', async () => {
    const { kms, port } = await startNoTeeKms('tls = false')
    const browser = await launchChromium()
    browsers.push(browser)
    const w = await openWizard(browser, `http://127.0.0.1:${port}`, 'plain-http')
    const { page } = w
    await page.goto(`http://127.0.0.1:${port}/`)
    await page.locator('#kms-details').waitFor({ state: 'visible' })
    assert.equal(await page.locator('#cert-plain').isVisible(), true)
    assert.equal(await page.locator('#cert-tls').isVisible(), false)
    await w.snap('1-this-kms')

    await page.click('#kms-next')
    await page.click('#choose-bootstrap')
    await page.fill('#bootstrap-domain', 'localhost')
    await page.click('#bootstrap-submit')
    await page.locator('#step-result').waitFor({ state: 'visible' })
    await page.click('#result-next')
    await page.click('#finish-submit')
    await page.locator('#finish-plain').waitFor({ state: 'visible' })
    assert.equal(
      await page.locator('#finish-plain a.meta-link').getAttribute('href'),
      `https://127.0.0.1:${port}/prpc/GetMeta?json`,
    )
    assert.equal(await page.locator('#finish-submit').isVisible(), false)
    await kms.waitForLog((l) => l.msg === 'KMS worker ready', 60_000)
    assert.equal((await prpc(`https://127.0.0.1:${port}`, 'GetMeta', '{}')).status, 200)
    await w.snap('4-finish')
    assert.deepEqual(w.problems, [])
    await w.context.close()
  })
})
