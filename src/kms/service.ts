// The public KMS RPCs (spec 01 §3.4, spec 02 §4–5, spec 05 §7). Handlers take decoded requests
// and return plain objects; the pRPC layer owns the wire formats.
import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import type { AuthApi } from '../auth/auth-api.js'
import { ensureSelfAllowed } from '../auth/self-auth.js'
import type { CacheDb } from '../cache/cache-db.js'
import { clearImageCache } from '../cache/clear-cache.js'
import type { KmsConfig } from '../config/types.js'
import { deriveDhSecret } from '../crypto/kdf.js'
import {
  signMessage,
  signMessageWithTimestamp,
  type Secp256k1Backend,
} from '../crypto/secp256k1.js'
import { x25519PublicKey } from '../crypto/x25519.js'
import { KmsError, withContext } from '../errors.js'
import { INVALID_TOKEN_MESSAGE, parseAdminTokenHash, verifyAdminToken } from '../admin/token.js'
import { parseBootstrapInfoJson, type BootstrapInfo } from '../keys/bootstrap-info.js'
import { CERT_DIR_FILES, certPath } from '../keys/cert-dir.js'
import { decodeVerifiedCsr } from '../ratls/csr.js'
import type { TeeBackend } from '../tee/backend.js'
import type { KmsState } from './state.js'

const ENV_PUBKEY_PREFIX = 'dstack-env-encrypt-pubkey'

export interface EnvEncryptPubKey {
  publicKey: Buffer
  signature: Buffer
  timestamp: bigint
  signatureV1: Buffer
}

export interface MetaInfo {
  caCert: string
  allowAnyUpgrade: boolean
  k256Pubkey: Buffer
  bootstrapInfo: BootstrapInfo | null
  isDev: boolean
  gatewayAppId: string | null
  kmsContractAddress: string | null
  chainId: bigint | null
  appAuthImplementation: string | null
}

export interface KmsServiceDeps {
  config: KmsConfig
  state: KmsState
  tee: TeeBackend
  secp256k1: Secp256k1Backend
  authApi: AuthApi
  cache: CacheDb
  logger: Logger
  now?: () => Date
}

export class KmsService {
  readonly #deps: KmsServiceDeps
  readonly #adminTokenHash: Buffer | null

  constructor(deps: KmsServiceDeps) {
    this.#deps = deps
    this.#adminTokenHash = parseAdminTokenHash(deps.config.core.adminTokenHash)
  }

  async #ensureSelfAllowed(): Promise<void> {
    try {
      await ensureSelfAllowed(this.#deps.config, this.#deps.tee)
    } catch (err) {
      throw withContext('KMS self authorization failed', err)
    }
  }

  #readBootstrapInfo(): MetaInfo['bootstrapInfo'] {
    // Re-read on every call like upstream; a missing or unparsable file is reported as null.
    let text: string
    try {
      text = readFileSync(certPath(this.#deps.state.certDir, CERT_DIR_FILES.bootstrapInfo), 'utf8')
    } catch {
      return null
    }
    try {
      return parseBootstrapInfoJson(text)
    } catch {
      return null
    }
  }

  async getMeta(): Promise<MetaInfo> {
    const info = await this.#deps.authApi.info()
    return {
      caCert: this.#deps.state.rootCaCertPem,
      allowAnyUpgrade: info.isDev,
      k256Pubkey: this.#deps.state.k256Pubkey,
      bootstrapInfo: this.#readBootstrapInfo(),
      isDev: info.isDev,
      gatewayAppId: info.gatewayAppId,
      kmsContractAddress: info.kmsContractAddress,
      chainId: info.chainId,
      appAuthImplementation: info.appAuthImplementation,
    }
  }

  async getAppEnvEncryptPubKey(appId: Buffer): Promise<EnvEncryptPubKey> {
    await this.#ensureSelfAllowed()
    if (appId.length !== 20) throw new KmsError('KMS_ERR_RPC', 'app_id must be 20 bytes')
    const { state, secp256k1 } = this.#deps
    let secret: Buffer
    try {
      secret = deriveDhSecret(state.rootCaKey, [appId, 'env-encrypt-key'])
    } catch (err) {
      throw withContext('Failed to derive env encrypt key', err)
    }
    const publicKey = x25519PublicKey(secret)
    const timestamp = BigInt(Math.floor((this.#deps.now?.() ?? new Date()).getTime() / 1000))
    return {
      publicKey,
      signature: signMessage(secp256k1, state.rootK256Key, ENV_PUBKEY_PREFIX, appId, publicKey),
      timestamp,
      signatureV1: signMessageWithTimestamp(
        secp256k1,
        state.rootK256Key,
        ENV_PUBKEY_PREFIX,
        appId,
        timestamp,
        publicKey,
      ),
    }
  }

  async getTempCaCert(): Promise<{ tempCaCert: string; tempCaKey: string; caCert: string }> {
    await this.#ensureSelfAllowed()
    const { state } = this.#deps
    return {
      tempCaCert: state.tmpCaCertPem,
      tempCaKey: state.tmpCaKeyPem,
      caCert: state.rootCaCertPem,
    }
  }

  /** KMS.ClearImageCache on the main listener: in-body token (D3). */
  async clearImageCacheWithToken(
    token: string,
    imageHash: string,
    configHash: string,
  ): Promise<void> {
    if (!verifyAdminToken(this.#adminTokenHash, token)) {
      throw new KmsError('KMS_ERR_UNAUTHORIZED', INVALID_TOKEN_MESSAGE)
    }
    this.clearImageCache(imageHash, configHash)
  }

  /** The cache clearing itself; the admin listener authenticates by header before calling it. */
  clearImageCache(imageHash: string, configHash: string): void {
    clearImageCache(this.#deps.cache, imageHash, configHash)
    this.#deps.logger.info({ imageHash, configHash }, 'image cache cleared')
  }

  async getAppKey(apiVersion: number, attested: boolean): Promise<never> {
    if (apiVersion > 1) throw new KmsError('KMS_ERR_RPC', `Unsupported API version: ${apiVersion}`)
    await this.#ensureSelfAllowed()
    if (!attested) throw new KmsError('KMS_ERR_RPC', 'App not allowed: No attestation provided')
    // An attested client certificate is refused earlier (preDispatch), so this is unreachable
    // until attestation verification exists; failing closed keeps it that way.
    throw new KmsError(
      'KMS_ERR_NOT_IMPLEMENTED',
      'App not allowed: attestation verification is not implemented yet',
    )
  }

  async getKmsKey(attested: boolean): Promise<never> {
    await this.#ensureSelfAllowed()
    if (!attested) throw new KmsError('KMS_ERR_RPC', 'No attestation provided')
    throw new KmsError('KMS_ERR_NOT_IMPLEMENTED', 'attestation verification is not implemented yet')
  }

  async signCert(apiVersion: number, csr: Buffer, signature: Buffer): Promise<never> {
    // upstream order: self-authorization, then api_version/decode/signature, then attestation
    await this.#ensureSelfAllowed()
    decodeVerifiedCsr(apiVersion, csr, signature)
    throw new KmsError(
      'KMS_ERR_NOT_IMPLEMENTED',
      'Quote verification failed: attestation verification is not implemented yet in dstack-kms-ts',
    )
  }
}
