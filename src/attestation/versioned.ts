// `VersionedAttestation` wire codecs (spec 04 §1–3): V0 = SCALE (what real guests send), V1 =
// rmp-serde named-map msgpack (upstream HEAD, the guest-agent simulator, `dstack-pod` stacks).
// Both must re-encode byte-exactly: certificates embed these bytes, and verifiers compare them.
// Also here: certificate stripping (§5), `from_tdx_quote` (§7) and the vm_config view (§14).
import { decode as msgpackDecode, encode as msgpackEncode } from '@msgpack/msgpack'
import { KmsError, errorMessage, withContext } from '../errors.js'
import { ScaleError, ScaleReader, ScaleWriter } from '../codec/scale.js'
import { decodeHex } from '../util/hex.js'
import { rustDebugStr } from '../util/rust-text.js'
import { isAcpiDataEvent, parseTdxEventLogJson, TDX_ACPI_DATA_EVENT_PAYLOAD } from './event-log.js'
import { parseQuote, tdReportOf } from './quote.js'
import { tdxEventToRuntimeEvent } from './runtime-events.js'
import {
  DSTACK_RUNTIME_EVENT_TYPE,
  MAX_EVENTS,
  type Attestation,
  type AttestationQuote,
  type RuntimeEvent,
  type TdxEvent,
  type TeeVariant,
  type TpmEvent,
  type TpmPcrValue,
  type TpmQuote,
  type VersionedAttestation,
} from './types.js'

export const MAX_ATTESTATION_BYTES = 10 * 1024 * 1024
export const ATTESTATION_V1_VERSION = 1
const REPORT_DATA_LENGTH = 64

function attErr(message: string, cause?: unknown): KmsError {
  return new KmsError('KMS_ERR_ATTESTATION', message, cause === undefined ? undefined : { cause })
}

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
  if (v.version === 1) return encodeV1(v.attestation)
  const a = v.attestation
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

// ---------------------------------------------------------------------------------------------
// V0: SCALE (field names are those of upstream's derived decoders, for the error chain)

