// Everything the main worker needs from cert_dir, read and parsed once at start (upstream
// `KmsState::new`), so no request touches the key files. The keys come from the one key-set
// loader that update_certs uses too.
import { resolve } from 'node:path'
import type { RpcTlsConfig } from '../config/types.js'
import { P256Key } from '../crypto/p256.js'
import type { Secp256k1Backend } from '../crypto/secp256k1.js'
import { KmsError, withContext } from '../errors.js'
import { CERT_DIR_FILES, certPath } from '../keys/cert-dir.js'
import { loadKeys } from '../keys/key-set.js'
import { parseCertificate } from '../x509/parse.js'
import { pemDecode } from '../asn1/pem.js'
import { readRequiredFile } from '../fs/read-file.js'

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
}

/** The main listener's TLS material, from `[rpc.tls]` (by default the cert_dir files; upstream
 * reads these paths, so an operator may point them elsewhere). */
export interface ListenerTls {
  key: string
  cert: string
  /** client-certificate trust anchor (`[rpc.tls.mutual] ca_certs`) */
  ca: string
}

function readConfigured(path: string, key: string): string {
  return readRequiredFile(path, `failed to read ${key} = ${JSON.stringify(path)}`).toString('utf8')
}

export function loadListenerTls(tls: RpcTlsConfig): ListenerTls {
  return {
    key: readConfigured(tls.key, 'rpc.tls.key'),
    cert: readConfigured(tls.certs, 'rpc.tls.certs'),
    ca: readConfigured(tls.mutual.caCerts, 'rpc.tls.mutual.ca_certs'),
  }
}

/** Settings that point the listener away from the files update_certs maintains; allowed (as
 * upstream), but then nobody renews those files, so say so at start. */
export function listenerTlsWarnings(certDir: string, tls: RpcTlsConfig): string[] {
  const pairs: Array<[string, string, string]> = [
    ['rpc.tls.key', tls.key, CERT_DIR_FILES.rpcKey],
    ['rpc.tls.certs', tls.certs, CERT_DIR_FILES.rpcCert],
    ['rpc.tls.mutual.ca_certs', tls.mutual.caCerts, CERT_DIR_FILES.tmpCaCert],
  ]
  return pairs
    .filter(([, path, file]) => resolve(path) !== resolve(certPath(certDir, file)))
    .map(
      ([key, path, file]) =>
        `${key} = ${JSON.stringify(path)} is not ${certPath(certDir, file)}: the listener uses a file that update_certs does not maintain`,
    )
}

function readText(certDir: string, file: string, context: string): string {
  return readRequiredFile(certPath(certDir, file), context).toString('utf8')
}

export function loadKmsState(certDir: string, secp256k1: Secp256k1Backend): KmsState {
  const keys = loadKeys(certDir)
  const rootCaCertPem = readText(
    certDir,
    CERT_DIR_FILES.rootCaCert,
    'Failed to load root CA certificate',
  )
  let rootCaSubjectDer: Buffer
  try {
    const rootCert = parseCertificate(pemDecode(rootCaCertPem, 'CERTIFICATE'))
    if (!rootCert.spkiDer.equals(keys.rootCaKey.spkiDer())) {
      throw new KmsError('KMS_ERR_KEYS', 'root-ca.crt does not match root-ca.key')
    }
    rootCaSubjectDer = rootCert.subjectDer
  } catch (err) {
    throw withContext('Failed to load root CA certificate', err, 'KMS_ERR_KEYS')
  }
  const tmpCaCertPem = readText(certDir, CERT_DIR_FILES.tmpCaCert, 'Failed to read temp ca cert')
  try {
    const tmpCert = parseCertificate(pemDecode(tmpCaCertPem, 'CERTIFICATE'))
    // GetTempCaCert hands out this pair and guests sign with it; a pair that does not match
    // would make every guest's client certificate fail at our own TLS layer.
    if (!tmpCert.spkiDer.equals(keys.tmpCaKey.spkiDer())) {
      throw new KmsError('KMS_ERR_KEYS', 'tmp-ca.crt does not match tmp-ca.key')
    }
  } catch (err) {
    throw withContext('Failed to read temp ca key', err, 'KMS_ERR_KEYS')
  }
  return {
    certDir,
    rootCaKey: keys.rootCaKey,
    rootCaCertPem,
    rootCaSubjectDer,
    rootK256Key: keys.rootK256Key,
    k256Pubkey: secp256k1.publicKeyCompressed(keys.rootK256Key),
    tmpCaKeyPem: keys.tmpCaKeyPem,
    tmpCaCertPem,
  }
}
