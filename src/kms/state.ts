// Everything the main worker needs from cert_dir, read and parsed once at start (spec 06 §2
// step 6), so no request touches the key files.
import { readFileSync } from 'node:fs'
import { P256Key } from '../crypto/p256.js'
import type { Secp256k1Backend } from '../crypto/secp256k1.js'
import { KmsError, withContext } from '../errors.js'
import { CERT_DIR_FILES, certPath } from '../keys/cert-dir.js'
import { readRootK256 } from '../keys/key-set.js'
import { parseCertificate } from '../x509/parse.js'
import { pemDecode } from '../x509/pem.js'

export interface KmsState {
  certDir: string
  rootCaKey: P256Key
  /** the exact text of root-ca.crt, as served in GetMeta / GetTempCaCert / GetAppKey */
  rootCaCertPem: string
  rootCaSubjectDer: Buffer
  rootK256Key: Buffer
  k256Pubkey: Buffer
  tmpCaKeyPem: string
  tmpCaCertPem: string
  rpcKeyPem: string
  rpcCertPem: string
}

function readText(certDir: string, file: string, context: string): string {
  try {
    return readFileSync(certPath(certDir, file), 'utf8')
  } catch (err) {
    throw withContext(context, err, 'KMS_ERR_KEYS')
  }
}

export function loadKmsState(certDir: string, secp256k1: Secp256k1Backend): KmsState {
  const rootCaCertPem = readText(
    certDir,
    CERT_DIR_FILES.rootCaCert,
    'Failed to load root CA certificate',
  )
  const rootCaKeyPem = readText(
    certDir,
    CERT_DIR_FILES.rootCaKey,
    'Failed to load root CA certificate',
  )
  let rootCaKey: P256Key
  let rootCaSubjectDer: Buffer
  try {
    rootCaKey = P256Key.fromPem(rootCaKeyPem)
    const rootCert = parseCertificate(pemDecode(rootCaCertPem, 'CERTIFICATE'))
    if (!rootCert.spkiDer.equals(rootCaKey.spkiDer())) {
      throw new KmsError('KMS_ERR_KEYS', 'root-ca.crt does not match root-ca.key')
    }
    rootCaSubjectDer = rootCert.subjectDer
  } catch (err) {
    throw withContext('Failed to load root CA certificate', err, 'KMS_ERR_KEYS')
  }
  let rootK256Key: Buffer
  try {
    rootK256Key = readRootK256(certDir)
  } catch (err) {
    throw withContext('Failed to load ECDSA root key', err, 'KMS_ERR_KEYS')
  }
  const tmpCaKeyPem = readText(certDir, CERT_DIR_FILES.tmpCaKey, 'Failed to read temp ca key')
  const tmpCaCertPem = readText(certDir, CERT_DIR_FILES.tmpCaCert, 'Failed to read temp ca cert')
  try {
    P256Key.fromPem(tmpCaKeyPem)
  } catch (err) {
    throw withContext('Failed to read temp ca key', err, 'KMS_ERR_KEYS')
  }
  return {
    certDir,
    rootCaKey,
    rootCaCertPem,
    rootCaSubjectDer,
    rootK256Key,
    k256Pubkey: secp256k1.publicKeyCompressed(rootK256Key),
    tmpCaKeyPem,
    tmpCaCertPem,
    rpcKeyPem: readText(certDir, CERT_DIR_FILES.rpcKey, 'Failed to read rpc key'),
    rpcCertPem: readText(certDir, CERT_DIR_FILES.rpcCert, 'Failed to read rpc cert'),
  }
}
