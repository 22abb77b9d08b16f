// The public KMS RPCs (upstream `kms/src/main_service.rs`). Handlers take decoded requests
// and return plain objects; the pRPC layer owns the wire formats.
import type { Logger } from 'pino'
import { certifiedAppInfo, certifiedAttestation } from '../attestation/certified.js'
import { pemDecode } from '../asn1/pem.js'
import { buildBootInfo, type BootInfo } from '../attestation/boot-info.js'
import { ensureKeyReleaseAllowed } from './release-policy.js'
import type { AttestationVerifier, VerifiedAttestation } from '../attestation/verify.js'
import { decodeVersionedAttestation, encodeVersionedAttestation } from '../attestation/versioned.js'
import type {
  AuditCaller,
  AuditEvent,
  AuditLog,
  AuditRpc,
  ReleasedKey,
} from '../audit/audit-log.js'
import {
  fillCallerFromBootInfo,
  p256Fingerprint,
  pemPublicKeyFingerprint,
  released,
  secretFingerprint,
  sha256Hex,
  x25519Fingerprint,
} from '../audit/fingerprints.js'
import type { AuthApi } from '../auth/auth-api.js'
import type { SelfAuthorizer } from '../auth/self-auth.js'
import type { CacheDb } from '../cache/cache-db.js'
import { vmConfigText } from '../image/vm-config.js'
import { OsImageVerifier } from '../image/image-verifier.js'
import { createLegacyVerifier } from '../image/legacy/index.js'
import type { KmsConfig } from '../config/types.js'
import { deriveDhSecret, deriveKey, deriveP256Key } from '../crypto/kdf.js'
import { P256PublicKey } from '../crypto/p256.js'
import { isValidSecp256k1Scalar, signMessage, type Secp256k1Backend } from '../crypto/secp256k1.js'
import { KmsError, errorMessage, withContext } from '../errors.js'
import { INVALID_TOKEN_MESSAGE, parseAdminTokenHash, verifyAdminToken } from '../admin/token.js'
import { readBootstrapInfo, type BootstrapInfo } from '../keys/bootstrap-info.js'
import { decodeVerifiedCsr } from '../ratls/csr.js'
import { issueAppCaCert, issueSignCertLeaf } from '../x509/templates.js'
import { BoundedCache } from '../util/bounded-cache.js'
import {
  DEFAULT_ENV_PUBKEY_CACHE_APPS,
  EnvPubKeyProvider,
  type EnvEncryptPubKey,
} from './env-pubkey.js'
import type { KmsState } from './state.js'

const APP_KEY_PREFIX = 'dstack-kms-issued'
const IMAGE_CONTEXT = 'Failed to verify os image hash'

export type { EnvEncryptPubKey } from './env-pubkey.js'

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
  verifier: AttestationVerifier
  selfAuth: SelfAuthorizer
  secp256k1: Secp256k1Backend
  authApi: AuthApi
  cache: CacheDb
  logger: Logger
  now?: () => Date
  /** built from `config.core.image` when not given */
  imageVerifier?: OsImageVerifier
  /** the key-release audit log (docs/design.md#key-release-audit-log); null = disabled */
  audit?: AuditLog | null
}

/** The OS-image verifier `[core.image]` describes, over the shared cache database. */
export function createOsImageVerifier(
  config: KmsConfig,
  cache: CacheDb,
  logger: Logger,
): OsImageVerifier {
  const image = config.core.image
  return new OsImageVerifier({
    cache,
    cacheMaxBytes: image.cacheMaxBytes,
    log: logger,
    legacy: createLegacyVerifier({
      imageCacheDir: cache.imagesDir,
      downloadUrl: image.downloadUrl,
      maxImageBytes: image.maxImageBytes,
      // "never" in the configuration; the legacy path still needs a finite bound per attempt
      downloadTimeoutMs: image.downloadTimeoutMs ?? 2 ** 31 - 1,
      acpiTablesCommand: image.acpiTablesCommand.length === 0 ? null : image.acpiTablesCommand,
      acpiTimeoutMs: image.acpiTimeoutMs ?? 2 ** 31 - 1,
      legacyRtmr0: image.legacyRtmr0,
      log: logger,
    }),
  })
}

/** Who asked, as far as the transport knows before any attestation is decoded. */
export interface CallerTransport {
  /** SHA-256 (hex) of the presented client certificate */
  clientCertSha256?: string
}

