// GetAppEnvEncryptPubKey's answer (upstream `kms/src/main_service.rs`
// `get_app_env_encrypt_pub_key`) with a bounded cache. Everything in it is deterministic: the
// X25519 key and the legacy signature depend only on the root keys and the app id, and the
// timestamped signature (RFC 6979) on those and the second. So a cache returns the very bytes a
// fresh computation would. A hit saves the HKDF, the P-256 and X25519 work and the legacy
// signature; the timestamped signature is made again once per app and second.
import { deriveDhSecret } from '../crypto/kdf.js'
import type { P256Key } from '../crypto/p256.js'
import {
  signMessage,
  signMessageWithTimestamp,
  type Secp256k1Backend,
} from '../crypto/secp256k1.js'
import { x25519PublicKey } from '../crypto/x25519.js'
import { KmsError, withContext } from '../errors.js'

export const ENV_PUBKEY_PREFIX = 'dstack-env-encrypt-pubkey'

/** The same shape as KmsService's EnvEncryptPubKey. */
export interface EnvEncryptPubKey {
  publicKey: Buffer
  signature: Buffer
  /** unix seconds, signed into signatureV1 */
  timestamp: bigint
  signatureV1: Buffer
}

export interface EnvPubKeyProviderOptions {
  rootCaKey: P256Key
  rootK256Key: Uint8Array
  secp256k1: Secp256k1Backend
  /** app ids kept; the least recently used is dropped beyond this (default 4096) */
  maxApps?: number
  now?: () => Date
}

interface AppEntry {
  publicKey: Buffer
  signature: Buffer
  /** the second of the last timestamped signature made for this app */
  timestamp: bigint
  signatureV1: Buffer
}

export const DEFAULT_ENV_PUBKEY_CACHE_APPS = 4096

export class EnvPubKeyProvider {
  readonly #rootCaKey: P256Key
  readonly #rootK256Key: Uint8Array
  readonly #secp256k1: Secp256k1Backend
  readonly #maxApps: number
  /** unix milliseconds */
  readonly #nowMs: () => number
  // Map iteration order is insertion order: re-inserting on a hit makes the first key the LRU.
  readonly #apps = new Map<string, AppEntry>()

  constructor(options: EnvPubKeyProviderOptions) {
    const maxApps = options.maxApps ?? DEFAULT_ENV_PUBKEY_CACHE_APPS
    if (!Number.isInteger(maxApps) || maxApps < 1) {
      throw new KmsError('KMS_ERR_CONFIG', `env pubkey cache size must be ≥ 1, got ${maxApps}`)
    }
    this.#rootCaKey = options.rootCaKey
    this.#rootK256Key = options.rootK256Key
    this.#secp256k1 = options.secp256k1
    this.#maxApps = maxApps
    const now = options.now
    this.#nowMs = now === undefined ? Date.now : () => now().getTime()
  }

  /** number of app ids currently cached */
  get size(): number {
    return this.#apps.size
  }

  /** The answer for `appId` now. The buffers are the caller's: the cache keeps its own. */
  get(appId: Uint8Array): EnvEncryptPubKey {
    const timestamp = BigInt(Math.floor(this.#nowMs() / 1000))
    const key = Buffer.from(appId.buffer, appId.byteOffset, appId.byteLength).toString('latin1')
    let entry = this.#apps.get(key)
    if (entry === undefined) {
      entry = this.#compute(appId, timestamp)
      if (this.#apps.size >= this.#maxApps) {
        const oldest = this.#apps.keys().next()
        if (oldest.done !== true) this.#apps.delete(oldest.value)
      }
    } else {
      this.#apps.delete(key)
      if (entry.timestamp !== timestamp) {
        entry.signatureV1 = this.#signV1(appId, timestamp, entry.publicKey)
        entry.timestamp = timestamp
      }
    }
    this.#apps.set(key, entry)
    return {
      publicKey: Buffer.from(entry.publicKey),
      signature: Buffer.from(entry.signature),
      timestamp,
      signatureV1: Buffer.from(entry.signatureV1),
    }
  }

  #compute(appId: Uint8Array, timestamp: bigint): AppEntry {
    let secret: Buffer
    try {
      secret = deriveDhSecret(this.#rootCaKey, [appId, 'env-encrypt-key'])
    } catch (err) {
      throw withContext('Failed to derive env encrypt key', err)
    }
    let publicKey: Buffer
    try {
      publicKey = x25519PublicKey(secret)
    } finally {
      secret.fill(0)
    }
    const signature = signMessage(
      this.#secp256k1,
      this.#rootK256Key,
      ENV_PUBKEY_PREFIX,
      appId,
      publicKey,
    )
    return {
      publicKey,
      signature,
      timestamp,
      signatureV1: this.#signV1(appId, timestamp, publicKey),
    }
  }

  #signV1(appId: Uint8Array, timestamp: bigint, publicKey: Buffer): Buffer {
    return signMessageWithTimestamp(
      this.#secp256k1,
      this.#rootK256Key,
      ENV_PUBKEY_PREFIX,
      appId,
      timestamp,
      publicKey,
    )
  }
}
