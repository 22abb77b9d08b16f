// Trust anchors for quote verification. The Intel SGX root is built in; a replacement (a mock
// PKI, a lab root) is accepted only behind upstream HEAD's explicit opt-in, because a wrong root
// makes every forged quote verify.
import { readFileSync } from 'node:fs'
import dcap from '@phala/dcap-qvl'
import type { AttestationConfig } from '../config/types.js'
import { KmsError, hasErrorCode, withContext } from '../errors.js'
import { TAG, derChildren, parseDer, readBoolean } from '../asn1/der.js'
import { OID } from '../asn1/oids.js'
import { parseCertificate } from '../x509/parse.js'
import { pemDecode } from '../asn1/pem.js'

/** Intel SGX Root CA (DER), the anchor of every production PCK chain. */
export const INTEL_SGX_ROOT_CA_DER: Buffer = Buffer.from(dcap.constants.TRUSTED_ROOT_CA_DER)

function isCaCertificate(der: Buffer): boolean {
  const ext = parseCertificate(der).extensions.get(OID.basicConstraints)
  if (ext === undefined) return false
  const parts = derChildren(parseDer(ext.value))
  // cA BOOLEAN DEFAULT FALSE: absent means "not a CA"
  return parts[0]?.tag === TAG.BOOLEAN && readBoolean(parts[0], 'basicConstraints cA')
}

/** Reads a root CA file (PEM or DER) and checks that it holds exactly one CA certificate;
 * `platform` names it in errors the way upstream does (`TDX`). */
export function readRootCaFile(path: string, platform = 'TDX'): Buffer {
  let raw: Buffer
  try {
    raw = readFileSync(path)
  } catch (err) {
    throw withContext(`failed to read ${platform} root CA from ${path}`, err, 'KMS_ERR_CONFIG')
  }
  return rootCaDer(raw, platform)
}

/** PEM or DER bytes → validated DER. */
export function rootCaDer(raw: Buffer, platform = 'TDX'): Buffer {
  let der: Buffer
  if (raw.subarray(0, 10).toString('latin1') === '-----BEGIN') {
    try {
      der = pemDecode(raw.toString('utf8'), 'CERTIFICATE')
    } catch (err) {
      throw withContext(`failed to parse ${platform} root CA PEM`, err, 'KMS_ERR_CONFIG')
    }
  } else {
    der = raw
  }
  let isCa: boolean
  try {
    isCa = isCaCertificate(der)
  } catch (err) {
    if (hasErrorCode(err, 'KMS_ERR_DER_TRAILING_DATA')) {
      throw new KmsError('KMS_ERR_CONFIG', `trailing data in ${platform} root CA`, { cause: err })
    }
    throw withContext(`failed to parse ${platform} root CA certificate`, err, 'KMS_ERR_CONFIG')
  }
  if (!isCa) throw new KmsError('KMS_ERR_CONFIG', `${platform} root certificate is not a CA`)
  return der
}

/** The root the TDX quote verifier trusts: Intel's, or `core.attestation.root_ca.tdx` when the
 * operator also set `insecure_allow_external_trust_anchors`. */
export function resolveTdxRootCa(cfg: AttestationConfig): Buffer {
  const path = cfg.rootCa.tdx
  if (path === '') return INTEL_SGX_ROOT_CA_DER
  if (!cfg.insecureAllowExternalTrustAnchors) {
    throw new KmsError(
      'KMS_ERR_CONFIG',
      `core.attestation.root_ca.tdx is set (${path}) but core.attestation.insecure_allow_external_trust_anchors is false; set it to true to trust that root, or remove core.attestation.root_ca.tdx`,
    )
  }
  return readRootCaFile(path, 'TDX')
}