function decodeLegacyVersioned(r: ScaleReader): Attestation {
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

const PLATFORM_NAMES = ['dstack', 'gcp', 'nitroenclave', 'aws-ec2'] as const

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

// ---------------------------------------------------------------------------------------------
// V1: rmp-serde named maps. Plain `Vec<u8>` fields are integer arrays (Rust cannot read them from
// `bin`); `serde_bytes`/`serde_human_bytes` fields are `bin`.

type MsgValue = unknown

const PLATFORM_KINDS = ['tdx', 'gcp-tdx', 'nitro-enclave', 'aws-nitro-tpm', 'sev-snp'] as const
const STACK_KINDS = ['dstack', 'dstack-pod'] as const

function ints(b: Uint8Array): number[] {
  return Array.from(b)
}

function tdxEventToMsg(e: TdxEvent): Record<string, MsgValue> {
  const m: Record<string, MsgValue> = {
    imr: e.imr,
    event_type: e.eventType,
    digest: e.digest,
    event: e.event,
    event_payload: e.eventPayload,
  }
  if (e.version === 2) m['version'] = 2
  if (e.preimage !== undefined) m['preimage'] = e.preimage.toString('hex')
  return m
}

function runtimeEventToMsg(e: RuntimeEvent): Record<string, MsgValue> {
  const m: Record<string, MsgValue> = { event: e.event, payload: e.payload }
  if (e.version === 2) m['version'] = 2
  return m
}

function tpmQuoteToMsg(q: TpmQuote): Record<string, MsgValue> {
  const platform = PLATFORM_NAMES[q.platform]
  if (platform === undefined) throw attErr(`unknown TPM platform ${q.platform}`)
  return {
    message: q.message,
    signature: q.signature,
    pcr_values: q.pcrValues.map((p) => ({
      index: p.index,
      algorithm: p.algorithm,
      value: p.value,
    })),
    ak_cert: q.akCert,
    platform,
    event_log: q.eventLog.map((e) => ({ pcr_index: e.pcrIndex, digest: e.digest })),
  }
}

function platformToMsg(q: AttestationQuote): Record<string, MsgValue> {
  switch (q.kind) {
    case 'dstack-tdx':
      return {
        kind: 'tdx',
        data: { quote: ints(q.quote), event_log: q.eventLog.map(tdxEventToMsg) },
      }
    case 'dstack-gcp-tdx':
      return {
        kind: 'gcp-tdx',
        data: {
          quote: ints(q.quote),
          event_log: q.eventLog.map(tdxEventToMsg),
          tpm_quote: tpmQuoteToMsg(q.tpmQuote),
        },
      }
    case 'dstack-nitro-enclave':
      return { kind: 'nitro-enclave', data: { nsm_quote: ints(q.nsmQuote) } }
    case 'dstack-aws-nitro-tpm':
      return { kind: 'aws-nitro-tpm', data: { attestation_doc: ints(q.attestationDoc) } }
    case 'dstack-amd-sev-snp':
      return {
        kind: 'sev-snp',
        data: {
          report: ints(q.report),
          cert_chain: q.certChain.map(ints),
          mr_config: q.mrConfig,
        },
      }
  }
}

function encodeV1(a: Attestation): Buffer {
  const data: Record<string, MsgValue> = {
    report_data: ints(a.reportData),
    runtime_events: a.runtimeEvents.map(runtimeEventToMsg),
    config: a.config,
  }
  if (a.stack.kind === 'dstack-pod') data['report_data_payload'] = a.stack.reportDataPayload
  const doc = {
    version: ATTESTATION_V1_VERSION,
    platform: platformToMsg(a.quote),
    stack: { kind: a.stack.kind, data },
  }
  return Buffer.from(msgpackEncode(doc))
}

/** serde's names for unexpected msgpack values in `invalid type: …` errors. */
function msgKind(v: MsgValue): string {
  if (v === null || v === undefined) return 'unit value'
  if (v instanceof Uint8Array) return 'byte array'
  if (Array.isArray(v)) return 'sequence'
  if (typeof v === 'object') return 'map'
  if (typeof v === 'string') return `string ${rustDebugStr(v)}`
  if (typeof v === 'boolean') return `boolean \`${String(v)}\``
  if (typeof v === 'number') {
    return Number.isInteger(v) ? `integer \`${v}\`` : `floating point \`${v}\``
  }
  if (typeof v === 'bigint') return `integer \`${v}\``
  return typeof v
}

class V1DecodeError extends KmsError {
  constructor(message: string) {
    super('KMS_ERR_ATTESTATION', message)
  }
}

function invalidType(v: MsgValue, expected: string): V1DecodeError {
  return new V1DecodeError(`invalid type: ${msgKind(v)}, expected ${expected}`)
}

class MsgMap {
  readonly #m: Map<string, MsgValue>

  constructor(v: MsgValue, what: string) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) {
      throw invalidType(v, what)
    }
    this.#m = new Map(Object.entries(v))
  }

  has(key: string): boolean {
    return this.#m.has(key) && this.#m.get(key) !== undefined
  }

  get(key: string): MsgValue {
    if (!this.#m.has(key)) throw new V1DecodeError(`missing field \`${key}\``)
    return this.#m.get(key)
  }
}

