// The onboarding page. Plain browser JavaScript with no dependencies: the page must work inside a
// CVM with no internet access (upstream's page loads Vue from a CDN).

const $ = (id) => document.getElementById(id)

async function rpc(method, params) {
  const res = await fetch(`/prpc/Onboard.${method}?json`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(params),
  })
  const text = await res.text()
  let data
  try {
    data = JSON.parse(text)
  } catch {
    throw new Error(`unexpected reply (HTTP ${res.status}): ${text.slice(0, 200)}`)
  }
  if (data !== null && typeof data === 'object' && 'error' in data) throw new Error(data.error)
  return data
}

const hex0x = (h) => (h ? `0x${h}` : '')

function showError(message) {
  const el = $('error')
  el.textContent = message
  el.hidden = message === ''
}

function show(section) {
  $('choose').hidden = section !== 'choose'
  $('bootstrap-form').hidden = section !== 'bootstrap'
  $('onboard-form').hidden = section !== 'onboard'
  showError('')
}

async function loadAttestationInfo() {
  try {
    const info = await rpc('GetAttestationInfo', {})
    if (info.site_name) {
      $('title').textContent = info.site_name
      document.title = info.site_name
    }
    $('attestation-status').hidden = true
    $('attestation-fields').hidden = false
    $('f-mode').textContent = info.attestation_mode || info.tee_variant || '(none)'
    for (const el of document.querySelectorAll('.ppid')) el.hidden = !info.ppid
    $('f-ppid').textContent = info.ppid
    $('f-device').textContent = hex0x(info.device_id)
    $('f-mr').textContent = hex0x(info.mr_aggregated)
    $('f-os').textContent = hex0x(info.os_image_hash)
    if (info.eth_rpc_url || info.kms_contract_address) {
      $('chain').hidden = false
      $('f-eth').textContent = info.eth_rpc_url
      $('f-contract').textContent = info.kms_contract_address
    }
  } catch (err) {
    $('attestation-status').textContent = `Attestation info: ${err.message}`
  }
}

/** Avoids `//prpc` when the operator pastes a URL with a trailing slash. */
function normaliseSourceUrl(url) {
  const trimmed = url.replace(/\/+$/, '')
  return trimmed.endsWith('/prpc') ? trimmed : `${trimmed}/prpc`
}

function showResult(title, value) {
  $('bootstrap-form').hidden = true
  $('onboard-form').hidden = true
  $('choose').hidden = true
  $('result').hidden = false
  $('result-title').textContent = title
  $('result-json').value = JSON.stringify(value, null, 2)
}

async function submit(form, button, call) {
  showError('')
  button.disabled = true
  try {
    await call()
  } catch (err) {
    showError(err.message)
  } finally {
    button.disabled = false
  }
}

$('show-bootstrap').addEventListener('click', () => show('bootstrap'))
$('show-onboard').addEventListener('click', () => show('onboard'))
for (const b of document.querySelectorAll('.back')) {
  b.addEventListener('click', () => show('choose'))
}

$('bootstrap-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  submit(ev.target, $('bootstrap-submit'), async () => {
    const res = await rpc('Bootstrap', { domain: $('bootstrap-domain').value.trim() })
    showResult('Bootstrap successful!', {
      caPubkey: hex0x(res.ca_pubkey),
      k256Pubkey: hex0x(res.k256_pubkey),
      attestation: hex0x(res.attestation),
    })
  })
})

$('onboard-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  submit(ev.target, $('onboard-submit'), async () => {
    const res = await rpc('Onboard', {
      source_url: normaliseSourceUrl($('onboard-source').value.trim()),
      domain: $('onboard-domain').value.trim(),
    })
    showResult('Onboarding successful!', { k256Pubkey: hex0x(res.k256_pubkey) })
  })
})

$('finish').addEventListener('click', async () => {
  $('finish').disabled = true
  try {
    const res = await fetch('/finish')
    if (!res.ok) throw new Error(`finish failed: HTTP ${res.status}`)
    $('result').hidden = true
    $('done').hidden = false
  } catch (err) {
    showError(err.message)
    $('finish').disabled = false
  }
})

show('choose')
loadAttestationInfo()
