// Creates the quick-start state files at first start (admin token hash, simulator seed) and
// publishes any of them without ever replacing one a concurrent start, or the operator, wrote.
import { createHash, randomBytes } from 'node:crypto'
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs'
import { basename, dirname, join } from 'node:path'
import {
  QUICKSTART_SEED_FILE,
  QUICKSTART_TOKEN_FILE,
  hashFileError,
  readQuickstartAdminTokenHash,
  readQuickstartSeed,
} from '../config/quickstart.js'
import { KmsError, errorMessage } from '../errors.js'
import { errnoCode } from '../fs/errno.js'

/** Publishes `content` at `file` only if nothing is there yet: the temp file is fsynced, then
 * hard-linked into place (which, unlike rename, never replaces a file another start wrote first);
 * rename is the fallback for filesystems without hard links. Returns false if `file` existed. */
export function publishOnce(file: string, content: string): boolean {
  const dir = dirname(file)
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${randomBytes(8).toString('hex')}.tmp`)
  const fd = openSync(tmp, 'wx', 0o600)
  try {
    fchmodSync(fd, 0o600)
    writeSync(fd, content)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  let published = true
  try {
    linkSync(tmp, file)
    unlinkSync(tmp)
  } catch (err) {
    const code = errnoCode(err)
    if (code === 'EEXIST') {
      unlinkSync(tmp)
      published = false
    } else if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') {
      renameSync(tmp, file)
    } else {
      unlinkSync(tmp)
      throw err
    }
  }
  const dfd = openSync(dir, 'r')
  try {
    fsyncSync(dfd)
  } finally {
    closeSync(dfd)
  }
  return published
}

/**
 * At first start creates a random 32-byte admin token (hex), stores only the SHA-256 hex of that
 * hex string (what `printf '%s' "$TOKEN" | sha256sum` gives, the form `admin_token_hash` takes) in
 * the quick-start token file in `dataDir` (mode 0600), and returns the token for the caller to
 * print once.
 * Later starts return only the stored hash.
 */
export function ensureQuickstartAdminToken(dataDir: string): {
  hash: string
  createdToken?: string
} {
  const existing = readQuickstartAdminTokenHash(dataDir)
  if (existing !== undefined) return { hash: existing }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  const token = randomBytes(32).toString('hex')
  const hash = createHash('sha256').update(token, 'utf8').digest('hex')
  const file = join(dataDir, QUICKSTART_TOKEN_FILE)
  try {
    if (publishOnce(file, `${hash}\n`)) return { hash, createdToken: token }
  } catch (err) {
    throw new KmsError('KMS_ERR_CONFIG', `failed to write ${file}: ${errorMessage(err)}`, {
      cause: err,
    })
  }
  // Another start won the race; its token is the one that was printed.
  const raced = readQuickstartAdminTokenHash(dataDir)
  if (raced === undefined) throw hashFileError(file, 'vanished while being created')
  return { hash: raced }
}

/** A random simulator seed per quick-start installation, so no two share a mock platform. */
export function ensureQuickstartSeed(dataDir: string): string {
  const existing = readQuickstartSeed(dataDir)
  if (existing !== undefined) return existing
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  const file = join(dataDir, QUICKSTART_SEED_FILE)
  try {
    publishOnce(file, `${randomBytes(32).toString('hex')}\n`)
  } catch (err) {
    throw new KmsError('KMS_ERR_CONFIG', `failed to write ${file}: ${errorMessage(err)}`, {
      cause: err,
    })
  }
  const seed = readQuickstartSeed(dataDir)
  if (seed === undefined) {
    throw new KmsError('KMS_ERR_CONFIG', `${file} vanished while being created`)
  }
  return seed
}
