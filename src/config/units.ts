// Durations and byte sizes as upstream writes them in kms.toml. Durations follow upstream's
// `serde-duration` crate (`<u64><s|m|h|d>` or `never`); byte sizes follow Rocket's `ubyte`
// (`[rpc.limits]`), so an upstream file means the same thing here.

import { KmsError } from '../errors.js'

const DURATION_UNITS_S: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400 }

function durationError(s: string, reason: string): KmsError {
  return new KmsError(
    'KMS_ERR_CONFIG',
    `invalid duration ${JSON.stringify(s)}: ${reason} (expected <integer><s|m|h|d> or "never")`,
  )
}

/** Node's timers overflow above 2^31-1 ms (24.8 days) and would then fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** Parses `<u64><s|m|h|d>` (or `never`) into milliseconds; `null` means never. Reasons in the
 * error messages are upstream's. */
export function parseDuration(s: string): number | null {
  if (s === '') throw durationError(s, 'Duration string cannot be empty')
  if (s === 'never') return null
  // Split at the last character, not the last UTF-16 unit, so a non-ASCII typo is reported
  // as a bad unit (upstream fixed the same bug: it used to panic).
  const chars = Array.from(s)
  const unit = chars.pop() ?? ''
  const value = chars.join('')
  // Rust's u64 parser accepts one leading '+', nothing else besides ASCII digits.
  if (value === '') throw durationError(s, 'cannot parse integer from empty string')
  if (!/^\+?[0-9]+$/.test(value)) throw durationError(s, 'invalid digit found in string')
  const multiplier = DURATION_UNITS_S[unit]
  if (multiplier === undefined) throw durationError(s, 'Invalid time unit. Use s, m, h, or d')
  const ms = BigInt(value.replace('+', '')) * BigInt(multiplier) * 1000n
  if (ms > BigInt(Number.MAX_SAFE_INTEGER)) throw durationError(s, `Duration ${s} is too large`)
  return Number(ms)
}

/** Renders milliseconds the way upstream serialises durations (largest unit that divides). */
export function formatDuration(ms: number | null): string {
  if (ms === null) return 'never'
  const secs = Math.floor(ms / 1000)
  if (secs % 86_400 === 0) return `${secs / 86_400}d`
  if (secs % 3600 === 0) return `${secs / 3600}h`
  if (secs % 60 === 0) return `${secs / 60}m`
  return `${secs}s`
}

const BYTE_UNITS: ReadonlyArray<readonly [string, bigint]> = [
  ['b', 1n],
  ['kb', 1000n],
  ['kib', 1n << 10n],
  ['mb', 1000n ** 2n],
  ['mib', 1n << 20n],
  ['gb', 1000n ** 3n],
  ['gib', 1n << 30n],
  ['tb', 1000n ** 4n],
  ['tib', 1n << 40n],
  ['pb', 1000n ** 5n],
  ['pib', 1n << 50n],
  ['eb', 1000n ** 6n],
  ['eib', 1n << 60n],
]

function byteSizeError(s: string | number, reason: string): KmsError {
  return new KmsError('KMS_ERR_CONFIG', `invalid byte size ${JSON.stringify(s)}: ${reason}`)
}

function checkedBytes(input: string | number, n: bigint): number {
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw byteSizeError(input, 'too large')
  return Number(n)
}

/** Parses a byte size like Rocket's limits: a plain non-negative integer, or a number with an
 * optional fraction, optional spaces, and a case-insensitive unit (`B`, `kB`, `KiB`, `MB`, `MiB`,
 * … `EiB`): `"1MiB"`, `"10 MiB"`, `"512KiB"`, `"1kB"`, `"0.5KiB"`. No leading or trailing
 * whitespace, no bare `k`/`m`. Unlike `ubyte`, negative integers are an error instead of 0. */
export function parseByteSize(s: string | number): number {
  if (typeof s === 'number') {
    if (!Number.isSafeInteger(s) || s < 0) {
      throw byteSizeError(s, 'expected a non-negative integer number of bytes')
    }
    return s
  }
  const m = /^([0-9]+)(?:\.([0-9]+))?(?: *([A-Za-z]+))?$/.exec(s)
  if (m === null) throw byteSizeError(s, 'expected <number>[ ]<unit>, e.g. "1MiB" or "512 KiB"')
  const whole = m[1] ?? ''
  const frac = m[2]
  const suffix = (m[3] ?? 'b').toLowerCase()
  const unit = BYTE_UNITS.find(([name]) => name === suffix)?.[1]
  if (unit === undefined) {
    throw byteSizeError(s, 'unknown unit (use B, kB, KiB, MB, MiB, GB, GiB, TB, TiB, PB, PiB)')
  }
  if (frac === undefined) return checkedBytes(s, BigInt(whole) * unit)
  if (unit === 1n) throw byteSizeError(s, 'a fraction of a byte makes no sense')
  // Truncate the fractional part to whole bytes, as ubyte does.
  const scale = 10n ** BigInt(frac.length)
  return checkedBytes(s, BigInt(whole) * unit + (BigInt(frac) * unit) / scale)
}
