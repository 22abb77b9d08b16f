// Keccak-256 with the original (pre-NIST) padding, as Ethereum and upstream's signatures use it.
// GetAppEnvEncryptPubKey makes two digests per new app id, and @noble/hashes' loop-and-table
// permutation made them cost about a third of the X25519 key (bench/profile.ts). This one keeps
// the 25 lanes in local variables as 32-bit halves and spells the round out (θ, ρ and π, χ, ι of
// FIPS 202 §3.2, written out mechanically between the markers), about 3× faster.
// test/keccak.test.ts pins it against published digests and @noble/hashes.

const RATE = 136
// The 24 round constants (FIPS 202 §3.2.5) as low and high 32-bit halves.
const RC_LO = Int32Array.from([
  0x00000001, 0x00008082, 0x0000808a, 0x80008000, 0x0000808b, 0x80000001, 0x80008081, 0x00008009,
  0x0000008a, 0x00000088, 0x80008009, 0x8000000a, 0x8000808b, 0x0000008b, 0x00008089, 0x00008003,
  0x00008002, 0x00000080, 0x0000800a, 0x8000000a, 0x80008081, 0x00008080, 0x80000001, 0x80008008,
])
const RC_HI = Int32Array.from([
  0x00000000, 0x00000000, 0x80000000, 0x80000000, 0x00000000, 0x00000000, 0x80000000, 0x80000000,
  0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x80000000, 0x80000000, 0x80000000,
  0x80000000, 0x80000000, 0x00000000, 0x80000000, 0x80000000, 0x80000000, 0x00000000, 0x80000000,
])

