// The single loader of the native addon: every other module reaches the addon through it, so
// there is one place that finds, loads and checks the file. It loads lazily, so code paths
// that never need a syscall primitive (the UI, most tests) run without a build; an explicit
// path in DSTACK_KMS_NATIVE_BINDING overrides the default location, for packagers and tests.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { KmsError, errorMessage } from '../errors.js'
import { PACKAGE_ROOT } from '../paths.js'

export type FlockOperation = 'exclusive' | 'shared' | 'unlock'

/** The exports every build of the addon has, which this loader checks; the TDX, vsock and
 * secp256k1 exports (native/addon.h) are typed and checked by their own modules (tdx.ts,
 * secp256k1.ts). Failures reject or throw a `NativeErrnoError`; argument errors throw
 * `TypeError`/`RangeError` synchronously. */
export interface NativeBinding {
  /** flock(2) on the thread pool, so a blocking wait never stalls the event loop */
  flock(fd: number, operation: FlockOperation, nonBlocking: boolean): Promise<void>
  /** one datagram to a unix socket; a path starting with `@` is an abstract address */
  sendUnixDatagram(path: string, data: Uint8Array): void
}

/** The shape of the addon's errors: Node's own `fs` convention (`errno` is negative). */
export interface NativeErrnoError extends Error {
  code: string
  errno: number
  syscall: string
  path?: string
}

export const BINDING_PATH_ENV = 'DSTACK_KMS_NATIVE_BINDING'
export const DEFAULT_BINDING_PATH = join(PACKAGE_ROOT, 'build', 'Release', 'dstack_kms_native.node')

const BUILD_HINT = 'run `npm run build:native`'

let cached: { path: string; binding: NativeBinding } | undefined

/** The file the loader will use: the override when set (relative to the working directory),
 * else `build/Release/dstack_kms_native.node` under the package root. */
export function nativeBindingPath(env: NodeJS.ProcessEnv = process.env): string {
  const override = env[BINDING_PATH_ENV]
  return override !== undefined && override !== '' ? resolve(override) : DEFAULT_BINDING_PATH
}

export function loadNativeBinding(env: NodeJS.ProcessEnv = process.env): NativeBinding {
  const path = nativeBindingPath(env)
  if (cached?.path === path) return cached.binding

  const fromEnv = path !== DEFAULT_BINDING_PATH
  if (!existsSync(path)) {
    const message = fromEnv
      ? `native addon not found at ${path} (set by ${BINDING_PATH_ENV})`
      : `native addon not built: ${path} is missing; ${BUILD_HINT}`
    throw new KmsError('KMS_ERR_NATIVE', message)
  }
  let loaded: unknown
  try {
    loaded = createRequire(import.meta.url)(path)
  } catch (err) {
    throw new KmsError(
      'KMS_ERR_NATIVE',
      `failed to load native addon ${path}: ${errorMessage(err)}; ${BUILD_HINT}`,
      { cause: err },
    )
  }
  if (!isNativeBinding(loaded)) {
    throw new KmsError(
      'KMS_ERR_NATIVE',
      `${path} is not the dstack-kms native addon (flock/sendUnixDatagram missing); ${BUILD_HINT}`,
    )
  }
  cached = { path, binding: loaded }
  return loaded
}

function isNativeBinding(value: unknown): value is NativeBinding {
  return (
    typeof value === 'object' &&
    value !== null &&
    'flock' in value &&
    typeof value.flock === 'function' &&
    'sendUnixDatagram' in value &&
    typeof value.sendUnixDatagram === 'function'
  )
}

export function isNativeErrnoError(err: unknown): err is NativeErrnoError {
  return (
    err instanceof Error &&
    'code' in err &&
    typeof err.code === 'string' &&
    'errno' in err &&
    typeof err.errno === 'number' &&
    'syscall' in err &&
    typeof err.syscall === 'string'
  )
}
