// TDX event logs (upstream `cc-eventlog`): the firmware's binary CCEL (TCG crypto-agile log), the
// JSON log of the guest-agent / legacy certificates / CSR V1, and the runtime event log file's JSON
// lines. Parse errors carry upstream's texts (cc-eventlog, serde_json), which reach clients through
// the CSR V1 upgrade (`Failed to parse tdx_event_log: …`).
import { KmsError, errorMessage, withContext } from '../errors.js'
import { ScaleError, ScaleReader } from '../codec/scale.js'
import { decodeHex } from '../util/hex.js'
import { rustDebugStr } from '../util/rust-text.js'
import { MAX_EVENTS, type RuntimeEvent, type TdxEvent } from './types.js'

// ---------------------------------------------------------------------------------------------
// CCEL (TCG_PCR_EVENT2 records after a TCG_PCClientPCREvent Spec ID header)

export const TPM_ALG_SHA1 = 0x0004
export const TPM_ALG_SHA256 = 0x000b
export const TPM_ALG_SHA384 = 0x000c
export const TPM_ALG_SHA512 = 0x000d
/** EV_PLATFORM_CONFIG_FLAGS: the type of the firmware's `ACPI DATA` events. */
export const TDX_ACPI_DATA_EVENT_TYPE = 10
export const TDX_ACPI_DATA_EVENT_PAYLOAD = Buffer.from('ACPI DATA')
export const TDX_ACPI_DATA_EVENT_NAMES = ['acpi-loader', 'acpi-rsdp', 'acpi-tables'] as const

const VEC_OF_MAX_LEN = 65536
const CCEL_END_MARKER = 0xffffffff

function digestSize(algId: number): number | null {
  switch (algId) {
    case TPM_ALG_SHA1:
      return 20
    case TPM_ALG_SHA256:
      return 32
    case TPM_ALG_SHA384:
      return 48
    case TPM_ALG_SHA512:
      return 64
    default:
      return null
  }
}

/** cc-eventlog's `VecOf<I, T>`: an explicit little-endian count, capped at 65536. */
function vecOf<T>(r: ScaleReader, countBytes: 1 | 4, item: (r: ScaleReader) => T): T[] {
  const len = countBytes === 1 ? r.u8() : r.u32()
  if (len > VEC_OF_MAX_LEN) throw new ScaleError('VecOf length exceeds upper bound')
  const out: T[] = []
  for (let i = 0; i < len; i++) out.push(item(r))
  return out
}

export interface TcgDigest {
  algId: number
  hash: Buffer
}

function readTcgDigest(r: ScaleReader): TcgDigest {
  const algId = r.u16()
  const size = digestSize(algId)
  if (size === null) throw new ScaleError('Unsupported algorithm ID')
  if (r.remaining < size) throw new ScaleError('failed to read digest_data')
  return { algId, hash: r.bytes(size) }
}

export interface CcelSpecId {
  platformClass: number
  specVersionMinor: number
  specVersionMajor: number
  specErrata: number
  uintnSize: number
  algorithms: { algId: number; digestSize: number }[]
  vendorInfo: Buffer
}

export interface TcgEventRecord {
  mrIndex: number
  eventType: number
  digests: TcgDigest[]
  event: Buffer
}

export interface ParsedCcel {
  specId: CcelSpecId
  /** every TCG_PCR_EVENT2 record, including mr_index 0 ones */
  records: TcgEventRecord[]
  /** the records as TDX events (mr_index 0 dropped, imr = mr_index − 1, ACPI DATA labelled) */
  events: TdxEvent[]
  /** offset of the 0xFFFFFFFF terminator */
  endOffset: number
}

