// Onboard.Onboard, the receiver's side of KMS-to-KMS key replication (upstream
// `kms/src/onboard_service.rs` `OnboardHandler::onboard` and `Keys::onboard`), and the
// read-only inspection of a source that the wizard shows before replicating.
//
// Wire-compatible with an upstream source, and stricter than upstream in two ways (see
// docs/deploy/replicas.md): every connection after the first is pinned to the SPKI whose
// attestation was verified on the first, and the received root keys must match the source's own
// GetMeta `ca_cert` and `k256_pubkey` before anything is written.
import { X509Certificate, createHash } from 'node:crypto'
import { pemDecode, pemLabels } from '../asn1/pem.js'
import { buildBootInfo, type BootInfo } from '../attestation/boot-info.js'
import type { AttestationVerifier, VerifiedAttestation } from '../attestation/verify.js'
import { teeVariantOf } from '../attestation/versioned.js'
import type { AuthApi } from '../auth/auth-api.js'
import type { SelfAuthorizer } from '../auth/self-auth.js'
import { validateDomain } from '../config/validate.js'
import { P256Key } from '../crypto/p256.js'
import type { Secp256k1Backend } from '../crypto/secp256k1.js'
import { isValidSecp256k1Scalar } from '../crypto/secp256k1.js'
import { KmsError, errorMessage, withContext } from '../errors.js'
import { alreadyBootstrapped, keySetFiles } from '../keys/bootstrap.js'
import { commitFiles, recoverStaging } from '../keys/commit.js'
import { mintRpcCert, type KmsCerts, type KmsKeys } from '../keys/key-set.js'
import type { IssuedCertificate } from '../x509/certificate.js'
import { attestationFromCertificate } from '../ratls/cert-attestation.js'
import { issueRaTlsClientIdentity } from '../ratls/client-identity.js'
import type { TeeBackend } from '../tee/backend.js'
import { parseCertificate } from '../x509/parse.js'
import {
  SourceClient,
  normalizeSourceUrl,
  type PeerCheck,
  type SourceClientOptions,
} from './source-client.js'

export interface ReplicateDeps {
  certDir: string
  tee: TeeBackend
  secp256k1: Secp256k1Backend
  verifier: AttestationVerifier
  authApi: AuthApi
  selfAuth: SelfAuthorizer
  client?: SourceClientOptions
}

/** What the receiver learnt about a source whose RPC certificate verified. */
export interface VerifiedSource {
  url: string
  spkiDer: Buffer
  verified: VerifiedAttestation
  bootInfo: BootInfo
}

export interface SourceMeta {
  caCertPem: string
  caSpkiDer: Buffer
  k256Pubkey: Buffer
}

export interface SourceDecision {
  allowed: boolean
  reason: string
}

export interface SourceInspection {
  source: VerifiedSource
  meta: SourceMeta
  decision: SourceDecision
}

/** Refused at once: a source only releases its keys to a KMS that can attest itself. */
export const NO_TEE_REASON =
  'this KMS has no TEE (tee.backend = "none") and cannot attest itself; a source KMS only releases its keys to an attested KMS'

/** Connection A's certificate check (upstream's `cert_validator`, plus the verification the
 * RA-TLS client does): a certificate, with an attestation, bound to the certificate's key. */
async function verifySourceCertificate(
  verifier: AttestationVerifier,
  url: string,
  der: Buffer | null,
): Promise<VerifiedSource> {
  if (der === null) {
    throw new KmsError('KMS_ERR_RPC', 'Source KMS did not present a TLS certificate')
  }
  let cert
  try {
    cert = parseCertificate(der)
  } catch (err) {
    throw withContext('Failed to parse source KMS certificate', err, 'KMS_ERR_CERT')
  }
  let attestation
  try {
    attestation = attestationFromCertificate(cert)
  } catch (err) {
    throw withContext('Failed to decode source KMS attestation', err, 'KMS_ERR_ATTESTATION')
  }
  if (attestation === null) {
    throw new KmsError('KMS_ERR_ATTESTATION', 'Source KMS certificate does not contain attestation')
  }
  let verified: VerifiedAttestation
  try {
    verified = await verifier.verifyWithRaPubkey(attestation, cert.spkiDer)
  } catch (err) {
    throw withContext('Failed to verify source KMS attestation', err, 'KMS_ERR_ATTESTATION')
  }
  let bootInfo: BootInfo
  try {
    bootInfo = buildBootInfo(verified, { useBoottimeMr: false, vmConfig: '' })
  } catch (err) {
    throw withContext('Failed to decode source KMS app info', err, 'KMS_ERR_ATTESTATION')
  }
  return { url, spkiDer: Buffer.from(cert.spkiDer), verified, bootInfo }
}

