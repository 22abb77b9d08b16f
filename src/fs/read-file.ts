// Reading a file the KMS cannot do without (keys, certificates, TLS material): any failure
// becomes a KmsError whose message names what was being read.
import { readFileSync } from 'node:fs'
import { withContext, type KmsErrorCode } from '../errors.js'
import { isNotFound } from './errno.js'

export function readRequiredFile(
  path: string,
  context: string,
  code: KmsErrorCode = 'KMS_ERR_KEYS',
): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    throw withContext(context, err, code)
  }
}

/** The file's bytes, or null when it does not exist. Every other failure (EACCES, EISDIR, EIO)
 * is thrown as it is: a file that is there but cannot be read is not an absent one. */
export function readOptionalFile(path: string): Buffer | null {
  try {
    return readFileSync(path)
  } catch (err) {
    if (isNotFound(err)) return null
    throw err
  }
}
