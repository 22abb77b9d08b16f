// The one error of attestation decoding and building: upstream's texts, code
// KMS_ERR_ATTESTATION.
import { KmsError } from '../errors.js'

export function attErr(message: string, cause?: unknown): KmsError {
  return new KmsError('KMS_ERR_ATTESTATION', message, cause === undefined ? undefined : { cause })
}
