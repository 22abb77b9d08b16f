// Strict hex helpers. Upstream decodes hex with the Rust `hex` crate, whose error texts reach
// clients inside pRPC error messages, so the messages below mirror that crate's Display output.
import { KmsError, type KmsErrorCode } from '../errors.js'

export interface FromHexOptions {
  /** accept a leading `0x`/`0X` (upstream does for app ids in some places) */
  allowPrefix?: boolean
  /** required decoded length in bytes */
  length?: number
  /** what is being decoded, prepended to the error message */
  what?: string
  /** error code of the thrown KmsError (default KMS_ERR_BAD_REQUEST) */
  code?: KmsErrorCode
}

function hexDigitValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10
  return -1
}

/** Decodes hex without any of Buffer.from(…, 'hex')'s silent truncation at the first bad digit. */
export function fromHex(text: string, options: FromHexOptions = {}): Buffer {
  const code = options.code ?? 'KMS_ERR_BAD_REQUEST'
  const fail = (msg: string): never => {
    throw new KmsError(code, options.what === undefined ? msg : `${options.what}: ${msg}`)
  }
  let body = text
  if (options.allowPrefix === true && (body.startsWith('0x') || body.startsWith('0X'))) {
    body = body.slice(2)
  }
  for (let i = 0; i < body.length; i++) {
    if (hexDigitValue(body.charCodeAt(i)) < 0) {
      fail(`Invalid character ${JSON.stringify(body.charAt(i))} at position ${i}`)
    }
  }
  if (body.length % 2 !== 0) fail('Odd number of digits')
  const out = Buffer.from(body, 'hex')
  if (options.length !== undefined && out.length !== options.length) fail('Invalid string length')
  return out
}

/** True when `text` would decode with `fromHex` (even length, hex digits only; empty counts). */
export function isHex(text: string): boolean {
  if (text.length % 2 !== 0) return false
  for (let i = 0; i < text.length; i++) {
    if (hexDigitValue(text.charCodeAt(i)) < 0) return false
  }
  return true
}

/** Lowercase hex, no prefix (upstream's `hex::encode`). */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}