/** Keccak-f[1600] on 25 lanes held as (low, high) 32-bit halves: s[2i], s[2i + 1]. */
function permute(s: Int32Array): void {
  // eslint-disable-next-line one-var
  let l0 = s[0] as number,
    l1 = s[2] as number,
    l2 = s[4] as number,
    l3 = s[6] as number,
    l4 = s[8] as number,
    l5 = s[10] as number,
    l6 = s[12] as number,
    l7 = s[14] as number,
    l8 = s[16] as number,
    l9 = s[18] as number,
    l10 = s[20] as number,
    l11 = s[22] as number,
    l12 = s[24] as number,
    l13 = s[26] as number,
    l14 = s[28] as number,
    l15 = s[30] as number,
    l16 = s[32] as number,
    l17 = s[34] as number,
    l18 = s[36] as number,
    l19 = s[38] as number,
    l20 = s[40] as number,
    l21 = s[42] as number,
    l22 = s[44] as number,
    l23 = s[46] as number,
    l24 = s[48] as number
  // eslint-disable-next-line one-var
  let h0 = s[1] as number,
    h1 = s[3] as number,
    h2 = s[5] as number,
    h3 = s[7] as number,
    h4 = s[9] as number,
    h5 = s[11] as number,
    h6 = s[13] as number,
    h7 = s[15] as number,
    h8 = s[17] as number,
    h9 = s[19] as number,
    h10 = s[21] as number,
    h11 = s[23] as number,
    h12 = s[25] as number,
    h13 = s[27] as number,
    h14 = s[29] as number,
    h15 = s[31] as number,
    h16 = s[33] as number,
    h17 = s[35] as number,
    h18 = s[37] as number,
    h19 = s[39] as number,
    h20 = s[41] as number,
    h21 = s[43] as number,
    h22 = s[45] as number,
    h23 = s[47] as number,
    h24 = s[49] as number
  for (let round = 0; round < 24; round++) {
    // --- generated round body ---
    const c0l = l0 ^ l5 ^ l10 ^ l15 ^ l20
    const c0h = h0 ^ h5 ^ h10 ^ h15 ^ h20
    const c1l = l1 ^ l6 ^ l11 ^ l16 ^ l21
    const c1h = h1 ^ h6 ^ h11 ^ h16 ^ h21
    const c2l = l2 ^ l7 ^ l12 ^ l17 ^ l22
    const c2h = h2 ^ h7 ^ h12 ^ h17 ^ h22
    const c3l = l3 ^ l8 ^ l13 ^ l18 ^ l23
    const c3h = h3 ^ h8 ^ h13 ^ h18 ^ h23
    const c4l = l4 ^ l9 ^ l14 ^ l19 ^ l24
    const c4h = h4 ^ h9 ^ h14 ^ h19 ^ h24
    const d0l = c4l ^ ((c1l << 1) | (c1h >>> 31))
    const d0h = c4h ^ ((c1h << 1) | (c1l >>> 31))
    const d1l = c0l ^ ((c2l << 1) | (c2h >>> 31))
    const d1h = c0h ^ ((c2h << 1) | (c2l >>> 31))
    const d2l = c1l ^ ((c3l << 1) | (c3h >>> 31))
    const d2h = c1h ^ ((c3h << 1) | (c3l >>> 31))
    const d3l = c2l ^ ((c4l << 1) | (c4h >>> 31))
    const d3h = c2h ^ ((c4h << 1) | (c4l >>> 31))
    const d4l = c3l ^ ((c0l << 1) | (c0h >>> 31))
    const d4h = c3h ^ ((c0h << 1) | (c0l >>> 31))
    l0 ^= d0l
    h0 ^= d0h
    l1 ^= d1l
    h1 ^= d1h
    l2 ^= d2l
    h2 ^= d2h
    l3 ^= d3l
    h3 ^= d3h
    l4 ^= d4l
    h4 ^= d4h
    l5 ^= d0l
    h5 ^= d0h
    l6 ^= d1l
    h6 ^= d1h
    l7 ^= d2l
    h7 ^= d2h
    l8 ^= d3l
    h8 ^= d3h
    l9 ^= d4l
    h9 ^= d4h
    l10 ^= d0l
    h10 ^= d0h
    l11 ^= d1l
    h11 ^= d1h
    l12 ^= d2l
    h12 ^= d2h
    l13 ^= d3l
    h13 ^= d3h
    l14 ^= d4l
    h14 ^= d4h
    l15 ^= d0l
    h15 ^= d0h
    l16 ^= d1l
    h16 ^= d1h
    l17 ^= d2l
    h17 ^= d2h
    l18 ^= d3l
    h18 ^= d3h
    l19 ^= d4l
    h19 ^= d4h
    l20 ^= d0l
    h20 ^= d0h
    l21 ^= d1l
    h21 ^= d1h
    l22 ^= d2l
    h22 ^= d2h
    l23 ^= d3l
    h23 ^= d3h
    l24 ^= d4l
    h24 ^= d4h
    const b0l = l0
    const b0h = h0
    const b16l = (h5 << 4) | (l5 >>> 28)
    const b16h = (l5 << 4) | (h5 >>> 28)
    const b7l = (l10 << 3) | (h10 >>> 29)
    const b7h = (h10 << 3) | (l10 >>> 29)
    const b23l = (h15 << 9) | (l15 >>> 23)
    const b23h = (l15 << 9) | (h15 >>> 23)
    const b14l = (l20 << 18) | (h20 >>> 14)
    const b14h = (h20 << 18) | (l20 >>> 14)
    const b10l = (l1 << 1) | (h1 >>> 31)
    const b10h = (h1 << 1) | (l1 >>> 31)
    const b1l = (h6 << 12) | (l6 >>> 20)
    const b1h = (l6 << 12) | (h6 >>> 20)
    const b17l = (l11 << 10) | (h11 >>> 22)
    const b17h = (h11 << 10) | (l11 >>> 22)
    const b8l = (h16 << 13) | (l16 >>> 19)
    const b8h = (l16 << 13) | (h16 >>> 19)
    const b24l = (l21 << 2) | (h21 >>> 30)
    const b24h = (h21 << 2) | (l21 >>> 30)
    const b20l = (h2 << 30) | (l2 >>> 2)
    const b20h = (l2 << 30) | (h2 >>> 2)
    const b11l = (l7 << 6) | (h7 >>> 26)
    const b11h = (h7 << 6) | (l7 >>> 26)
    const b2l = (h12 << 11) | (l12 >>> 21)
    const b2h = (l12 << 11) | (h12 >>> 21)
    const b18l = (l17 << 15) | (h17 >>> 17)
    const b18h = (h17 << 15) | (l17 >>> 17)
    const b9l = (h22 << 29) | (l22 >>> 3)
    const b9h = (l22 << 29) | (h22 >>> 3)
    const b5l = (l3 << 28) | (h3 >>> 4)
    const b5h = (h3 << 28) | (l3 >>> 4)
    const b21l = (h8 << 23) | (l8 >>> 9)
    const b21h = (l8 << 23) | (h8 >>> 9)
    const b12l = (l13 << 25) | (h13 >>> 7)
    const b12h = (h13 << 25) | (l13 >>> 7)
    const b3l = (l18 << 21) | (h18 >>> 11)
    const b3h = (h18 << 21) | (l18 >>> 11)
    const b19l = (h23 << 24) | (l23 >>> 8)
    const b19h = (l23 << 24) | (h23 >>> 8)
    const b15l = (l4 << 27) | (h4 >>> 5)
    const b15h = (h4 << 27) | (l4 >>> 5)
    const b6l = (l9 << 20) | (h9 >>> 12)
    const b6h = (h9 << 20) | (l9 >>> 12)
    const b22l = (h14 << 7) | (l14 >>> 25)
    const b22h = (l14 << 7) | (h14 >>> 25)
    const b13l = (l19 << 8) | (h19 >>> 24)
    const b13h = (h19 << 8) | (l19 >>> 24)
    const b4l = (l24 << 14) | (h24 >>> 18)
    const b4h = (h24 << 14) | (l24 >>> 18)
    l0 = b0l ^ (~b1l & b2l)
    h0 = b0h ^ (~b1h & b2h)
    l1 = b1l ^ (~b2l & b3l)
    h1 = b1h ^ (~b2h & b3h)
    l2 = b2l ^ (~b3l & b4l)
    h2 = b2h ^ (~b3h & b4h)
    l3 = b3l ^ (~b4l & b0l)
    h3 = b3h ^ (~b4h & b0h)
    l4 = b4l ^ (~b0l & b1l)
    h4 = b4h ^ (~b0h & b1h)
    l5 = b5l ^ (~b6l & b7l)
    h5 = b5h ^ (~b6h & b7h)
    l6 = b6l ^ (~b7l & b8l)
    h6 = b6h ^ (~b7h & b8h)
    l7 = b7l ^ (~b8l & b9l)
    h7 = b7h ^ (~b8h & b9h)
    l8 = b8l ^ (~b9l & b5l)
    h8 = b8h ^ (~b9h & b5h)
    l9 = b9l ^ (~b5l & b6l)
    h9 = b9h ^ (~b5h & b6h)
    l10 = b10l ^ (~b11l & b12l)
    h10 = b10h ^ (~b11h & b12h)
    l11 = b11l ^ (~b12l & b13l)
    h11 = b11h ^ (~b12h & b13h)
    l12 = b12l ^ (~b13l & b14l)
    h12 = b12h ^ (~b13h & b14h)
    l13 = b13l ^ (~b14l & b10l)
    h13 = b13h ^ (~b14h & b10h)
    l14 = b14l ^ (~b10l & b11l)
    h14 = b14h ^ (~b10h & b11h)
    l15 = b15l ^ (~b16l & b17l)
    h15 = b15h ^ (~b16h & b17h)
    l16 = b16l ^ (~b17l & b18l)
    h16 = b16h ^ (~b17h & b18h)
    l17 = b17l ^ (~b18l & b19l)
    h17 = b17h ^ (~b18h & b19h)
    l18 = b18l ^ (~b19l & b15l)
    h18 = b18h ^ (~b19h & b15h)
    l19 = b19l ^ (~b15l & b16l)
    h19 = b19h ^ (~b15h & b16h)
    l20 = b20l ^ (~b21l & b22l)
    h20 = b20h ^ (~b21h & b22h)
    l21 = b21l ^ (~b22l & b23l)
    h21 = b21h ^ (~b22h & b23h)
    l22 = b22l ^ (~b23l & b24l)
    h22 = b22h ^ (~b23h & b24h)
    l23 = b23l ^ (~b24l & b20l)
    h23 = b23h ^ (~b24h & b20h)
    l24 = b24l ^ (~b20l & b21l)
    h24 = b24h ^ (~b20h & b21h)
    l0 ^= RC_LO[round] as number
    h0 ^= RC_HI[round] as number

    // --- end of generated round body ---
  }
  s[0] = l0
  s[1] = h0
  s[2] = l1
  s[3] = h1
  s[4] = l2
  s[5] = h2
  s[6] = l3
  s[7] = h3
  s[8] = l4
  s[9] = h4
  s[10] = l5
  s[11] = h5
  s[12] = l6
  s[13] = h6
  s[14] = l7
  s[15] = h7
  s[16] = l8
  s[17] = h8
  s[18] = l9
  s[19] = h9
  s[20] = l10
  s[21] = h10
  s[22] = l11
  s[23] = h11
  s[24] = l12
  s[25] = h12
  s[26] = l13
  s[27] = h13
  s[28] = l14
  s[29] = h14
  s[30] = l15
  s[31] = h15
  s[32] = l16
  s[33] = h16
  s[34] = l17
  s[35] = h17
  s[36] = l18
  s[37] = h18
  s[38] = l19
  s[39] = h19
  s[40] = l20
  s[41] = h20
  s[42] = l21
  s[43] = h21
  s[44] = l22
  s[45] = h22
  s[46] = l23
  s[47] = h23
  s[48] = l24
  s[49] = h24
}

