// The onboarding service (spec 06 §3, §5, §10, §11; D5–D7).
import type { Logger } from 'pino'
import type { AuthApi } from '../auth/auth-api.js'
import type { KmsConfig } from '../config/types.js'
import type { Secp256k1Backend } from '../crypto/secp256k1.js'
import { KmsError, errorMessage } from '../errors.js'
import { bootstrap, type BootstrapInfo } from '../keys/bootstrap.js'
import type { TeeBackend } from '../tee/backend.js'
import { Mutex } from '../util/mutex.js'
import { ensureSelfKmsAllowed } from '../auth/self-auth.js'

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
  logger: Logger
}

export class OnboardService {
  readonly #deps: OnboardServiceDeps
  readonly #lock = new Mutex()

  constructor(deps: OnboardServiceDeps) {
    this.#deps = deps
  }

  async bootstrap(domain: string): Promise<BootstrapInfo> {
    const { config, tee, secp256k1, logger } = this.#deps
    return this.#lock.run(async () => {
      const info = await bootstrap(
        {
          certDir: config.core.certDir,
          tee,
          secp256k1,
          ensureSelfKmsAllowed: () => ensureSelfKmsAllowed(config, tee),
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

  async onboard(): Promise<never> {
    return this.#lock.run(async () => {
      throw new KmsError(
        'KMS_ERR_NOT_IMPLEMENTED',
        'Failed to onboard: onboarding from another KMS is not implemented yet in dstack-kms-ts',
      )
    })
  }

  async attestationInfo(): Promise<AttestationInfo> {
    const { config, tee, authApi, logger } = this.#deps
    if (tee.canAttest) {
      throw new KmsError(
        'KMS_ERR_NOT_IMPLEMENTED',
        `Failed to get attestation: attestation info for tee.backend = "${tee.name}" is not implemented yet`,
      )
    }
    let ethRpcUrl = ''
    let kmsContractAddress = ''
    try {
      const info = await authApi.info()
      ethRpcUrl = info.ethRpcUrl ?? ''
      kmsContractAddress = info.kmsContractAddress ?? ''
    } catch (err) {
      logger.warn(`failed to get auth api info: ${errorMessage(err)}`)
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
}
