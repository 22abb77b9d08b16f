// The onboarding wizard: This KMS → Bootstrap or replicate → Result → Finish. One step is shown
// at a time; each action disables its step's controls while in flight and reports failures next
// to the control that caused them.
import * as api from './api.js'
import { byId, fieldRow, inFlight, setText, showError, wireCopyButtons } from './dom.js'
import {
  authSimpleSnippet,
  certFingerprint,
  hex0x,
  normaliseSourceUrl,
  onChainRegistration,
} from './format.js'

type Step = 'kms' | 'mode' | 'result' | 'finish'
const STEPS: Step[] = ['kms', 'mode', 'result', 'finish']

function showStep(step: Step, focus = true): void {
  for (const s of STEPS) byId(`step-${s}`).hidden = s !== step
  for (const li of byId('stepper').querySelectorAll<HTMLElement>('li')) {
    if (li.dataset.step === step) li.setAttribute('aria-current', 'step')
    else li.removeAttribute('aria-current')
  }
  // keyboard and screen-reader users land on the new step, not at the end of the old one
  if (focus) byId(`step-${step}-title`).focus()
}

// ---------------------------------------------------------------------------------------------
// Step 1: This KMS

async function loadThisKms(): Promise<void> {
  let info: api.AttestationInfo
  try {
    info = await api.getAttestationInfo()
  } catch (err) {
    byId('kms-status').hidden = true
    showError('kms-error', `Attestation info: ${err instanceof Error ? err.message : String(err)}`)
    return
  }
  if (info.siteName !== '') {
    setText('title', info.siteName)
    document.title = info.siteName
  }
  byId('kms-status').hidden = true
  byId('kms-details').hidden = false

  const identity = byId('kms-identity')
  fieldRow(identity, 'TEE variant', 'id-tee', info.teeVariant === '' ? '(none)' : info.teeVariant)
  fieldRow(identity, 'Device ID', 'id-device', hex0x(info.deviceId), true)
  fieldRow(identity, 'MR aggregated', 'id-mr', hex0x(info.mrAggregated), true)
  fieldRow(identity, 'OS image hash', 'id-os', hex0x(info.osImageHash), true)
  if (info.ppid !== '') fieldRow(identity, 'PPID', 'id-ppid', info.ppid, true)

  if (info.onboardCertFingerprint === '') {
    byId('cert-plain').hidden = location.protocol !== 'http:'
    byId('cert-tls').hidden = true
    if (location.protocol !== 'http:') byId('cert-panel').hidden = true
  } else {
    fieldRow(byId('cert-fields'), 'SHA-256', 'id-cert-fp', info.onboardCertFingerprint, true)
  }

  const measured = info.mrAggregated !== ''
  byId('kms-no-tee').hidden = measured
  byId('authorise-panel').hidden = !measured
  if (measured) {
    setText('auth-simple-snippet', authSimpleSnippet(info))
    const chain = byId('chain-fields')
    if (info.kmsContractAddress !== '') {
      fieldRow(chain, 'KMS contract', 'chain-contract', info.kmsContractAddress, true)
    }
    if (info.ethRpcUrl !== '') fieldRow(chain, 'ETH RPC URL', 'chain-rpc', info.ethRpcUrl)
    const calls = byId('onchain-calls')
    onChainRegistration(info).forEach((c, i) => {
      fieldRow(calls, c.signature, `onchain-${i}`, c.value, true)
    })
  }
}

// ---------------------------------------------------------------------------------------------
// Step 2: Bootstrap or replicate

function chooseMode(mode: 'bootstrap' | 'onboard'): void {
  byId('bootstrap-form').hidden = mode !== 'bootstrap'
  byId('onboard-form').hidden = mode !== 'onboard'
  byId('choose-bootstrap').setAttribute('aria-pressed', String(mode === 'bootstrap'))
  byId('choose-onboard').setAttribute('aria-pressed', String(mode === 'onboard'))
  showError('bootstrap-error', '')
  showError('onboard-error', '')
  byId<HTMLInputElement>(mode === 'bootstrap' ? 'bootstrap-domain' : 'onboard-source').focus()
}

