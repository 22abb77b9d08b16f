// update_certs (spec 06 §7, D20 = upstream HEAD's rules): on every start the RPC certificate is
// re-minted (fresh attestation when the backend can attest; a failure is then fatal), and each CA
// certificate only inside the 365-day renewal window. Keys, DNs and serials never change, so
// guests that cached the old root CA keep validating.
import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import { KmsError, withContext } from '../errors.js'
import { writeFileAtomic } from '../fs/atomic-write.js'
import type { TeeBackend } from '../tee/backend.js'
import type { IssuedCertificate } from '../x509/certificate.js'
import { parseCertificate, type ParsedCertificate } from '../x509/parse.js'
import { pemDecode } from '../x509/pem.js'
import { issueRootCaCert, issueTempCaCert } from '../x509/templates.js'
import { CERT_DIR_FILES, certPath } from './cert-dir.js'
import { loadKeys, mintRpcCert } from './key-set.js'

export const CA_RENEWAL_WINDOW_MS = 365 * 24 * 3600 * 1000

export interface UpdateCertsOptions {
  certDir: string
  /** `core.onboard.auto_bootstrap_domain`; when non-empty it replaces the rpc-domain file */
  autoBootstrapDomain: string
  tee: TeeBackend
  logger: Logger
  now?: Date
}

function readCert(path: string): ParsedCertificate | undefined {
  try {
    return parseCertificate(pemDecode(readFileSync(path, 'utf8'), 'CERTIFICATE'))
  } catch {
    return undefined
  }
}

export function needsRenewal(cert: ParsedCertificate | undefined, now: Date): boolean {
  return cert === undefined || cert.notAfter.getTime() <= now.getTime() + CA_RENEWAL_WINDOW_MS
}

function readDomain(opts: UpdateCertsOptions): string {
  if (opts.autoBootstrapDomain !== '') return opts.autoBootstrapDomain.trim()
  const path = certPath(opts.certDir, CERT_DIR_FILES.rpcDomain)
  let domain: string
  try {
    domain = readFileSync(path, 'utf8').trim()
  } catch (err) {
    throw new KmsError('KMS_ERR_KEYS', `failed to read the KMS domain from ${path}: ${String(err)}`)
  }
  if (domain === '') throw new KmsError('KMS_ERR_KEYS', `the KMS domain in ${path} is empty`)
  return domain
}

export async function updateCerts(opts: UpdateCertsOptions): Promise<void> {
  const now = opts.now ?? new Date()
  const keys = loadKeys(opts.certDir)
  const domain = readDomain(opts)
  const write = (file: string, cert: IssuedCertificate) =>
    writeFileAtomic(certPath(opts.certDir, file), cert.pem, { mode: 0o644 })

  const tmpCaPath = certPath(opts.certDir, CERT_DIR_FILES.tmpCaCert)
  if (needsRenewal(readCert(tmpCaPath), now)) {
    write(CERT_DIR_FILES.tmpCaCert, issueTempCaCert(keys.tmpCaKey))
    opts.logger.info('Renewed temporary client CA certificate')
  }
  const rootCaPath = certPath(opts.certDir, CERT_DIR_FILES.rootCaCert)
  let rootCa = readCert(rootCaPath)
  if (rootCa !== undefined && !rootCa.spkiDer.equals(keys.rootCaKey.spkiDer())) {
    throw new KmsError('KMS_ERR_KEYS', `${rootCaPath} does not belong to root-ca.key`)
  }
  if (needsRenewal(rootCa, now)) {
    const issued = issueRootCaCert(keys.rootCaKey)
    write(CERT_DIR_FILES.rootCaCert, issued)
    rootCa = parseCertificate(issued.der)
    opts.logger.info('Renewed KMS root CA certificate')
  }
  if (rootCa === undefined) throw new KmsError('KMS_ERR_INTERNAL', 'root CA certificate missing')
  let rpcCert: IssuedCertificate
  try {
    rpcCert = await mintRpcCert(
      domain,
      keys.rpcKey,
      { key: keys.rootCaKey, subjectDer: rootCa.subjectDer },
      opts.tee,
    )
  } catch (err) {
    throw withContext(
      'Failed to reissue the attested KMS RPC certificate; refusing to start with a potentially unattested certificate',
      err,
      'KMS_ERR_CERT',
    )
  }
  write(CERT_DIR_FILES.rpcCert, rpcCert)
  opts.logger.info({ domain }, `Reissued the KMS RPC certificate for ${domain}`)
}
