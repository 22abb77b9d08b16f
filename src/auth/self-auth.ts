// KMS self-authorization (spec 05 §11). With enforce_self_authorization = false every check
// passes (upstream's outside-a-TEE recipe; config validation forces it off for backend "none",
// D18). The attested path needs the attestation verifier and the /bootAuth/kms decision call,
// which land with the attestation work; until then an enforcing KMS fails closed.
import type { KmsConfig } from '../config/types.js'
import { KmsError } from '../errors.js'
import type { TeeBackend } from '../tee/backend.js'

function notAvailable(tee: TeeBackend, context: string): KmsError {
  return new KmsError(
    'KMS_ERR_TEE',
    `${context}: Failed to get local KMS attestation: self-authorization with tee.backend = "${tee.name}" is not implemented yet`,
  )
}

/** ensure_self_kms_allowed (Bootstrap, auto-bootstrap). */
export async function ensureSelfKmsAllowed(config: KmsConfig, tee: TeeBackend): Promise<void> {
  if (!config.core.enforceSelfAuthorization) return
  throw notAvailable(tee, 'failed to build local KMS boot info')
}

/** ensure_self_allowed (trusted KMS RPCs); the caller adds `KMS self authorization failed`. */
export async function ensureSelfAllowed(config: KmsConfig, tee: TeeBackend): Promise<void> {
  if (!config.core.enforceSelfAuthorization) return
  throw notAvailable(tee, 'Failed to load cached self boot info')
}
