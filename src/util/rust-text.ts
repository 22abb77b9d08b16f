// Rust's `{:?}` rendering of chars and strings. Upstream error texts that reach clients embed
// them (the `hex` crate's bad characters, serde's unexpected strings), so ours must match.

function rustEscape(ch: string): string {
  switch (ch) {
    case '\\':
      return '\\\\'
    case '\n':
      return '\\n'
    case '\r':
      return '\\r'
    case '\t':
      return '\\t'
    case '\0':
      return '\\0'
  }
  const cp = ch.codePointAt(0) ?? 0
  // control characters (C0, DEL, C1) are not printable in Rust's Debug output
  if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) return `\\u{${cp.toString(16)}}`
  return ch
}

/** Rust `{:?}` of a char, as the `hex` crate prints bad characters. */
export function rustDebugChar(ch: string): string {
  return `'${ch === "'" ? "\\'" : rustEscape(ch)}'`
}

/** Rust `{:?}` of a str, as serde prints unexpected strings. */
export function rustDebugStr(s: string): string {
  return `"${[...s].map((ch) => (ch === '"' ? '\\"' : rustEscape(ch))).join('')}"`
}

// Rust's `str::trim` strips Unicode White_Space, which differs from JS `trim()`: Rust strips
// U+0085 and keeps U+FEFF, JS the opposite. Tokens are trimmed the upstream way.
const RUST_WS =
  '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000'
const RUST_TRIM = new RegExp(`^[${RUST_WS}]+|[${RUST_WS}]+$`, 'g')

export function trimLikeRust(text: string): string {
  return text.replace(RUST_TRIM, '')
}

/** Longest value echoed whole in an error text; upstream echoes any length, but a 4 MB string
 * in a u64 field must not come back as a 4 MB error body and log line. */
export const ECHO_MAX_CHARS = 128

/** `rustDebugStr` for values echoed in error texts: up to ECHO_MAX_CHARS characters exactly as
 * upstream prints them, longer ones cut there and marked with their full length. */
export function rustDebugStrEcho(s: string): string {
  if (s.length <= ECHO_MAX_CHARS) return rustDebugStr(s)
  const head = Array.from(s.slice(0, ECHO_MAX_CHARS + 1))
    .slice(0, ECHO_MAX_CHARS)
    .join('')
  return `${rustDebugStr(head)}… (${Buffer.byteLength(s, 'utf8')} bytes)`
}
