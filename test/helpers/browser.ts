// Debian's Chromium driven by playwright-core, for the tests of the onboarding wizard: one
// launch per test file, pages at a phone's width, screenshots under test-output/ui/.
import assert from 'node:assert/strict'
import { existsSync, mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

const CHROMIUM = '/usr/bin/chromium'
export const SCREENSHOT_DIR = resolve(import.meta.dirname, '../../test-output/ui')

/** The width the wizard must stay readable at (a small phone). */
export const PHONE_WIDTH = 375

export async function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  assert.ok(
    existsSync(CHROMIUM),
    `${CHROMIUM} is missing: run scripts/setup-system.sh (installs Debian's chromium)`,
  )
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs,
    ],
  })
}

export interface WizardPage {
  context: BrowserContext
  page: Page
  /** requests that failed and uncaught page errors, to assert empty at the end */
  problems: string[]
  /** a full-page screenshot `<prefix>-<name>.png`, after checking nothing overflows sideways */
  snap(name: string): Promise<void>
}

/** A page on the wizard at phone width. The onboarding certificate is self-signed and the KMS's
 * own certificate chains to its fresh root, so certificate errors are accepted (an operator
 * compares the fingerprint instead). `offline` blocks every origin but the KMS's, so a page that
 * reached for a CDN would fail. */
export async function openWizard(
  browser: Browser,
  base: string,
  prefix: string,
): Promise<WizardPage> {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: PHONE_WIDTH, height: 900 },
    acceptDownloads: true,
  })
  const origin = new URL(base).origin
  await context.route('**/*', async (route) => {
    if (new URL(route.request().url()).origin === origin) await route.continue()
    else await route.abort('internetdisconnected')
  })
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin })
  const page = await context.newPage()
  const problems: string[] = []
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`))
  page.on('requestfailed', (r) => {
    // polling GetMeta while the onboarding worker hands the port over to the KMS fails by design
    if (!r.url().endsWith('/prpc/GetMeta?json')) problems.push(`requestfailed: ${r.url()}`)
  })
  mkdirSync(SCREENSHOT_DIR, { recursive: true })
  return {
    context,
    page,
    problems,
    async snap(name: string) {
      const width = await page.evaluate<number>('document.documentElement.scrollWidth')
      assert.ok(width <= PHONE_WIDTH, `${name}: the page is ${width} px wide at ${PHONE_WIDTH} px`)
      await page.screenshot({ path: join(SCREENSHOT_DIR, `${prefix}-${name}.png`), fullPage: true })
    },
  }
}

export function screenshotPath(name: string): string {
  mkdirSync(SCREENSHOT_DIR, { recursive: true })
  return join(SCREENSHOT_DIR, `${name}.png`)
}

/** The text of an element, trimmed ('' when it has none). */
export async function textOf(page: Page, selector: string): Promise<string> {
  return ((await page.locator(selector).textContent()) ?? '').trim()
}

/** The id of the element that has the keyboard focus ('' when it has none). */
export async function focusedId(page: Page): Promise<string> {
  return (await page.locator(':focus').getAttribute('id')) ?? ''
}
