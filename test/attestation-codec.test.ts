// VersionedAttestation codecs, quote parsing, stripping, from_tdx_quote, report_data and app info
// against the upstream fixtures.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import { decode as msgpackDecode, encode as msgpackEncode } from '@msgpack/msgpack'
import { keccak_256 as keccak256 } from '@noble/hashes/sha3.js'
import {
  EMPTY_DEVICE_ID,
  computeMrAggregated,
  computeMrSystem,
  decodeAppInfo,
  encodeAppInfoMsgpack,
} from '../src/attestation/app-info.js'
import { isAcpiDataEvent, parseTdxEventLogJson } from '../src/attestation/event-log.js'
import {
  QUOTE_V4_REPORT_DATA_OFFSET,
  parseQuote,
  quoteReportData,
  type ParsedQuote,
  type TdReport10,
} from '../src/attestation/quote.js'
import { toReportData } from '../src/attestation/report-data.js'
import {
  findEventPayload,
  replayEventLogRtmrs,
  replayRuntimeEvents,
  runtimeEventDigest,
} from '../src/attestation/runtime-events.js'
import {
  DSTACK_RUNTIME_EVENT_TYPE,
  MAX_EVENTS,
  type Attestation,
  type AttestationQuote,
} from '../src/attestation/types.js'
import { attestationFromTdxQuote } from '../src/attestation/from-tdx-quote.js'
import { stripAttestation } from '../src/attestation/stripped.js'
import {
  MAX_ATTESTATION_BYTES,
  decodeVersionedAttestation,
  encodeVersionedAttestation,
  intoVersioned,
  teeVariantOf,
} from '../src/attestation/versioned.js'
import { decodeVmConfig } from '../src/attestation/vm-config.js'
import { KmsError } from '../src/errors.js'
import { hexBytes, readVectorFile, readVectorJson } from './helpers/crypto-vectors.js'

interface Mrs {
  mr_system: string
  mr_aggregated: string
}
interface Vectors {
  attestation_bin: {
    quote_length: number
    event_log_events: number
    runtime_events: string[]
    mr_td: string
    rtmr0: string
    rtmr1: string
    rtmr2: string
    rtmr3: string
    mr_config_id: string
    app_id: string
    compose_hash: string
    instance_id: string
    os_image_hash_v1_path: string
    full: Mrs
    boot_time: Mrs & { rtmr3: string }
    stripped_length: number
    stripped_sha256: string
  }
  tdx_lite: {
    quote_length: number
    attestation_length: number
    report_data_ascii: string
    mr_td: string
    rtmr0: string
    rtmr1: string
    rtmr2: string
    rtmr3: string
    mr_config_id: string
    app_id: string
    compose_hash: string
    instance_id: string
    os_image_hash: string
    full: Mrs
    boot_time: Mrs & { rtmr3: string }
    acpi_digests: Record<string, string>
  }
  ratls_assets_tdx_quote: {
    length: number
    meaningful_length: number
    signature_data_length: number
    td_attributes: string
    xfam: string
    tee_tcb_svn: string
    mr_td: string
    rtmr3: string
    report_data_prefix_ascii: string
  }
  report_data: {
    type?: string
    hash?: string
    content_utf8?: string
    content_hex?: string
    report_data?: string
    input_utf8?: string
    sha512?: string
  }[]
  dcap_qvl_samples: { cases: { quote: string; report_data?: string; mr_td?: string }[] }
  misc: { sha256_empty: string }
}

const vectors = readVectorJson<Vectors>('vectors.json')
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const sha256hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

function throwsMessage(fn: () => unknown, expected: string | RegExp, code?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof Error, 'an Error')
    if (typeof expected === 'string') assert.equal(err.message, expected)
    else assert.match(err.message, expected)
    if (code !== undefined) {
      assert.ok(err instanceof KmsError)
      assert.equal(err.code, code)
    }
    return true
  })
}

function tdOf(q: ParsedQuote): TdReport10 {
  assert.notEqual(q.report.type, 'sgx')
  if (q.report.type === 'sgx') throw new Error('unreachable')
  return q.report.td
}

function tdxQuoteOf(a: Attestation): Extract<AttestationQuote, { kind: 'dstack-tdx' }> {
  assert.equal(a.quote.kind, 'dstack-tdx')
  if (a.quote.kind !== 'dstack-tdx') throw new Error('unreachable')
  return a.quote
}

const attestationBin = readVectorFile('attestation.bin')
const liteBytes = hexBytes(
  readVectorJson<{ attestation: string }>('tdx-lite-attestation.json').attestation,
)
const getQuote = readVectorJson<{
  quote: string
  event_log: string
  report_data: string
  vm_config: string
}>('tdx-lite-getquote.json')