function inputValue(id: string): string {
  return byId<HTMLInputElement>(id).value.trim()
}

/** The source as inspected; Onboard goes to exactly this URL, and only while the form still
 * shows what was inspected. */
let inspected: api.SourceIdentity | null = null

function forgetInspection(): void {
  inspected = null
  byId('source-identity').hidden = true
  byId<HTMLButtonElement>('onboard-confirm').disabled = true
}

function showSource(src: api.SourceIdentity): void {
  const list = byId('source-fields')
  list.replaceChildren()
  fieldRow(list, 'Source URL', 'src-url', src.sourceUrl)
  fieldRow(list, 'TEE variant', 'src-tee', src.teeVariant)
  fieldRow(list, 'MR aggregated', 'src-mr', hex0x(src.mrAggregated), true)
  fieldRow(list, 'Device ID', 'src-device', hex0x(src.deviceId), true)
  fieldRow(list, 'OS image hash', 'src-os', hex0x(src.osImageHash), true)
  fieldRow(list, 'TCB status', 'src-tcb', src.tcbStatus)
  fieldRow(
    list,
    'Advisories',
    'src-advisories',
    src.advisoryIds.length === 0 ? '(none)' : src.advisoryIds.join(', '),
  )
  fieldRow(list, 'CA certificate SHA-256', 'src-ca-fp', src.caCertFingerprint, true)
  fieldRow(list, 'Root k256 public key', 'src-k256', hex0x(src.k256Pubkey), true)
  const verdict = byId('source-admitted')
  verdict.className = `verdict ${src.allowed ? 'ok' : 'denied'}`
  verdict.textContent = src.allowed
    ? "Admitted by this KMS's policy."
    : `Not admitted by this KMS's policy: ${src.reason === '' ? '(no reason given)' : src.reason}`
  byId('source-identity').hidden = false
  byId<HTMLButtonElement>('onboard-confirm').disabled = !src.allowed
  byId('source-title').focus()
}

async function inspect(): Promise<void> {
  forgetInspection()
  const source = inputValue('onboard-source')
  if (source === '') throw new Error('Enter the URL of the source KMS')
  if (inputValue('onboard-domain') === '') throw new Error('Enter the domain name of this KMS')
  const src = await api.inspectSource(normaliseSourceUrl(source))
  inspected = src
  showSource(src)
}

// ---------------------------------------------------------------------------------------------
// Step 3: Result

let downloadUrl: string | null = null

function showBootstrapResult(r: api.BootstrapResult): void {
  const list = byId('bootstrap-fields')
  fieldRow(list, 'CA public key', 'res-ca-pubkey', hex0x(r.caPubkey), true)
  fieldRow(list, 'k256 public key', 'res-k256', hex0x(r.k256Pubkey), true)
  fieldRow(
    list,
    'Attestation',
    'res-attestation',
    r.attestation === '' ? '(none: no TEE)' : hex0x(r.attestation),
    r.attestation !== '',
  )
  if (downloadUrl !== null) URL.revokeObjectURL(downloadUrl)
  downloadUrl = URL.createObjectURL(new Blob([r.json], { type: 'application/json' }))
  byId<HTMLAnchorElement>('download-bootstrap-info').href = downloadUrl
  byId('result-bootstrap').hidden = false
  showStep('result')
}

function showOnboardResult(k256Pubkey: string, src: api.SourceIdentity): void {
  const list = byId('onboard-fields')
  fieldRow(list, 'Shared k256 public key', 'res-onboard-k256', hex0x(k256Pubkey), true)
  fieldRow(
    list,
    'CA certificate SHA-256 (source)',
    'res-onboard-ca-fp',
    src.caCertFingerprint,
    true,
  )
  byId('result-onboard').hidden = false
  showStep('result')
}

/** The keys Result showed, to check the serving KMS against. */
let expectedK256 = ''

// ---------------------------------------------------------------------------------------------
// Step 4: Finish

const POLL_INTERVAL_MS = 1000
/** how long the handover normally takes before the page suspects the certificate switch */
const HINT_AFTER_MS = 15_000

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls the main KMS's GetMeta on this origin. Failures are expected while the onboarding
 * worker stops and the KMS starts, so they are shown as progress, not errors; if they last,
 * the browser is probably refusing the KMS's new certificate, which only the operator can
 * accept. */
