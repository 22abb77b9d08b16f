// A shared secret kept in a file (the auth webhook's bearer secret): read once at start, refused
// unless it is private to its owner, and checked to be usable as an HTTP header value.
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs'
import { configError, errorMessage } from '../errors.js'

/**
 * The secret in `path` without surrounding whitespace (a trailing newline from `echo` is not part
 * of it). `key` names the setting in error messages. Refused: a missing or unreadable file, one
 * that group or others may access (mode & 0o077), an empty secret, and characters outside visible
 * ASCII (they cannot travel in a header unchanged). The secret itself never appears in an error.
 */
export function readSecretFile(path: string, key: string): string {
  let mode: number
  let text: string
  try {
    // mode and content from one open file: checking the path and then reading it again would let
    // a file swapped in between be read without its mode ever being checked
    const fd = openSync(path, 'r')
    try {
      mode = Number(fstatSync(fd).mode) & 0o777
      text = readFileSync(fd, 'utf8')
    } finally {
      closeSync(fd)
    }
  } catch (err) {
    throw configError(`${key}: cannot read ${path}: ${errorMessage(err)}`, err)
  }
  if ((mode & 0o077) !== 0) {
    throw configError(
      `${key}: ${path} has mode 0${mode.toString(8)}, so other users may read the secret; make it private (chmod 600 ${path})`,
    )
  }
  const secret = text.trim()
  if (secret === '') throw configError(`${key}: ${path} is empty`)
  if (!/^[\x21-\x7e]+$/.test(secret)) {
    throw configError(
      `${key}: the secret in ${path} must be printable ASCII without spaces (e.g. openssl rand -hex 32)`,
    )
  }
  return secret
}
