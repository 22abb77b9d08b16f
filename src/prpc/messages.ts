// The KMS, Onboard and Admin pRPC messages (spec 01 §4.1). Each message is an interface (the value
// model) and a descriptor constant with a `Type` suffix (`GetAppKeyRequestType.create()`,
// `encodeMessage(GetAppKeyRequestType, value)`).
// Field names are the proto names: they are also the JSON keys, in this order.
import type { Buffer } from 'node:buffer'
import { defineMessage } from './schema.js'

export interface GetAppKeyRequest {
  api_version: number
  vm_config: string
}
export const GetAppKeyRequestType = defineMessage<GetAppKeyRequest>('GetAppKeyRequest', {
  api_version: { tag: 1, type: 'uint32' },
  vm_config: { tag: 2, type: 'string' },
})

export interface AppId {
  app_id: Buffer
}
export const AppIdType = defineMessage<AppId>('AppId', {
  app_id: { tag: 1, type: 'bytes' },
})

export interface PublicKeyResponse {
  public_key: Buffer
  signature: Buffer
  timestamp: bigint
  signature_v1: Buffer
}
export const PublicKeyResponseType = defineMessage<PublicKeyResponse>('PublicKeyResponse', {
  public_key: { tag: 1, type: 'bytes' },
  signature: { tag: 2, type: 'bytes' },
  timestamp: { tag: 3, type: 'uint64' },
  signature_v1: { tag: 4, type: 'bytes' },
})

export interface AppKeyResponse {
  ca_cert: string
  disk_crypt_key: Buffer
  env_crypt_key: Buffer
  k256_key: Buffer
  k256_signature: Buffer
  /** deprecated copy of gateway_app_id */
  tproxy_app_id: string
  gateway_app_id: string
  os_image_hash: Buffer
}
export const AppKeyResponseType = defineMessage<AppKeyResponse>('AppKeyResponse', {
  ca_cert: { tag: 1, type: 'string' },
  disk_crypt_key: { tag: 2, type: 'bytes' },
  env_crypt_key: { tag: 3, type: 'bytes' },
  k256_key: { tag: 4, type: 'bytes' },
  k256_signature: { tag: 5, type: 'bytes' },
  tproxy_app_id: { tag: 6, type: 'string' },
  gateway_app_id: { tag: 7, type: 'string' },
  os_image_hash: { tag: 8, type: 'bytes' },
})

export interface BootstrapResponse {
  ca_pubkey: Buffer
  k256_pubkey: Buffer
  attestation: Buffer
}
export const BootstrapResponseType = defineMessage<BootstrapResponse>('BootstrapResponse', {
  ca_pubkey: { tag: 1, type: 'bytes' },
  k256_pubkey: { tag: 2, type: 'bytes' },
  attestation: { tag: 3, type: 'bytes' },
})

export interface GetMetaResponse {
  ca_cert: string
  allow_any_upgrade: boolean
  k256_pubkey: Buffer
  bootstrap_info: BootstrapResponse | null
  is_dev: boolean
  gateway_app_id: string | null
  kms_contract_address: string | null
  chain_id: bigint | null
  app_auth_implementation: string | null
}
export const GetMetaResponseType = defineMessage<GetMetaResponse>('GetMetaResponse', {
  ca_cert: { tag: 1, type: 'string' },
  allow_any_upgrade: { tag: 2, type: 'bool' },
  k256_pubkey: { tag: 3, type: 'bytes' },
  bootstrap_info: { tag: 4, type: 'message', message: BootstrapResponseType },
  is_dev: { tag: 5, type: 'bool' },
  gateway_app_id: { tag: 6, type: 'string', optional: true },
  kms_contract_address: { tag: 7, type: 'string', optional: true },
  chain_id: { tag: 8, type: 'uint64', optional: true },
  app_auth_implementation: { tag: 9, type: 'string', optional: true },
})

export interface GetKmsKeyRequest {
  vm_config: string
}
export const GetKmsKeyRequestType = defineMessage<GetKmsKeyRequest>('GetKmsKeyRequest', {
  vm_config: { tag: 1, type: 'string' },
})

export interface KmsKeys {
  ca_key: string
  k256_key: Buffer
}
export const KmsKeysType = defineMessage<KmsKeys>('KmsKeys', {
  ca_key: { tag: 1, type: 'string' },
  k256_key: { tag: 2, type: 'bytes' },
})

export interface KmsKeyResponse {
  temp_ca_key: string
  keys: KmsKeys[]
}
export const KmsKeyResponseType = defineMessage<KmsKeyResponse>('KmsKeyResponse', {
  temp_ca_key: { tag: 1, type: 'string' },
  keys: { tag: 2, type: 'message', message: KmsKeysType, repeated: true },
})

export interface GetTempCaCertResponse {
  temp_ca_cert: string
  temp_ca_key: string
  ca_cert: string
}
export const GetTempCaCertResponseType = defineMessage<GetTempCaCertResponse>(
  'GetTempCaCertResponse',
  {
    temp_ca_cert: { tag: 1, type: 'string' },
    temp_ca_key: { tag: 2, type: 'string' },
    ca_cert: { tag: 3, type: 'string' },
  },
)

