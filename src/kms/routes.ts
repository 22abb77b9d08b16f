// The KMS service's pRPC methods: request decoding and response shaping around
// KmsService.
import { toBootstrapResponse } from '../keys/bootstrap-info.js'
import {
  AppIdType,
  AppKeyResponseType,
  ClearImageCacheRequestType,
  AdminClearImageCacheRequestType,
  GetAppKeyRequestType,
  GetKmsKeyRequestType,
  GetMetaResponseType,
  GetTempCaCertResponseType,
  KmsKeyResponseType,
  PublicKeyResponseType,
  SignCertRequestType,
  SignCertResponseType,
} from '../prpc/messages.js'
import { defineMethod, type AnyRpcMethod } from '../prpc/plugin.js'
import type { ClientCertContext } from './client-cert.js'
import type { CallerTransport, KmsService } from './service.js'

/** The KMS service's route table, in the order the start-up log lists it (upstream's). */
export function kmsMethods(svc: KmsService): Record<string, AnyRpcMethod<ClientCertContext>> {
  return {
    GetAppEnvEncryptPubKey: defineMethod(AppIdType, PublicKeyResponseType, async (req) => {
      const r = await svc.getAppEnvEncryptPubKey(req.app_id)
      return {
        public_key: r.publicKey,
        signature: r.signature,
        timestamp: r.timestamp,
        signature_v1: r.signatureV1,
      }
    }),
    GetAppKey: defineMethod(GetAppKeyRequestType, AppKeyResponseType, async (req, call) => {
      const r = await svc.getAppKey(
        req.api_version,
        req.vm_config,
        call.ctx.attestation,
        transportOf(call.ctx),
      )
      return {
        ca_cert: r.caCert,
        disk_crypt_key: r.diskCryptKey,
        env_crypt_key: r.envCryptKey,
        k256_key: r.k256Key,
        k256_signature: r.k256Signature,
        // deprecated copy kept for old guests
        tproxy_app_id: r.gatewayAppId,
        gateway_app_id: r.gatewayAppId,
        os_image_hash: r.osImageHash,
      }
    }),
    GetKmsKey: defineMethod(GetKmsKeyRequestType, KmsKeyResponseType, async (req, call) => {
      const r = await svc.getKmsKey(req.vm_config, call.ctx.attestation, transportOf(call.ctx))
      return { temp_ca_key: r.tempCaKey, keys: [{ ca_key: r.caKey, k256_key: r.k256Key }] }
    }),
    GetMeta: defineMethod(null, GetMetaResponseType, async () => {
      const m = await svc.getMeta()
      return {
        ca_cert: m.caCert,
        allow_any_upgrade: m.allowAnyUpgrade,
        k256_pubkey: m.k256Pubkey,
        bootstrap_info: m.bootstrapInfo === null ? null : toBootstrapResponse(m.bootstrapInfo),
        is_dev: m.isDev,
        gateway_app_id: m.gatewayAppId,
        kms_contract_address: m.kmsContractAddress,
        chain_id: m.chainId,
        app_auth_implementation: m.appAuthImplementation,
      }
    }),
    GetTempCaCert: defineMethod(null, GetTempCaCertResponseType, async () => {
      const r = await svc.getTempCaCert()
      return { temp_ca_cert: r.tempCaCert, temp_ca_key: r.tempCaKey, ca_cert: r.caCert }
    }),
    SignCert: defineMethod(SignCertRequestType, SignCertResponseType, async (req, call) => ({
      certificate_chain: await svc.signCert(
        req.api_version,
        req.csr,
        req.signature,
        req.vm_config,
        transportOf(call.ctx),
      ),
    })),
    ClearImageCache: defineMethod(ClearImageCacheRequestType, null, async (req) => {
      await svc.clearImageCacheWithToken(req.token, req.image_hash, req.config_hash)
      return null
    }),
  }
}

/** The optional admin listener's service (upstream HEAD layout; header auth happens first). */
export function adminMethods(svc: KmsService): Record<string, AnyRpcMethod<undefined>> {
  return {
    ClearImageCache: defineMethod(AdminClearImageCacheRequestType, null, async (req) => {
      await svc.clearImageCache(req.image_hash, req.config_hash)
      return null
    }),
  }
}

/** The paths of a route table as the start-up log lists them. */
export function prpcPaths(methods: Record<string, unknown>): string[] {
  return Object.keys(methods).map((m) => `/prpc/${m}`)
}

function transportOf(ctx: ClientCertContext): CallerTransport {
  return ctx.certSha256 === undefined ? {} : { clientCertSha256: ctx.certSha256 }
}
