// The KMS, Onboard and Admin pRPC messages (upstream `kms/rpc/proto/kms_rpc.proto`). Each message is declared once, as a
// descriptor constant with a `Type` suffix (`GetAppKeyRequestType.create()`,
// `encodeMessage(GetAppKeyRequestType, value)`); its TypeScript type of the same name is derived
// from the descriptor (`MessageValue`).
// Field names are the proto names: they are also the JSON keys, in this order.
import { defineMessage, type MessageValue } from './schema.js'

export type GetAppKeyRequest = MessageValue<typeof GetAppKeyRequestType>
export const GetAppKeyRequestType = defineMessage('GetAppKeyRequest', {
  api_version: { tag: 1, type: 'uint32' },
  vm_config: { tag: 2, type: 'string' },
})

export type AppId = MessageValue<typeof AppIdType>
export const AppIdType = defineMessage('AppId', {
  app_id: { tag: 1, type: 'bytes' },
})

export type PublicKeyResponse = MessageValue<typeof PublicKeyResponseType>
export const PublicKeyResponseType = defineMessage('PublicKeyResponse', {
  public_key: { tag: 1, type: 'bytes' },
  signature: { tag: 2, type: 'bytes' },
  timestamp: { tag: 3, type: 'uint64' },
  signature_v1: { tag: 4, type: 'bytes' },
})

export type AppKeyResponse = MessageValue<typeof AppKeyResponseType>
export const AppKeyResponseType = defineMessage('AppKeyResponse', {
  ca_cert: { tag: 1, type: 'string' },
  disk_crypt_key: { tag: 2, type: 'bytes' },
  env_crypt_key: { tag: 3, type: 'bytes' },
  k256_key: { tag: 4, type: 'bytes' },
  k256_signature: { tag: 5, type: 'bytes' },
  /** deprecated copy of gateway_app_id */
  tproxy_app_id: { tag: 6, type: 'string' },
  gateway_app_id: { tag: 7, type: 'string' },
  os_image_hash: { tag: 8, type: 'bytes' },
})

export type BootstrapResponse = MessageValue<typeof BootstrapResponseType>
export const BootstrapResponseType = defineMessage('BootstrapResponse', {
  ca_pubkey: { tag: 1, type: 'bytes' },
  k256_pubkey: { tag: 2, type: 'bytes' },
  attestation: { tag: 3, type: 'bytes' },
})