// One state and one block, reused: keccak256 runs start to end without yielding, so no two digests
// ever share them, and a digest allocates only its output.
const state = new Int32Array(50)
const block = new Uint8Array(RATE)
// little-endian lane reads whatever the platform's byte order
const blockView = new DataView(block.buffer)

function absorbBlock(): void {
  for (let i = 0; i < RATE / 4; i++) {
    state[i] = (state[i] as number) ^ blockView.getInt32(4 * i, true)
  }
  permute(state)
}

/** Keccak-256 (pre-NIST padding, as Ethereum) of the concatenated parts. */
export function keccak256(...parts: Uint8Array[]): Buffer {
  state.fill(0)
  let filled = 0
  for (const part of parts) {
    for (let taken = 0; taken < part.length;) {
      const n = Math.min(RATE - filled, part.length - taken)
      block.set(n === part.length ? part : part.subarray(taken, taken + n), filled)
      filled += n
      taken += n
      if (filled === RATE) {
        absorbBlock()
        filled = 0
      }
    }
  }
  block.fill(0, filled)
  block[filled] = (block[filled] as number) ^ 0x01
  block[RATE - 1] = (block[RATE - 1] as number) ^ 0x80
  absorbBlock()
  const out = Buffer.allocUnsafe(32)
  for (let i = 0; i < 8; i++) out.writeInt32LE(state[i] as number, 4 * i)
  return out
}
