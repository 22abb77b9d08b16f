// The input files of the operator CLIs (`verify-attestation`, `verify-image`): raw binary, hex
// text as guests and `sim-attest` print it, or a JSON object such as a guest-agent GetQuote reply.
import { readFileSync } from 'node:fs'
import { KmsError, withContext } from '../errors.js'

export function readInput(path: string, what: string): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    throw withContext(`failed to read ${what} ${path}`, err, 'KMS_ERR_CONFIG')
  }
}

/** Binary as is; hex text decoded. Binary quotes and attestations begin with a NUL or a msgpack
 * map byte, so they are never mistaken for hex. */
export function binaryOrHex(data: Buffer): Buffer {
  const text = data.toString('latin1').trim().replace(/^0x/, '')
  if (text.length > 0 && text.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(text)) {
    return Buffer.from(text, 'hex')
  }
  return data
}

/** The JSON object form; undefined for anything else. */
export function jsonObject(data: Buffer): Record<string, unknown> | undefined {
  if (data.toString('latin1').trimStart()[0] !== '{') return undefined
  try {
    const v: unknown = JSON.parse(data.toString('utf8'))
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

export function stringMember(obj: Record<string, unknown>, key: string, file: string): string {
  const v = obj[key]
  if (typeof v !== 'string') {
    throw new KmsError('KMS_ERR_BAD_REQUEST', `${file}: "${key}" must be a string`)
  }
  return v
}

export function hexMember(obj: Record<string, unknown>, key: string, file: string): Buffer {
  const v = obj[key]
  if (typeof v !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(v)) {
    throw new KmsError('KMS_ERR_BAD_REQUEST', `${file}: "${key}" must be a hex string`)
  }
  return Buffer.from(v, 'hex')
}