/** What GetAppKey releases that depends on the app id alone, not on the instance. */
interface AppWideKeys {
  readonly envCryptKey: Buffer
  /** SHA-256 of the env key's X25519 public key, for the audit row; made on first need */
  envKeyFingerprint: string | undefined
  readonly k256Key: Buffer
  readonly k256Signature: Buffer
  readonly k256Pubkey: Buffer
}

function envKeyFingerprint(keys: AppWideKeys): string {
  return (keys.envKeyFingerprint ??= x25519Fingerprint(keys.envCryptKey))
}

export class KmsService {
  readonly #deps: KmsServiceDeps
  readonly #adminTokenHash: Buffer | null
  readonly #envPubKeys: EnvPubKeyProvider
  readonly #images: OsImageVerifier
  readonly #appWideKeys = new BoundedCache<AppWideKeys>(DEFAULT_ENV_PUBKEY_CACHE_APPS)

  constructor(deps: KmsServiceDeps) {
    this.#deps = deps
    this.#images = deps.imageVerifier ?? createOsImageVerifier(deps.config, deps.cache, deps.logger)
    // deterministic per app id (and per second for signature_v1), hence cacheable
    this.#envPubKeys = new EnvPubKeyProvider({
      rootCaKey: deps.state.rootCaKey,
      rootK256Key: deps.state.rootK256Key,
      secp256k1: deps.secp256k1,
      ...(deps.now === undefined ? {} : { now: deps.now }),
    })
    this.#adminTokenHash = parseAdminTokenHash(deps.config.core.adminTokenHash)
  }

  async #ensureSelfAllowed(): Promise<BootInfo | null> {
    try {
      return await this.#deps.selfAuth.ensureSelfAllowed()
    } catch (err) {
      throw withContext('KMS self authorization failed', err)
    }
  }

  async getMeta(): Promise<MetaInfo> {
    const info = await this.#deps.authApi.info()
    return {
      caCert: this.#deps.state.rootCaCertPem,
      allowAnyUpgrade: info.isDev,
      k256Pubkey: this.#deps.state.k256Pubkey,
      // re-read on every call like upstream; a missing or unparsable file is reported as null
      bootstrapInfo: readBootstrapInfo(this.#deps.state.certDir),
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
    return this.#envPubKeys.get(appId)
  }

  async getTempCaCert(): Promise<{ tempCaCert: string; tempCaKey: string; caCert: string }> {
    const self = await this.#ensureSelfAllowed()
    if (self !== null) this.#keyReleaseGate(self)
    const { state } = this.#deps
    return {
      tempCaCert: state.tmpCaCertPem,
      tempCaKey: state.tmpCaKeyPem,
      caCert: state.rootCaCertPem,
    }
  }

  /** KMS.ClearImageCache on the main listener: in-body token
   * (docs/design.md#two-ways-to-authorize-clearimagecache). */
  async clearImageCacheWithToken(
    token: string,
    imageHash: string,
    configHash: string,
  ): Promise<void> {
    if (!verifyAdminToken(this.#adminTokenHash, token)) {
      throw new KmsError('KMS_ERR_UNAUTHORIZED', INVALID_TOKEN_MESSAGE)
    }
    await this.clearImageCache(imageHash, configHash)
  }

  /** The cache clearing itself; the admin listener authenticates by header before calling it. */
  async clearImageCache(imageHash: string, configHash: string): Promise<void> {
    await this.#images.clear(imageHash, configHash)
    this.#deps.logger.info({ imageHash, configHash }, 'image cache cleared')
  }

  /** Upstream `verify_os_image_hash` for non-SEV guests, after the webhook allowed the boot. A
   * refusal never releases anything and is not retried here; the guest retries its request. */
  async #verifyOsImage(att: VerifiedAttestation, vmConfig: string): Promise<void> {
    if (!this.#deps.config.core.image.verify) {
      this.#deps.logger.debug('Image verification is disabled')
      return
    }
    try {
      const check = await this.#images.verify(vmConfigText(vmConfig, att.attestation.config), att)
      this.#deps.logger.debug(
        {
          scheme: check.scheme,
          osImageHash: check.osImageHash.toString('hex'),
          cacheHit: check.cacheHit,
        },
        'OS image verified',
      )
    } catch (err) {
      // upstream adds this context twice (in verify_os_image_hash and in its caller)
      throw withContext(IMAGE_CONTEXT, withContext(IMAGE_CONTEXT, err))
    }
  }

  /** `ensure_app_attestation_allowed`: BootInfo → webhook → OS-image check. */
  async #authorizeBoot(
    att: VerifiedAttestation,
    isKms: boolean,
    useBoottimeMr: boolean,
    vmConfig: string,
    caller?: AuditCaller,
  ): Promise<BootConfig> {
    const bootInfo = buildBootInfo(att, { useBoottimeMr, vmConfig })
    if (caller !== undefined) fillCallerFromBootInfo(caller, bootInfo)
    const response = await this.#deps.authApi.bootAuth(bootInfo, isKms)
    if (!response.isAllowed) {
      throw new KmsError('KMS_ERR_DENIED', `Boot denied: ${response.reason}`)
    }
    if (bootInfo.attestationMode !== 'dstack-amd-sev-snp') await this.#verifyOsImage(att, vmConfig)
    return { bootInfo, gatewayAppId: response.gatewayAppId }
  }

  /** Runs a key-releasing RPC and records its decision. A release is returned only after its
   * row is durable (the audit log's group commit: concurrent releases share one fsync); when the
   * row cannot be written or synced the release is refused (fail closed). The
   * fingerprints are a thunk: with the audit log disabled their hashing and scalar
   * multiplications are not done at all. */
  async #audited<T>(
    rpc: AuditRpc,
    caller: AuditCaller,
    run: () => Promise<{ result: T; released: () => ReleasedKey[] }>,
  ): Promise<T> {
    const audit = this.#deps.audit ?? null
    let outcome: { result: T; released: () => ReleasedKey[] }
    try {
      outcome = await run()
    } catch (err) {
      await this.#recordRefusal(audit, {
        rpc,
        decision: 'refuse',
        reason: errorMessage(err),
        caller,
        released: [],
      })
      throw err
    }
    if (audit !== null) {
      try {
        await audit.record({
          rpc,
          decision: 'release',
          reason: 'allowed',
          caller,
          released: outcome.released(),
        })
      } catch (err) {
        this.#deps.logger.error(
          { rpc, err: errorMessage(err) },
          'key release refused: audit log write failed',
        )
        await this.#recordRefusal(audit, {
          rpc,
          decision: 'refuse',
          reason: errorMessage(err),
          caller,
          released: [],
        })
        throw err
      }
    }
    return outcome.result
  }

  async #recordRefusal(audit: AuditLog | null, event: AuditEvent): Promise<void> {
    if (audit === null) return
    try {
      await audit.record(event)
    } catch (err) {
      // the request is refused anyway; the lost row is reported where an operator looks
      this.#deps.logger.error(
        { rpc: event.rpc, err: errorMessage(err) },
        'audit log write failed for a refusal',
      )
    }
  }

  #keyReleaseGate(bootInfo: BootInfo): void {
    const { core } = this.#deps.config
    ensureKeyReleaseAllowed(bootInfo.attestationMode, {
      sevSnpKeyRelease: core.sevSnpKeyRelease,
      awsNitroTpmKeyRelease: core.awsNitroTpmKeyRelease,
    })
  }

  async getAppKey(
    apiVersion: number,
    vmConfig: string,
    attestation: VerifiedAttestation | null,
    transport: CallerTransport = {},
  ): Promise<AppKeyResult> {
    const caller: AuditCaller = { ...transport }
    return this.#audited('GetAppKey', caller, async () => {
      const { keys: result, appKeys } = await this.#getAppKey(
        apiVersion,
        vmConfig,
        attestation,
        caller,
      )
      return {
        result,
        released: () => [
          released('disk_crypt_key', secretFingerprint('disk_crypt_key', result.diskCryptKey)),
          released('env_crypt_key', envKeyFingerprint(appKeys)),
          released('k256_key', sha256Hex(appKeys.k256Pubkey)),
        ],
      }
    })
  }

  /** The app-wide keys of `appId`, derived once and kept (bounded): a fleet boots many
   * instances of few apps, and every GetAppKey of an app would otherwise redo the same HKDF, P-256
   * and secp256k1 work (~100 µs of worker CPU). They depend only on the root keys, which a worker
   * never swaps. */
  #appWideKeysOf(appId: Buffer): AppWideKeys {
    const key = appId.toString('hex')
    let keys = this.#appWideKeys.get(key)
    if (keys === undefined) {
      const { state, secp256k1 } = this.#deps
      const envCryptKey = inContext('Failed to derive env encrypt key', () =>
        deriveDhSecret(state.rootCaKey, [appId, 'env-encrypt-key']),
      )
      const k256 = inContext('Failed to derive app ecdsa key', () =>
        deriveAppK256Key(secp256k1, state.rootK256Key, appId),
      )
      keys = {
        envCryptKey,
        envKeyFingerprint: undefined,
        k256Key: k256.key,
        k256Signature: k256.signature,
        k256Pubkey: k256.pubkey,
      }
      this.#appWideKeys.set(key, keys)
    }
    return keys
  }

  async #getAppKey(
    apiVersion: number,
    vmConfig: string,
    attestation: VerifiedAttestation | null,
    caller: AuditCaller,
  ): Promise<{ keys: AppKeyResult; appKeys: AppWideKeys }> {
    if (apiVersion > 1) throw new KmsError('KMS_ERR_RPC', `Unsupported API version: ${apiVersion}`)
    await this.#ensureSelfAllowed()
    let boot: BootConfig
    try {
      if (attestation === null) throw new KmsError('KMS_ERR_RPC', 'No attestation provided')
      boot = await this.#authorizeBoot(attestation, false, false, vmConfig, caller)
    } catch (err) {
      throw withContext('App not allowed', err)
    }
    this.#keyReleaseGate(boot.bootInfo)
    const { appId, instanceId, osImageHash } = boot.bootInfo
    const { state } = this.#deps
    const diskCryptKey = inContext('Failed to derive app disk key', () =>
      deriveDhSecret(state.rootCaKey, [appId, instanceId, 'app-disk-crypt-key']),
    )
    const appKeys = this.#appWideKeysOf(appId)
    this.#deps.logger.info(
      { appId: appId.toString('hex'), instanceId: instanceId.toString('hex') },
      'app keys released',
    )
    return {
      // copies: what leaves the service is the caller's, the memo keeps its own
      keys: {
        caCert: state.rootCaCertPem,
        diskCryptKey,
        envCryptKey: Buffer.from(appKeys.envCryptKey),
        k256Key: Buffer.from(appKeys.k256Key),
        k256Signature: Buffer.from(appKeys.k256Signature),
        gatewayAppId: boot.gatewayAppId,
        osImageHash,
      },
      appKeys,
    }
  }

  /** Also the source side of onboarding: a new KMS fetches the root keys with this RPC. */
  async getKmsKey(
    vmConfig: string,
    attestation: VerifiedAttestation | null,
    transport: CallerTransport = {},
  ): Promise<{ tempCaKey: string; caKey: string; k256Key: Buffer }> {
    const caller: AuditCaller = { ...transport }
    return this.#audited('GetKmsKey', caller, async () => {
      const result = await this.#getKmsKey(vmConfig, attestation, caller)
      const { state } = this.#deps
      return {
        result,
        released: () => [
          released('root-ca.key', p256Fingerprint(state.rootCaKey)),
          released('root-k256.key', sha256Hex(state.k256Pubkey)),
          released('tmp-ca.key', pemPublicKeyFingerprint(result.tempCaKey)),
        ],
      }
    })
  }

  async #getKmsKey(
    vmConfig: string,
    attestation: VerifiedAttestation | null,
    caller: AuditCaller,
  ): Promise<{ tempCaKey: string; caKey: string; k256Key: Buffer }> {
    await this.#ensureSelfAllowed()
    if (attestation === null) throw new KmsError('KMS_ERR_RPC', 'No attestation provided')
    const { bootInfo } = await this.#authorizeBoot(attestation, true, false, vmConfig, caller)
    this.#keyReleaseGate(bootInfo)
    const { state } = this.#deps
    this.#deps.logger.warn(
      { mrAggregated: bootInfo.mrAggregated.toString('hex') },
      'KMS root keys released to another KMS',
    )
    return {
      tempCaKey: state.tmpCaKeyPem,
      caKey: state.rootCaKey.pkcs8Pem(),
      k256Key: Buffer.from(state.rootK256Key),
    }
  }

  async signCert(
    apiVersion: number,
    csrBytes: Buffer,
    signature: Buffer,
    vmConfig: string,
    transport: CallerTransport = {},
  ): Promise<string[]> {
    const caller: AuditCaller = { ...transport }
    return this.#audited('SignCert', caller, async () => {
      const result = await this.#signCert(apiVersion, csrBytes, signature, vmConfig, caller)
      const [leafPem = '', appCaPem = ''] = result
      return {
        result,
        released: () => [
          released('leaf certificate', sha256Hex(pemDecode(leafPem, 'CERTIFICATE'))),
          released('app CA certificate', sha256Hex(pemDecode(appCaPem, 'CERTIFICATE'))),
        ],
      }
    })
  }

  async #signCert(
    apiVersion: number,
    csrBytes: Buffer,
    signature: Buffer,
    vmConfig: string,
    caller: AuditCaller,
  ): Promise<string[]> {
    // upstream order: self-authorization, then api_version/decode/signature, then attestation
    await this.#ensureSelfAllowed()
    const csr = decodeVerifiedCsr(apiVersion, csrBytes, signature)
    let verified: VerifiedAttestation
    let wireVersion: 0 | 1
    try {
      const { version, attestation } = decodeVersionedAttestation(csr.attestation)
      wireVersion = version
      verified = await this.#deps.verifier.verifyWithRaPubkey(attestation, csr.pubkey)
    } catch (err) {
      throw withContext('Quote verification failed', err)
    }
    const { bootInfo } = await this.#authorizeBoot(verified, false, true, vmConfig, caller)
    this.#keyReleaseGate(bootInfo)
    // the vm_config the OS-image check measured; nothing else about the config is bound
    // (docs/design.md#signcert-copies-only-bound-bytes)
    const measuredVmConfig =
      this.#deps.config.core.image.verify && bootInfo.attestationMode !== 'dstack-amd-sev-snp'
        ? vmConfigText(vmConfig, verified.attestation.config)
        : null
    const extAttestation = csr.config.extQuote
      ? inContext('Failed to sign certificate', () =>
          encodeVersionedAttestation({
            version: wireVersion,
            attestation: certifiedAttestation(verified, measuredVmConfig),
          }),
        )
      : undefined
    const { state } = this.#deps
    const appCaKey = inContext('Failed to derive app disk key', () =>
      deriveP256Key(state.rootCaKey, [bootInfo.appId, 'app-ca']),
    )
    const appCa = issueAppCaCert(bootInfo.appId, appCaKey, {
      key: state.rootCaKey,
      subjectDer: state.rootCaSubjectDer,
    })
    const leaf = inContext('Failed to sign certificate', () => {
      const cfg = csr.config
      const appInfo = cfg.extAppInfo ? certifiedAppInfo(verified, measuredVmConfig) : undefined
      return issueSignCertLeaf(
        inContext('Failed to parse signature', () => P256PublicKey.fromSpkiDer(csr.pubkey)),
        {
          orgName: cfg.orgName ?? undefined,
          subject: cfg.subject,
          subjectAltNames: cfg.subjectAltNames,
          usageServerAuth: cfg.usageServerAuth,
          usageClientAuth: cfg.usageClientAuth,
          notBefore: unixSecondsToDate(cfg.notBefore),
          notAfter: unixSecondsToDate(cfg.notAfter),
        },
        { key: appCaKey, subjectDer: appCa.subjectDer },
        bootInfo.appId,
        { appInfo, attestation: extAttestation },
      )
    })
    return [leaf.pem, appCa.pem, state.rootCaCertPem]
  }
}

