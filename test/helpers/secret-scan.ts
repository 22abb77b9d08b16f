// Finds key material in captured log output. Secrets are gathered from the files a KMS keeps
// (every `*.key` file and the simulator seed under its directory) plus whatever a test adds
// (derived app keys, tokens, request bodies); each is searched in the forms a log line could
// carry it: PEM body lines, hex (either case) and base64 of the raw bytes.
import { createPrivateKey } from 'node:crypto'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

export interface Secret {
  name: string
  /** the strings whose presence in a log line is a leak */
  needles: string[]
}

/** Shorter strings could occur by chance (a 16-hex-digit fingerprint prefix is not a leak). */
const MIN_NEEDLE = 24

export function bytesSecret(name: string, bytes: Uint8Array): Secret {
  const b = Buffer.from(bytes)
  const hex = b.toString('hex')
  return {
    name,
    needles: [hex, hex.toUpperCase(), b.toString('base64'), b.toString('base64url')].filter(
      (n) => n.length >= MIN_NEEDLE,
    ),
  }
}

export function textSecret(name: string, text: string): Secret {
  return { name, needles: text.length >= MIN_NEEDLE ? [text] : [] }
}

function pemSecrets(name: string, pem: string): Secret[] {
  const out: Secret[] = []
  const body = pem
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('-----'))
    .filter((l) => l.length >= MIN_NEEDLE)
  if (body.length > 0) out.push({ name: `${name} (PEM)`, needles: body })
  try {
    const jwk = createPrivateKey(pem).export({ format: 'jwk' })
    if (typeof jwk.d === 'string') {
      out.push(bytesSecret(`${name} (scalar)`, Buffer.from(jwk.d, 'base64url')))
    }
  } catch {
    // not a private key PEM: the body lines are what there is to find
  }
  return out
}

function walk(dir: string, depth: number, found: string[]): void {
  if (depth < 0) return
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return
  }
  for (const n of names) {
    const p = join(dir, n)
    let st
    try {
      st = statSync(p)
    } catch {
      continue
    }
    if (st.isDirectory()) walk(p, depth - 1, found)
    else if (st.isFile() && (n.endsWith('.key') || n.endsWith('.seed')) && st.size < 64 * 1024) {
      found.push(p)
    }
  }
}

/** Every private key and seed file under `dir`, in every form a log line could carry it. */
export function secretsUnder(dir: string): Secret[] {
  const files: string[] = []
  walk(dir, 4, files)
  const out: Secret[] = []
  for (const f of files) {
    let data: Buffer
    try {
      data = readFileSync(f)
    } catch {
      continue
    }
    const text = data.toString('utf8')
    if (text.includes('-----BEGIN')) out.push(...pemSecrets(f, text))
    else {
      out.push(bytesSecret(f, data))
      const trimmed = text.trim()
      // a hex file (the simulator seed) is also secret as the bytes it encodes
      if (/^[0-9a-fA-F]+$/.test(trimmed)) {
        out.push(bytesSecret(`${f} (decoded)`, Buffer.from(trimmed, 'hex')))
      }
    }
  }
  return out
}

export interface Leak {
  secret: string
  line: string
}

export function findLeaks(lines: readonly string[], secrets: readonly Secret[]): Leak[] {
  const leaks: Leak[] = []
  for (const line of lines) {
    for (const s of secrets) {
      if (s.needles.some((n) => line.includes(n))) {
        leaks.push({ secret: s.name, line: line.length > 300 ? `${line.slice(0, 300)}…` : line })
      }
    }
  }
  return leaks
}
