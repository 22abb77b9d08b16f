// Onboard.Bootstrap and auto-bootstrap (upstream `kms/src/onboard_service.rs`): one key set
// generated, minted and committed atomically.
import { existsSync } from 'node:fs'
import type { Secp256k1Backend } from '../crypto/secp256k1.js'
import { KmsError, withContext } from '../errors.js'
import type { TeeBackend } from '../tee/backend.js'
import { validateDomain } from '../config/validate.js'
import { CERT_DIR_FILES, certPath } from './cert-dir.js'
import { commitFiles, recoverStaging, type CertDirFile } from './commit.js'
import { generateKeys, mintCerts, type KmsCerts, type KmsKeys } from './key-set.js'
import { bootstrapInfoJson, type BootstrapInfo } from './bootstrap-info.js'
import { bootstrapKeysReportData } from './report-data.js'

export interface BootstrapDeps {
  certDir: string
  tee: TeeBackend
  secp256k1: Secp256k1Backend
  /** ensure_self_kms_allowed; throws with upstream's inner message when denied */
  ensureSelfKmsAllowed(): Promise<void>
}

const PRIVATE = 0o600
const PUBLIC = 0o644

/** The files of a key set in upstream's write order: keys, certificates, then rpc-domain. */
export function keySetFiles(keys: KmsKeys, certs: KmsCerts, domain: string): CertDirFile[] {
  return [
    { name: CERT_DIR_FILES.tmpCaKey, data: keys.tmpCaKey.pkcs8Pem(), mode: PRIVATE },
    { name: CERT_DIR_FILES.rootCaKey, data: keys.rootCaKey.pkcs8Pem(), mode: PRIVATE },
    { name: CERT_DIR_FILES.rpcKey, data: keys.rpcKey.pkcs8Pem(), mode: PRIVATE },
    { name: CERT_DIR_FILES.rootK256Key, data: keys.rootK256Key, mode: PRIVATE },
    { name: CERT_DIR_FILES.tmpCaCert, data: certs.tmpCaCert.pem, mode: PUBLIC },
    { name: CERT_DIR_FILES.rootCaCert, data: certs.rootCaCert.pem, mode: PUBLIC },
    { name: CERT_DIR_FILES.rpcCert, data: certs.rpcCert.pem, mode: PUBLIC },
    { name: CERT_DIR_FILES.rpcDomain, data: domain, mode: PUBLIC },
  ]
}

export function alreadyBootstrapped(certDir: string): boolean {
  return [CERT_DIR_FILES.bootstrapInfo, CERT_DIR_FILES.rootCaKey, CERT_DIR_FILES.rootK256Key].some(
    (f) => existsSync(certPath(certDir, f)),
  )
}

async function prepareKeySet(
  deps: BootstrapDeps,
  domain: string,
  notAllowedContext: string,
): Promise<{ keys: KmsKeys; certs: KmsCerts }> {
  validateDomain(domain)
  // A commit interrupted by a crash is finished (or discarded) before deciding anything.
  recoverStaging(deps.certDir)
  if (alreadyBootstrapped(deps.certDir)) {
    throw new KmsError('KMS_ERR_ALREADY_BOOTSTRAPPED', 'KMS has already been bootstrapped')
  }
  try {
    await deps.ensureSelfKmsAllowed()
  } catch (err) {
    throw withContext(notAllowedContext, err)
  }
  try {
    const keys = generateKeys()
    return { keys, certs: await mintCerts(keys, domain, deps.tee) }
  } catch (err) {
    throw withContext('Failed to generate keys', err)
  }
}

export type { BootstrapInfo }

/** Onboard.Bootstrap. The caller serialises calls (one Bootstrap/Onboard at a time). */
export async function bootstrap(deps: BootstrapDeps, domain: string): Promise<BootstrapInfo> {
  const { keys, certs } = await prepareKeySet(deps, domain, 'KMS is not allowed to bootstrap')
  const caPubkey = keys.rootCaKey.spkiDer()
  const k256Pubkey = deps.secp256k1.publicKeyCompressed(keys.rootK256Key)
  let attestation: Buffer = Buffer.alloc(0)
  if (deps.tee.canAttest) {
    try {
      attestation = await deps.tee.attest(bootstrapKeysReportData(caPubkey, k256Pubkey))
    } catch (err) {
      throw withContext('Failed to attest keys', err)
    }
  }
  const info: BootstrapInfo = { caPubkey, k256Pubkey, attestation }
  // bootstrap-info.json goes first, as upstream writes it before the keys.
  commitFiles(deps.certDir, [
    { name: CERT_DIR_FILES.bootstrapInfo, data: bootstrapInfoJson(info), mode: PUBLIC },
    ...keySetFiles(keys, certs, domain),
  ])
  return info
}

/** auto-bootstrap: keys for `domain`, no attest_keys and no bootstrap-info.json. */
export async function autoBootstrap(deps: BootstrapDeps, domain: string): Promise<void> {
  const { keys, certs } = await prepareKeySet(deps, domain, 'KMS is not allowed to auto-bootstrap')
  commitFiles(deps.certDir, keySetFiles(keys, certs, domain))
}
