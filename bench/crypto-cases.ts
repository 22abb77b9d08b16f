// The in-process operations behind the public RPCs, on fixed keys so every run does the same work.
import { deriveDhSecret } from '../src/crypto/kdf.js'
import { P256Key } from '../src/crypto/p256.js'
import {
  nobleSecp256k1,
  signMessage,
  signMessageWithTimestamp,
  type Secp256k1Backend,
} from '../src/crypto/secp256k1.js'
import { EnvPubKeyProvider } from '../src/kms/env-pubkey.js'
import { x25519PublicKey } from '../src/crypto/x25519.js'
import { decodeJson, encodeJson } from '../src/prpc/json.js'
import {
  AppIdType,
  GetMetaResponseType,
  PublicKeyResponseType,
  type GetMetaResponse,
  type PublicKeyResponse,
} from '../src/prpc/messages.js'
import { decodeMessage, encodeMessage } from '../src/prpc/schema.js'
import { issueRootCaCert, issueRpcCert } from '../src/x509/templates.js'

export const BENCH_APP_ID_HEX = '0123456789abcdef0123456789abcdef01234567'
/** the RPC's work with no cache (a new app id every time) */
export const ENV_KEY_HANDLER_CASE = 'GetAppEnvEncryptPubKey handler work'
/** the case the end-to-end GetAppEnvEncryptPubKey figures (one hot app id) are compared with */
export const ENV_KEY_CACHED_HANDLER_CASE = 'GetAppEnvEncryptPubKey handler work (cached)'
/** the prefix service.ts signs env-encryption public keys with */
const ENV_PUBKEY_PREFIX = 'dstack-env-encrypt-pubkey'

export interface BenchCase {
  name: string
  fn: () => unknown
}

export interface EnvKeyWork {
  /** decode the JSON request, derive, sign twice, encode the JSON response: what the
   * GetAppEnvEncryptPubKey handler computes, without HTTP, TLS or routing */
  handle(requestJson: Uint8Array): string
}

/** The same derivation and signatures as KmsService.getAppEnvEncryptPubKey, wrapped in the pRPC
 * JSON codec, with the given root keys. */
export function envKeyWork(
  rootCaKey: P256Key,
  rootK256Key: Buffer,
  secp256k1: Secp256k1Backend,
): EnvKeyWork {
  return {
    handle(requestJson) {
      const { app_id: appId } = decodeJson(AppIdType, requestJson)
      const publicKey = x25519PublicKey(deriveDhSecret(rootCaKey, [appId, 'env-encrypt-key']))
      const timestamp = BigInt(Math.floor(Date.now() / 1000))
      return encodeJson(PublicKeyResponseType, {
        public_key: publicKey,
        signature: signMessage(secp256k1, rootK256Key, ENV_PUBKEY_PREFIX, appId, publicKey),
        timestamp,
        signature_v1: signMessageWithTimestamp(
          secp256k1,
          rootK256Key,
          ENV_PUBKEY_PREFIX,
          appId,
          timestamp,
          publicKey,
        ),
      })
    },
  }
}

/** The same through EnvPubKeyProvider, as the KMS answers a hot app id. */
export function cachedEnvKeyWork(
  rootCaKey: P256Key,
  rootK256Key: Buffer,
  secp256k1: Secp256k1Backend,
): EnvKeyWork {
  const provider = new EnvPubKeyProvider({ rootCaKey, rootK256Key, secp256k1 })
  return {
    handle(requestJson) {
      const { app_id: appId } = decodeJson(AppIdType, requestJson)
      const a = provider.get(appId)
      return encodeJson(PublicKeyResponseType, {
        public_key: a.publicKey,
        signature: a.signature,
        timestamp: a.timestamp,
        signature_v1: a.signatureV1,
      })
    },
  }
}

/** The X25519 public key the KMS must answer for `appIdHex` under `rootCaKey`. */
export function expectedEnvPublicKeyHex(rootCaKey: P256Key, appIdHex: string): string {
  const secret = deriveDhSecret(rootCaKey, [Buffer.from(appIdHex, 'hex'), 'env-encrypt-key'])
  return x25519PublicKey(secret).toString('hex')
}

