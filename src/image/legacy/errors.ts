// Every failure of the legacy image path is an ImageError: the verifier wraps it into
// upstream's `Failed to verify os image hash: …` chain, and the stable code lets callers tell an
// image problem from a denied policy or a broken quote.
import { KmsError } from '../../errors.js'

export class ImageError extends KmsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('KMS_ERR_IMAGE', message, options)
    this.name = 'ImageError'
  }
}
