// One decision about what path a request names. Guards and routes must agree on it: a guard that
// looks at the raw URL while the router matches the decoded one can be walked around with
// percent-encoding (`/%70rpc/Bootstrap`, `/%66inish`). Paths that decode to something other than
// one plain list of segments have no single meaning, so they are refused rather than guessed at.

export type PathDecision = { kind: 'ok'; path: string } | { kind: 'ambiguous'; reason: string }

function ambiguous(reason: string): PathDecision {
  return { kind: 'ambiguous', reason }
}

/** The percent-decoded path of a request target (query string dropped), or why it has no single
 * meaning: not origin-form, a malformed or double escape, an encoded `/` or `\`, a control
 * character, an empty, `.` or `..` segment, or a `;` parameter. */
export function decidePath(rawUrl: string): PathDecision {
  const q = rawUrl.indexOf('?')
  const raw = q < 0 ? rawUrl : rawUrl.slice(0, q)
  if (!raw.startsWith('/')) return ambiguous('not an origin-form path')
  if (raw.includes('#')) return ambiguous('fragment in the request target')
  let decoded: string
  try {
    decoded = decodeURIComponent(raw)
  } catch {
    return ambiguous('malformed percent-encoding')
  }
  // an escape that decodes to a separator or to another escape would mean one thing to us and
  // another to whoever decodes once more
  if (/%(2f|5c|25)/i.test(raw)) return ambiguous('encoded separator or escape')
  if (decoded.includes('\\')) return ambiguous('backslash in the path')
  if (decoded.includes(';')) return ambiguous('path parameter')
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(decoded)) return ambiguous('control character in the path')
  if (decoded !== '/') {
    const segments = decoded.slice(1).split('/')
    // a trailing slash leaves one empty last segment; anywhere else an empty segment is `//`
    const last = segments.length - 1
    for (let k = 0; k < segments.length; k++) {
      const s = segments[k]
      if (s === '' && k !== last) return ambiguous('empty path segment')
      if (s === '.' || s === '..') return ambiguous('dot segment')
    }
  }
  return { kind: 'ok', path: decoded }
}
