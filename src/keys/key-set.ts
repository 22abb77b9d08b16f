// The four root secrets of a KMS and the three certificates minted from them (upstream
// `kms/src/crypto.rs` / `main_service.rs`), and the one loader of the key files that both the
// main worker's state and update_certs use.
import { readRequiredFile } from '../fs/read-file.js'
import { P256Key } from '../crypto/p256.js'
import {
  generateSecp256k1Key,
  isValidSecp256k1Scalar,
  nobleSecp256k1,
} from '../crypto/secp256k1.js'
import { KmsError, withContext } from '../errors.js'
import { strippedAttestationBytes } from '../ratls/cert-attestation.js'
import type { TeeBackend } from '../tee/backend.js'
import type { IssuedCertificate } from '../x509/certificate.js'
import type { ParsedCertificate } from '../x509/parse.js'
import { issueRootCaCert, issueRpcCert, issueTempCaCert } from '../x509/templates.js'
import { readBootstrapRecord } from './bootstrap-info.js'
import { readCaCert } from './ca-certs.js'
import { CERT_DIR_FILES, certPath } from './cert-dir.js'
import { ratlsCertReportData } from './report-data.js'

export interface KmsKeys {
  tmpCaKey: P256Key
  rootCaKey: P256Key
  rpcKey: P256Key
  /** 32-byte big-endian secp256k1 scalar */
  rootK256Key: Buffer
}

export interface KmsCerts {
  tmpCaCert: IssuedCertificate
  rootCaCert: IssuedCertificate
  rpcCert: IssuedCertificate
}

/** Same order as upstream `Keys::generate`: temp CA, root CA, RPC, root k256. */
export function generateKeys(): KmsKeys {
  return {
    tmpCaKey: P256Key.generate(),
    rootCaKey: P256Key.generate(),
    rpcKey: P256Key.generate(),
    rootK256Key: generateSecp256k1Key(),
  }
}

/** Issues the RPC certificate, with an attestation of its key when the backend can attest. */
export async function mintRpcCert(
  domain: string,
  rpcKey: P256Key,
  rootCa: { key: P256Key; subjectDer: Buffer },
  tee: TeeBackend,
): Promise<IssuedCertificate> {
  let attestation: Buffer | undefined
  if (tee.canAttest) {
    try {
      // certificates embed the stripped form, like upstream's into_stripped()
      attestation = strippedAttestationBytes(
        await tee.attest(ratlsCertReportData(rpcKey.spkiDer())),
      )
    } catch (err) {
      throw withContext('Failed to get quote', err)
    }
  }
  return issueRpcCert(domain, rpcKey, rootCa, attestation)
}

export async function mintCerts(keys: KmsKeys, domain: string, tee: TeeBackend): Promise<KmsCerts> {
  const tmpCaCert = issueTempCaCert(keys.tmpCaKey)
  const rootCaCert = issueRootCaCert(keys.rootCaKey)
  const rpcCert = await mintRpcCert(
    domain,
    keys.rpcKey,
    { key: keys.rootCaKey, subjectDer: rootCaCert.subjectDer },
    tee,
  )
  return { tmpCaCert, rootCaCert, rpcCert }
}

function readKeyFile(certDir: string, file: string): Buffer {
  const path = certPath(certDir, file)
  return readRequiredFile(path, `failed to read ${path}`)
}

function readP256(certDir: string, file: string): { key: P256Key; pem: string } {
  const pem = readKeyFile(certDir, file).toString('utf8')
  try {
    return { key: P256Key.fromPem(pem), pem }
  } catch (err) {
    throw withContext(`failed to load ${certPath(certDir, file)}`, err, 'KMS_ERR_KEYS')
  }
}

/** Runs `read` and puts upstream's context for that key in front of any failure. */
function inContext<T>(context: string, read: () => T): T {
  try {
    return read()
  } catch (err) {
    throw withContext(context, err, 'KMS_ERR_KEYS')
  }
}

