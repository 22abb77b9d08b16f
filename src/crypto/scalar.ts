// Range checks for 32-byte big-endian private scalars. A byte comparison rather than a BigInt
// round trip through hex: it runs on every derivation and signature, where that costs more than
// the check itself.

/** The 32-byte big-endian encoding of a curve order. */
export function orderBytes(order: bigint): Buffer {
  return Buffer.from(order.toString(16).padStart(64, '0'), 'hex')
}

/** True when `d` is 32 bytes encoding a value in [1, order−1]. */
export function isScalarInRange(d: Uint8Array, order: Uint8Array): boolean {
  if (d.length !== 32) return false
  let nonZero = 0
  for (let i = 0; i < 32; i++) nonZero |= d[i] as number
  if (nonZero === 0) return false
  for (let i = 0; i < 32; i++) {
    const a = d[i] as number
    const b = order[i] as number
    if (a !== b) return a < b
  }
  return false
}