function msgUint(v: MsgValue, max: number, ty: string): number {
  if (typeof v === 'bigint') {
    if (v < 0n || v > BigInt(max)) {
      throw new V1DecodeError(`invalid value: integer \`${v}\`, expected ${ty}`)
    }
    return Number(v)
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalidType(v, ty)
  if (v < 0 || v > max) throw new V1DecodeError(`invalid value: integer \`${v}\`, expected ${ty}`)
  return v
}

function msgString(v: MsgValue): string {
  if (typeof v !== 'string') throw invalidType(v, 'a string')
  return v
}

/** A plain `Vec<u8>`: an array of integers only. */
function msgIntBytes(v: MsgValue): Buffer {
  if (!Array.isArray(v)) throw invalidType(v, 'a sequence')
  return Buffer.from(v.map((x: MsgValue) => msgUint(x, 0xff, 'u8')))
}

/** A `serde_bytes`-style field: `bin` (an integer array is accepted too, as serde_bytes does). */
function msgBin(v: MsgValue): Buffer {
  if (v instanceof Uint8Array) return Buffer.from(v)
  if (Array.isArray(v)) return msgIntBytes(v)
  throw invalidType(v, 'a byte array')
}

/** A sequence of structured items (events, PCR values, certificates), bounded like SCALE's. */
function msgSeq<T>(v: MsgValue, item: (x: MsgValue) => T): T[] {
  if (!Array.isArray(v)) throw invalidType(v, 'a sequence')
  if (v.length > MAX_EVENTS) {
    throw new V1DecodeError(`sequence length ${v.length} exceeds the limit of ${MAX_EVENTS}`)
  }
  return v.map((x: MsgValue) => item(x))
}

function msgVersion(m: MsgMap): 1 | 2 | undefined {
  if (!m.has('version')) return undefined
  const v = msgUint(m.get('version'), 0xffffffff, 'u32')
  if (v === 1) return 1
  if (v === 2) return 2
  throw new V1DecodeError(`unknown event log version: ${v}`)
}

function tdxEventFromMsg(v: MsgValue): TdxEvent {
  const m = new MsgMap(v, 'struct TdxEvent')
  const e: TdxEvent = {
    imr: msgUint(m.get('imr'), 0xffffffff, 'u32'),
    eventType: msgUint(m.get('event_type'), 0xffffffff, 'u32'),
    digest: m.has('digest') ? msgBin(m.get('digest')) : Buffer.alloc(0),
    event: msgString(m.get('event')),
    eventPayload: msgBin(m.get('event_payload')),
  }
  if (msgVersion(m) === 2) e.version = 2
  if (m.has('preimage') && m.get('preimage') !== null) {
    const pre = msgString(m.get('preimage'))
    try {
      e.preimage = decodeHex(pre)
    } catch (err) {
      throw new V1DecodeError(`invalid preimage: ${errorMessage(err)}`)
    }
  }
  return e
}

function runtimeEventFromMsg(v: MsgValue): RuntimeEvent {
  const m = new MsgMap(v, 'struct RuntimeEvent')
  const e: RuntimeEvent = { event: msgString(m.get('event')), payload: msgBin(m.get('payload')) }
  if (msgVersion(m) === 2) e.version = 2
  return e
}

function tpmQuoteFromMsg(v: MsgValue): TpmQuote {
  const m = new MsgMap(v, 'struct TpmQuote')
  const platformName = msgString(m.get('platform'))
  const platform = (PLATFORM_NAMES as readonly string[]).indexOf(platformName)
  if (platform < 0) throw unknownVariant(platformName, PLATFORM_NAMES)
  return {
    message: msgBin(m.get('message')),
    signature: msgBin(m.get('signature')),
    pcrValues: msgSeq(m.get('pcr_values'), (x) => {
      const p = new MsgMap(x, 'struct PcrValue')
      return {
        index: msgUint(p.get('index'), 0xffffffff, 'u32'),
        algorithm: msgString(p.get('algorithm')),
        value: msgBin(p.get('value')),
      }
    }),
    akCert: msgBin(m.get('ak_cert')),
    platform,
    eventLog: msgSeq(m.get('event_log'), (x) => {
      const e = new MsgMap(x, 'struct TpmEvent')
      return {
        pcrIndex: msgUint(e.get('pcr_index'), 0xffffffff, 'u32'),
        digest: msgBin(e.get('digest')),
      }
    }),
  }
}

function unknownVariant(name: string, expected: readonly string[]): V1DecodeError {
  const list = expected.map((e) => `\`${e}\``).join(', ')
  return new V1DecodeError(`unknown variant \`${name}\`, expected one of ${list}`)
}

function platformFromMsg(v: MsgValue): AttestationQuote {
  const m = new MsgMap(v, 'adjacently tagged enum PlatformEvidence')
  const kind = msgString(m.get('kind'))
  if (!(PLATFORM_KINDS as readonly string[]).includes(kind)) {
    throw unknownVariant(kind, PLATFORM_KINDS)
  }
  const d = new MsgMap(m.get('data'), `struct variant PlatformEvidence::${kind}`)
  switch (kind) {
    case 'tdx':
      return {
        kind: 'dstack-tdx',
        quote: msgIntBytes(d.get('quote')),
        eventLog: msgSeq(d.get('event_log'), tdxEventFromMsg),
      }
    case 'gcp-tdx':
      return {
        kind: 'dstack-gcp-tdx',
        quote: msgIntBytes(d.get('quote')),
        eventLog: msgSeq(d.get('event_log'), tdxEventFromMsg),
        tpmQuote: tpmQuoteFromMsg(d.get('tpm_quote')),
      }
    case 'nitro-enclave':
      return { kind: 'dstack-nitro-enclave', nsmQuote: msgIntBytes(d.get('nsm_quote')) }
    case 'aws-nitro-tpm':
      return { kind: 'dstack-aws-nitro-tpm', attestationDoc: msgIntBytes(d.get('attestation_doc')) }
    default:
      return {
        kind: 'dstack-amd-sev-snp',
        report: msgIntBytes(d.get('report')),
        certChain: msgSeq(d.get('cert_chain'), msgIntBytes),
        mrConfig: msgString(d.get('mr_config')),
      }
  }
}

function decodeV1Value(value: MsgValue): { version: number; attestation: Attestation } {
  const top = new MsgMap(value, 'struct Attestation')
  const version = msgUint(top.get('version'), Number.MAX_SAFE_INTEGER, 'u64')
  const quote = platformFromMsg(top.get('platform'))
  const s = new MsgMap(top.get('stack'), 'adjacently tagged enum StackEvidence')
  const kind = msgString(s.get('kind'))
  if (!(STACK_KINDS as readonly string[]).includes(kind)) throw unknownVariant(kind, STACK_KINDS)
  const d = new MsgMap(s.get('data'), `struct variant StackEvidence::${kind}`)
  const reportData = msgIntBytes(d.get('report_data'))
  const runtimeEvents = msgSeq(d.get('runtime_events'), runtimeEventFromMsg)
  const config = msgString(d.get('config'))
  const stack: Attestation['stack'] =
    kind === 'dstack-pod'
      ? { kind: 'dstack-pod', reportDataPayload: msgString(d.get('report_data_payload')) }
      : { kind: 'dstack' }
  return { version, attestation: { quote, runtimeEvents, reportData, config, stack } }
}

const MAX_MSGPACK_ARRAY = 1 << 20
const MAX_MSGPACK_MAP = 64

const EXTRA_BYTES = /^Extra (\d+) of \d+ byte\(s\) found/

function decodeV1(buf: Buffer): Attestation {
  let value: MsgValue
  try {
    // bounded like the SCALE path: no real attestation has maps of more than a few keys, and
    // its longest arrays are byte arrays written as integers (quotes, documents)
    value = msgpackDecode(buf, {
      useBigInt64: true,
      maxArrayLength: MAX_MSGPACK_ARRAY,
      maxMapLength: MAX_MSGPACK_MAP,
    })
  } catch (err) {
    const extra = EXTRA_BYTES.exec(errorMessage(err))
    if (extra !== null) throw attErr(`trailing bytes after attestation msgpack: ${extra[1]}`)
    throw attErr(`failed to decode attestation from msgpack: ${errorMessage(err)}`, err)
  }
  let decoded: { version: number; attestation: Attestation }
  try {
    decoded = decodeV1Value(value)
  } catch (err) {
    if (!(err instanceof V1DecodeError) && !(err instanceof KmsError)) throw err
    throw attErr(`failed to decode attestation from msgpack: ${errorMessage(err)}`, err)
  }
  if (decoded.version !== ATTESTATION_V1_VERSION) {
    throw attErr(
      `unsupported attestation version: expected ${ATTESTATION_V1_VERSION}, got ${decoded.version}`,
    )
  }
  return decoded.attestation
}

// ---------------------------------------------------------------------------------------------
// Certificate stripping (§5)

/** `TdxEvent::stripped`: runtime events lose their digest (it is recomputed from the payload),
 * other events their payload. */
function strippedEvent(e: TdxEvent): TdxEvent {
  const out: TdxEvent = { ...e }
  if (e.eventType === DSTACK_RUNTIME_EVENT_TYPE) out.digest = Buffer.alloc(0)
  else out.eventPayload = Buffer.alloc(0)
  return out
}

function stripLite(events: readonly TdxEvent[]): TdxEvent[] {
  const out: TdxEvent[] = []
  for (const e of events) {
    if (isAcpiDataEvent(e)) {
      // the lite OS-image check needs the ACPI digests; the marker payload stays
      out.push({ ...strippedEvent(e), eventPayload: Buffer.from(TDX_ACPI_DATA_EVENT_PAYLOAD) })
    } else if (e.imr === 3) {
      out.push(strippedEvent(e))
    }
  }
  return out
}

/** What goes into a certificate (`into_stripped`): only the TDX event log shrinks. */
export function stripAttestation(a: Attestation): Attestation {
  switch (a.quote.kind) {
    case 'dstack-tdx':
      return { ...a, quote: { ...a.quote, eventLog: stripLite(a.quote.eventLog) } }
    case 'dstack-gcp-tdx':
      return {
        ...a,
        quote: {
          ...a.quote,
          eventLog: a.quote.eventLog.filter((e) => e.imr === 3).map(strippedEvent),
        },
      }
    default:
      return a
  }
}

// ---------------------------------------------------------------------------------------------
// `Attestation::from_tdx_quote` (§7)

/** Builds the V0 attestation of a raw TDX quote and its JSON event log (legacy certificates, CSR
 * V1, raw verifier input). Errors: `Failed to parse tdx_event_log: …`, `Invalid TDX quote: …`,
 * `Invalid TDX report`. */
export function attestationFromTdxQuote(quote: Buffer, eventLogJson: Uint8Array): Attestation {
  let eventLog: TdxEvent[]
  try {
    eventLog = parseTdxEventLogJson(eventLogJson)
  } catch (err) {
    throw withContext('Failed to parse tdx_event_log', err, 'KMS_ERR_ATTESTATION')
  }
  let parsed
  try {
    parsed = parseQuote(quote)
  } catch (err) {
    throw withContext('Invalid TDX quote', err, 'KMS_ERR_ATTESTATION')
  }
  const td = tdReportOf(parsed)
  if (td === null) throw attErr('Invalid TDX report')
  const runtimeEvents: RuntimeEvent[] = []
  for (const e of eventLog) {
    const r = tdxEventToRuntimeEvent(e)
    if (r !== null) runtimeEvents.push(r)
  }
  return {
    quote: { kind: 'dstack-tdx', quote: Buffer.from(quote), eventLog },
    runtimeEvents,
    reportData: Buffer.from(td.reportData),
    config: '',
    stack: { kind: 'dstack' },
  }
}

// ---------------------------------------------------------------------------------------------
// vm_config (§14)

function jsonKind(v: unknown): string {
  return msgKind(v).replace('byte array', 'sequence')
}

type FieldCheck = (v: unknown) => void

const uintCheck =
  (max: number, ty: string): FieldCheck =>
  (v) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      throw new Error(`invalid type: ${jsonKind(v)}, expected ${ty}`)
    }
    if (v < 0 || v > max) throw new Error(`invalid value: integer \`${v}\`, expected ${ty}`)
  }
