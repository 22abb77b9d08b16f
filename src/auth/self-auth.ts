// KMS self-authorization (docs/design.md#trust-model; upstream `kms/src/main_service.rs`): before
// releasing anything the KMS asks its own auth API whether this KMS — as its own attestation
// describes it — may serve. The BootInfo is computed once per hour
// (docs/design.md#own-bootinfo-reused-for-an-hour; upstream: once per process; a failure is retried
// on the next call), together with its webhook body; the decision is requested every time, so
// revoking a KMS in the policy takes effect at once.
import type { Logger } from 'pino'
import { buildBootInfo, type BootInfo } from '../attestation/boot-info.js'
import type { AttestationVerifier } from '../attestation/verify.js'
import { decodeVersionedAttestation } from '../attestation/versioned.js'
import { KmsError, withContext } from '../errors.js'
import type { TeeBackend } from '../tee/backend.js'
import { type AuthApi, PreparedBootInfo } from './auth-api.js'

/** Upstream attests with 32 zero bytes padded to 64 for its self-check. */
const SELF_CHECK_REPORT_DATA = new Uint8Array(64)

/** How long the own BootInfo is reused: it carries the TCB status and advisories, which change
 * when the platform's collateral does, so it must not live for the whole process. */
export const SELF_BOOT_INFO_TTL_MS = 60 * 60 * 1000

export interface SelfAuthorizerDeps {
  enforce: boolean
  /** default SELF_BOOT_INFO_TTL_MS */
  bootInfoTtlMs?: number
  now?: () => number
  tee: TeeBackend
  verifier: AttestationVerifier
  authApi: AuthApi
  logger?: Logger
}

export class SelfAuthorizer {
  readonly #deps: SelfAuthorizerDeps
  #bootInfo: { value: Promise<PreparedBootInfo>; expires: number } | null = null

  constructor(deps: SelfAuthorizerDeps) {
    this.#deps = deps
  }

  get enforced(): boolean {
    return this.#deps.enforce
  }

  /** `local_kms_boot_info`: attest with zero report data, decode, verify, build (vm_config ""). */
  async localBootInfo(): Promise<BootInfo> {
    const { tee, verifier } = this.#deps
    let bytes: Buffer
    try {
      bytes = await tee.attest(SELF_CHECK_REPORT_DATA)
    } catch (err) {
      throw withContext('Failed to get local KMS attestation', err)
    }
    let decoded
    try {
      decoded = decodeVersionedAttestation(bytes)
    } catch (err) {
      throw withContext('Failed to decode local KMS attestation', err)
    }
    let verified
    try {
      verified = await verifier.verify(decoded.attestation)
    } catch (err) {
      throw withContext('Failed to verify local KMS attestation', err)
    }
    return buildBootInfo(verified, { useBoottimeMr: false, vmConfig: '' })
  }

  #cachedBootInfo(): Promise<PreparedBootInfo> {
    const now = (this.#deps.now ?? Date.now)()
    if (this.#bootInfo === null || this.#bootInfo.expires <= now) {
      const entry = {
        value: this.localBootInfo().then((b) => new PreparedBootInfo(b)),
        expires: now + (this.#deps.bootInfoTtlMs ?? SELF_BOOT_INFO_TTL_MS),
      }
      this.#bootInfo = entry
      // a failure is retried on the next call, never cached
      entry.value.catch(() => {
        if (this.#bootInfo === entry) this.#bootInfo = null
      })
    }
    return this.#bootInfo.value
  }

  /** `ensure_self_allowed` (trusted KMS RPCs). Returns the own BootInfo, or null when
   * self-authorization is off. The caller adds `KMS self authorization failed`. */
  async ensureSelfAllowed(): Promise<BootInfo | null> {
    if (!this.#deps.enforce) return null
    let own: PreparedBootInfo
    try {
      own = await this.#cachedBootInfo()
    } catch (err) {
      throw withContext('Failed to load cached self boot info', err)
    }
    let response
    try {
      response = await this.#deps.authApi.bootAuth(own, true)
    } catch (err) {
      throw withContext('Failed to call self KMS auth check', err)
    }
    if (!response.isAllowed) {
      throw new KmsError('KMS_ERR_DENIED', `KMS is not allowed: ${response.reason}`)
    }
    return own.bootInfo
  }

  /** `ensure_self_kms_allowed` (Bootstrap, auto-bootstrap): nothing cached. The caller adds
   * `KMS is not allowed to bootstrap`. */
  async ensureSelfKmsAllowed(): Promise<void> {
    if (!this.#deps.enforce) return
    let bootInfo: BootInfo
    try {
      bootInfo = await this.localBootInfo()
    } catch (err) {
      throw withContext('failed to build local KMS boot info', err)
    }
    let response
    try {
      response = await this.#deps.authApi.bootAuth(bootInfo, true)
    } catch (err) {
      throw withContext('failed to call KMS auth check', err)
    }
    if (!response.isAllowed) {
      throw new KmsError('KMS_ERR_DENIED', `boot denied: ${response.reason}`)
    }
  }
}
