// Cache keys as ClearImageCache receives them
// (docs/design.md#clearing-one-config-hash-really-clears-it). The check runs before anything on
// disk or in the database is touched, so a key like `../escape` can never reach a path join.
import { KmsError } from '../errors.js'

export const INVALID_CACHE_KEY_MESSAGE = 'Invalid cache key'

export type CacheKey = { kind: 'none' } | { kind: 'all' } | { kind: 'hex'; value: string }

// ASCII only: /[0-9a-f]/i without the `u` flag never matches fullwidth or other Unicode digits.
const HEX_KEY = /^[0-9A-Fa-f]+$/

/** `""` → none, `"all"` → all (exact, case-sensitive like upstream), otherwise every character
 * must be ASCII hex; the value is lowercased because directory names and stored keys are
 * lowercase (ours: upstream compares case-sensitively, so uppercase keys match nothing there). */
export function parseCacheKey(key: string): CacheKey {
  if (key === '') return { kind: 'none' }
  if (key === 'all') return { kind: 'all' }
  if (!HEX_KEY.test(key)) throw new KmsError('KMS_ERR_RPC', INVALID_CACHE_KEY_MESSAGE)
  return { kind: 'hex', value: key.toLowerCase() }
}

/** Normalises a hash used as a stored key or a directory name (lowercase hex, non-empty). A
 * caller passing anything else is a programming error, not a client error. */
export function normalizeHexKey(value: string, what: string): string {
  if (!HEX_KEY.test(value)) {
    throw new KmsError('KMS_ERR_INTERNAL', `${what} must be a non-empty hex string`)
  }
  return value.toLowerCase()
}
