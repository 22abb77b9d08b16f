// A unix socket only this user can reach (docs/design.md#auth-simple-on-a-private-unix-socket):
// its directory is ours and closed to everyone else, so no other local user can connect to the
// socket or put their own in its place. Nothing here follows a symbolic link: a link planted where
// the directory or the socket should be is refused, never resolved.
import { type Stats, lstatSync, mkdirSync, unlinkSync } from 'node:fs'
import { connect } from 'node:net'
import { dirname } from 'node:path'
import { configError, errorMessage } from '../errors.js'

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path, { throwIfNoEntry: false }) ?? null
  } catch (err) {
    throw configError(`cannot inspect ${path}: ${errorMessage(err)}`, err)
  }
}

function ownUid(): number | undefined {
  return process.getuid?.()
}

/** Creates `dir` with mode 0700 (its parents as the umask allows), or checks that the existing
 * one is a real directory of ours that no one else may enter. */
export function ensurePrivateDir(dir: string): void {
  let st = lstatOrNull(dir)
  if (st === null) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 })
    } catch (err) {
      throw configError(`cannot create the socket directory ${dir}: ${errorMessage(err)}`, err)
    }
    st = lstatOrNull(dir)
    if (st === null) throw configError(`the socket directory ${dir} vanished after creation`)
  }
  if (st.isSymbolicLink()) {
    throw configError(
      `the socket directory ${dir} is a symbolic link; refusing to use it (make it a real directory with mode 0700)`,
    )
  }
  if (!st.isDirectory()) {
    throw configError(`the socket directory ${dir} exists and is not a directory`)
  }
  const uid = ownUid()
  if (uid !== undefined && st.uid !== uid) {
    throw configError(
      `the socket directory ${dir} belongs to uid ${st.uid}, not to this user (uid ${uid}); refusing to use it`,
    )
  }
  const mode = Number(st.mode) & 0o777
  if ((mode & 0o077) !== 0) {
    throw configError(
      `the socket directory ${dir} has mode 0${mode.toString(8)}; it must be 0700 so that no other user can reach or replace the socket (chmod 700 ${dir})`,
    )
  }
}

/** A live server accepts at once; one that neither accepts nor refuses for this long is treated
 * as live too (its backlog is full), never as stale. */
const PROBE_TIMEOUT_MS = 2000

/** Whether something accepts connections on the socket at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path })
    const done = (live: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(live)
    }
    const timer = setTimeout(() => done(true), PROBE_TIMEOUT_MS)
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/**
 * Makes `socketPath` ready to listen on: its directory private (ensurePrivateDir), and a socket
 * left there by a dead server of ours removed. Anything else at that path (a file, a link, a
 * socket of another user, or one that still answers) is refused: removing it could cut off a live
 * server or destroy a file we do not own.
 */
export async function claimSocketPath(socketPath: string): Promise<void> {
  ensurePrivateDir(dirname(socketPath))
  const st = lstatOrNull(socketPath)
  if (st === null) return
  const uid = ownUid()
  if (!st.isSocket() || (uid !== undefined && st.uid !== uid)) {
    throw configError(
      `${socketPath} exists and is not a socket of this user; refusing to remove it (delete it by hand if it is stale)`,
    )
  }
  if (await answers(socketPath)) {
    throw configError(
      `another process is already listening on ${socketPath}; refusing to start a second server there`,
    )
  }
  try {
    unlinkSync(socketPath)
  } catch (err) {
    throw configError(`cannot remove the stale socket ${socketPath}: ${errorMessage(err)}`, err)
  }
}
