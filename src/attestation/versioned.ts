// `VersionedAttestation` on the wire: V0 = SCALE (what real guests send, versioned-v0.ts), V1 =
// rmp-serde named-map msgpack (upstream HEAD, the guest-agent simulator, `dstack-pod` stacks,
// versioned-v1.ts). Both must re-encode byte-exactly: certificates embed these bytes, and
// verifiers compare them. Mirrors upstream `dstack-attest` `VersionedAttestation::from_bytes` and
// `to_bytes`.
import { withContext } from '../errors.js'
import { ScaleReader } from '../codec/scale.js'
import { attErr } from './attestation-error.js'
import type { Attestation, TeeVariant, VersionedAttestation } from './types.js'
import { decodeLegacyVersioned, encodeLegacyVersioned } from './versioned-v0.js'
import { decodeV1, encodeV1 } from './versioned-v1.js'

export const MAX_ATTESTATION_BYTES = 10 * 1024 * 1024

function isMsgpackMapPrefix(b: number): boolean {
  return (b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf
}

/** Decodes V0 (SCALE) or V1 (msgpack) bytes; trailing bytes are rejected (upstream HEAD). Errors
 * are `KmsError('KMS_ERR_ATTESTATION')` with upstream's texts (the SCALE codec chain as cause and
 * in the message). */
export function decodeVersionedAttestation(bytes: Uint8Array): VersionedAttestation {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (buf.length > MAX_ATTESTATION_BYTES) {
    throw attErr(`attestation bytes too large: ${buf.length} > ${MAX_ATTESTATION_BYTES}`)
  }
  const first = buf[0]
  if (first === undefined) throw attErr('Empty attestation bytes')
  if (first === 0x00) {
    const r = new ScaleReader(buf)
    let attestation: Attestation
    try {
      attestation = decodeLegacyVersioned(r)
    } catch (err) {
      throw withContext('Failed to decode legacy VersionedAttestation', err, 'KMS_ERR_ATTESTATION')
    }
    if (r.remaining !== 0) {
      throw attErr(`Trailing bytes after legacy VersionedAttestation: ${r.remaining}`)
    }
    return { version: 0, attestation }
  }
  if (isMsgpackMapPrefix(first)) return { version: 1, attestation: decodeV1(buf) }
  throw attErr('Unknown attestation wire format')
}

/** Encodes V0 as SCALE and V1 as msgpack (version forced to 1). V0 cannot carry a `dstack-pod`
 * stack, a report_data other than 64 bytes, or V2 events (their version is not on the SCALE wire). */
export function encodeVersionedAttestation(v: VersionedAttestation): Buffer {
  return v.version === 1 ? encodeV1(v.attestation) : encodeLegacyVersioned(v.attestation)
}

/** Upstream `into_versioned`: V0 unless some event uses the V2 digest format, whose version only
 * the V1 wire keeps. */
export function intoVersioned(a: Attestation): VersionedAttestation {
  const tdxLog =
    a.quote.kind === 'dstack-tdx' || a.quote.kind === 'dstack-gcp-tdx' ? a.quote.eventLog : []
  const hasV2 = a.runtimeEvents.some((e) => e.version === 2) || tdxLog.some((e) => e.version === 2)
  return { version: hasV2 || a.stack.kind !== 'dstack' ? 1 : 0, attestation: a }
}

export function teeVariantOf(a: Attestation): TeeVariant {
  return a.quote.kind
}
