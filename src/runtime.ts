// The collaborators every process that touches keys needs, built once from the configuration:
// TEE backend, secp256k1 backend, auth API, cache database, attestation verifier and the KMS
// self-authorizer. Built the same way in the supervisor (bootstrap, certificate renewal) and in
// the workers, so they all agree on what "verified" means.
import type { Logger } from 'pino'
import { StaticCollateralSource, type CollateralSource } from './attestation/collateral.js'
import { PccsCollateralSource } from './attestation/pccs-source.js'
import { resolveTdxRootCa } from './attestation/trust.js'
import { AttestationVerifier } from './attestation/verify.js'
import { createAuthApi, type AuthApi } from './auth/auth-api.js'
import { SelfAuthorizer } from './auth/self-auth.js'
import { CacheDb } from './cache/cache-db.js'
import type { KmsConfig } from './config/types.js'
import type { Secp256k1Backend } from './crypto/secp256k1.js'
import { selectSecp256k1Backend } from './crypto/secp256k1-select.js'
import type { TeeBackend } from './tee/backend.js'
import { createTeeBackend } from './tee/factory.js'
import { SimulatorBackend } from './tee/simulator/simulator-backend.js'
import { USER_AGENT } from './version.js'

export interface KmsRuntime {
  tee: TeeBackend
  secp256k1: Secp256k1Backend
  authApi: AuthApi
  cache: CacheDb
  verifier: AttestationVerifier
  selfAuth: SelfAuthorizer
  close(): Promise<void>
}

export interface RuntimeOptions {
  /** log which secp256k1 backend was chosen (once per process is enough) */
  announce?: boolean
  env?: NodeJS.ProcessEnv
}

/** Where quotes are checked: against the simulator's own mock PKI and collateral when the
 * configuration explicitly trusts it (docs/design.md#trust-model), else against the configured
 * (default Intel) root with collateral from the PCCS. */
function trustFor(
  config: KmsConfig,
  tee: TeeBackend,
  cache: CacheDb,
  logger: Logger,
): { rootCaDer: Buffer; collateral: CollateralSource } {
  if (config.tee.simulator.trustMockRoot && tee instanceof SimulatorBackend) {
    logger.warn(
      'trusting the TEE simulator mock Intel root CA (tee.simulator.trust_mock_root = true): simulated quotes are accepted as genuine',
    )
    return {
      rootCaDer: tee.mockRootCaDer,
      collateral: new StaticCollateralSource(tee.collateral()),
    }
  }
  const rootCaDer = resolveTdxRootCa(config.core.attestation)
  return {
    rootCaDer,
    collateral: new PccsCollateralSource({
      pccsUrl: config.core.pccsUrl,
      db: cache,
      now: () => Math.floor(Date.now() / 1000),
      logger,
      rootCaDer,
    }),
  }
}

export async function createRuntime(
  config: KmsConfig,
  logger: Logger,
  opts: RuntimeOptions = {},
): Promise<KmsRuntime> {
  const tee = await createTeeBackend(config, { logger, env: opts.env ?? process.env })
  const secp256k1 = selectSecp256k1Backend(
    config.crypto.backend,
    opts.announce === true ? logger : { info: () => {} },
  )
  const authApi = createAuthApi(config.core.authApi, USER_AGENT)
  const cache = CacheDb.open(config.core.image.cacheDir, {
    onCorrupt: (info) =>
      logger.warn(
        info,
        `cache database ${info.dbPath} was damaged (${info.reason}); moved it to ${info.movedTo} and started an empty cache`,
      ),
  })
  const verifier = new AttestationVerifier({
    ...trustFor(config, tee, cache, logger),
    engine: config.core.attestation.quoteVerifier,
  })
  const selfAuth = new SelfAuthorizer({
    enforce: config.core.enforceSelfAuthorization,
    tee,
    verifier,
    authApi,
    logger,
  })
  return {
    tee,
    secp256k1,
    authApi,
    cache,
    verifier,
    selfAuth,
    close: async () => {
      // the cache DB is closed even when the TEE backend fails to close: a worker shutting down
      // must not leave the SQLite file (and its WAL) open behind an error
      try {
        await tee.close()
      } finally {
        cache.close()
      }
    },
  }
}