describe('attestation.bin (V0 SCALE, DstackTdx)', () => {
  const v = vectors.attestation_bin
  const decoded = decodeVersionedAttestation(attestationBin)
  const a = decoded.attestation
  const tdx = tdxQuoteOf(a)
  const td = tdOf(parseQuote(tdx.quote))

  it('decodes and re-encodes to the identical bytes', () => {
    assert.equal(hex(attestationBin.subarray(0, 8)), '0000494e04000200')
    assert.equal(decoded.version, 0)
    assert.equal(teeVariantOf(a), 'dstack-tdx')
    assert.equal(tdx.quote.length, v.quote_length)
    assert.equal(tdx.eventLog.length, v.event_log_events)
    assert.equal(tdx.eventLog.map((e) => e.imr).join(''), '000000000000010000112211333333333')
    assert.deepEqual(
      a.runtimeEvents.map((e) => e.event),
      v.runtime_events,
    )
    assert.deepEqual(a.reportData, Buffer.alloc(64))
    assert.deepEqual(a.stack, { kind: 'dstack' })
    assert.match(a.config, /https:\/\/kms\.tdxlab\.dstack\.org:12001/)
    const again = encodeVersionedAttestation(decoded)
    assert.equal(again.length, 9504)
    assert.ok(again.equals(attestationBin))
  })

  it('exposes the quote registers and the app identity', () => {
    assert.equal(hex(td.mrTd), v.mr_td)
    assert.equal(hex(td.rtmr0), v.rtmr0)
    assert.equal(hex(td.rtmr1), v.rtmr1)
    assert.equal(hex(td.rtmr2), v.rtmr2)
    assert.equal(hex(td.rtmr3), v.rtmr3)
    assert.equal(hex(td.mrConfigId), v.mr_config_id)
    assert.equal(hex(td.tdAttributes), '0000001000000000')
    assert.equal(hex(td.xfam), 'e702060000000000')
    assert.equal(hex(findEventPayload(a.runtimeEvents, 'app-id')), v.app_id)
    assert.equal(hex(findEventPayload(a.runtimeEvents, 'compose-hash')), v.compose_hash)
    assert.equal(hex(findEventPayload(a.runtimeEvents, 'instance-id')), v.instance_id)
    // mr_config_id V1 format: 01 ‖ compose_hash ‖ 0^15
    assert.equal(hex(td.mrConfigId), '01' + v.compose_hash + '00'.repeat(15))
    const ratls = vectors.report_data.find((r) => r.type === 'ratls-cert')
    const kp = JSON.parse(findEventPayload(a.runtimeEvents, 'key-provider').toString('utf8')) as {
      name: string
      id: string
    }
    assert.deepEqual(kp, { name: 'kms', id: ratls?.content_hex })
  })

  it('replays the event log to RTMR0–3 and the runtime events to RTMR3', () => {
    const rtmrs = replayEventLogRtmrs(tdx.eventLog).map(hex)
    assert.deepEqual(rtmrs, [v.rtmr0, v.rtmr1, v.rtmr2, v.rtmr3])
    assert.equal(hex(replayRuntimeEvents(a.runtimeEvents)), v.rtmr3)
    assert.equal(hex(replayRuntimeEvents(a.runtimeEvents, 'boot-mr-done')), v.boot_time.rtmr3)
    const logged = tdx.eventLog.filter((e) => e.eventType === DSTACK_RUNTIME_EVENT_TYPE)
    assert.equal(logged.length, 9)
    for (const e of logged) {
      assert.deepEqual(e.digest, runtimeEventDigest({ event: e.event, payload: e.eventPayload }))
    }
    // the three ACPI DATA events of this older log are unnamed
    const acpi = tdx.eventLog.filter(isAcpiDataEvent)
    assert.deepEqual(
      acpi.map((e) => e.event),
      ['', '', ''],
    )
  })

  it('strips to the certificate form', () => {
    const stripped = stripAttestation(a)
    const bytes = encodeVersionedAttestation({ version: 0, attestation: stripped })
    assert.equal(bytes.length, v.stripped_length)
    assert.equal(sha256hex(bytes), v.stripped_sha256)
    const log = tdxQuoteOf(stripped).eventLog
    assert.equal(log.length, 12)
    assert.equal(log.filter(isAcpiDataEvent).length, 3)
    for (const e of log.filter((x) => x.imr === 3)) {
      assert.equal(e.digest.length, 0)
      assert.ok(e.event !== '')
    }
    // quote, runtime events, report_data and config untouched; the input is not modified
    assert.deepEqual(stripped.runtimeEvents, a.runtimeEvents)
    assert.equal(stripped.config, a.config)
    assert.equal(tdx.eventLog.length, 33)
    // idempotent
    const twice = encodeVersionedAttestation({
      version: 0,
      attestation: stripAttestation(stripped),
    })
    assert.ok(twice.equals(bytes))
  })

  it('round-trips V0 → V1 msgpack → model with rmp-serde layout', () => {
    const v1 = encodeVersionedAttestation({ version: 1, attestation: a })
    assert.equal(v1[0], 0x83)
    const back = decodeVersionedAttestation(v1)
    assert.equal(back.version, 1)
    assert.deepEqual(back.attestation, a)
    assert.ok(encodeVersionedAttestation(back).equals(v1))
    assert.ok(
      encodeVersionedAttestation({ version: 0, attestation: back.attestation }).equals(
        attestationBin,
      ),
    )
    // plain Vec<u8> as integer arrays, serde_bytes fields as bin, keys in declaration order
    const doc = msgpackDecode(v1) as {
      version: number
      platform: {
        kind: string
        data: { quote: number[]; event_log: Record<string, unknown>[] }
      }
      stack: { kind: string; data: Record<string, unknown> }
    }
    assert.deepEqual(Object.keys(doc), ['version', 'platform', 'stack'])
    assert.equal(doc.version, 1)
    assert.equal(doc.platform.kind, 'tdx')
    assert.ok(Array.isArray(doc.platform.data.quote))
    assert.equal(doc.platform.data.quote.length, 5010)
    const ev = doc.platform.data.event_log[0] ?? {}
    assert.deepEqual(Object.keys(ev), ['imr', 'event_type', 'digest', 'event', 'event_payload'])
    assert.ok(ev['digest'] instanceof Uint8Array)
    assert.equal(doc.stack.kind, 'dstack')
    assert.deepEqual(Object.keys(doc.stack.data), ['report_data', 'runtime_events', 'config'])
    assert.ok(Array.isArray(doc.stack.data['report_data']))
    const rt = (doc.stack.data['runtime_events'] as Record<string, unknown>[])[1] ?? {}
    assert.deepEqual(Object.keys(rt), ['event', 'payload'])
    assert.ok(rt['payload'] instanceof Uint8Array)
  })

  it('decodes app info on the V1 path and BootInfo helpers agree', () => {
    const full = decodeAppInfo(a)
    assert.equal(hex(full.mrSystem), v.full.mr_system)
    assert.equal(hex(full.mrAggregated), v.full.mr_aggregated)
    assert.equal(hex(full.osImageHash), v.os_image_hash_v1_path)
    assert.equal(hex(full.deviceId), vectors.misc.sha256_empty)
    assert.equal(hex(EMPTY_DEVICE_ID), vectors.misc.sha256_empty)
    assert.equal(hex(full.appId), v.app_id)
    assert.equal(hex(full.composeHash), v.compose_hash)
    assert.equal(hex(full.instanceId), v.instance_id)
    assert.deepEqual(full.keyProviderInfo, findEventPayload(a.runtimeEvents, 'key-provider'))
    const boot = decodeAppInfo(a, { boottimeMr: true })
    assert.equal(hex(boot.mrSystem), v.boot_time.mr_system)
    assert.equal(hex(boot.mrAggregated), v.boot_time.mr_aggregated)
    assert.equal(boot.keyProviderInfo.length, 0)
    // the exported helpers are what BootInfo reuses
    assert.equal(hex(computeMrSystem(td, full.keyProviderInfo)), v.full.mr_system)
    assert.equal(
      hex(computeMrAggregated(td, hexBytes(v.boot_time.rtmr3))),
      v.boot_time.mr_aggregated,
    )
    // the sys-config quirk: no top-level os_image_hash unless the nested one is unwrapped
    assert.equal(decodeVmConfig(a.config, false).osImageHash.length, 0)
    assert.equal(hex(decodeVmConfig(a.config, true).osImageHash), v.os_image_hash_v1_path)
    assert.equal(decodeVmConfig('', false).osImageHash.length, 0)
  })

  it('encodes app info as an 8-element msgpack array of bins', () => {
    const info = decodeAppInfo(a)
    const bytes = encodeAppInfoMsgpack(info)
    assert.equal(bytes[0], 0x98)
    const arr = msgpackDecode(bytes) as Uint8Array[]
    assert.equal(arr.length, 8)
    for (const x of arr) assert.ok(x instanceof Uint8Array)
    assert.deepEqual(
      arr.map((x) => hex(x)),
      [
        info.appId,
        info.composeHash,
        info.instanceId,
        info.deviceId,
        info.mrSystem,
        info.mrAggregated,
        info.osImageHash,
        info.keyProviderInfo,
      ].map(hex),
    )
    // bin8 for the 20-byte app id: c4 14
    assert.equal(hex(bytes.subarray(1, 3)), 'c414')
  })
})

