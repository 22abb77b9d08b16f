// The four root secrets of a KMS and the three certificates minted from them (spec 02 §6,
// spec 03 §5, spec 06 §4).
import { readRequiredFile } from '../fs/read-file.js'
import { P256Key } from '../crypto/p256.js'
import { generateSecp256k1Key, isValidSecp256k1Scalar } from '../crypto/secp256k1.js'
import { KmsError, withContext } from '../errors.js'
import { strippedAttestationBytes } from '../ratls/cert-attestation.js'
import type { TeeBackend } from '../tee/backend.js'
import type { IssuedCertificate } from '../x509/certificate.js'
import { issueRootCaCert, issueRpcCert, issueTempCaCert } from '../x509/templates.js'
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
      // certificates embed the stripped form (spec 04 §5), like upstream's into_stripped()
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

function readP256(certDir: string, file: string): P256Key {
  const pem = readKeyFile(certDir, file).toString('utf8')
  try {
    return P256Key.fromPem(pem)
  } catch (err) {
    throw withContext(`failed to load ${certPath(certDir, file)}`, err, 'KMS_ERR_KEYS')
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

export function loadKeys(certDir: string): KmsKeys {
  return {
    tmpCaKey: readP256(certDir, CERT_DIR_FILES.tmpCaKey),
    rootCaKey: readP256(certDir, CERT_DIR_FILES.rootCaKey),
    rpcKey: readP256(certDir, CERT_DIR_FILES.rpcKey),
    rootK256Key: readRootK256(certDir),
  }
}
