// V1 of `VersionedAttestation`: rmp-serde named maps (upstream HEAD's `VersionedAttestation::V1`).
// Plain `Vec<u8>` fields are integer arrays (Rust cannot read them from `bin`);
// `serde_bytes`/`serde_human_bytes` fields are `bin`.
import { decode as msgpackDecode, encode as msgpackEncode } from '@msgpack/msgpack'
import { KmsError, errorMessage } from '../errors.js'
import { decodeHex } from '../util/hex.js'
import { rustDebugStr } from '../util/rust-text.js'
import { attErr } from './attestation-error.js'
import {
  MAX_EVENTS,
  type Attestation,
  type AttestationQuote,
  type RuntimeEvent,
  type TdxEvent,
  type TpmQuote,
} from './types.js'
import { PLATFORM_NAMES } from './versioned-v0.js'

export const ATTESTATION_V1_VERSION = 1

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

export function encodeV1(a: Attestation): Buffer {
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
export function msgKind(v: MsgValue): string {
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

export function decodeV1(buf: Buffer): Attestation {
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
