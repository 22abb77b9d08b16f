// Crash-safe commit of a whole key set into cert_dir.
//
// A key set is several files, and a rename is atomic for one file only. Bootstrap therefore writes
// every file into `<cert_dir>/.staging/`, fsyncs them, and only then writes the COMPLETE marker
// (the commit point). Renames into cert_dir happen after the marker. On the next start
// `recoverStaging` rolls a marked staging directory forward and deletes an unmarked one, so a
// crash anywhere leaves either no new files in cert_dir or the complete set — never a half key set
// that `keysExist` could mistake for a complete one, nor a half set that blocks a new Bootstrap.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { KmsError, errorMessage, withContext } from '../errors.js'
import { fsyncDir, writeFileAtomic, writeFileDurable } from '../fs/atomic-write.js'
import { crashPoint } from './crash-point.js'

export const STAGING_DIR = '.staging'
const COMPLETE_MARKER = 'COMPLETE'

export interface CertDirFile {
  name: string
  data: Uint8Array | string
  mode: number
}

export interface RecoveryResult {
  action: 'none' | 'rolled-forward' | 'discarded'
  files: string[]
}

function assertPlainName(name: string): void {
  if (name === '' || name.includes('/') || name.startsWith('.') || name === COMPLETE_MARKER) {
    throw new KmsError('KMS_ERR_INTERNAL', `invalid cert_dir file name: ${name}`)
  }
}

/** Finishes or discards an interrupted commit. Must run before anyone looks at cert_dir. */
export function recoverStaging(certDir: string): RecoveryResult {
  const staging = join(certDir, STAGING_DIR)
  try {
    return recover(certDir, staging)
  } catch (err) {
    if (err instanceof KmsError) throw err
    // a read-only or failing file system: say which directory and what was being done
    throw withContext(
      `Failed to finish or discard the interrupted key commit in ${staging}`,
      err,
      'KMS_ERR_KEYS',
    )
  }
}

function recover(certDir: string, staging: string): RecoveryResult {
  if (!existsSync(staging)) return { action: 'none', files: [] }
  const markerPath = join(staging, COMPLETE_MARKER)
  if (!existsSync(markerPath)) {
    rmSync(staging, { recursive: true, force: true })
    fsyncDir(certDir)
    return { action: 'discarded', files: [] }
  }
  const names = parseMarker(readFileSync(markerPath, 'utf8'))
  // Roll forward only onto missing files. A staged file whose name is already taken in cert_dir
  // by different bytes is not a leftover of the commit that produced the committed set: renaming
  // it over would replace a key every app's keys derive from. Checked for every name before
  // anything moves, so a refusal leaves cert_dir exactly as it was.
  const conflicts = names.filter((name) => {
    const src = join(staging, name)
    const dst = join(certDir, name)
    return existsSync(src) && existsSync(dst) && !readFileSync(src).equals(readFileSync(dst))
  })
  if (conflicts.length > 0) {
    throw new KmsError(
      'KMS_ERR_KEYS',
      `refusing to finish the interrupted key commit in ${staging}: ${conflicts.join(', ')} would replace different committed files in ${certDir}; move ${staging} away after checking which key set is the right one`,
    )
  }
  const moved: string[] = []
  for (const name of names) {
    const src = join(staging, name)
    // Already moved before the crash: the file in cert_dir is the committed one.
    if (!existsSync(src)) continue
    const dst = join(certDir, name)
    // identical bytes: the rename happened and the staged copy is a hard-to-explain duplicate;
    // the committed file stays untouched
    if (existsSync(dst)) continue
    renameSync(src, dst)
    moved.push(name)
  }
  fsyncDir(certDir)
  // A name in neither place means the committed set was damaged behind our back; keep the
  // evidence and stop rather than report a recovery that did not happen.
  const missing = names.filter((name) => !existsSync(join(certDir, name)))
  if (missing.length > 0) {
    throw new KmsError(
      'KMS_ERR_KEYS',
      `interrupted key commit in ${staging} cannot be completed: ${missing.join(', ')} missing from both ${staging} and ${certDir}`,
    )
  }
  rmSync(staging, { recursive: true, force: true })
  fsyncDir(certDir)
  return { action: 'rolled-forward', files: moved }
}

function parseMarker(text: string): string[] {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new KmsError('KMS_ERR_KEYS', `corrupt staging marker in cert_dir: ${String(err)}`)
  }
  if (!Array.isArray(parsed) || !parsed.every((n): n is string => typeof n === 'string')) {
    throw new KmsError('KMS_ERR_KEYS', 'corrupt staging marker in cert_dir: not a list of names')
  }
  parsed.forEach(assertPlainName)
  return parsed
}

function discardStaging(certDir: string, staging: string, cause: unknown): void {
  try {
    rmSync(staging, { recursive: true, force: true })
    fsyncDir(certDir)
  } catch (err) {
    throw new KmsError(
      'KMS_ERR_KEYS',
      `Failed to write the key set to ${staging} (${errorMessage(cause)}), and removing the partly written key files failed too: ${errorMessage(err)}; remove ${staging} by hand`,
      { cause },
    )
  }
}

/** Commits `files` (in this order) into cert_dir as one crash-safe unit. */
export function commitFiles(certDir: string, files: readonly CertDirFile[]): void {
  files.forEach((f) => assertPlainName(f.name))
  mkdirSync(certDir, { recursive: true, mode: 0o700 })
  const staging = join(certDir, STAGING_DIR)
  // Recovering here would let a new key set overwrite an old one that was already committed;
  // callers recover first and then decide whether they may write at all.
  if (existsSync(staging)) {
    throw new KmsError(
      'KMS_ERR_KEYS',
      `an interrupted key commit is pending in ${staging}; run recoverStaging first`,
    )
  }
  try {
    mkdirSync(staging, { mode: 0o700 })
  } catch (err) {
    // nothing was created, so nothing to remove (a read-only or full cert_dir)
    throw withContext(`Failed to write the key set to ${staging}`, err, 'KMS_ERR_KEYS')
  }
  try {
    // the staging directory's own entry must be durable before anything refers to it
    fsyncDir(certDir)
    for (const f of files) writeFileDurable(join(staging, f.name), f.data, f.mode)
    fsyncDir(staging)
    crashPoint('commit:staged')
    writeFileAtomic(join(staging, COMPLETE_MARKER), JSON.stringify(files.map((f) => f.name)), {
      mode: 0o600,
    })
  } catch (err) {
    // Before the marker nothing is committed: the staged private keys must not outlive the
    // failure (a full disk, a read-only cert_dir) until some later start discards them.
    discardStaging(certDir, staging, err)
    throw withContext(`Failed to write the key set to ${staging}`, err, 'KMS_ERR_KEYS')
  }
  crashPoint('commit:marked')
  files.forEach((f, i) => {
    renameSync(join(staging, f.name), join(certDir, f.name))
    if (i === 0) crashPoint('commit:first-renamed')
  })
  fsyncDir(certDir)
  rmSync(staging, { recursive: true, force: true })
  fsyncDir(certDir)
}
