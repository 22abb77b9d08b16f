// V0 of `VersionedAttestation`: upstream's `LegacyVersionedAttestation` in SCALE, what real
// guests send. Field names in errors are those of upstream's derived decoders, so the error chain
// reads like upstream's.
import { ScaleError, ScaleReader, ScaleWriter } from '../codec/scale.js'
import { attErr } from './attestation-error.js'
import {
  MAX_EVENTS,
  type Attestation,
  type AttestationQuote,
  type RuntimeEvent,
  type TdxEvent,
  type TpmEvent,
  type TpmPcrValue,
  type TpmQuote,
} from './types.js'

const REPORT_DATA_LENGTH = 64

/** Encodes V0 as SCALE. V0 cannot carry a `dstack-pod` stack, a report_data other than 64
 * bytes, or V2 events (their version is not on the SCALE wire). */
export function encodeLegacyVersioned(a: Attestation): Buffer {
  if (a.stack.kind !== 'dstack') {
    throw attErr('dstack-pod attestation cannot be represented by the legacy schema')
  }
  if (a.reportData.length !== REPORT_DATA_LENGTH) throw attErr('report_data must be 64 bytes')
  const tdxLog =
    a.quote.kind === 'dstack-tdx' || a.quote.kind === 'dstack-gcp-tdx' ? a.quote.eventLog : []
  if (a.runtimeEvents.some((e) => e.version === 2) || tdxLog.some((e) => e.version === 2)) {
    throw attErr('non-V1 runtime events cannot be represented by the legacy schema')
  }
  const w = new ScaleWriter().u8(0) // LegacyVersionedAttestation::V0
  encodeAttestationQuote(w, a.quote)
  w.vec(a.runtimeEvents, (x, e) => x.string(e.event).vecU8(e.payload))
  w.raw(a.reportData).string(a.config)
  return w.toBuffer()
}

export function decodeLegacyVersioned(r: ScaleReader): Attestation {
  let tag: number
  try {
    tag = r.u8()
  } catch (err) {
    if (err instanceof ScaleError) {
      throw err.chain('Could not decode `LegacyVersionedAttestation`, failed to read variant byte')
    }
    throw err
  }
  if (tag !== 0) {
    throw new ScaleError("Could not decode `LegacyVersionedAttestation`, variant doesn't exist")
  }
  return r.field('LegacyVersionedAttestation::V0::attestation', decodeAttestation)
}

function decodeAttestation(r: ScaleReader): Attestation {
  return {
    quote: r.field('Attestation::quote', decodeAttestationQuote),
    runtimeEvents: r.field('Attestation::runtime_events', (x) =>
      x.vec(decodeRuntimeEvent, MAX_EVENTS),
    ),
    reportData: r.field('Attestation::report_data', (x) => x.bytes(REPORT_DATA_LENGTH)),
    config: r.field('Attestation::config', (x) => x.string()),
    stack: { kind: 'dstack' },
  }
}

function decodeRuntimeEvent(r: ScaleReader): RuntimeEvent {
  return {
    event: r.field('RuntimeEvent::event', (x) => x.string()),
    payload: r.field('RuntimeEvent::payload', (x) => x.vecU8()),
  }
}

function decodeTdxEvent(r: ScaleReader): TdxEvent {
  return {
    imr: r.field('TdxEvent::imr', (x) => x.u32()),
    eventType: r.field('TdxEvent::event_type', (x) => x.u32()),
    digest: r.field('TdxEvent::digest', (x) => x.vecU8()),
    event: r.field('TdxEvent::event', (x) => x.string()),
    eventPayload: r.field('TdxEvent::event_payload', (x) => x.vecU8()),
  }
}

function decodeTdxQuote(r: ScaleReader): { quote: Buffer; eventLog: TdxEvent[] } {
  return {
    quote: r.field('TdxQuote::quote', (x) => x.vecU8()),
    eventLog: r.field('TdxQuote::event_log', (x) => x.vec(decodeTdxEvent, MAX_EVENTS)),
  }
}

/** upstream's TPM platform names, in enum order (both wires share them) */
export const PLATFORM_NAMES = ['dstack', 'gcp', 'nitroenclave', 'aws-ec2'] as const