export interface SignCertRequest {
  api_version: number
  csr: Buffer
  signature: Buffer
  vm_config: string
}
export const SignCertRequestType = defineMessage<SignCertRequest>('SignCertRequest', {
  api_version: { tag: 1, type: 'uint32' },
  csr: { tag: 2, type: 'bytes' },
  signature: { tag: 3, type: 'bytes' },
  vm_config: { tag: 4, type: 'string' },
})

export interface SignCertResponse {
  certificate_chain: string[]
}
export const SignCertResponseType = defineMessage<SignCertResponse>('SignCertResponse', {
  certificate_chain: { tag: 1, type: 'string', repeated: true },
})

/** `KMS.ClearImageCache` on the main listener: the spec-revision layout with the token (D3). */
export interface ClearImageCacheRequest {
  token: string
  image_hash: string
  config_hash: string
}
export const ClearImageCacheRequestType = defineMessage<ClearImageCacheRequest>(
  'ClearImageCacheRequest',
  {
    token: { tag: 1, type: 'string' },
    image_hash: { tag: 2, type: 'string' },
    config_hash: { tag: 3, type: 'string' },
  },
)

/** `Admin.ClearImageCache`: upstream HEAD's layout, which upstream also calls ClearImageCacheRequest
 * (so that is the name its decode errors print). Wire-incompatible with the KMS layout. */
export interface AdminClearImageCacheRequest {
  image_hash: string
  config_hash: string
}
export const AdminClearImageCacheRequestType = defineMessage<AdminClearImageCacheRequest>(
  'ClearImageCacheRequest',
  {
    image_hash: { tag: 1, type: 'string' },
    config_hash: { tag: 2, type: 'string' },
  },
)

export interface BootstrapRequest {
  domain: string
}
export const BootstrapRequestType = defineMessage<BootstrapRequest>('BootstrapRequest', {
  domain: { tag: 1, type: 'string' },
})

export interface OnboardRequest {
  source_url: string
  domain: string
}
export const OnboardRequestType = defineMessage<OnboardRequest>('OnboardRequest', {
  source_url: { tag: 1, type: 'string' },
  domain: { tag: 2, type: 'string' },
})

export interface OnboardResponse {
  k256_pubkey: Buffer
}
export const OnboardResponseType = defineMessage<OnboardResponse>('OnboardResponse', {
  k256_pubkey: { tag: 1, type: 'bytes' },
})

/** `Onboard.InspectSource` (ours): what the wizard shows about a source before replicating. */
export interface InspectSourceRequest {
  source_url: string
}
export const InspectSourceRequestType = defineMessage<InspectSourceRequest>(
  'InspectSourceRequest',
  { source_url: { tag: 1, type: 'string' } },
)

export interface InspectSourceResponse {
  source_url: string
  mr_aggregated: Buffer
  device_id: Buffer
  os_image_hash: Buffer
  tcb_status: string
  advisory_ids: string[]
  tee_variant: string
  ca_cert_fingerprint: string
  k256_pubkey: Buffer
  allowed: boolean
  reason: string
}
export const InspectSourceResponseType = defineMessage<InspectSourceResponse>(
  'InspectSourceResponse',
  {
    source_url: { tag: 1, type: 'string' },
    mr_aggregated: { tag: 2, type: 'bytes' },
    device_id: { tag: 3, type: 'bytes' },
    os_image_hash: { tag: 4, type: 'bytes' },
    tcb_status: { tag: 5, type: 'string' },
    advisory_ids: { tag: 6, type: 'string', repeated: true },
    tee_variant: { tag: 7, type: 'string' },
    ca_cert_fingerprint: { tag: 8, type: 'string' },
    k256_pubkey: { tag: 9, type: 'bytes' },
    allowed: { tag: 10, type: 'bool' },
    reason: { tag: 11, type: 'string' },
  },
)

export interface AttestationInfoResponse {
  device_id: Buffer
  mr_aggregated: Buffer
  os_image_hash: Buffer
  /** field 4; upstream HEAD names it tee_variant, so JSON carries both keys (D19) */
  attestation_mode: string
  site_name: string
  eth_rpc_url: string
  kms_contract_address: string
  ppid: Buffer
  /** ours: the onboarding listener's certificate fingerprint as browsers show it, so the page
   * can print what the operator compares with the log ("" over plain HTTP) */
  onboard_cert_fingerprint: string
}
export const AttestationInfoResponseType = defineMessage<AttestationInfoResponse>(
  'AttestationInfoResponse',
  {
    device_id: { tag: 1, type: 'bytes' },
    mr_aggregated: { tag: 2, type: 'bytes' },
    os_image_hash: { tag: 3, type: 'bytes' },
    attestation_mode: { tag: 4, type: 'string', jsonAliases: ['tee_variant'] },
    site_name: { tag: 5, type: 'string' },
    eth_rpc_url: { tag: 6, type: 'string' },
    kms_contract_address: { tag: 7, type: 'string' },
    ppid: { tag: 8, type: 'bytes' },
    // far above upstream's numbers so a field upstream adds later cannot collide
    onboard_cert_fingerprint: { tag: 100, type: 'string' },
  },
)

/** The error body in protobuf mode. */
export interface ProtoError {
  message: string
}
export const ProtoErrorType = defineMessage<ProtoError>('ProtoError', {
  message: { tag: 1, type: 'string' },
})
