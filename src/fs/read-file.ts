// Reading a file the KMS cannot do without (keys, certificates, TLS material): any failure
// becomes a KmsError whose message names what was being read.
import { readFileSync } from 'node:fs'
import { withContext, type KmsErrorCode } from '../errors.js'

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
