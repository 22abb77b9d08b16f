// The calls the wizard makes, all same-origin JSON pRPC (`POST /prpc/<Method>?json`), with the
// replies checked for the fields the page reads: a KMS of another version must fail visibly,
// not render "undefined".

export interface Reply {
  /** the reply body exactly as received (bootstrap-info.json is downloaded byte for byte) */
  text: string
  fields: Record<string, unknown>
}

async function post(path: string, params: unknown): Promise<Reply> {
  let res: Response
  try {
    res = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(params),
      cache: 'no-store',
    })
  } catch (err) {
    throw new Error(`cannot reach the KMS: ${err instanceof Error ? err.message : String(err)}`)
  }
  const text = await res.text()
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    throw new Error(`unexpected reply (HTTP ${res.status}): ${text.slice(0, 200)}`)
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new Error(`unexpected reply (HTTP ${res.status}): ${text.slice(0, 200)}`)
  }
  const fields = data as Record<string, unknown>
  if ('error' in fields) throw new Error(String(fields.error))
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`)
  return { text, fields }
}

function str(r: Reply, key: string): string {
  const v = r.fields[key]
  if (typeof v !== 'string') throw new Error(`the KMS's reply has no ${key}`)
  return v
}

/** Fields this KMS version added: an older onboarding worker leaves them out. */
function optionalStr(r: Reply, key: string): string {
  const v = r.fields[key]
  return typeof v === 'string' ? v : ''
}

export interface AttestationInfo {
  teeVariant: string
  deviceId: string
  mrAggregated: string
  osImageHash: string
  ppid: string
  siteName: string
  ethRpcUrl: string
  kmsContractAddress: string
  onboardCertFingerprint: string
}

export async function getAttestationInfo(): Promise<AttestationInfo> {
  const r = await post('/prpc/Onboard.GetAttestationInfo?json', {})
  const mode = optionalStr(r, 'attestation_mode')
  return {
    teeVariant: mode !== '' ? mode : optionalStr(r, 'tee_variant'),
    deviceId: str(r, 'device_id'),
    mrAggregated: str(r, 'mr_aggregated'),
    osImageHash: str(r, 'os_image_hash'),
    ppid: optionalStr(r, 'ppid'),
    siteName: optionalStr(r, 'site_name'),
    ethRpcUrl: optionalStr(r, 'eth_rpc_url'),
    kmsContractAddress: optionalStr(r, 'kms_contract_address'),
    onboardCertFingerprint: optionalStr(r, 'onboard_cert_fingerprint'),
  }
}

export interface BootstrapResult {
  caPubkey: string
  k256Pubkey: string
  attestation: string
  /** the reply verbatim: the same JSON the KMS wrote to bootstrap-info.json */
  json: string
}

export async function bootstrap(domain: string): Promise<BootstrapResult> {
  const r = await post('/prpc/Onboard.Bootstrap?json', { domain })
  return {
    caPubkey: str(r, 'ca_pubkey'),
    k256Pubkey: str(r, 'k256_pubkey'),
    attestation: str(r, 'attestation'),
    json: r.text,
  }
}

export interface SourceIdentity {
  sourceUrl: string
  mrAggregated: string
  deviceId: string
  osImageHash: string
  tcbStatus: string
  advisoryIds: string[]
  teeVariant: string
  caCertFingerprint: string
  k256Pubkey: string
  allowed: boolean
  reason: string
}

export async function inspectSource(sourceUrl: string): Promise<SourceIdentity> {
  const r = await post('/prpc/Onboard.InspectSource?json', { source_url: sourceUrl })
  const advisories = r.fields.advisory_ids ?? []
  if (!Array.isArray(advisories) || !advisories.every((a) => typeof a === 'string')) {
    throw new Error("the KMS's reply has no advisory_ids")
  }
  if (typeof r.fields.allowed !== 'boolean') throw new Error("the KMS's reply has no allowed")
  return {
    sourceUrl: str(r, 'source_url'),
    mrAggregated: str(r, 'mr_aggregated'),
    deviceId: str(r, 'device_id'),
    osImageHash: str(r, 'os_image_hash'),
    tcbStatus: str(r, 'tcb_status'),
    advisoryIds: advisories,
    teeVariant: str(r, 'tee_variant'),
    caCertFingerprint: str(r, 'ca_cert_fingerprint'),
    k256Pubkey: str(r, 'k256_pubkey'),
    allowed: r.fields.allowed === true,
    reason: optionalStr(r, 'reason'),
  }
}

export async function onboard(sourceUrl: string, domain: string): Promise<{ k256Pubkey: string }> {
  const r = await post('/prpc/Onboard.Onboard?json', { source_url: sourceUrl, domain })
  return { k256Pubkey: str(r, 'k256_pubkey') }
}

export async function finish(): Promise<void> {
  let res: Response
  try {
    res = await fetch('/finish', { cache: 'no-store' })
  } catch (err) {
    throw new Error(`cannot reach the KMS: ${err instanceof Error ? err.message : String(err)}`)
  }
  const text = await res.text()
  if (!res.ok || text !== 'OK') throw new Error(`Finish failed (HTTP ${res.status}): ${text}`)
}

export interface Meta {
  caCert: string
  k256Pubkey: string
}

/** The main KMS's GetMeta; the onboarding worker has no such method, so this succeeds only once
 * the KMS itself serves the port. */
export async function getMeta(): Promise<Meta> {
  const r = await post('/prpc/GetMeta?json', {})
  return { caCert: str(r, 'ca_cert'), k256Pubkey: str(r, 'k256_pubkey') }
}
