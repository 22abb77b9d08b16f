// update_certs, by upstream HEAD's rules: on every start the RPC certificate is
// re-minted (fresh attestation when the backend can attest; a failure is then fatal), and each CA
// certificate only inside the 365-day renewal window. Keys, DNs and serials never change, so
// guests that cached the old root CA keep validating.
import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import { validateDomain } from '../config/validate.js'
import { KmsError, withContext } from '../errors.js'
import { writeFileAtomic } from '../fs/atomic-write.js'
import type { TeeBackend } from '../tee/backend.js'
import type { IssuedCertificate } from '../x509/certificate.js'
import { parseCertificate, type ParsedCertificate } from '../x509/parse.js'
import { issueRootCaCert, issueTempCaCert } from '../x509/templates.js'
import type { P256Key } from '../crypto/p256.js'
import { CERT_DIR_FILES, certPath } from './cert-dir.js'
import { loadStartupKeySet, mintRpcCert, type StartupKeySet } from './key-set.js'

export const CA_RENEWAL_WINDOW_MS = 365 * 24 * 3600 * 1000

export interface UpdateCertsOptions {
  certDir: string
  /** `core.onboard.auto_bootstrap_domain`; when non-empty it replaces the rpc-domain file */
  autoBootstrapDomain: string
  tee: TeeBackend
  logger: Logger
  now?: Date
  /** what start-up already read from certDir (serve's key-set check); read here when absent */
  keySet?: StartupKeySet
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
  // The file goes into the RPC certificate's SAN verbatim; Bootstrap only ever writes a
  // validated name, so anything else was written behind our back.
  try {
    validateDomain(domain, 'KMS_ERR_KEYS')
  } catch (err) {
    throw withContext(`the KMS domain in ${path} is not a DNS name`, err, 'KMS_ERR_KEYS')
  }
  return domain
}

export async function updateCerts(opts: UpdateCertsOptions): Promise<void> {
  const now = opts.now ?? new Date()
  const keySet = opts.keySet ?? loadStartupKeySet(opts.certDir)
  const { keys } = keySet
  const domain = readDomain(opts)
  const write = (file: string, cert: IssuedCertificate): void => {
    const path = certPath(opts.certDir, file)
    try {
      // atomic: on a full or read-only disk the old certificate stays, and no temp file
      writeFileAtomic(path, cert.pem, { mode: 0o644 })
    } catch (err) {
      throw withContext(`Failed to write ${path}`, err, 'KMS_ERR_CERT')
    }
  }

  // A CA certificate is minted when absent, re-minted inside the renewal window and when it does
  // not belong to its key (the key is the source of truth; key, DN and serial stay). One that is
  // there but unreadable never gets this far: readCaCert refuses it.
  const renewCa = (
    file: string,
    current: ParsedCertificate | null,
    key: P256Key,
    issue: (k: P256Key) => IssuedCertificate,
    what: string,
  ): ParsedCertificate => {
    if (current === null) opts.logger.warn(`${file} is missing; minting it from its key`)
    const foreign = current !== null && !current.spkiDer.equals(key.spkiDer())
    if (foreign) opts.logger.warn(`${file} does not belong to its key; re-minting it`)
    if (current === null || foreign || needsRenewal(current, now)) {
      const issued = issue(key)
      write(file, issued)
      opts.logger.info(`Renewed ${what}`)
      return parseCertificate(issued.der)
    }
    return current
  }
  renewCa(
    CERT_DIR_FILES.tmpCaCert,
    keySet.tmpCaCert,
    keys.tmpCaKey,
    issueTempCaCert,
    'temporary client CA certificate',
  )
  const rootCa = renewCa(
    CERT_DIR_FILES.rootCaCert,
    keySet.rootCaCert,
    keys.rootCaKey,
    issueRootCaCert,
    'KMS root CA certificate',
  )
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
