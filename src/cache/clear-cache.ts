// ClearImageCache (docs/design.md#clearing-one-config-hash-really-clears-it,
// docs/design.md#caches-in-sqlite). Shared by the in-body-token RPC on the main listener and the
// admin listener: both call this after their own authentication.
import { readdirSync, rmSync } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'
import { KmsError, withContext } from '../errors.js'
import { isNotFound } from '../fs/errno.js'
import { type CacheKey, parseCacheKey } from './cache-key.js'
import { assertRealDirectory, type CacheDb } from './cache-db.js'

export const IMAGE_CACHE_CONTEXT = 'Failed to clear image cache'
export const MEASUREMENT_CACHE_CONTEXT = 'Failed to clear measurement cache'

function parseWithContext(key: string, context: string): CacheKey {
  try {
    return parseCacheKey(key)
  } catch (err) {
    throw withContext(context, err)
  }
}

/** Both ClearImageCache keys, parsed with the RPC's error contexts; throws before anything
 * changes. */
export function parseClearKeys(
  imageHash: string,
  configHash: string,
): { imageKey: CacheKey; configKey: CacheKey } {
  return {
    imageKey: parseWithContext(imageHash, IMAGE_CACHE_CONTEXT),
    configKey: parseWithContext(configHash, MEASUREMENT_CACHE_CONTEXT),
  }
}

/** Clears the image and measurement caches. Both keys are validated before anything changes, so
 * an invalid `configHash` leaves the images alone too. */
export function clearImageCache(db: CacheDb, imageHash: string, configHash: string): void {
  const { imageKey, configKey } = parseClearKeys(imageHash, configHash)

  // Rows go first, in one transaction, and the directories after. An image row is what makes a
  // directory trusted (cache-db.ts), so if the process dies between the two steps we are left
  // with an orphan directory that nothing trusts and the next download replaces. The opposite
  // order could leave a row that vouches for a half-deleted image.
  db.transaction(() => {
    if (imageKey.kind !== 'none' || configKey.kind !== 'none') db.bumpClearGeneration()
    if (imageKey.kind === 'all') db.deleteAllImages()
    else if (imageKey.kind === 'hex') db.deleteImage(imageKey.value)
    if (configKey.kind === 'all') db.deleteAllMeasurements()
    else if (configKey.kind === 'hex') db.deleteMeasurement(configKey.value)
  })

  try {
    if (imageKey.kind === 'all') removeAllImageEntries(db.imagesDir)
    else if (imageKey.kind === 'hex') removeOneImageEntry(db.imagesDir, imageKey.value)
  } catch (err) {
    throw withContext(IMAGE_CACHE_CONTEXT, err)
  }
}

/** Every entry of the images directory goes: extracted images, the in-flight download area
 * `tmp/` and anything stray (upstream removes the whole directory). The directory itself stays,
 * keeping its mode. */
function removeAllImageEntries(imagesDir: string): void {
  let names: string[]
  try {
    // checked at open too; again here because the directory could be swapped while we run
    assertRealDirectory(imagesDir)
    names = readdirSync(imagesDir)
  } catch (err) {
    if (isNotFound(err)) return
    throw err
  }
  for (const name of names) removeImageEntry(imagesDir, name)
}

/** One entry, with the same guard as "all": the path is resolved through imagesDir, so if
 * imagesDir were swapped for a symlink the removal would land outside the cache. */
function removeOneImageEntry(imagesDir: string, name: string): void {
  try {
    assertRealDirectory(imagesDir)
  } catch (err) {
    if (isNotFound(err)) return
    throw err
  }
  removeImageEntry(imagesDir, name)
}

/** Removes `imagesDir/<name>` whatever it is (directory, file or symlink); a missing entry is a
 * no-op. `rmSync` looks at the entry with lstat, so a symlink is unlinked, never followed, and
 * the recursion never crosses a symlink either. */
function removeImageEntry(imagesDir: string, name: string): void {
  // The key was validated as hex already; this re-checks that the path names a direct child of
  // imagesDir should that validation ever be bypassed. Only the last component can be a link
  // and it is not followed, so the textual parent check is the whole guard.
  const root = resolve(imagesDir)
  const target = resolve(root, name)
  if (
    name === '' ||
    name === '.' ||
    name === '..' ||
    name.includes('\0') ||
    dirname(target) !== root ||
    basename(target) !== name
  ) {
    throw new KmsError('KMS_ERR_INTERNAL', 'refusing to remove a path outside the image cache')
  }
  rmSync(target, { recursive: true, force: true })
}
