// Our version, read once from package.json, for --version, X-App-Version and the webhook
// User-Agent.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PACKAGE_ROOT } from './paths.js'

function readVersion(): string {
  const pkg: unknown = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8'))
  if (
    pkg !== null &&
    typeof pkg === 'object' &&
    'version' in pkg &&
    typeof pkg.version === 'string'
  ) {
    return pkg.version
  }
  throw new Error('package.json has no version')
}

export const VERSION = readVersion()
export const USER_AGENT = `dstack-kms/${VERSION}`