export type GetMetaResponse = MessageValue<typeof GetMetaResponseType>
export const GetMetaResponseType = defineMessage('GetMetaResponse', {
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

export type GetKmsKeyRequest = MessageValue<typeof GetKmsKeyRequestType>
export const GetKmsKeyRequestType = defineMessage('GetKmsKeyRequest', {
  vm_config: { tag: 1, type: 'string' },
})

export type KmsKeys = MessageValue<typeof KmsKeysType>
export const KmsKeysType = defineMessage('KmsKeys', {
  ca_key: { tag: 1, type: 'string' },
  k256_key: { tag: 2, type: 'bytes' },
})

export type KmsKeyResponse = MessageValue<typeof KmsKeyResponseType>
export const KmsKeyResponseType = defineMessage('KmsKeyResponse', {
  temp_ca_key: { tag: 1, type: 'string' },
  keys: { tag: 2, type: 'message', message: KmsKeysType, repeated: true },
})

export type GetTempCaCertResponse = MessageValue<typeof GetTempCaCertResponseType>
export const GetTempCaCertResponseType = defineMessage('GetTempCaCertResponse', {
  temp_ca_cert: { tag: 1, type: 'string' },
  temp_ca_key: { tag: 2, type: 'string' },
  ca_cert: { tag: 3, type: 'string' },
})

export type SignCertRequest = MessageValue<typeof SignCertRequestType>
export const SignCertRequestType = defineMessage('SignCertRequest', {
  api_version: { tag: 1, type: 'uint32' },
  csr: { tag: 2, type: 'bytes' },
  signature: { tag: 3, type: 'bytes' },
  vm_config: { tag: 4, type: 'string' },
})

export type SignCertResponse = MessageValue<typeof SignCertResponseType>
export const SignCertResponseType = defineMessage('SignCertResponse', {
  certificate_chain: { tag: 1, type: 'string', repeated: true },
})

/** `KMS.ClearImageCache` on the main listener: the product document's layout with the token
 * (docs/design.md#two-ways-to-authorize-clearimagecache). */
export type ClearImageCacheRequest = MessageValue<typeof ClearImageCacheRequestType>
export const ClearImageCacheRequestType = defineMessage('ClearImageCacheRequest', {
  token: { tag: 1, type: 'string' },
  image_hash: { tag: 2, type: 'string' },
  config_hash: { tag: 3, type: 'string' },
})

/** `Admin.ClearImageCache`: upstream HEAD's layout, which upstream also calls ClearImageCacheRequest
 * (so that is the name its decode errors print). Wire-incompatible with the KMS layout. */
export type AdminClearImageCacheRequest = MessageValue<typeof AdminClearImageCacheRequestType>
export const AdminClearImageCacheRequestType = defineMessage('ClearImageCacheRequest', {
  image_hash: { tag: 1, type: 'string' },
  config_hash: { tag: 2, type: 'string' },
})

export type BootstrapRequest = MessageValue<typeof BootstrapRequestType>
export const BootstrapRequestType = defineMessage('BootstrapRequest', {
  domain: { tag: 1, type: 'string' },
})

export type OnboardRequest = MessageValue<typeof OnboardRequestType>
export const OnboardRequestType = defineMessage('OnboardRequest', {
  source_url: { tag: 1, type: 'string' },
  domain: { tag: 2, type: 'string' },
})

export type OnboardResponse = MessageValue<typeof OnboardResponseType>
export const OnboardResponseType = defineMessage('OnboardResponse', {
  k256_pubkey: { tag: 1, type: 'bytes' },
})

/** `Onboard.InspectSource` (ours): what the wizard shows about a source before replicating. */
export type InspectSourceRequest = MessageValue<typeof InspectSourceRequestType>
export const InspectSourceRequestType = defineMessage('InspectSourceRequest', {
  source_url: { tag: 1, type: 'string' },
})

export type InspectSourceResponse = MessageValue<typeof InspectSourceResponseType>
export const InspectSourceResponseType = defineMessage('InspectSourceResponse', {
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
})

export type AttestationInfoResponse = MessageValue<typeof AttestationInfoResponseType>
export const AttestationInfoResponseType = defineMessage('AttestationInfoResponse', {
  device_id: { tag: 1, type: 'bytes' },
  mr_aggregated: { tag: 2, type: 'bytes' },
  os_image_hash: { tag: 3, type: 'bytes' },
  /** field 4; upstream HEAD names it tee_variant, so JSON carries both keys
   * (docs/design.md#attestationinforesponse-carries-both-mode-keys) */
  attestation_mode: { tag: 4, type: 'string', jsonAliases: ['tee_variant'] },
  site_name: { tag: 5, type: 'string' },
  eth_rpc_url: { tag: 6, type: 'string' },
  kms_contract_address: { tag: 7, type: 'string' },
  ppid: { tag: 8, type: 'bytes' },
  /** ours: the onboarding listener's certificate fingerprint as browsers show it, so the page
   * can print what the operator compares with the log ("" over plain HTTP); far above
   * upstream's numbers so a field upstream adds later cannot collide */
  onboard_cert_fingerprint: { tag: 100, type: 'string' },
})

/** The error body in protobuf mode. */
export type ProtoError = MessageValue<typeof ProtoErrorType>
export const ProtoErrorType = defineMessage('ProtoError', {
  message: { tag: 1, type: 'string' },
})