function decodeTpmQuote(r: ScaleReader): TpmQuote {
  return {
    message: r.field('TpmQuote::message', (x) => x.vecU8()),
    signature: r.field('TpmQuote::signature', (x) => x.vecU8()),
    pcrValues: r.field('TpmQuote::pcr_values', (x) =>
      x.vec(
        (y): TpmPcrValue => ({
          index: y.field('PcrValue::index', (z) => z.u32()),
          algorithm: y.field('PcrValue::algorithm', (z) => z.string()),
          value: y.field('PcrValue::value', (z) => z.vecU8()),
        }),
        MAX_EVENTS,
      ),
    ),
    akCert: r.field('TpmQuote::ak_cert', (x) => x.vecU8()),
    platform: r.field('TpmQuote::platform', (x) => {
      let p: number
      try {
        p = x.u8()
      } catch (err) {
        if (err instanceof ScaleError) {
          throw err.chain('Could not decode `Platform`, failed to read variant byte')
        }
        throw err
      }
      if (p >= PLATFORM_NAMES.length) {
        throw new ScaleError("Could not decode `Platform`, variant doesn't exist")
      }
      return p
    }),
    eventLog: r.field('TpmQuote::event_log', (x) =>
      x.vec(
        (y): TpmEvent => ({
          pcrIndex: y.field('TpmEvent::pcr_index', (z) => z.u32()),
          digest: y.field('TpmEvent::digest', (z) => z.vecU8()),
        }),
        MAX_EVENTS,
      ),
    ),
  }
}

function decodeAttestationQuote(r: ScaleReader): AttestationQuote {
  let tag: number
  try {
    tag = r.u8()
  } catch (err) {
    if (err instanceof ScaleError) {
      throw err.chain('Could not decode `AttestationQuote`, failed to read variant byte')
    }
    throw err
  }
  switch (tag) {
    case 0: {
      const q = r.field('AttestationQuote::DstackTdx.0', decodeTdxQuote)
      return { kind: 'dstack-tdx', quote: q.quote, eventLog: q.eventLog }
    }
    case 1:
      return r.field('AttestationQuote::DstackGcpTdx.0', (x) => {
        const q = x.field('DstackGcpTdxQuote::tdx_quote', decodeTdxQuote)
        const tpmQuote = x.field('DstackGcpTdxQuote::tpm_quote', decodeTpmQuote)
        return { kind: 'dstack-gcp-tdx', quote: q.quote, eventLog: q.eventLog, tpmQuote }
      })
    case 2:
      return r.field('AttestationQuote::DstackNitroEnclave.0', (x) => ({
        kind: 'dstack-nitro-enclave',
        nsmQuote: x.field('DstackNitroQuote::nsm_quote', (y) => y.vecU8()),
      }))
    case 3:
      return r.field('AttestationQuote::DstackAmdSevSnp.0', (x) => ({
        kind: 'dstack-amd-sev-snp',
        report: x.field('SnpQuote::report', (y) => y.vecU8()),
        certChain: x.field('SnpQuote::cert_chain', (y) => y.vec((z) => z.vecU8(), MAX_EVENTS)),
        mrConfig: x.field('SnpQuote::mr_config', (y) => y.string()),
      }))
    case 4:
      return r.field('AttestationQuote::DstackAwsNitroTpm.0', (x) => ({
        kind: 'dstack-aws-nitro-tpm',
        attestationDoc: x.field('DstackAwsNitroTpmQuote::attestation_doc', (y) => y.vecU8()),
      }))
    default:
      throw new ScaleError("Could not decode `AttestationQuote`, variant doesn't exist")
  }
}

function encodeTdxEvents(w: ScaleWriter, events: readonly TdxEvent[]): void {
  w.vec(events, (x, e) =>
    x.u32(e.imr).u32(e.eventType).vecU8(e.digest).string(e.event).vecU8(e.eventPayload),
  )
}

function encodeTpmQuote(w: ScaleWriter, q: TpmQuote): void {
  w.vecU8(q.message)
    .vecU8(q.signature)
    .vec(q.pcrValues, (x, p) => x.u32(p.index).string(p.algorithm).vecU8(p.value))
    .vecU8(q.akCert)
    .u8(q.platform)
    .vec(q.eventLog, (x, e) => x.u32(e.pcrIndex).vecU8(e.digest))
}

function encodeAttestationQuote(w: ScaleWriter, q: AttestationQuote): void {
  switch (q.kind) {
    case 'dstack-tdx':
      w.u8(0).vecU8(q.quote)
      encodeTdxEvents(w, q.eventLog)
      return
    case 'dstack-gcp-tdx':
      w.u8(1).vecU8(q.quote)
      encodeTdxEvents(w, q.eventLog)
      encodeTpmQuote(w, q.tpmQuote)
      return
    case 'dstack-nitro-enclave':
      w.u8(2).vecU8(q.nsmQuote)
      return
    case 'dstack-amd-sev-snp':
      w.u8(3)
        .vecU8(q.report)
        .vec(q.certChain, (x, c) => x.vecU8(c))
        .string(q.mrConfig)
      return
    case 'dstack-aws-nitro-tpm':
      w.u8(4).vecU8(q.attestationDoc)
  }
}
