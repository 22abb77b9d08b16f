// htpasswd files for HTTP Basic on the admin listener
// (docs/design.md#two-ways-to-authorize-clearimagecache; upstream HEAD's shared API authenticator).
// bcrypt only: the other Apache formats (MD5-crypt, SHA-1, crypt, plain) are too weak to guard
// key-management operations, and upstream rejects them too.
import { readFileSync } from 'node:fs'
import bcrypt from 'bcryptjs'
import { KmsError, withContext } from '../errors.js'
import { trimLikeRust } from '../util/rust-text.js'

const BCRYPT_PREFIXES = ['$2a$', '$2b$', '$2y$'] as const

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Splits like Rust's `str::lines`, which upstream uses: lines end at `\n`, and a `\r` right
 * before that `\n` belongs to the line ending, so a CRLF file yields the same hashes as an LF
 * file. A lone `\r` elsewhere stays part of the line. */
function rustLines(text: string): string[] {
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  return lines.map((line, i) =>
    i < lines.length - 1 || text.endsWith('\n') ? line.replace(/\r$/, '') : line,
  )
}

/** Parses htpasswd text. `path` only names the file in error messages.
 * @returns user → bcrypt hash; a user listed twice keeps the last entry */
export function parseHtpasswd(text: string, path: string): Map<string, string> {
  const users = new Map<string, string>()
  rustLines(text).forEach((line, index) => {
    const trimmed = trimLikeRust(line)
    if (trimmed === '' || trimmed.startsWith('#')) return
    const colon = line.indexOf(':')
    if (colon < 0) {
      throw new KmsError(
        'KMS_ERR_CONFIG',
        `invalid htpasswd entry in ${path} (line ${index + 1}): expected user:hash`,
      )
    }
    const user = line.slice(0, colon)
    const hash = line.slice(colon + 1)
    if (user === '' || !BCRYPT_PREFIXES.some((p) => hash.startsWith(p))) {
      throw new KmsError(
        'KMS_ERR_CONFIG',
        `unsupported htpasswd entry for ${JSON.stringify(user)} in ${path} (line ${index + 1}); ` +
          'only bcrypt hashes are supported',
      )
    }
    users.set(user, hash)
  })
  if (users.size === 0) {
    throw new KmsError('KMS_ERR_CONFIG', `htpasswd file ${path} contains no users`)
  }
  return users
}

export function loadHtpasswd(path: string): Map<string, string> {
  let text: string
  try {
    text = utf8.decode(readFileSync(path))
  } catch (err) {
    throw withContext(`failed to read htpasswd file ${path}`, err, 'KMS_ERR_CONFIG')
  }
  return parseHtpasswd(text, path)
}

/** bcrypt check of `password` against an htpasswd hash. bcryptjs, like Rust's `bcrypt`, uses
 * only the first 72 bytes of the password; a malformed hash is a mismatch, never an error. */
export async function verifyBcrypt(password: string, hash: string): Promise<boolean> {
  try {
    return await bcrypt.compare(password, hash)
  } catch {
    return false
  }
}