describe('tdx-lite fixtures', () => {
  const v = vectors.tdx_lite

  it('decodes the stripped lite attestation and re-encodes it identically', () => {
    assert.equal(liteBytes.length, v.attestation_length)
    assert.equal(hex(liteBytes.subarray(0, 8)), '0000394e04000200')
    const d = decodeVersionedAttestation(liteBytes)
    assert.ok(encodeVersionedAttestation(d).equals(liteBytes))
    const a = d.attestation
    const tdx = tdxQuoteOf(a)
    assert.equal(tdx.quote.length, v.quote_length)
    assert.equal(
      a.reportData.subarray(0, v.report_data_ascii.length).toString(),
      v.report_data_ascii,
    )
    const names = tdx.eventLog.filter(isAcpiDataEvent).map((e) => e.event)
    assert.deepEqual(names, ['acpi-loader', 'acpi-rsdp', 'acpi-tables'])
    for (const e of tdx.eventLog.filter(isAcpiDataEvent)) {
      assert.equal(hex(e.digest), v.acpi_digests[e.event])
    }
    assert.equal(tdx.eventLog.filter((e) => e.imr === 3).length, 9)
    // stripping is idempotent
    const re = encodeVersionedAttestation({ version: 0, attestation: stripAttestation(a) })
    assert.ok(re.equals(liteBytes))
    // registers, replay and identity
    const td = tdOf(parseQuote(tdx.quote))
    assert.deepEqual([td.mrTd, td.rtmr0, td.rtmr1, td.rtmr2, td.rtmr3, td.mrConfigId].map(hex), [
      v.mr_td,
      v.rtmr0,
      v.rtmr1,
      v.rtmr2,
      v.rtmr3,
      v.mr_config_id,
    ])
    assert.deepEqual(td.reportData, a.reportData)
    assert.equal(hex(replayRuntimeEvents(a.runtimeEvents)), v.rtmr3)
    assert.equal(hex(replayRuntimeEvents(a.runtimeEvents, 'boot-mr-done')), v.boot_time.rtmr3)
    const full = decodeAppInfo(a)
    assert.deepEqual(
      [full.appId, full.composeHash, full.instanceId, full.mrSystem, full.mrAggregated].map(hex),
      [v.app_id, v.compose_hash, v.instance_id, v.full.mr_system, v.full.mr_aggregated],
    )
    assert.equal(hex(full.osImageHash), v.os_image_hash)
    const boot = decodeAppInfo(a, { boottimeMr: true })
    assert.equal(hex(boot.mrSystem), v.boot_time.mr_system)
    assert.equal(hex(boot.mrAggregated), v.boot_time.mr_aggregated)
    // an external vm_config takes precedence over the embedded one
    const ext = decodeAppInfo(a, { vmConfig: '{"os_image_hash":"AbCd"}' })
    assert.equal(hex(ext.osImageHash), 'abcd')
    assert.equal(hex(decodeVmConfig(a.config, false).osImageHash), v.os_image_hash)
  })

  it('from_tdx_quote over GetQuote: runtime events, report_data, RTMR0–3 replay', () => {
    const quote = hexBytes(getQuote.quote)
    const a = attestationFromTdxQuote(quote, Buffer.from(getQuote.event_log))
    const tdx = tdxQuoteOf(a)
    assert.equal(tdx.eventLog.length, 29)
    assert.deepEqual(tdx.quote, quote)
    assert.equal(a.runtimeEvents.length, 9)
    assert.deepEqual(
      a.runtimeEvents.map((e) => e.event),
      tdx.eventLog.filter((e) => e.eventType === DSTACK_RUNTIME_EVENT_TYPE).map((e) => e.event),
    )
    assert.equal(hex(a.reportData), getQuote.report_data)
    assert.equal(a.config, '')
    assert.deepEqual(a.stack, { kind: 'dstack' })
    // runtime digests are empty in this log and must be recomputed
    for (const e of tdx.eventLog.filter((x) => x.imr === 3)) assert.equal(e.digest.length, 0)
    assert.deepEqual(replayEventLogRtmrs(tdx.eventLog).map(hex), [
      v.rtmr0,
      v.rtmr1,
      v.rtmr2,
      v.rtmr3,
    ])
    // the same quote and the same runtime events as the lite attestation
    const lite = decodeVersionedAttestation(liteBytes).attestation
    assert.deepEqual(tdxQuoteOf(lite).quote, quote)
    assert.deepEqual(a.runtimeEvents, lite.runtimeEvents)
    assert.equal(intoVersioned(a).version, 0)
  })

  it('from_tdx_quote fails with upstream texts', () => {
    const quote = hexBytes(getQuote.quote)
    throwsMessage(
      () => attestationFromTdxQuote(quote, Buffer.alloc(0)),
      'Failed to parse tdx_event_log: EOF while parsing a value at line 1 column 0',
      'KMS_ERR_ATTESTATION',
    )
    throwsMessage(
      () => attestationFromTdxQuote(quote, Buffer.from('[{"imr":0}]')),
      'Failed to parse tdx_event_log: missing field `event_type`',
    )
    throwsMessage(
      () => attestationFromTdxQuote(quote.subarray(0, 40), Buffer.from('[]')),
      /^Invalid TDX quote: Could not decode `Header::user_data`/,
    )
    throwsMessage(
      () => attestationFromTdxQuote(readVectorFile('dcap-qvl-sgx_quote'), Buffer.from('[]')),
      'Invalid TDX report',
      'KMS_ERR_ATTESTATION',
    )
  })
})

