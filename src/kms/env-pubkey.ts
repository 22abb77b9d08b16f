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

export const DEFAULT_ENV_PUBKEY_CACHE_APPS = 4096

const PUBLIC_KEY_BYTES = 32
const SIGNATURE_BYTES = 65
const PUBLIC_KEY_AT = 0
const SIGNATURE_AT = PUBLIC_KEY_AT + PUBLIC_KEY_BYTES
const SIGNATURE_V1_AT = SIGNATURE_AT + SIGNATURE_BYTES
const ENTRY_BYTES = SIGNATURE_V1_AT + SIGNATURE_BYTES
/** no slot: the end of the recency list */
const NONE = -1

export class EnvPubKeyProvider {
  readonly #rootCaKey: P256Key
  readonly #rootK256Key: Uint8Array
  readonly #secp256k1: Secp256k1Backend
  readonly #maxApps: number
  /** unix milliseconds */
  readonly #nowMs: () => number
  /** app id (its bytes as a latin1 string) → its slot */
  readonly #slots = new Map<string, number>()
  /** slot → the app id it holds, to forget it when the slot is reused */
  readonly #keys: string[] = []
  // Recency as a doubly linked list over slots, least recently used first: a hit relinks two
  // typed-array cells instead of deleting and re-inserting its Map entry, whose tombstones made
  // the Map rehash all its entries every few thousand hits (measured: ~4 µs per hot request with
  // a full cache).
  readonly #older: Int32Array
  readonly #newer: Int32Array
  #oldest = NONE
  #newest = NONE
  /** slot → the unix second its timestamped signature was made for */
  readonly #signedAt: Float64Array
  // Every cached answer's bytes in one buffer, one fixed-size slot per app: a full cache of
  // Buffers of its own (three per app, each holding on to a pooled ArrayBuffer) made every
  // request of the worker slower through the garbage collector (measured: ~35 µs per
  // all-distinct request, ~15 µs per hot one).
  readonly #slab: Buffer
  #nextSlot = 0
  /** slots given back by a computation that failed */
  readonly #spareSlots: number[] = []
  /** the last second asked for, and its bigint: one BigInt per second rather than per call */
  #second = Number.NaN
  #timestamp = 0n

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
    this.#older = new Int32Array(maxApps)
    this.#newer = new Int32Array(maxApps)
    this.#signedAt = new Float64Array(maxApps)
  }

  /** number of app ids currently cached */
  get size(): number {
    return this.#slots.size
  }

  /** The answer for `appId` now. The buffers are the caller's: the cache keeps its own. */
  get(appId: Uint8Array): EnvEncryptPubKey {
    const second = Math.floor(this.#nowMs() / 1000)
    if (second !== this.#second) {
      this.#timestamp = BigInt(second)
      this.#second = second
    }
    const timestamp = this.#timestamp
    // a Buffer (what the RPC hands in) needs no view of its own made first
    const key = Buffer.isBuffer(appId)
      ? appId.toString('latin1')
      : Buffer.from(appId.buffer, appId.byteOffset, appId.byteLength).toString('latin1')
    let slot = this.#slots.get(key)
    if (slot === undefined) {
      slot = this.#freeSlot()
      try {
        this.#compute(appId, timestamp, slot)
      } catch (err) {
        this.#spareSlots.push(slot)
        throw err
      }
      this.#slots.set(key, slot)
      this.#keys[slot] = key
      this.#signedAt[slot] = second
      this.#linkNewest(slot)
    } else {
      if (this.#signedAt[slot] !== second) {
        const at = slot * ENTRY_BYTES
        const publicKey = this.#slab.subarray(at, at + PUBLIC_KEY_BYTES)
        const signatureV1 = this.#signV1(appId, timestamp, publicKey)
        this.#store(slot, SIGNATURE_V1_AT, SIGNATURE_BYTES, signatureV1)
        this.#signedAt[slot] = second
      }
      if (slot !== this.#newest) {
        this.#unlink(slot)
        this.#linkNewest(slot)
      }
    }
    // one copy of the whole entry, cut into the three parts
    const at = slot * ENTRY_BYTES
    const answer = Buffer.allocUnsafe(ENTRY_BYTES)
    this.#slab.copy(answer, 0, at, at + ENTRY_BYTES)
    return {
      publicKey: answer.subarray(PUBLIC_KEY_AT, SIGNATURE_AT),
      signature: answer.subarray(SIGNATURE_AT, SIGNATURE_V1_AT),
      timestamp,
      signatureV1: answer.subarray(SIGNATURE_V1_AT, ENTRY_BYTES),
    }
  }

  /** A slot for a new app: an unused one, or the least recently used app's. */
  #freeSlot(): number {
    const spare = this.#spareSlots.pop()
    if (spare !== undefined) return spare
    if (this.#nextSlot < this.#maxApps) return this.#nextSlot++
    const slot = this.#oldest
    if (slot === NONE) throw new KmsError('KMS_ERR_INTERNAL', 'env pubkey cache is empty')
    this.#unlink(slot)
    this.#slots.delete(this.#keys[slot] ?? '')
    return slot
  }

  #linkNewest(slot: number): void {
    this.#older[slot] = this.#newest
    this.#newer[slot] = NONE
    if (this.#newest === NONE) this.#oldest = slot
    else this.#newer[this.#newest] = slot
    this.#newest = slot
  }

  #unlink(slot: number): void {
    const older = this.#older[slot] ?? NONE
    const newer = this.#newer[slot] ?? NONE
    if (older === NONE) this.#oldest = newer
    else this.#newer[older] = newer
    if (newer === NONE) this.#newest = older
    else this.#older[newer] = older
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