function readSpecIdHeader(r: ScaleReader): CcelSpecId {
  let body: Buffer
  try {
    r.field('Header::imr_index', (x) => x.u32())
    r.field('Header::header_event_type', (x) => x.u32())
    r.field('Header::digest_hash', (x) => x.bytes(20))
    body = r.field('Header::header_event', (x) => Buffer.from(vecOf(x, 4, (y) => y.u8())))
  } catch (err) {
    throw withContext('failed to decode log_item', err, 'KMS_ERR_ATTESTATION')
  }
  try {
    const s = new ScaleReader(body)
    const f = <T>(name: string, d: (x: ScaleReader) => T): T =>
      s.field(`TcgEfiSpecIdEvent::${name}`, d)
    f('signature', (x) => x.bytes(16))
    return {
      platformClass: f('platform_class', (x) => x.u32()),
      specVersionMinor: f('spec_version_minor', (x) => x.u8()),
      specVersionMajor: f('spec_version_major', (x) => x.u8()),
      specErrata: f('spec_errata', (x) => x.u8()),
      uintnSize: f('uintn_ize', (x) => x.u8()),
      algorithms: f('digest_sizes', (x) =>
        vecOf(x, 4, (y) => ({
          algId: y.field('TcgEfiSpecIdEventAlgorithmSize::algo_id', (z) => z.u16()),
          digestSize: y.field('TcgEfiSpecIdEventAlgorithmSize::digest_size', (z) => z.u16()),
        })),
      ),
      vendorInfo: f('vendor_info', (x) => Buffer.from(vecOf(x, 1, (y) => y.u8()))),
    }
  } catch (err) {
    throw withContext('failed to decode TcgEfiSpecIdEvent', err, 'KMS_ERR_ATTESTATION')
  }
}

function readTcgEvent(r: ScaleReader): TcgEventRecord {
  return {
    mrIndex: r.field('TcgEvent::imr_index', (x) => x.u32()),
    eventType: r.field('TcgEvent::event_type', (x) => x.u32()),
    digests: r.field('TcgEvent::digests', (x) => vecOf(x, 4, readTcgDigest)),
    event: r.field('TcgEvent::event', (x) => Buffer.from(vecOf(x, 4, (y) => y.u8()))),
  }
}

function recordToTdxEvent(rec: TcgEventRecord): TdxEvent {
  const [digest] = rec.digests
  if (rec.digests.length !== 1 || digest === undefined) {
    throw new KmsError('KMS_ERR_ATTESTATION', `expected 1 digest, got ${rec.digests.length}`)
  }
  return {
    imr: rec.mrIndex - 1,
    eventType: rec.eventType,
    digest: digest.hash,
    event: '',
    eventPayload: rec.event,
  }
}

/** Upstream `decode_ccel`. Stops at the `0xFFFFFFFF` mr_index (running past the end of the buffer
 * is an error, so the firmware's 0xFF fill matters). */
export function parseCcel(bytes: Uint8Array): ParsedCcel {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const r = new ScaleReader(buf)
  let specId: CcelSpecId
  try {
    specId = readSpecIdHeader(r)
  } catch (err) {
    throw withContext('Failed to parse spec id event', err, 'KMS_ERR_ATTESTATION')
  }
  const records: TcgEventRecord[] = []
  for (;;) {
    const offset = buf.length - r.remaining
    if (r.remaining < 4) {
      throw withContext(
        'failed to decode imr',
        new ScaleError('Not enough data to fill buffer'),
        'KMS_ERR_ATTESTATION',
      )
    }
    if (buf.readUInt32LE(offset) === CCEL_END_MARKER) {
      const events = records.filter((rec) => rec.mrIndex > 0).map(recordToTdxEvent)
      return { specId, records, events: labelAcpiDataEvents(events), endOffset: offset }
    }
    try {
      records.push(readTcgEvent(r))
    } catch (err) {
      throw withContext('Failed to parse event log', err, 'KMS_ERR_ATTESTATION')
    }
  }
}

export function isAcpiDataEvent(e: TdxEvent): boolean {
  return (
    e.imr === 0 &&
    e.eventType === TDX_ACPI_DATA_EVENT_TYPE &&
    e.eventPayload.equals(TDX_ACPI_DATA_EVENT_PAYLOAD)
  )
}

