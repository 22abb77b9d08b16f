// The secp256k1 part of the native addon (native/secp256k1.cc,
// docs/design.md#secp256k1-through-libsecp256k1-or-noble-curves). It exists only when the build
// found libsecp256k1; the addon's `hasSecp256k1` says whether it did.
import { KmsError, errorMessage } from '../errors.js'
import { loadNativeBinding, nativeBindingPath } from './binding.js'

/** Status codes returned by the native functions (native/secp256k1.cc). */
export const SECP256K1_STATUS = { ok: 0, secretRejected: 1, signFailed: 2 } as const

/** The addon's secp256k1 functions. They write into caller-allocated buffers and return a
 * status; they throw `TypeError` only for arguments of the wrong type or length. */
export interface NativeSecp256k1 {
  /** writes the 33-byte compressed public key of `secret32` into `out33` */
  secp256k1PublicKey(out33: Uint8Array, secret32: Uint8Array): number
  /** writes r‖s‖recid (RFC 6979, low-S) of `digest32` under `secret32` into `out65` */
  secp256k1Sign(out65: Uint8Array, digest32: Uint8Array, secret32: Uint8Array): number
}

export type NativeSecp256k1Probe =
  | { available: true; path: string; binding: NativeSecp256k1 }
  | { available: false; path: string; reason: string; cause?: unknown }

const REBUILD_HINT = 'install libsecp256k1-dev, then run `npm run build:native`'

function isNativeSecp256k1(value: object): value is NativeSecp256k1 {
  return (
    'hasSecp256k1' in value &&
    value.hasSecp256k1 === true &&
    'secp256k1PublicKey' in value &&
    typeof value.secp256k1PublicKey === 'function' &&
    'secp256k1Sign' in value &&
    typeof value.secp256k1Sign === 'function'
  )
}

/** Whether the addon (at DSTACK_KMS_NATIVE_BINDING or build/Release) can sign, and why not. */
export function probeNativeSecp256k1(env: NodeJS.ProcessEnv = process.env): NativeSecp256k1Probe {
  const path = nativeBindingPath(env)
  let binding: object
  try {
    binding = loadNativeBinding(env)
  } catch (err) {
    return { available: false, path, reason: errorMessage(err), cause: err }
  }
  if (!isNativeSecp256k1(binding)) {
    return {
      available: false,
      path,
      reason: `native addon ${path} was built without libsecp256k1; ${REBUILD_HINT}`,
    }
  }
  return { available: true, path, binding }
}

/** The addon's secp256k1 functions, or a KMS_ERR_NATIVE error saying why they are missing. */
export function loadNativeSecp256k1(env: NodeJS.ProcessEnv = process.env): NativeSecp256k1 {
  const probe = probeNativeSecp256k1(env)
  if (!probe.available) {
    throw new KmsError('KMS_ERR_NATIVE', probe.reason, { cause: probe.cause })
  }
  return probe.binding
}