const boolCheck: FieldCheck = (v) => {
  if (typeof v !== 'boolean') throw new Error(`invalid type: ${jsonKind(v)}, expected a boolean`)
}
const stringCheck: FieldCheck = (v) => {
  if (typeof v !== 'string') throw new Error(`invalid type: ${jsonKind(v)}, expected a string`)
}
const optional =
  (inner: FieldCheck): FieldCheck =>
  (v) => {
    if (v !== null) inner(v)
  }

/** The scalar VmConfig fields whose types serde would check (structured ones are not read here). */
const VM_CONFIG_FIELDS: Record<string, FieldCheck> = {
  cpu_count: uintCheck(0xffffffff, 'u32'),
  memory_size: uintCheck(Number.MAX_SAFE_INTEGER, 'u64'),
  qemu_single_pass_add_pages: optional(boolCheck),
  pic: optional(boolCheck),
  qemu_version: optional(stringCheck),
  pci_hole64_size: uintCheck(Number.MAX_SAFE_INTEGER, 'u64'),
  hugepages: boolCheck,
  num_gpus: uintCheck(0xffffffff, 'u32'),
  num_nvswitches: uintCheck(0xffffffff, 'u32'),
  num_nics: uintCheck(0xffffffff, 'u32'),
  num_verity_volumes: uintCheck(0xffffffff, 'u32'),
  swtpm: boolCheck,
  hotplug_off: boolCheck,
  image: optional(stringCheck),
  host_share_mode: stringCheck,
}