/** Upstream `label_tdx_acpi_data_events`: names the first three ACPI DATA events (in place). */
export function labelAcpiDataEvents(events: TdxEvent[]): TdxEvent[] {
  let n = 0
  for (const e of events) {
    if (!isAcpiDataEvent(e)) continue
    const name = TDX_ACPI_DATA_EVENT_NAMES[n++]
    if (name !== undefined) e.event = name
  }
  return events
}

// ---------------------------------------------------------------------------------------------
// serde_json views

/** How serde names an unexpected JSON value in `invalid type: …` errors. */
function jsonKind(v: unknown): string {
  if (v === null) return 'unit value'
  if (Array.isArray(v)) return 'sequence'
  if (typeof v === 'object') return 'map'
  if (typeof v === 'string') return `string ${rustDebugStr(v)}`
  if (typeof v === 'boolean') return `boolean \`${String(v)}\``
  if (typeof v === 'number') {
    return Number.isInteger(v) ? `integer \`${v}\`` : `floating point \`${v}\``
  }
  return typeof v
}

function parseJsonValue(text: string): unknown {
  if (/^[ \t\r\n]*$/.test(text)) {
    const lines = text.split('\n')
    const column = (lines[lines.length - 1] ?? '').length
    throw new Error(`EOF while parsing a value at line ${lines.length} column ${column}`)
  }
  try {
    return JSON.parse(text) as unknown
  } catch (err) {
    throw new Error(errorMessage(err))
  }
}

function jsonObject(item: unknown, what: string): Map<string, unknown> {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    throw new Error(`invalid type: ${jsonKind(item)}, expected ${what}`)
  }
  return new Map(Object.entries(item))
}

function required(o: Map<string, unknown>, key: string): unknown {
  if (!o.has(key)) throw new Error(`missing field \`${key}\``)
  return o.get(key)
}

function u32Field(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new Error(`invalid type: ${jsonKind(v)}, expected u32`)
  }
  if (v < 0 || v > 0xffffffff) throw new Error(`invalid value: integer \`${v}\`, expected u32`)
  return v
}

function stringField(v: unknown): string {
  if (typeof v !== 'string') throw new Error(`invalid type: ${jsonKind(v)}, expected a string`)
  return v
}

function hexField(v: unknown): Buffer {
  if (typeof v !== 'string') throw new Error(`invalid type: ${jsonKind(v)}, expected hex string`)
  return decodeHex(v)
}

/** `EventLogVersion`'s deserializer: absent = 1. */
function versionField(o: Map<string, unknown>): 1 | 2 | undefined {
  if (!o.has('version')) return undefined
  const v = u32Field(o.get('version'))
  if (v === 1) return 1
  if (v === 2) return 2
  throw new Error(`unknown event log version: ${v}`)
}

function tdxEventFromJson(item: unknown): TdxEvent {
  const o = jsonObject(item, 'struct TdxEvent')
  const out: TdxEvent = {
    imr: u32Field(required(o, 'imr')),
    eventType: u32Field(required(o, 'event_type')),
    digest: o.has('digest') ? hexField(o.get('digest')) : Buffer.alloc(0),
    event: stringField(required(o, 'event')),
    eventPayload: hexField(required(o, 'event_payload')),
  }
  const version = versionField(o)
  if (version === 2) out.version = 2
  const preimage = o.get('preimage')
  if (preimage !== undefined && preimage !== null) out.preimage = hexField(preimage)
  return out
}

/** serde_json's view of the JSON event log: unknown keys ignored, `digest` optional, hex in
 * either case. Throws plain Errors with serde_json's texts (its ` at line L column C` suffix only
 * for empty input); callers add upstream's context (`Failed to parse tdx_event_log`). */