/** `secp256k1` signs in the handler cases: the backend the KMS picks with `auto`. */
export function cryptoCases(secp256k1: Secp256k1Backend): BenchCase[] {
  const rootCaKey = P256Key.fromScalar(Buffer.alloc(32, 0x11))
  const rpcKey = P256Key.fromScalar(Buffer.alloc(32, 0x22))
  const k256 = Buffer.alloc(32, 0x33)
  const appId = Buffer.from(BENCH_APP_ID_HEX, 'hex')
  const rootCa = issueRootCaCert(rootCaKey)
  const secret = deriveDhSecret(rootCaKey, [appId, 'env-encrypt-key'])
  const publicKey = x25519PublicKey(secret)

  const pubKeyResponse: PublicKeyResponse = {
    public_key: publicKey,
    signature: signMessage(nobleSecp256k1, k256, ENV_PUBKEY_PREFIX, appId, publicKey),
    timestamp: 1_750_000_000n,
    signature_v1: signMessageWithTimestamp(
      nobleSecp256k1,
      k256,
      ENV_PUBKEY_PREFIX,
      appId,
      1_750_000_000n,
      publicKey,
    ),
  }
  const k256Pubkey = nobleSecp256k1.publicKeyCompressed(k256)
  const meta: GetMetaResponse = {
    ca_cert: rootCa.pem,
    allow_any_upgrade: true,
    k256_pubkey: k256Pubkey,
    bootstrap_info: {
      ca_pubkey: rootCaKey.spkiDer(),
      k256_pubkey: k256Pubkey,
      attestation: Buffer.alloc(0),
    },
    is_dev: true,
    gateway_app_id: 'any',
    kms_contract_address: null,
    chain_id: null,
    app_auth_implementation: null,
  }
  const pubKeyJson = Buffer.from(encodeJson(PublicKeyResponseType, pubKeyResponse))
  const metaJson = Buffer.from(encodeJson(GetMetaResponseType, meta))
  const pubKeyProto = encodeMessage(PublicKeyResponseType, pubKeyResponse)
  const metaProto = encodeMessage(GetMetaResponseType, meta)
  const request = Buffer.from(JSON.stringify({ app_id: BENCH_APP_ID_HEX }))
  const work = envKeyWork(rootCaKey, k256, secp256k1)
  const cached = cachedEnvKeyWork(rootCaKey, k256, secp256k1)
  const issuer = { key: rootCaKey, subjectDer: rootCa.subjectDer }

  return [
    { name: 'deriveDhSecret', fn: () => deriveDhSecret(rootCaKey, [appId, 'env-encrypt-key']) },
    { name: 'x25519PublicKey', fn: () => x25519PublicKey(secret) },
    {
      name: 'signMessage (noble)',
      fn: () => signMessage(nobleSecp256k1, k256, ENV_PUBKEY_PREFIX, appId, publicKey),
    },
    ...(secp256k1 === nobleSecp256k1
      ? []
      : [
          {
            name: `signMessage (${secp256k1.name})`,
            fn: () => signMessage(secp256k1, k256, ENV_PUBKEY_PREFIX, appId, publicKey),
          },
        ]),
    { name: 'issueRpcCert', fn: () => issueRpcCert('kms.example.com', rpcKey, issuer) },
    {
      name: 'JSON encode PublicKeyResponse',
      fn: () => encodeJson(PublicKeyResponseType, pubKeyResponse),
    },
    {
      name: 'JSON decode PublicKeyResponse',
      fn: () => decodeJson(PublicKeyResponseType, pubKeyJson),
    },
    { name: 'JSON encode GetMetaResponse', fn: () => encodeJson(GetMetaResponseType, meta) },
    { name: 'JSON decode GetMetaResponse', fn: () => decodeJson(GetMetaResponseType, metaJson) },
    {
      name: 'proto encode PublicKeyResponse',
      fn: () => encodeMessage(PublicKeyResponseType, pubKeyResponse),
    },
    {
      name: 'proto decode PublicKeyResponse',
      fn: () => decodeMessage(PublicKeyResponseType, pubKeyProto),
    },
    { name: 'proto encode GetMetaResponse', fn: () => encodeMessage(GetMetaResponseType, meta) },
    {
      name: 'proto decode GetMetaResponse',
      fn: () => decodeMessage(GetMetaResponseType, metaProto),
    },
    { name: ENV_KEY_HANDLER_CASE, fn: () => work.handle(request) },
    { name: ENV_KEY_CACHED_HANDLER_CASE, fn: () => cached.handle(request) },
  ]
}
