// Hex decoding with the Rust `hex` crate's semantics and error texts, which upstream shows to
// clients: the length is checked first, then the first bad byte is reported (as a Latin-1 char)
// at its byte index. `Buffer.from(text, 'hex')` is never enough: it stops silently at the first
// bad digit.
import { KmsError } from '../errors.js'
import { rustDebugChar } from './rust-text.js'

export class HexError extends KmsError {
  constructor(message: string) {
    super('KMS_ERR_HEX', message)
    this.name = 'HexError'
  }
}

export function hexDigitValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30
  if (b >= 0x61 && b <= 0x66) return b - 0x61 + 10
  if (b >= 0x41 && b <= 0x46) return b - 0x41 + 10
  return -1
}

/** Decodes hex (either case, no prefix); throws HexError with the `hex` crate's text. */
export function decodeHex(text: string): Buffer {
  const raw = Buffer.from(text, 'utf8')
  if (raw.length % 2 !== 0) throw new HexError('Odd number of digits')
  const out = Buffer.alloc(raw.length / 2)
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i] ?? 0
    const v = hexDigitValue(b)
    if (v < 0) {
      throw new HexError(
        `Invalid character ${rustDebugChar(String.fromCharCode(b))} at position ${i}`,
      )
    }
    out[i >> 1] = (out[i >> 1] ?? 0) | (i % 2 === 0 ? v << 4 : v)
  }
  return out
}
