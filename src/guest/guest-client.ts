// What a dstack guest does at boot to get its keys (upstream dstack-util
// `request_app_keys_from_kms_url`): GetTempCaCert without verifying
// the server, an RA-TLS client certificate signed by the temp CA carrying the guest's
// attestation, then GetAppKey over mTLS trusting only the KMS root CA, with host-name checking
// and the `kms:rpc` usage check. Used by `dstack-kms demo-guest` and by the end-to-end tests, so
// the KMS is exercised the way real guests exercise it.
import type { AppKeyResult } from '../kms/service.js'
import { KmsError } from '../errors.js'
import { HttpClient } from '../http/http-client.js'
import { attestationFromCertificate } from '../ratls/cert-attestation.js'
import { issueRaTlsClientIdentity } from '../ratls/client-identity.js'
import type { Attestation } from '../attestation/types.js'
import { parseCertificate, readCertUsage } from '../x509/parse.js'
import { CERT_USAGE } from '../asn1/oids.js'

export interface HttpsReply {
  status: number
  body: string
  peerCertDer?: Buffer
}

export interface HttpsCall {
  url: string
  body: string
  /** trust anchors (PEM); undefined = do not verify the server (GetTempCaCert) */
  ca?: string
  cert?: string
  key?: string
  /** one deadline over the whole exchange; default 60 s */
  timeoutMs?: number
}

/** KMS replies are a few kB; the cap only bounds what a hostile server can make a guest buffer. */
export const GUEST_MAX_REPLY_BYTES = 1024 * 1024

/** POST without a Content-Type, as the Rust pRPC client sends `?json` requests. Each call has its
 * own TLS identity and trust, so each gets a one-shot connection. */
export async function httpsPost(call: HttpsCall): Promise<HttpsReply> {
  const http = new HttpClient({
    timeoutMs: call.timeoutMs ?? 60_000,
    maxResponseBytes: GUEST_MAX_REPLY_BYTES,
    keepAlive: false,
    tls: {
      ...(call.ca === undefined ? { rejectUnauthorized: false } : { ca: call.ca }),
      ...(call.cert === undefined ? {} : { cert: call.cert }),
      ...(call.key === undefined ? {} : { key: call.key }),
    },
  })
  try {
    const reply = await http.request(call.url, { method: 'POST', body: call.body })
    return {
      status: reply.status,
      body: reply.body.toString('utf8'),
      ...(reply.peerCertDer === undefined ? {} : { peerCertDer: reply.peerCertDer }),
    }
  } finally {
    http.close()
  }
}

function rpcError(method: string, reply: HttpsReply): KmsError {
  let message = reply.body
  try {
    const parsed: unknown = JSON.parse(reply.body)
    if (parsed !== null && typeof parsed === 'object' && 'error' in parsed) {
      message = String(parsed.error)
    }
  } catch {
    // keep the raw body
  }
  return new KmsError('KMS_ERR_RPC', `${method} failed with status ${reply.status}: ${message}`)
}

function parseJsonObject(method: string, text: string): Record<string, unknown> {
  const value: unknown = JSON.parse(text)
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new KmsError('KMS_ERR_RPC', `${method}: unexpected reply ${text.slice(0, 200)}`)
  }
  return value as Record<string, unknown>
}

function str(method: string, obj: Record<string, unknown>, key: string): string {
  const v = obj[key]
  if (typeof v !== 'string') throw new KmsError('KMS_ERR_RPC', `${method}: reply lacks ${key}`)
  return v
}

/** What GetAppKey releases (the KMS side's AppKeyResult). */
export type AppKeys = AppKeyResult

export interface GuestKeyRequest {
  /** e.g. `https://kms.example:8000` (the `/prpc` suffix is added) */
  kmsUrl: string
  /** the guest's attestation for 64 bytes of report data (VersionedAttestation bytes) */
  attest(reportData: Buffer): Promise<Buffer>
  /** the guest's `sys_config.vm_config` */
  vmConfig: string
  /** checks the KMS RPC certificate's attestation when it has one; returns its mr_aggregated */
  verifyKmsAttestation?(a: Attestation, spkiDer: Buffer): Promise<Buffer>
  timeoutMs?: number
}

export interface GuestKeyResult {
  keys: AppKeys
  /** the KMS RPC certificate carried an attestation that verified (the `mr-kms` event) */
  kmsMrAggregated: Buffer | null
  clientCertPem: string
}

/** Runs the guest side of key provisioning against one KMS URL. */
export async function requestAppKeys(req: GuestKeyRequest): Promise<GuestKeyResult> {
  const base = `${req.kmsUrl.replace(/\/+$/, '')}/prpc`
  const timeoutMs = req.timeoutMs ?? 60_000
  // 1. the temp CA, without verifying the server (its key is handed to any caller anyway)
  const tmp = await httpsPost({ url: `${base}/GetTempCaCert?json`, body: 'null', timeoutMs })
  if (tmp.status !== 200) throw rpcError('GetTempCaCert', tmp)
  const tmpReply = parseJsonObject('GetTempCaCert', tmp.body)
  const tempCa = {
    certPem: str('GetTempCaCert', tmpReply, 'temp_ca_cert'),
    keyPem: str('GetTempCaCert', tmpReply, 'temp_ca_key'),
  }
  const rootCaPem = str('GetTempCaCert', tmpReply, 'ca_cert')

  // 2. an RA-TLS client certificate whose attestation binds a fresh key
  const { key, cert: clientCert } = await issueRaTlsClientIdentity(tempCa, (reportData) =>
    req.attest(reportData),
  )

  // 3. GetAppKey over mTLS, trusting only the KMS root CA, host name checked by node:tls
  const reply = await httpsPost({
    url: `${base}/GetAppKey?json`,
    body: JSON.stringify({ api_version: 1, vm_config: req.vmConfig }),
    ca: rootCaPem,
    cert: clientCert.pem,
    key: key.pkcs8Pem(),
    timeoutMs,
  })
  if (reply.peerCertDer === undefined) throw new KmsError('KMS_ERR_RPC', 'no server certificate')
  const serverCert = parseCertificate(reply.peerCertDer)
  const usage = readCertUsage(serverCert)
  if (usage !== CERT_USAGE.kmsRpc) {
    throw new KmsError(
      'KMS_ERR_CERT',
      `KMS certificate usage is ${JSON.stringify(usage ?? null)}, expected "kms:rpc"`,
    )
  }
  let kmsMrAggregated: Buffer | null = null
  const kmsAttestation = attestationFromCertificate(serverCert)
  if (kmsAttestation !== null && req.verifyKmsAttestation !== undefined) {
    kmsMrAggregated = await req.verifyKmsAttestation(kmsAttestation, serverCert.spkiDer)
  }
  if (reply.status !== 200) throw rpcError('GetAppKey', reply)
  const r = parseJsonObject('GetAppKey', reply.body)
  const hex = (k: string) => Buffer.from(str('GetAppKey', r, k), 'hex')
  return {
    keys: {
      caCert: str('GetAppKey', r, 'ca_cert'),
      diskCryptKey: hex('disk_crypt_key'),
      envCryptKey: hex('env_crypt_key'),
      k256Key: hex('k256_key'),
      k256Signature: hex('k256_signature'),
      gatewayAppId: str('GetAppKey', r, 'gateway_app_id'),
      osImageHash: hex('os_image_hash'),
    },
    kmsMrAggregated,
    clientCertPem: clientCert.pem,
  }
}
