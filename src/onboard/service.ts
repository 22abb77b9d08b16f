// The onboarding service: Bootstrap, Onboard (src/onboard/replicate.ts), InspectSource,
// GetAttestationInfo (docs/design.md#bootstrap-onboard-and-finish; upstream
// `kms/src/onboard_service.rs`).
import type { Logger } from 'pino'
import type { AuthApi } from '../auth/auth-api.js'
import type { KmsConfig } from '../config/types.js'
import type { Secp256k1Backend } from '../crypto/secp256k1.js'
import { KmsError, errorMessage, withContext } from '../errors.js'
import { bootstrap, type BootstrapInfo } from '../keys/bootstrap.js'
import { keysExist } from '../keys/cert-dir.js'
import type { TeeBackend } from '../tee/backend.js'
import { Mutex } from '../util/concurrency.js'
import type { SelfAuthorizer } from '../auth/self-auth.js'
import type { AttestationVerifier } from '../attestation/verify.js'
import { buildBootInfo } from '../attestation/boot-info.js'
import { decodeVersionedAttestation, teeVariantOf } from '../attestation/versioned.js'
import { createHash } from 'node:crypto'
import { validateDomain } from '../config/validate.js'
import {
  describeSource,
  inspectSource,
  onboardFromSource,
  type OnboardResult,
  type ReplicateDeps,
  type SourceInspection,
} from './replicate.js'

export interface AttestationInfo {
  deviceId: Buffer
  mrAggregated: Buffer
  osImageHash: Buffer
  attestationMode: string
  siteName: string
  ethRpcUrl: string
  kmsContractAddress: string
  ppid: Buffer
}

export interface OnboardServiceDeps {
  config: KmsConfig
  tee: TeeBackend
  secp256k1: Secp256k1Backend
  authApi: AuthApi
  verifier: AttestationVerifier
  selfAuth: SelfAuthorizer
  logger: Logger
}

export class OnboardService {
  readonly #deps: OnboardServiceDeps
  readonly #lock = new Mutex()
  #busy = false

  constructor(deps: OnboardServiceDeps) {
    this.#deps = deps
  }

  async bootstrap(domain: string): Promise<BootstrapInfo> {
    const { config, tee, secp256k1, selfAuth, logger } = this.#deps
    if (this.#busy) {
      throw new KmsError('KMS_ERR_LOCKED', 'another Bootstrap or Onboard is in progress')
    }
    return this.#lock.run(async () => {
      const info = await bootstrap(
        {
          certDir: config.core.certDir,
          tee,
          secp256k1,
          ensureSelfKmsAllowed: () => selfAuth.ensureSelfKmsAllowed(),
        },
        domain,
      )
      logger.info(
        {
          domain,
          caPubkey: info.caPubkey.toString('hex'),
          k256Pubkey: info.k256Pubkey.toString('hex'),
        },
        'KMS bootstrapped',
      )
      return info
    })
  }

  /** Finish hands over to the KMS, which cannot start without keys: refuse it until a key set
   * is committed. Taking the lock makes a Finish sent during a Bootstrap wait for its outcome
   * instead of racing it. */
  async ensureFinishable(): Promise<void> {
    return this.#lock.run(async () => {
      if (!keysExist(this.#deps.config.core.certDir)) {
        throw new KmsError(
          'KMS_ERR_RPC',
          'Finish refused: no key set has been committed yet; call Bootstrap first',
        )
      }
    })
  }

  /** Onboard.Onboard. A second call while one is running is refused rather than queued: the
   * first one decides whether keys exist, and an operator double-clicking must not wait 60 s to
   * be told so. */
  async onboard(sourceUrl: string, domain: string): Promise<OnboardResult> {
    validateDomain(domain)
    if (this.#busy) {
      throw new KmsError(
        'KMS_ERR_LOCKED',
        'Failed to onboard: another Bootstrap or Onboard is in progress',
      )
    }
    this.#busy = true
    try {
      return await this.#lock.run(async () => {
        const result = await onboardFromSource(this.#replicateDeps(), sourceUrl, domain)
        this.#deps.logger.info(
          {
            source: describeSource(result.source),
            domain,
            caPubkey: result.caPubkey.toString('hex'),
            k256Pubkey: result.k256Pubkey.toString('hex'),
          },
          'KMS onboarded from source',
        )
        return result
      })
    } finally {
      this.#busy = false
    }
  }

  /** Onboard.InspectSource: verifies and describes a source; writes nothing. */
  async inspectSource(sourceUrl: string): Promise<SourceInspection> {
    return inspectSource(this.#replicateDeps(), sourceUrl)
  }

  #replicateDeps(): ReplicateDeps {
    const { config, tee, secp256k1, verifier, authApi, selfAuth } = this.#deps
    return { certDir: config.core.certDir, tee, secp256k1, verifier, authApi, selfAuth }
  }

  async attestationInfo(): Promise<AttestationInfo> {
    const { config, tee, authApi, logger } = this.#deps
    const measured = tee.canAttest ? await this.#measure() : null
    let ethRpcUrl = ''
    let kmsContractAddress = ''
    try {
      const info = await authApi.info()
      ethRpcUrl = info.ethRpcUrl ?? ''
      kmsContractAddress = info.kmsContractAddress ?? ''
    } catch (err) {
      logger.warn(`failed to get auth api info: ${errorMessage(err)}`)
    }
    if (measured !== null) {
      return { ...measured, siteName: config.core.siteName, ethRpcUrl, kmsContractAddress }
    }
    // Without a TEE there is nothing to measure: the measurement fields stay empty.
    return {
      deviceId: Buffer.alloc(0),
      mrAggregated: Buffer.alloc(0),
      osImageHash: Buffer.alloc(0),
      attestationMode: '',
      siteName: config.core.siteName,
      ethRpcUrl,
      kmsContractAddress,
      ppid: Buffer.alloc(0),
    }
  }

  /** Upstream `get_attestation_info`'s measurement steps with its error contexts. */
  async #measure(): Promise<
    Pick<AttestationInfo, 'deviceId' | 'mrAggregated' | 'osImageHash' | 'attestationMode' | 'ppid'>
  > {
    const { tee, verifier } = this.#deps
    const step = async <T>(context: string, fn: () => Promise<T> | T): Promise<T> => {
      try {
        return await fn()
      } catch (err) {
        throw withContext(context, err)
      }
    }
    const bytes = await step('Failed to get attestation', () => tee.attest(new Uint8Array(64)))
    const { attestation } = await step('Failed to decode attestation', () =>
      decodeVersionedAttestation(bytes),
    )
    const attestationMode = teeVariantOf(attestation)
    const verified = await step('Failed to verify attestation', () => verifier.verify(attestation))
    const vmConfig = await step('Failed to get VM info', () => tee.vmConfig())
    const boot = await step('Failed to decode app info', () =>
      buildBootInfo(verified, { useBoottimeMr: false, vmConfig }),
    )
    const ppid = verified.report.ppid
    return {
      deviceId: createHash('sha256').update(ppid).digest(),
      mrAggregated: boot.mrAggregated,
      osImageHash: boot.osImageHash,
      attestationMode,
      ppid,
    }
  }
}
