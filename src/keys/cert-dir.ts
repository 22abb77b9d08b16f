// The cert_dir layout (docs/design.md#cert-dir-files). File names are part of the compatibility
// contract: an upstream KMS pointed at our cert_dir, or ours at theirs, must find the same files.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { KmsError } from '../errors.js'

export const CERT_DIR_FILES = {
  tmpCaKey: 'tmp-ca.key',
  tmpCaCert: 'tmp-ca.crt',
  rootCaKey: 'root-ca.key',
  rootCaCert: 'root-ca.crt',
  rpcKey: 'rpc.key',
  rpcCert: 'rpc.crt',
  rootK256Key: 'root-k256.key',
  rpcDomain: 'rpc-domain',
  bootstrapInfo: 'bootstrap-info.json',
} as const

/** Every file whose presence means "keys exist" (upstream's rule; rpc-domain and
 * bootstrap-info.json are not required). */
export const REQUIRED_KEY_FILES = [
  CERT_DIR_FILES.tmpCaCert,
  CERT_DIR_FILES.tmpCaKey,
  CERT_DIR_FILES.rootCaCert,
  CERT_DIR_FILES.rootCaKey,
  CERT_DIR_FILES.rpcCert,
  CERT_DIR_FILES.rpcKey,
  CERT_DIR_FILES.rootK256Key,
] as const

export function certPath(certDir: string, file: string): string {
  return join(certDir, file)
}

/** The secrets of a key set. Nothing can re-create them: a new one is a different KMS, and every
 * app key derived from the old root would be lost. */
export const KEY_FILES = [
  CERT_DIR_FILES.tmpCaKey,
  CERT_DIR_FILES.rootCaKey,
  CERT_DIR_FILES.rpcKey,
  CERT_DIR_FILES.rootK256Key,
] as const

/** Whether cert_dir holds a key set. The certificates are left out of the decision: update_certs
 * re-mints a missing or unreadable one from its key before the KMS starts. A partial set (some
 * keys, or the bootstrap record, without the rest) is an error naming what is missing, never
 * "no keys": that answer would start the unauthenticated onboarding listener, and a Bootstrap
 * there would replace the surviving keys. */
export function keysExist(certDir: string): boolean {
  const missing = KEY_FILES.filter((f) => !existsSync(join(certDir, f)))
  if (missing.length === 0) return true
  const evidence = [...KEY_FILES, CERT_DIR_FILES.bootstrapInfo].filter((f) =>
    existsSync(join(certDir, f)),
  )
  if (evidence.length === 0) return false
  throw new KmsError(
    'KMS_ERR_KEYS',
    `incomplete key set in ${certDir}: ${missing.join(', ')} missing (present: ${evidence.join(', ')}); ` +
      'refusing to start onboarding over it. Restore the missing files from a backup',
  )
}
