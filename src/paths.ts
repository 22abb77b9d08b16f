// Locates the package root whether we run compiled (dist/src/*.js) or from source under tsx
// (src/*.ts), so assets (dist/ui/, package.json) resolve the same way in both.
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

function findPackageRoot(start: string): string {
  let dir = start
  for (;;) {
    const candidate = join(dir, 'package.json')
    if (existsSync(candidate)) {
      const pkg: unknown = JSON.parse(readFileSync(candidate, 'utf8'))
      if (
        pkg !== null &&
        typeof pkg === 'object' &&
        'name' in pkg &&
        pkg.name === 'dstack-kms-ts'
      ) {
        return dir
      }
    }
    const parent = dirname(dir)
    if (parent === dir) throw new Error(`cannot find the dstack-kms-ts package root above ${start}`)
    dir = parent
  }
}

export const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)))
/** the onboarding wizard as `npm run build` bundles it from ui/ (scripts/build-ui.ts) */
export const UI_DIR = join(PACKAGE_ROOT, 'dist', 'ui')