describe('quote parsing', () => {
  const v = vectors.ratls_assets_tdx_quote
  const asset = readVectorFile('ratls-assets-tdx_quote')

  it('parses the padded ra-tls asset quote by its length fields', () => {
    assert.equal(asset.length, v.length)
    const q = parseQuote(asset)
    assert.equal(q.version, 4)
    assert.equal(q.attestationKeyType, 2)
    assert.equal(q.teeType, 0x81)
    assert.equal(hex(q.qeVendorId), '939a7233f79c4ca9940a0db3957f0607')
    assert.equal(q.length, v.meaningful_length)
    assert.equal(q.signedLength, 632)
    assert.equal(q.length - q.signedLength - 4, v.signature_data_length)
    assert.equal(q.report.type, 'td10')
    const td = tdOf(q)
    assert.equal(hex(td.tdAttributes), v.td_attributes)
    assert.equal(hex(td.xfam), v.xfam)
    assert.equal(hex(td.teeTcbSvn), v.tee_tcb_svn)
    assert.equal(hex(td.mrTd), v.mr_td)
    assert.equal(hex(td.rtmr3), v.rtmr3)
    assert.equal(td.reportData.toString('latin1').slice(0, 64), v.report_data_prefix_ascii)
    assert.deepEqual(
      td.reportData,
      asset.subarray(QUOTE_V4_REPORT_DATA_OFFSET, QUOTE_V4_REPORT_DATA_OFFSET + 64),
    )
    assert.deepEqual(quoteReportData(asset), td.reportData)
    assert.equal(q.ecdsaSignature.length, 64)
    assert.equal(q.attestationKey.length, 64)
    assert.equal(q.qeReport.length, 384)
    assert.equal(q.qeReportSignature.length, 64)
    assert.equal(q.certificationDataType, 6)
    assert.equal(q.pckCertType, 5)
    const certs = q.pckChainPem.match(/-----BEGIN CERTIFICATE-----/g) ?? []
    assert.equal(certs.length, 3)
    // the padding is ignored: without it the parse is identical
    assert.deepEqual(parseQuote(asset.subarray(0, v.meaningful_length)), q)
  })

  it('reads REPORT_DATA of the dcap-qvl sample and parses the SGX sample', () => {
    const c = vectors.dcap_qvl_samples.cases.find((x) => x.quote === 'dcap-qvl-tdx_quote')
    const q = readVectorFile('dcap-qvl-tdx_quote')
    assert.equal(hex(quoteReportData(q)), c?.report_data)
    assert.equal(hex(tdOf(parseQuote(q)).mrTd), c?.mr_td)
    const sgx = parseQuote(readVectorFile('dcap-qvl-sgx_quote'))
    assert.equal(sgx.version, 3)
    assert.equal(sgx.report.type, 'sgx')
    if (sgx.report.type === 'sgx') assert.equal(sgx.report.raw.length, 384)
    assert.equal(sgx.signedLength, 48 + 384)
    assert.equal(sgx.pckCertType, 5)
    assert.match(sgx.pckChainPem, /^-----BEGIN CERTIFICATE-----/)
    throwsMessage(() => quoteReportData(readVectorFile('dcap-qvl-sgx_quote')), 'Invalid TDX report')
  })

  /** A v5 quote with the given body built around the asset quote's signature data. */
  function v5(bodyType: number, body: Buffer, teeType = 0x81): Buffer {
    const header = Buffer.from(asset.subarray(0, 48))
    header.writeUInt16LE(5, 0)
    header.writeUInt32LE(teeType, 4)
    const desc = Buffer.alloc(6)
    desc.writeUInt16LE(bodyType, 0)
    desc.writeUInt32LE(body.length, 2)
    const sigData = asset.subarray(632, 4936)
    return Buffer.concat([header, desc, body, sigData, Buffer.alloc(16)])
  }

  it('parses v5 quotes with TD 1.0, TD 1.5 and SGX bodies', () => {
    const td10Body = asset.subarray(48, 632)
    const ref = tdOf(parseQuote(asset))
    const a = parseQuote(v5(2, td10Body))
    assert.equal(a.version, 5)
    assert.equal(a.report.type, 'td10')
    assert.deepEqual(tdOf(a), ref)
    assert.equal(a.signedLength, 54 + 584)
    assert.equal(a.length, 54 + 584 + 4 + 4300)
    assert.deepEqual(quoteReportData(v5(2, td10Body)), ref.reportData)

    const svn2 = Buffer.alloc(16, 0x22)
    const serviceTd = Buffer.alloc(48, 0x33)
    const b = parseQuote(v5(3, Buffer.concat([td10Body, svn2, serviceTd])))
    assert.equal(b.report.type, 'td15')
    if (b.report.type === 'td15') {
      assert.deepEqual(b.report.td, ref)
      assert.deepEqual(b.report.teeTcbSvn2, svn2)
      assert.deepEqual(b.report.mrServiceTd, serviceTd)
    }
    assert.equal(b.signedLength, 54 + 648)

    const sgxQuote = readVectorFile('dcap-qvl-sgx_quote')
    const c = parseQuote(v5(1, sgxQuote.subarray(48, 432), 0))
    assert.equal(c.report.type, 'sgx')
    if (c.report.type === 'sgx') {
      assert.deepEqual(c.report.reportData, sgxQuote.subarray(432 - 64, 432))
      assert.deepEqual(c.report.mrEnclave, sgxQuote.subarray(48 + 64, 48 + 96))
    }
    throwsMessage(() => parseQuote(v5(4, td10Body)), 'Unsupported body type')
  })

  it('rejects malformed quotes with dcap-qvl codec texts', () => {
    const NOT_ENOUGH = 'Not enough data to fill buffer'
    throwsMessage(
      () => parseQuote(Buffer.alloc(0)),
      `Could not decode \`Header::version\`:\n\t${NOT_ENOUGH}\n: ${NOT_ENOUGH}`,
    )
    throwsMessage(
      () => parseQuote(asset.subarray(0, 100)),
      `Could not decode \`TDReport10::mr_seam\`:\n\t${NOT_ENOUGH}\n: ${NOT_ENOUGH}`,
    )
    throwsMessage(() => parseQuote(asset.subarray(0, 4000)), NOT_ENOUGH)
    const badVersion = Buffer.from(asset)
    badVersion.writeUInt16LE(6, 0)
    throwsMessage(() => parseQuote(badVersion), 'Unsupported quote version')
    const badTee = Buffer.from(asset)
    badTee.writeUInt32LE(0x42, 4)
    throwsMessage(() => parseQuote(badTee), 'Invalid TEE type')
  })
})

