// An in-process KmsService over real collaborators (a key set on disk, the auth API the config
// names, a self-authorizer that does not enforce) for tests that drive key release directly.
import type { Logger } from 'pino'
import type { AuditLog } from '../../src/audit/audit-log.js'
import type { AttestationVerifier } from '../../src/attestation/verify.js'
import { createAuthApi } from '../../src/auth/auth-api.js'
import { SelfAuthorizer } from '../../src/auth/self-auth.js'
import type { CacheDb } from '../../src/cache/cache-db.js'
import type { KmsConfig } from '../../src/config/types.js'
import { nobleSecp256k1 } from '../../src/crypto/secp256k1.js'
import { bootstrap } from '../../src/keys/bootstrap.js'
import { KmsService } from '../../src/kms/service.js'
import { loadKmsState } from '../../src/kms/state.js'
import { NoneBackend } from '../../src/tee/backend.js'
import { USER_AGENT } from '../../src/version.js'

/** Bootstraps a fresh key set into `certDir` without a TEE and without the self-KMS check. */
export async function bootstrapKeySet(certDir: string, domain = 'localhost'): Promise<void> {
  await bootstrap(
    {
      certDir,
      tee: new NoneBackend(),
      secp256k1: nobleSecp256k1,
      ensureSelfKmsAllowed: async () => {},
    },
    domain,
  )
}

export interface TestKmsServiceDeps {
  config: KmsConfig
  verifier: AttestationVerifier
  cache: CacheDb
  logger: Logger
  audit?: AuditLog | null
}

/** A KmsService on the key set of `config.core.certDir`, with no TEE and self-authorization off. */
export function testKmsService(deps: TestKmsServiceDeps): KmsService {
  const { config, verifier, cache, logger } = deps
  const authApi = createAuthApi(config.core.authApi, USER_AGENT)
  const tee = new NoneBackend()
  return new KmsService({
    config,
    state: loadKmsState(config.core.certDir, nobleSecp256k1),
    verifier,
    selfAuth: new SelfAuthorizer({ enforce: false, tee, verifier, authApi, logger }),
    secp256k1: nobleSecp256k1,
    authApi,
    cache,
    logger,
    audit: deps.audit,
  })
}