/** Every connection after A: the same server key, or nothing is sent. */
function pinnedTo(spkiDer: Buffer): PeerCheck {
  return (der) => {
    if (der === null) {
      throw new KmsError('KMS_ERR_RPC', 'Source KMS did not present a TLS certificate')
    }
    if (!Buffer.from(parseCertificate(der).spkiDer).equals(spkiDer)) {
      throw new KmsError(
        'KMS_ERR_CERT',
        'Source KMS presented a different certificate key than the one whose attestation was verified',
      )
    }
  }
}

function asObject(method: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new KmsError('KMS_ERR_RPC', `${method}: unexpected reply`)
  }
  return value as Record<string, unknown>
}

function str(method: string, obj: Record<string, unknown>, key: string): string {
  const v = obj[key]
  if (typeof v !== 'string') throw new KmsError('KMS_ERR_RPC', `${method}: reply lacks ${key}`)
  return v
}

function hexBytes(method: string, obj: Record<string, unknown>, key: string): Buffer {
  const v = str(method, obj, key)
  if (!/^([0-9a-fA-F]{2})*$/.test(v)) {
    throw new KmsError('KMS_ERR_RPC', `${method}: ${key} is not hex`)
  }
  return Buffer.from(v, 'hex')
}

async function fetchMeta(client: SourceClient, pin: PeerCheck): Promise<SourceMeta> {
  const reply = asObject('GetMeta', await client.call('GetMeta', null, pin))
  const caCertPem = str('GetMeta', reply, 'ca_cert')
  let caSpkiDer: Buffer
  try {
    caSpkiDer = Buffer.from(parseCertificate(pemDecode(caCertPem, 'CERTIFICATE')).spkiDer)
  } catch (err) {
    throw withContext('Failed to parse source KMS ca_cert', err, 'KMS_ERR_CERT')
  }
  return { caCertPem, caSpkiDer, k256Pubkey: hexBytes('GetMeta', reply, 'k256_pubkey') }
}

/** upstream `ensure_kms_allowed` without the throw: the receiver's own `/bootAuth/kms` about the
 * source, an empty `osImageHash` (legacy source certificates) filled in from this KMS. */
async function decideSource(deps: ReplicateDeps, bootInfo: BootInfo): Promise<SourceDecision> {
  let info = bootInfo
  if (info.osImageHash.length === 0) {
    let local: BootInfo
    try {
      local = await deps.selfAuth.localBootInfo()
    } catch (err) {
      throw withContext('failed to get local KMS boot info for os_image_hash fallback', err)
    }
    info = { ...info, osImageHash: local.osImageHash }
  }
  let response
  try {
    response = await deps.authApi.bootAuth(info, true)
  } catch (err) {
    throw withContext('failed to call KMS auth check', err)
  }
  return response.isAllowed
    ? { allowed: true, reason: '' }
    : { allowed: false, reason: response.reason }
}

/** Onboard.InspectSource: connection A, GetMeta over the pinned key, this KMS's own decision.
 * Writes nothing. */
export async function inspectSource(
  deps: ReplicateDeps,
  sourceUrl: string,
): Promise<SourceInspection> {
  const url = normalizeSourceUrl(sourceUrl)
  const client = new SourceClient(url, deps.client)
  let source: VerifiedSource | undefined
  const meta = await fetchMeta(client, async (der) => {
    source = await verifySourceCertificate(deps.verifier, url, der)
  })
  if (source === undefined) throw new KmsError('KMS_ERR_INTERNAL', 'source was not verified')
  return { source, meta, decision: await decideSource(deps, source.bootInfo) }
}

/** The CA fingerprint the wizard shows: lower-case hex SHA-256 of the `ca_cert` DER. */
export function caCertFingerprint(caCertPem: string): string {
  return createHash('sha256').update(pemDecode(caCertPem, 'CERTIFICATE')).digest('hex')
}