describe('VersionedAttestation wire rules', () => {
  const tdxEvent = {
    imr: 0,
    eventType: 10,
    digest: Buffer.alloc(48, 1),
    event: 'acpi-loader',
    eventPayload: Buffer.from('ACPI DATA'),
  }
  const base = {
    runtimeEvents: [
      { event: 'app-id', payload: Buffer.alloc(20, 0x11) },
      { event: 'system-ready', payload: Buffer.alloc(0) },
    ],
    reportData: Buffer.alloc(64, 7),
    config: '{"os_image_hash":"00ff"}',
    stack: { kind: 'dstack' } as const,
  }
  const quotes: AttestationQuote[] = [
    { kind: 'dstack-tdx', quote: Buffer.from([1, 2, 3]), eventLog: [tdxEvent] },
    {
      kind: 'dstack-gcp-tdx',
      quote: Buffer.from([4, 5]),
      eventLog: [tdxEvent],
      tpmQuote: {
        message: Buffer.from('msg'),
        signature: Buffer.from('sig'),
        pcrValues: [
          { index: 0, algorithm: 'sha256', value: Buffer.alloc(32, 0xaa) },
          { index: 2, algorithm: 'sha256', value: Buffer.alloc(32, 0xbb) },
        ],
        akCert: Buffer.from([0x30, 0x00]),
        platform: 1,
        eventLog: [{ pcrIndex: 14, digest: Buffer.alloc(32, 0xcc) }],
      },
    },
    { kind: 'dstack-nitro-enclave', nsmQuote: Buffer.from([0xd2, 0x84]) },
    {
      kind: 'dstack-amd-sev-snp',
      report: Buffer.alloc(16, 9),
      certChain: [Buffer.from([1]), Buffer.from([2, 3])],
      mrConfig: '{"version":3}',
    },
    { kind: 'dstack-aws-nitro-tpm', attestationDoc: Buffer.from([0xd2, 0x84, 0x43]) },
  ]

  it('round-trips all five quote variants through V0 and V1', () => {
    quotes.forEach((quote, index) => {
      const a: Attestation = { ...base, quote }
      const v0 = encodeVersionedAttestation({ version: 0, attestation: a })
      assert.equal(v0[0], 0)
      assert.equal(v0[1], index, `${quote.kind} variant index`)
      const d0 = decodeVersionedAttestation(v0)
      assert.deepEqual(d0, { version: 0, attestation: a })
      assert.equal(teeVariantOf(d0.attestation), quote.kind)
      const v1 = encodeVersionedAttestation({ version: 1, attestation: a })
      const d1 = decodeVersionedAttestation(v1)
      assert.deepEqual(d1, { version: 1, attestation: a })
      assert.ok(encodeVersionedAttestation(d1).equals(v1))
    })
  })

  it('lays out GcpTdx and SEV-SNP as upstream does', () => {
    const gcp = quotes[1] as AttestationQuote
    const v0 = encodeVersionedAttestation({ version: 0, attestation: { ...base, quote: gcp } })
    // 00 | 01 | quote 08 0405 | event log 04 + event | tpm: message 0c "msg" …
    assert.equal(hex(v0.subarray(0, 5)), '0001080405')
    const doc = msgpackDecode(
      encodeVersionedAttestation({ version: 1, attestation: { ...base, quote: gcp } }),
    ) as { platform: { kind: string; data: { tpm_quote: Record<string, unknown> } } }
    assert.equal(doc.platform.kind, 'gcp-tdx')
    const tpm = doc.platform.data.tpm_quote
    assert.deepEqual(Object.keys(tpm), [
      'message',
      'signature',
      'pcr_values',
      'ak_cert',
      'platform',
      'event_log',
    ])
    assert.equal(tpm['platform'], 'gcp')
    assert.ok(tpm['message'] instanceof Uint8Array)
    const snp = quotes[3] as AttestationQuote
    const v0s = encodeVersionedAttestation({ version: 0, attestation: { ...base, quote: snp } })
    // 00 | 03 | report 40 + 16 bytes | cert_chain 08 (04 01) (08 02 03) | mr_config 34 …
    assert.equal(hex(v0s.subarray(0, 3)), '000340')
    assert.equal(hex(v0s.subarray(19, 25)), '0804010802' + '03')
    // app info for GCP uses the TPM PCRs
    const info = decodeAppInfo({ ...base, quote: gcp })
    assert.equal(
      hex(info.mrSystem),
      createHash('sha256')
        .update(Buffer.from([0x00, 0xff]))
        .update(Buffer.alloc(32))
        .digest('hex'),
    )
    throwsMessage(
      () => decodeAppInfo({ ...base, quote: snp }),
      'decode app info: app info of dstack-amd-sev-snp is not supported',
    )
  })

  it('keeps dstack-pod stacks and V2 events on the V1 wire only', () => {
    const pod: Attestation = {
      ...base,
      quote: quotes[0] as AttestationQuote,
      reportData: Buffer.alloc(10, 1),
      stack: { kind: 'dstack-pod', reportDataPayload: 'hello' },
    }
    const v1 = encodeVersionedAttestation({ version: 1, attestation: pod })
    assert.deepEqual(decodeVersionedAttestation(v1).attestation, pod)
    throwsMessage(
      () => encodeVersionedAttestation({ version: 0, attestation: pod }),
      'dstack-pod attestation cannot be represented by the legacy schema',
    )
    assert.equal(intoVersioned(pod).version, 1)
    const v2: Attestation = {
      ...base,
      quote: {
        kind: 'dstack-tdx',
        quote: Buffer.alloc(0),
        eventLog: [
          {
            imr: 3,
            eventType: DSTACK_RUNTIME_EVENT_TYPE,
            digest: Buffer.alloc(48, 2),
            event: 'app-id',
            eventPayload: Buffer.from([1]),
            version: 2,
            preimage: Buffer.from('{"x":1}'),
          },
        ],
      },
      runtimeEvents: [{ event: 'app-id', payload: Buffer.from([1]), version: 2 }],
    }
    assert.equal(intoVersioned(v2).version, 1)
    const bytes = encodeVersionedAttestation({ version: 1, attestation: v2 })
    assert.deepEqual(decodeVersionedAttestation(bytes).attestation, v2)
    const doc = msgpackDecode(bytes) as {
      platform: { data: { event_log: Record<string, unknown>[] } }
      stack: { data: { runtime_events: Record<string, unknown>[] } }
    }
    const ev = doc.platform.data.event_log[0] ?? {}
    assert.equal(ev['version'], 2)
    assert.equal(ev['preimage'], Buffer.from('{"x":1}').toString('hex'))
    assert.equal(doc.stack.data.runtime_events[0]?.['version'], 2)
    throwsMessage(
      () => encodeVersionedAttestation({ version: 0, attestation: v2 }),
      'non-V1 runtime events cannot be represented by the legacy schema',
    )
  })

  it('rejects empty, oversized, unknown, truncated and trailing input', () => {
    throwsMessage(
      () => decodeVersionedAttestation(Buffer.alloc(0)),
      'Empty attestation bytes',
      'KMS_ERR_ATTESTATION',
    )
    throwsMessage(
      () => decodeVersionedAttestation(Buffer.alloc(MAX_ATTESTATION_BYTES + 1)),
      `attestation bytes too large: ${MAX_ATTESTATION_BYTES + 1} > ${MAX_ATTESTATION_BYTES}`,
    )
    throwsMessage(
      () => decodeVersionedAttestation(Buffer.from([0x01])),
      'Unknown attestation wire format',
    )
    throwsMessage(
      () => decodeVersionedAttestation(Buffer.concat([attestationBin, Buffer.from([0])])),
      'Trailing bytes after legacy VersionedAttestation: 1',
      'KMS_ERR_ATTESTATION',
    )
    throwsMessage(
      () => decodeVersionedAttestation(attestationBin.subarray(0, attestationBin.length - 1)),
      /^Failed to decode legacy VersionedAttestation: Could not decode `LegacyVersionedAttestation::V0::attestation`:\n\tCould not decode `Attestation::config`/,
      'KMS_ERR_ATTESTATION',
    )
    throwsMessage(
      () => decodeVersionedAttestation(attestationBin.subarray(0, 100)),
      /Could not decode `AttestationQuote::DstackTdx\.0`:\n\t\tCould not decode `TdxQuote::quote`/,
    )
    throwsMessage(
      () => decodeVersionedAttestation(Buffer.from([0x00, 0x05])),
      /Could not decode `AttestationQuote`, variant doesn't exist/,
    )
    throwsMessage(
      () => decodeVersionedAttestation(Buffer.from([0x00])),
      /Could not decode `AttestationQuote`, failed to read variant byte/,
    )
    // a GcpTdx TPM platform byte out of range
    const gcp = encodeVersionedAttestation({
      version: 0,
      attestation: { ...base, quote: quotes[1] as AttestationQuote },
    })
    const platformAt = gcp.indexOf(Buffer.from([0x08, 0x30, 0x00])) + 3
    const badPlatform = Buffer.from(gcp)
    badPlatform[platformAt] = 9
    throwsMessage(
      () => decodeVersionedAttestation(badPlatform),
      /Could not decode `TpmQuote::platform`:\n.*Could not decode `Platform`, variant doesn't exist/s,
    )
  })

  it('rejects non-minimal compacts and invalid UTF-8', () => {
    // quote length 0 written in the two-byte form
    throwsMessage(
      () => decodeVersionedAttestation(Buffer.from([0x00, 0x00, 0x01, 0x00])),
      /TdxQuote::quote`:\n.*out of range decoding Compact<u32>/s,
    )
    const a: Attestation = { ...base, quote: quotes[2] as AttestationQuote, config: 'x' }
    const bytes = encodeVersionedAttestation({ version: 0, attestation: a })
    const bad = Buffer.from(bytes)
    bad[bad.length - 1] = 0xff
    throwsMessage(
      () => decodeVersionedAttestation(bad),
      /Could not decode `Attestation::config`:\n\tInvalid utf8 sequence/,
    )
  })

  it('rejects malformed V1 msgpack', () => {
    const a: Attestation = { ...base, quote: quotes[0] as AttestationQuote }
    const v1 = encodeVersionedAttestation({ version: 1, attestation: a })
    // 83 a7 "version" 01 …
    assert.equal(hex(v1.subarray(0, 10)), '83a776657273696f6e01')
    const wrong = Buffer.from(v1)
    wrong[9] = 2
    throwsMessage(
      () => decodeVersionedAttestation(wrong),
      'unsupported attestation version: expected 1, got 2',
      'KMS_ERR_ATTESTATION',
    )
    throwsMessage(
      () => decodeVersionedAttestation(Buffer.concat([v1, Buffer.from([0xc0, 0xc0])])),
      'trailing bytes after attestation msgpack: 2',
    )
    throwsMessage(
      () => decodeVersionedAttestation(v1.subarray(0, v1.length - 3)),
      /^failed to decode attestation from msgpack: /,
    )
    const doc = (over: Record<string, unknown>): Buffer =>
      Buffer.from(
        msgpackEncode(
          {
            version: 1,
            platform: { kind: 'tdx', data: { quote: [1, 2], event_log: [] } },
            stack: {
              kind: 'dstack',
              data: { report_data: Array(64).fill(0), runtime_events: [], config: '' },
            },
            ...over,
          },
          { ignoreUndefined: true },
        ),
      )
    assert.equal(decodeVersionedAttestation(doc({})).version, 1)
    // a plain Vec<u8> written as bin cannot be read by Rust, so neither by us
    throwsMessage(
      () =>
        decodeVersionedAttestation(
          doc({ platform: { kind: 'tdx', data: { quote: new Uint8Array([1]), event_log: [] } } }),
        ),
      'failed to decode attestation from msgpack: invalid type: byte array, expected a sequence',
    )
    throwsMessage(
      () => decodeVersionedAttestation(doc({ platform: { kind: 'sgx', data: {} } })),
      'failed to decode attestation from msgpack: unknown variant `sgx`, expected one of `tdx`, `gcp-tdx`, `nitro-enclave`, `aws-nitro-tpm`, `sev-snp`',
    )
    throwsMessage(
      () => decodeVersionedAttestation(doc({ version: undefined })),
      'failed to decode attestation from msgpack: missing field `version`',
    )
    throwsMessage(
      () =>
        decodeVersionedAttestation(
          doc({ platform: { kind: 'tdx', data: { quote: [256], event_log: [] } } }),
        ),
      'failed to decode attestation from msgpack: invalid value: integer `256`, expected u8',
    )
  })
})

describe('report_data content types', () => {
  it('matches the upstream and fixture vectors', () => {
    for (const r of vectors.report_data) {
      if (r.type !== undefined && r.report_data !== undefined) {
        const content =
          r.content_utf8 !== undefined ? Buffer.from(r.content_utf8) : hexBytes(r.content_hex ?? '')
        const kind = r.type as 'app-data' | 'ratls-cert'
        assert.equal(hex(toReportData(kind, content, r.hash)), r.report_data)
        assert.equal(hex(toReportData({ custom: r.type }, content)), r.report_data)
      } else if (r.sha512 !== undefined) {
        assert.equal(hex(toReportData('ratls-cert', 'test')), r.sha512)
      }
    }
  })

  it('supports every hash name, zero-padded to 64 bytes', () => {
    const input = Buffer.from('kms-root-ca:abc')
    const lengths: Record<string, number> = {
      sha256: 32,
      sha384: 48,
      sha512: 64,
      'sha3-256': 32,
      'sha3-384': 48,
      'sha3-512': 64,
      keccak256: 32,
      keccak384: 48,
      keccak512: 64,
    }
    const seen = new Set<string>()
    for (const [alg, len] of Object.entries(lengths)) {
      const rd = toReportData('kms-root-ca', 'abc', alg)
      assert.equal(rd.length, 64)
      assert.ok(
        rd.subarray(len).every((b) => b === 0),
        alg,
      )
      seen.add(hex(rd))
      if (!alg.startsWith('keccak')) {
        assert.equal(hex(rd.subarray(0, len)), createHash(alg).update(input).digest('hex'), alg)
      }
    }
    assert.equal(seen.size, 9, 'keccak and sha3 differ')
    assert.equal(
      hex(toReportData('kms-root-ca', 'abc', 'keccak256').subarray(0, 32)),
      hex(keccak256(input)),
    )
    // sha3-256("") differs from keccak256(""): the NIST padding
    assert.equal(
      hex(keccak256(new Uint8Array())),
      'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470',
    )
    assert.deepEqual(toReportData('app-data', 'x', ''), toReportData('app-data', 'x'))
    const raw = Buffer.alloc(64, 0x5a)
    assert.deepEqual(toReportData('app-data', raw, 'raw'), raw)
    throwsMessage(() => toReportData('app-data', Buffer.alloc(63), 'raw'), 'invalid content length')
    throwsMessage(() => toReportData('app-data', 'x', 'md5'), 'invalid hash algorithm')
  })
})

describe('decoder bounds (a small input must not inflate into millions of objects)', () => {
  it('refuses more runtime events / event-log entries than MAX_EVENTS, in SCALE and msgpack', () => {
    const base = decodeVersionedAttestation(readVectorFile('attestation.bin'))
    const many = Array.from({ length: MAX_EVENTS + 1 }, () => ({
      event: '',
      payload: Buffer.alloc(0),
    }))
    const big = encodeVersionedAttestation({
      version: 0,
      attestation: { ...base.attestation, runtimeEvents: many },
    })
    assert.throws(
      () => decodeVersionedAttestation(big),
      /Vec length 16385 exceeds the limit of 16384/,
    )
    const bigV1 = encodeVersionedAttestation({
      version: 1,
      attestation: { ...base.attestation, runtimeEvents: many },
    })
    assert.throws(() => decodeVersionedAttestation(bigV1), /16385/)
    // the limit itself is fine
    const atLimit = encodeVersionedAttestation({
      version: 0,
      attestation: { ...base.attestation, runtimeEvents: many.slice(1) },
    })
    assert.equal(decodeVersionedAttestation(atLimit).attestation.runtimeEvents.length, MAX_EVENTS)
  })

  it('refuses a JSON event log with more than MAX_EVENTS entries', () => {
    const entry = '{"imr":3,"event_type":1,"digest":"","event":"","event_payload":""}'
    const json = `[${Array(MAX_EVENTS + 1)
      .fill(entry)
      .join(',')}]`
    assert.throws(() => parseTdxEventLogJson(json), /more than the limit of 16384/)
  })
})