async function waitForKms(): Promise<api.Meta> {
  const started = Date.now()
  for (;;) {
    try {
      return await api.getMeta()
    } catch (err) {
      const waited = Math.round((Date.now() - started) / 1000)
      setText(
        'finish-status',
        `Waiting for the KMS to start (${waited} s; last answer: ${err instanceof Error ? err.message : String(err)})`,
      )
      if (Date.now() - started >= HINT_AFTER_MS) byId('finish-hint').hidden = false
    }
    await sleep(POLL_INTERVAL_MS)
  }
}

/** Where the KMS answers GetMeta: always HTTPS, whatever the onboarding listener spoke. */
function showMetaLinks(): void {
  const href = `https://${location.host}/prpc/GetMeta?json`
  for (const a of document.querySelectorAll<HTMLAnchorElement>('a.meta-link')) {
    a.href = href
    a.textContent = href
  }
}

async function finishSetup(): Promise<void> {
  await api.finish()
  showMetaLinks()
  byId('finish-submit').hidden = true
  byId('unauthenticated-warning').hidden = true
  if (location.protocol === 'http:') {
    byId('finish-plain').hidden = false
    return
  }
  setText('finish-status', 'Onboarding finished; waiting for the KMS to start...')
  const meta = await waitForKms()
  byId('finish-hint').hidden = true
  setText('finish-status', '')
  const list = byId('serving-fields')
  fieldRow(list, 'CA certificate SHA-256', 'serving-ca-fp', certFingerprint(meta.caCert), true)
  fieldRow(list, 'k256 public key', 'serving-k256', hex0x(meta.k256Pubkey), true)
  const match = byId('serving-match')
  if (meta.k256Pubkey === expectedK256) {
    match.className = 'verdict ok'
    match.textContent = 'The serving KMS holds the key set shown in the result.'
  } else {
    match.className = 'verdict denied'
    match.textContent = `The serving KMS's k256 key differs from the result (${hex0x(expectedK256)}): another KMS may be answering on this port.`
  }
  byId('serving').hidden = false
}

// ---------------------------------------------------------------------------------------------

function wire(): void {
  wireCopyButtons(document)
  byId('kms-next').addEventListener('click', () => showStep('mode'))
  byId('mode-back').addEventListener('click', () => showStep('kms'))
  byId('choose-bootstrap').addEventListener('click', () => chooseMode('bootstrap'))
  byId('choose-onboard').addEventListener('click', () => chooseMode('onboard'))

  const stepMode = byId<HTMLFieldSetElement>('mode-controls')
  byId('bootstrap-form').addEventListener('submit', (ev) => {
    ev.preventDefault()
    inFlight(stepMode, 'bootstrap-error', async () => {
      const r = await api.bootstrap(inputValue('bootstrap-domain'))
      expectedK256 = r.k256Pubkey
      showBootstrapResult(r)
    })
  })

  // the identity shown must be the one of the URL Onboard will use
  byId('onboard-source').addEventListener('input', forgetInspection)
  byId('onboard-form').addEventListener('submit', (ev) => {
    ev.preventDefault()
    inFlight(stepMode, 'onboard-error', inspect)
  })
  byId('onboard-confirm').addEventListener('click', () => {
    const src = inspected
    if (src === null) return
    inFlight(stepMode, 'onboard-error', async () => {
      const r = await api.onboard(src.sourceUrl, inputValue('onboard-domain'))
      expectedK256 = r.k256Pubkey
      showOnboardResult(r.k256Pubkey, src)
    })
  })

  byId('result-next').addEventListener('click', () => showStep('finish'))
  byId('finish-submit').addEventListener('click', () => {
    inFlight(byId<HTMLFieldSetElement>('finish-controls'), 'finish-error', finishSetup)
  })
}

wire()
showStep('kms', false)
loadThisKms().catch((err: unknown) => {
  showError('kms-error', `This page failed: ${err instanceof Error ? err.message : String(err)}`)
})
