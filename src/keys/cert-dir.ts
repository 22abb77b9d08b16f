// The cert_dir layout (docs/design.md#cert-dir-files). File names are part of the compatibility
// contract: an upstream KMS pointed at our cert_dir, or ours at theirs, must find the same files.
import { existsSync } from 'node:fs'
import { join } from 'node:path'

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

export function keysExist(certDir: string): boolean {
  return REQUIRED_KEY_FILES.every((f) => existsSync(join(certDir, f)))
}