export interface OnboardResult {
  k256Pubkey: Buffer
  caPubkey: Buffer
  source: VerifiedSource
}

/** upstream `Keys::onboard`: everything up to (not including) the store; errors here are the
 * ones the caller wraps in `Failed to onboard`. */
async function receiveKeys(
  deps: ReplicateDeps,
  url: string,
): Promise<{ keys: KmsKeys; caCerts: SharedCaCerts; source: VerifiedSource }> {
  const { tee, verifier } = deps
  const client = new SourceClient(url, deps.client)

  // 1–2. connection A: verified certificate, then GetTempCaCert
  let source: VerifiedSource | undefined
  const tmpReply = asObject(
    'GetTempCaCert',
    await client.call('GetTempCaCert', null, async (der) => {
      source = await verifySourceCertificate(verifier, url, der)
    }),
  )
  if (source === undefined) throw new KmsError('KMS_ERR_INTERNAL', 'source was not verified')
  const pin = pinnedTo(source.spkiDer)

  // 3. an RA-TLS client certificate signed by the source's temp CA
  let identity
  try {
    const { key, cert } = await issueRaTlsClientIdentity(
      {
        certPem: str('GetTempCaCert', tmpReply, 'temp_ca_cert'),
        keyPem: str('GetTempCaCert', tmpReply, 'temp_ca_key'),
      },
      async (reportData) => {
        try {
          return await tee.attest(reportData)
        } catch (err) {
          throw withContext('Failed to get quote', err)
        }
      },
    )
    identity = { certPem: cert.pem, keyPem: key.pkcs8Pem() }
  } catch (err) {
    throw withContext('Failed to generate RA-TLS client certificate', err)
  }

  // 5. this KMS's own policy about the source
  const decision = await decideSource(deps, source.bootInfo)
  if (!decision.allowed) {
    throw withContext(
      'Source KMS is not allowed for onboarding',
      new KmsError('KMS_ERR_DENIED', `boot denied: ${decision.reason}`),
    )
  }

  // 6. the vm_config the source's policy judges this KMS by
  let vmConfig: string
  try {
    vmConfig = await tee.vmConfig()
  } catch (err) {
    throw withContext('Failed to get info', err)
  }

  // ours: what the source says its root keys are, over the pinned key
  const meta = await fetchMeta(client, pin)

  // 7. connection B: mTLS, pinned
  const keyReply = asObject(
    'GetKmsKey',
    await client.call('GetKmsKey', { vm_config: vmConfig }, pin, identity),
  )

  // 8. upstream's parsing, in upstream's order
  const list = keyReply.keys
  if (!Array.isArray(list) || list.length !== 1) throw new KmsError('KMS_ERR_RPC', 'Invalid keys')
  const entry = asObject('GetKmsKey', list[0])
  const parse = <T>(context: string, fn: () => T): T => {
    try {
      return fn()
    } catch (err) {
      throw withContext(context, err, 'KMS_ERR_KEYS')
    }
  }
  const rootCaKey = parse('Failed to parse CA key', () =>
    P256Key.fromPem(str('GetKmsKey', entry, 'ca_key')),
  )
  const tmpCaKey = parse('Failed to parse tmp CA key', () =>
    P256Key.fromPem(str('GetKmsKey', keyReply, 'temp_ca_key')),
  )
  const rootK256Key = parse('Failed to parse ECDSA key', () => {
    const k = hexBytes('GetKmsKey', entry, 'k256_key')
    if (k.length !== 32 || !isValidSecp256k1Scalar(k)) {
      throw new KmsError('KMS_ERR_KEYS', 'signature error')
    }
    return k
  })

  // ours: the keys must be the ones the source publishes, or nothing is written
  if (!rootCaKey.spkiDer().equals(meta.caSpkiDer)) {
    throw new KmsError(
      'KMS_ERR_KEYS',
      'Source KMS sent a CA key that does not match the ca_cert of its GetMeta',
    )
  }
  if (!deps.secp256k1.publicKeyCompressed(rootK256Key).equals(meta.k256Pubkey)) {
    throw new KmsError(
      'KMS_ERR_KEYS',
      'Source KMS sent a k256 key that does not match the k256_pubkey of its GetMeta',
    )
  }
  const caCerts = {
    rootCaCert: adoptCaCert(meta.caCertPem, rootCaKey, 'ca_cert'),
    tmpCaCert: adoptCaCert(
      str('GetTempCaCert', tmpReply, 'temp_ca_cert'),
      tmpCaKey,
      'temp_ca_cert',
    ),
  }
  return {
    keys: { tmpCaKey, rootCaKey, rpcKey: P256Key.generate(), rootK256Key },
    caCerts,
    source,
  }
}