export function readRootK256(certDir: string): Buffer {
  const raw = readKeyFile(certDir, CERT_DIR_FILES.rootK256Key)
  const path = certPath(certDir, CERT_DIR_FILES.rootK256Key)
  if (raw.length !== 32) {
    throw new KmsError(
      'KMS_ERR_KEYS',
      `failed to load ${path}: expected a 32-byte secp256k1 scalar, got ${raw.length} bytes`,
    )
  }
  if (!isValidSecp256k1Scalar(raw)) {
    throw new KmsError(
      'KMS_ERR_KEYS',
      `failed to load ${path}: the 32 bytes are not a valid secp256k1 scalar (zero or not below the group order)`,
    )
  }
  return raw
}

export interface LoadedKeys extends KmsKeys {
  /** the exact text of tmp-ca.key, which GetTempCaCert hands out */
  tmpCaKeyPem: string
}

/** A root key file overwritten with bytes that still parse (32 bytes are almost always a valid
 * secp256k1 scalar) would silently make this a different KMS. Bootstrap recorded both root
 * public keys; when that record is there, the keys must match it, and a record that is there
 * but damaged refuses too (readBootstrapRecord). */
function checkAgainstBootstrapInfo(certDir: string, rootCaKey: P256Key, rootK256Key: Buffer): void {
  const info = readBootstrapRecord(certDir)
  if (info === null) return
  const record = certPath(certDir, CERT_DIR_FILES.bootstrapInfo)
  if (!rootCaKey.spkiDer().equals(info.caPubkey)) {
    throw new KmsError(
      'KMS_ERR_KEYS',
      `${certPath(certDir, CERT_DIR_FILES.rootCaKey)} is not the root CA key recorded in ${record} (ca_pubkey); restore it from a backup`,
    )
  }
  if (!nobleSecp256k1.publicKeyCompressed(rootK256Key).equals(info.k256Pubkey)) {
    throw new KmsError(
      'KMS_ERR_KEYS',
      `${certPath(certDir, CERT_DIR_FILES.rootK256Key)} is not the root k256 key recorded in ${record} (k256_pubkey); restore it from a backup`,
    )
  }
}

/** Reads and parses the four key files of `certDir`. A failure names the file and carries the
 * context upstream's `KmsState::new` gives for that key, so start-up errors read the same
 * whichever of the two callers (the main worker, update_certs) meets the bad file first. */
export function loadKeys(certDir: string): LoadedKeys {
  const tmpCa = inContext('Failed to read temp ca key', () =>
    readP256(certDir, CERT_DIR_FILES.tmpCaKey),
  )
  const rootCaKey = inContext('Failed to load root CA certificate', () =>
    readP256(certDir, CERT_DIR_FILES.rootCaKey),
  ).key
  const rootK256Key = inContext('Failed to load ECDSA root key', () => readRootK256(certDir))
  checkAgainstBootstrapInfo(certDir, rootCaKey, rootK256Key)
  return {
    tmpCaKey: tmpCa.key,
    tmpCaKeyPem: tmpCa.pem,
    rootCaKey,
    // upstream's KmsState::new never reads rpc.key: the file name is the whole context
    rpcKey: readP256(certDir, CERT_DIR_FILES.rpcKey).key,
    rootK256Key,
  }
}

/** What the supervisor reads from cert_dir at start, once: the keys, and each CA certificate as
 * found (null when absent). update_certs works from this instead of reading the files again. */
export interface StartupKeySet {
  keys: LoadedKeys
  tmpCaCert: ParsedCertificate | null
  rootCaCert: ParsedCertificate | null
}

/** loadKeys, then the two CA certificates (readCaCert): any damage stops the start here, before
 * a worker is forked or a certificate written. */
export function loadStartupKeySet(certDir: string): StartupKeySet {
  return {
    keys: loadKeys(certDir),
    tmpCaCert: readCaCert(certDir, CERT_DIR_FILES.tmpCaCert),
    rootCaCert: readCaCert(certDir, CERT_DIR_FILES.rootCaCert),
  }
}