function parseVmConfigObject(text: string): { osImageHash: Buffer; raw: Record<string, unknown> } {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new Error(errorMessage(err))
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error(`invalid type: ${jsonKind(parsed)}, expected struct VmConfig`)
  }
  const raw = parsed as Record<string, unknown>
  for (const [key, check] of Object.entries(VM_CONFIG_FIELDS)) {
    if (Object.hasOwn(raw, key)) check(raw[key])
  }
  let osImageHash: Buffer = Buffer.alloc(0)
  if (Object.hasOwn(raw, 'os_image_hash')) {
    const v = raw['os_image_hash']
    if (typeof v !== 'string') throw new Error(`invalid type: ${jsonKind(v)}, expected hex string`)
    osImageHash = decodeHex(v)
  }
  return { osImageHash, raw }
}

/** Upstream's VmConfig view of a `config` string: empty means `{}`; unknown keys are ignored, so a
 * whole sys-config yields an empty os_image_hash unless `unwrapNested` (the V1 / app-info path)
 * lets a string `vm_config` member stand in for the document. Errors: `Failed to parse vm config:
 * …`. */
export function decodeVmConfig(
  config: string,
  unwrapNested: boolean,
): { osImageHash: Buffer; raw: Record<string, unknown> } {
  let text = config === '' ? '{}' : config
  if (unwrapNested) {
    try {
      const outer: unknown = JSON.parse(text)
      if (outer !== null && typeof outer === 'object' && !Array.isArray(outer)) {
        const nested = (outer as Record<string, unknown>)['vm_config']
        if (typeof nested === 'string') text = nested
      }
    } catch {
      // not JSON: the parse below reports it
    }
  }
  try {
    return parseVmConfigObject(text)
  } catch (err) {
    throw withContext('Failed to parse vm config', err, 'KMS_ERR_ATTESTATION')
  }
}
