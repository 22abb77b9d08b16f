// secp256k1 side by side (docs/design.md#secp256k1-through-libsecp256k1-or-noble-curves): the
// libsecp256k1 backend through the addon, @noble/curves, and libsecp256k1 called from a small C
// program compiled here (bench/c/secp256k1_bench.c), the floor for what the addon can reach. Same
// key and digest everywhere; interleaved rounds.
import { execFileSync } from 'node:child_process'
import { createNativeSecp256k1Backend } from '../src/crypto/secp256k1-native.js'
import { keccak256, nobleSecp256k1, type Secp256k1Backend } from '../src/crypto/secp256k1.js'
import { probeNativeSecp256k1 } from '../src/native/secp256k1.js'
import { compileC } from './c-build.js'
import { measureInterleaved, type InterleavedCase, type MicroOptions } from './micro.js'

// The C program uses these bytes too (memset 0x33 / 0x5a).
export const BENCH_K256_KEY = Buffer.alloc(32, 0x33)
const DIGEST = Buffer.alloc(32, 0x5a)

export interface Secp256k1Figures {
  /** µs per op; null when that implementation is not available here */
  signUs: { native: number | null; noble: number; c: number | null }
  pubkeyUs: { native: number | null; noble: number; c: number | null }
  /** why native or C figures are missing */
  notes: string[]
}

interface CBench {
  run(iterations: number): { signUs: number; pubkeyUs: number }
  dispose(): void
}

function compileCBench(): CBench | string {
  const built = compileC('secp256k1_bench.c', { libs: ['-lsecp256k1'] })
  if ('reason' in built) return `C baseline not built (${built.reason})`
  const { exe } = built
  return {
    run(iterations) {
      const text = execFileSync(exe, [String(iterations), '1'], { encoding: 'utf8' })
      const parsed = JSON.parse(text) as { signUs: number; pubkeyUs: number }
      return parsed
    },
    dispose: built.dispose,
  }
}

/** The native backend when the addon has libsecp256k1, else the reason it has not. */
export function nativeBackendOrReason(): Secp256k1Backend | string {
  const probe = probeNativeSecp256k1()
  return probe.available ? createNativeSecp256k1Backend(probe.binding) : probe.reason
}

export function runSecp256k1Bench(o: MicroOptions): Secp256k1Figures {
  const notes: string[] = []
  const native = nativeBackendOrReason()
  if (typeof native === 'string') notes.push(`native backend unavailable: ${native}`)
  const c = compileCBench()
  if (typeof c === 'string') notes.push(c)

  // the digest and key as the service passes them; sanity: both backends agree
  if (typeof native !== 'string') {
    const a = native.signRecoverable(DIGEST, BENCH_K256_KEY)
    if (!a.equals(nobleSecp256k1.signRecoverable(DIGEST, BENCH_K256_KEY))) {
      throw new Error('native and noble signatures differ on the bench key')
    }
  }
  const cases: InterleavedCase[] = [
    { name: 'noble sign', fn: () => nobleSecp256k1.signRecoverable(DIGEST, BENCH_K256_KEY) },
    { name: 'noble pubkey', fn: () => nobleSecp256k1.publicKeyCompressed(BENCH_K256_KEY) },
  ]
  if (typeof native !== 'string') {
    cases.push(
      { name: 'native sign', fn: () => native.signRecoverable(DIGEST, BENCH_K256_KEY) },
      { name: 'native pubkey', fn: () => native.publicKeyCompressed(BENCH_K256_KEY) },
    )
  }
  if (typeof c !== 'string') {
    // one process per round runs both loops; the pubkey case reuses the sign case's run
    let last: { signUs: number; pubkeyUs: number } | undefined
    cases.push(
      {
        name: 'C sign',
        round: (n) => {
          last = c.run(n)
          return last.signUs
        },
      },
      { name: 'C pubkey', round: () => last?.pubkeyUs ?? Number.NaN },
    )
  }
  try {
    const results = new Map(measureInterleaved(cases, o).map((r) => [r.name, r.usPerOp]))
    const get = (name: string): number | null => results.get(name) ?? null
    return {
      signUs: { native: get('native sign'), noble: get('noble sign') ?? NaN, c: get('C sign') },
      pubkeyUs: {
        native: get('native pubkey'),
        noble: get('noble pubkey') ?? NaN,
        c: get('C pubkey'),
      },
      notes,
    }
  } finally {
    if (typeof c !== 'string') c.dispose()
  }
}

/** Keccak-256 of a typical signed message, for the crypto floor. */
export function keccakCase(): () => Buffer {
  const msg = Buffer.alloc(26 + 20 + 8 + 32, 0x61)
  return () => keccak256(msg)
}