interface BootConfig {
  bootInfo: BootInfo
  gatewayAppId: string
}

export interface AppKeyResult {
  caCert: string
  diskCryptKey: Buffer
  envCryptKey: Buffer
  k256Key: Buffer
  k256Signature: Buffer
  gatewayAppId: string
  osImageHash: Buffer
}

function inContext<T>(context: string, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw withContext(context, err)
  }
}

function unixSecondsToDate(seconds: bigint | null): Date | undefined {
  return seconds === null ? undefined : new Date(Number(seconds) * 1000)
}

/** `derive_k256_key`: the app's secp256k1 key (HKDF bytes used as the scalar) and the root key's
 * signature over its compressed public key (docs/design.md#key-hierarchy). The public key is
 * returned too, so the audit fingerprint does not redo the scalar multiplication. */
export function deriveAppK256Key(
  secp256k1: Secp256k1Backend,
  rootK256Key: Uint8Array,
  appId: Uint8Array,
): { key: Buffer; signature: Buffer; pubkey: Buffer } {
  const key = deriveKey(rootK256Key, [appId, 'app-key'], 32)
  if (!isValidSecp256k1Scalar(key)) {
    throw new KmsError('KMS_ERR_CRYPTO', 'derived secp256k1 scalar is out of range')
  }
  const pubkey = secp256k1.publicKeyCompressed(key)
  return {
    key,
    signature: signMessage(secp256k1, rootK256Key, APP_KEY_PREFIX, appId, pubkey),
    pubkey,
  }
}