export function parseTdxEventLogJson(text: string | Uint8Array): TdxEvent[] {
  const s = typeof text === 'string' ? text : Buffer.from(text).toString('utf8')
  const parsed = parseJsonValue(s)
  if (!Array.isArray(parsed)) {
    throw new Error(`invalid type: ${jsonKind(parsed)}, expected a sequence`)
  }
  if (parsed.length > MAX_EVENTS) {
    throw new Error(`event log has ${parsed.length} events, more than the limit of ${MAX_EVENTS}`)
  }
  return parsed.map(tdxEventFromJson)
}

/** serde_json's compact form of a TDX event log: `imr, event_type, digest, event, event_payload`
 * (lowercase hex), then `version` (V2 only) and `preimage` (when set). */
export function encodeTdxEventLogJson(events: readonly TdxEvent[]): string {
  const items = events.map((e) => {
    let s =
      `{"imr":${e.imr},"event_type":${e.eventType},"digest":"${e.digest.toString('hex')}",` +
      `"event":${JSON.stringify(e.event)},"event_payload":"${e.eventPayload.toString('hex')}"`
    if (e.version === 2) s += ',"version":2'
    if (e.preimage !== undefined) s += `,"preimage":"${e.preimage.toString('hex')}"`
    return s + '}'
  })
  return `[${items.join(',')}]`
}

// ---------------------------------------------------------------------------------------------
// Runtime event log file (`/run/log/dstack/runtime_events.log`)

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

/** Standard base64 with padding, as strict as the `base64` crate's STANDARD engine (texts too). */
export function decodeBase64Strict(text: string): Buffer {
  const raw = Buffer.from(text, 'utf8')
  let pad = 0
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] ?? 0
    if (c === 0x3d) {
      pad++
      continue
    }
    if (pad > 0 || !B64.includes(String.fromCharCode(c))) {
      throw new Error(`Invalid symbol ${c}, offset ${i}.`)
    }
  }
  if (raw.length % 4 !== 0) throw new Error('Invalid input length.')
  if (pad > 2) throw new Error('Invalid padding')
  const out = Buffer.from(text, 'base64')
  if (out.toString('base64') !== text) {
    const last = raw.length - pad - 1
    throw new Error(`Invalid last symbol ${raw[last] ?? 0}, offset ${last}.`)
  }
  return out
}

function runtimeEventFromJson(item: unknown): RuntimeEvent {
  const o = jsonObject(item, 'struct RuntimeEvent')
  const event = stringField(required(o, 'event'))
  const payloadText = required(o, 'payload')
  if (typeof payloadText !== 'string') {
    throw new Error(`invalid type: ${jsonKind(payloadText)}, expected base64 string`)
  }
  const out: RuntimeEvent = { event, payload: decodeBase64Strict(payloadText) }
  if (versionField(o) === 2) out.version = 2
  return out
}

/** Upstream `RuntimeEvent::read_all` over the file's text: one JSON object per line, blank lines
 * skipped. */
export function parseRuntimeEventLog(text: string | Uint8Array): RuntimeEvent[] {
  const s = typeof text === 'string' ? text : Buffer.from(text).toString('utf8')
  const out: RuntimeEvent[] = []
  for (const line of s.split('\n')) {
    const l = line.endsWith('\r') ? line.slice(0, -1) : line
    if (l.trim() === '') continue
    try {
      out.push(runtimeEventFromJson(parseJsonValue(l)))
    } catch (err) {
      throw withContext('Failed to decode user event log', err, 'KMS_ERR_ATTESTATION')
    }
  }
  return out
}

/** One line of the runtime event log, without the trailing newline:
 * `{"event":…,"payload":"<base64>"}` (`,"version":2` appended for V2). */
export function formatRuntimeEventLine(e: RuntimeEvent): string {
  const version = e.version === 2 ? ',"version":2' : ''
  return `{"event":${JSON.stringify(e.event)},"payload":"${e.payload.toString('base64')}"${version}}`
}
