// `unix:<path>`: how a configuration names an HTTP server listening on a unix socket (the
// auth-simple sidecar, docs/design.md#auth-simple-on-a-private-unix-socket). Everything after the
// prefix is the socket path, taken literally: no percent-decoding, no host, no base path; requests
// go to `/`-rooted paths on that socket with `Host: localhost`.

export const UNIX_URL_PREFIX = 'unix:'

/** What a request over a unix socket is addressed to: the server routes on the path alone, so
 * the origin only supplies `Host: localhost`. */
export const UNIX_SOCKET_ORIGIN = 'http://localhost'

/** Linux `sun_path` holds 108 bytes including the terminating NUL. */
export const MAX_UNIX_SOCKET_PATH_BYTES = 107

/** Why `socketPath` cannot be a unix socket's path (too long for `sun_path`), or undefined. */
export function socketPathTooLong(socketPath: string): string | undefined {
  if (Buffer.byteLength(socketPath) <= MAX_UNIX_SOCKET_PATH_BYTES) return undefined
  return `${JSON.stringify(socketPath)} is longer than the ${MAX_UNIX_SOCKET_PATH_BYTES} bytes a unix socket path may have; choose a shorter path`
}

/** The socket path of a `unix:` URL; undefined for any other URL. */
export function unixSocketOf(url: string): string | undefined {
  return url.startsWith(UNIX_URL_PREFIX) ? url.slice(UNIX_URL_PREFIX.length) : undefined
}

export function unixUrl(socketPath: string): string {
  return `${UNIX_URL_PREFIX}${socketPath}`
}