interface SharedCaCerts {
  rootCaCert: IssuedCertificate
  tmpCaCert: IssuedCertificate
}

/** Ours: the replica keeps the source's CA certificates byte for byte instead of re-minting
 * them as upstream does. A re-minted certificate has the same key, DN and serial but its own
 * validity and signature, so replicas behind one load balancer would hand guests different
 * `ca_cert` bytes. Taken only when it is a single certificate of `key`, signed by `key`. */
function adoptCaCert(pem: string, key: P256Key, field: string): IssuedCertificate {
  const reject = (why: string) =>
    new KmsError('KMS_ERR_CERT', `Source KMS ${field} is not usable: ${why}`)
  let der: Buffer
  let labels: string[]
  try {
    labels = pemLabels(pem)
    der = pemDecode(pem, 'CERTIFICATE')
  } catch (err) {
    throw reject(errorMessage(err))
  }
  if (labels.length !== 1 || labels[0] !== 'CERTIFICATE') throw reject('not a single certificate')
  const parsed = parseCertificate(der)
  if (!Buffer.from(parsed.spkiDer).equals(key.spkiDer())) {
    throw reject('it does not belong to the received key')
  }
  const x509 = new X509Certificate(der)
  if (!x509.verify(x509.publicKey)) throw reject('it is not self-signed by the received key')
  return { der, pem, subjectDer: Buffer.from(parsed.subjectDer) }
}

/** Onboard.Onboard and auto-onboard. The caller serialises calls (one Bootstrap/Onboard at a
 * time) and has validated `domain`. */
export async function onboardFromSource(
  deps: ReplicateDeps,
  sourceUrl: string,
  domain: string,
): Promise<OnboardResult> {
  validateDomain(domain)
  // A commit interrupted by a crash is finished (or discarded) before deciding anything.
  recoverStaging(deps.certDir)
  if (alreadyBootstrapped(deps.certDir)) {
    throw new KmsError('KMS_ERR_ALREADY_BOOTSTRAPPED', 'KMS has already been onboarded')
  }
  if (!deps.tee.canAttest) {
    throw new KmsError('KMS_ERR_TEE', `Failed to onboard: ${NO_TEE_REASON}`)
  }
  const url = normalizeSourceUrl(sourceUrl)
  let received
  try {
    received = await receiveKeys(deps, url)
  } catch (err) {
    throw withContext('Failed to onboard', err)
  }
  const { keys, caCerts, source } = received
  let files
  try {
    // 9. this replica's own RPC certificate, attested by this CVM, signed by the shared root
    const rpcCert = await mintRpcCert(
      domain,
      keys.rpcKey,
      { key: keys.rootCaKey, subjectDer: caCerts.rootCaCert.subjectDer },
      deps.tee,
    )
    const certs: KmsCerts = { ...caCerts, rpcCert }
    files = keySetFiles(keys, certs, domain)
  } catch (err) {
    throw withContext('Failed to onboard', err)
  }
  try {
    // 10. no bootstrap-info.json: this KMS did not generate the keys
    commitFiles(deps.certDir, files)
  } catch (err) {
    throw withContext('Failed to store keys', err)
  }
  return {
    k256Pubkey: deps.secp256k1.publicKeyCompressed(keys.rootK256Key),
    caPubkey: keys.rootCaKey.spkiDer(),
    source,
  }
}

export function describeSource(s: VerifiedSource): Record<string, string> {
  return {
    url: s.url,
    mrAggregated: s.bootInfo.mrAggregated.toString('hex'),
    teeVariant: teeVariantOf(s.verified.attestation),
    tcbStatus: s.bootInfo.tcbStatus,
  }
}
