// Which attested platforms the KMS releases keys to. Verification (attestation/) says what a
// platform is; whether that is enough for keys is the service's policy, set by the operator.
import type { TeeVariant } from '../attestation/types.js'
import { KmsError } from '../errors.js'

/** Upstream HEAD `ensure_key_release_allowed`: platforms whose TCB includes the cloud's
 * hypervisor get keys only when the operator opted in. */
export function ensureKeyReleaseAllowed(
  v: TeeVariant,
  cfg: { sevSnpKeyRelease: boolean; awsNitroTpmKeyRelease: boolean },
): void {
  if (v === 'dstack-amd-sev-snp' && !cfg.sevSnpKeyRelease) {
    throw new KmsError('KMS_ERR_DENIED', 'amd sev-snp key release is not enabled')
  }
  if (v === 'dstack-aws-nitro-tpm' && !cfg.awsNitroTpmKeyRelease) {
    throw new KmsError('KMS_ERR_DENIED', 'aws nitro-tpm key release is not enabled')
  }
}
