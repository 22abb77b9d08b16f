// The measurement primitives of upstream `dstack-mr/src/util.rs` and `tdvf.rs`: SHA-384, the
// RTMR extend chain, UTF-16LE text and EFI GUID byte order.
import { createHash } from 'node:crypto'

export const sha384 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha384')
  for (const p of parts) h.update(p)
  return h.digest()
}

/** RTMR replay: start from 48 zero bytes, `mr = SHA-384(mr ‖ digest)` for each event. */
export function extendLog(log: readonly Uint8Array[]): Buffer {
  let mr: Buffer = Buffer.alloc(48)
  for (const d of log) mr = sha384(mr, d)
  return mr
}

export const utf16le = (s: string): Buffer => Buffer.from(s, 'utf16le')

/** EFI GUID text `a-b-c-d-e` to bytes: the first three groups little-endian, the rest as written. */
export function encodeGuid(text: string): Buffer {
  const groups = text.split('-')
  if (groups.length !== 5 || !groups.every((g) => /^[0-9a-fA-F]+$/.test(g) && g.length % 2 === 0)) {
    throw new Error(`invalid GUID ${text}`)
  }
  return Buffer.concat(
    groups.map((g, i) => {
      const b = Buffer.from(g, 'hex')
      return i <= 2 ? b.reverse() : b
    }),
  )
}
