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

/** An app's cached answer: its bytes live in the provider's slab at `slot`. */
interface AppEntry {
  slot: number
  /** the second of the last timestamped signature made for this app */
  timestamp: bigint
}

export const DEFAULT_ENV_PUBKEY_CACHE_APPS = 4096

const PUBLIC_KEY_BYTES = 32
const SIGNATURE_BYTES = 65
const PUBLIC_KEY_AT = 0
const SIGNATURE_AT = PUBLIC_KEY_AT + PUBLIC_KEY_BYTES
const SIGNATURE_V1_AT = SIGNATURE_AT + SIGNATURE_BYTES
const ENTRY_BYTES = SIGNATURE_V1_AT + SIGNATURE_BYTES

export class EnvPubKeyProvider {
  readonly #rootCaKey: P256Key
  readonly #rootK256Key: Uint8Array
  readonly #secp256k1: Secp256k1Backend
  readonly #maxApps: number
  /** unix milliseconds */
  readonly #nowMs: () => number
  // Map iteration order is insertion order: re-inserting on a hit makes the first key the LRU.
  readonly #apps = new Map<string, AppEntry>()
  // Every cached answer's bytes in one buffer, one fixed-size slot per app: a full cache of
  // Buffers of its own (three per app, each holding on to a pooled ArrayBuffer) made every
  // request of the worker slower through the garbage collector (measured: ~35 µs per
  // all-distinct request, ~15 µs per hot one).
  readonly #slab: Buffer
  #nextSlot = 0
  /** slots given back by a computation that failed */
  readonly #spareSlots: number[] = []

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
    this.#slab = Buffer.alloc(maxApps * ENTRY_BYTES)
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
      entry = { slot: this.#freeSlot(), timestamp }
      try {
        this.#compute(appId, timestamp, entry.slot)
      } catch (err) {
        this.#spareSlots.push(entry.slot)
        throw err
      }
    } else {
      this.#apps.delete(key)
      if (entry.timestamp !== timestamp) {
        const at = entry.slot * ENTRY_BYTES
        const publicKey = this.#slab.subarray(at, at + PUBLIC_KEY_BYTES)
        const signatureV1 = this.#signV1(appId, timestamp, publicKey)
        this.#store(entry.slot, SIGNATURE_V1_AT, SIGNATURE_BYTES, signatureV1)
        entry.timestamp = timestamp
      }
    }
    this.#apps.set(key, entry)
    const at = entry.slot * ENTRY_BYTES
    return {
      publicKey: Buffer.from(this.#slab.subarray(at, at + PUBLIC_KEY_BYTES)),
      signature: Buffer.from(this.#slab.subarray(at + SIGNATURE_AT, at + SIGNATURE_V1_AT)),
      timestamp,
      signatureV1: Buffer.from(this.#slab.subarray(at + SIGNATURE_V1_AT, at + ENTRY_BYTES)),
    }
  }

  /** A slot for a new app: an unused one, or the least recently used app's. */
  #freeSlot(): number {
    const spare = this.#spareSlots.pop()
    if (spare !== undefined) return spare
    if (this.#nextSlot < this.#maxApps) return this.#nextSlot++
    const oldest = this.#apps.entries().next()
    if (oldest.done === true) throw new KmsError('KMS_ERR_INTERNAL', 'env pubkey cache is empty')
    const [key, entry] = oldest.value
    this.#apps.delete(key)
    return entry.slot
  }

  /** Copies one part of an answer into its place in `slot`; `length` is the size that place has. */
  #store(slot: number, offset: number, length: number, bytes: Buffer): void {
    if (bytes.length !== length) {
      throw new KmsError('KMS_ERR_INTERNAL', `env pubkey answer part of ${bytes.length} bytes`)
    }
    bytes.copy(this.#slab, slot * ENTRY_BYTES + offset)
  }

  #compute(appId: Uint8Array, timestamp: bigint, slot: number): void {
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
    this.#store(slot, PUBLIC_KEY_AT, PUBLIC_KEY_BYTES, publicKey)
    this.#store(slot, SIGNATURE_AT, SIGNATURE_BYTES, signature)
    const signatureV1 = this.#signV1(appId, timestamp, publicKey)
    this.#store(slot, SIGNATURE_V1_AT, SIGNATURE_BYTES, signatureV1)
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
