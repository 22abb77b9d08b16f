// Finds a member's exact text inside a JSON document. Signed PCCS documents (TCB info, QE
// identity) are signed over Intel's bytes, and a JSON.parse/stringify round trip could reorder or
// re-space them, so the signed member is cut out of the reply as it came.
// The scanner runs over text already accepted by JSON.parse, so it only has to find value
// boundaries.
function skipWs(s: string, i: number): number {
  while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r')) i++
  return i
}

function skipString(s: string, i: number): number {
  for (i++; i < s.length; i++) {
    if (s[i] === '\\') i++
    else if (s[i] === '"') return i + 1
  }
  return s.length
}

function skipValue(s: string, i: number): number {
  const c = s[i]
  if (c === '"') return skipString(s, i)
  if (c === '{' || c === '[') {
    let depth = 0
    while (i < s.length) {
      const d = s[i]
      if (d === '"') {
        i = skipString(s, i)
        continue
      }
      if (d === '{' || d === '[') depth++
      else if (d === '}' || d === ']') {
        depth--
        if (depth === 0) return i + 1
      }
      i++
    }
    return s.length
  }
  while (i < s.length && !',}] \t\n\r'.includes(s[i] ?? '')) i++
  return i
}

/** The exact text of a top-level member of a JSON object, or undefined when absent. */
export function rawJsonMember(s: string, member: string): string | undefined {
  let i = skipWs(s, 0)
  if (s[i] !== '{') return undefined
  i = skipWs(s, i + 1)
  while (i < s.length && s[i] !== '}') {
    const keyEnd = skipString(s, i)
    const key = JSON.parse(s.slice(i, keyEnd)) as string
    i = skipWs(s, skipWs(s, keyEnd) + 1)
    const end = skipValue(s, i)
    if (key === member) return s.slice(i, end)
    i = skipWs(s, end)
    if (s[i] === ',') i = skipWs(s, i + 1)
  }
  return undefined
}
