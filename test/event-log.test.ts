// Event logs and runtime-event digests / RTMR replay against the upstream
// fixtures and vectors.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  TDX_ACPI_DATA_EVENT_NAMES,
  decodeBase64Strict,
  encodeTdxEventLogJson,
  formatRuntimeEventLine,
  isAcpiDataEvent,
  labelAcpiDataEvents,
  parseCcel,
  parseRuntimeEventLog,
  parseTdxEventLogJson,
} from '../src/attestation/event-log.js'
import {
  canonicalEventJsonV2,
  extendRtmr,
  findEvent,
  findEventPayload,
  replayEventLogRtmrs,
  replayRtmr,
  replayRuntimeEvents,
  runtimeEventDigest,
  runtimeEventPreimage,
  runtimeEventToTdxEvent,
  tdxEventDigest,
  tdxEventToRuntimeEvent,
} from '../src/attestation/runtime-events.js'
import { DSTACK_RUNTIME_EVENT_TYPE, type RuntimeEvent } from '../src/attestation/types.js'
import { KmsError } from '../src/errors.js'
import { hexBytes, readVectorFile, readVectorJson } from './helpers/crypto-vectors.js'

interface Vectors {
  ccel: {
    records: number
    end_offset: number
    rtmr0_events: number
    rtmr1_events: number
    first_digest: string
    rtmr0: string
    rtmr1: string
    rtmr2: string
    rtmr3: string
  }
  runtime_event_digests: {
    events: {
      name: string
      payload_hex: string
      v1_preimage: string
      v1_sha384: string
      v2_canonical_json?: string
      v2_sha384?: string
    }[]
  }
  rtmr3_replay_v1: { events: { name: string; payload_hex: string }[]; rtmr3: string }
  rtmr_extend: { initial: string; digest: string; result: string }
}

const vectors = readVectorJson<Vectors>('vectors.json')
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const ccel = readVectorFile('ccel.bin')
const getQuote = readVectorJson<{ event_log: string }>('tdx-lite-getquote.json')

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

/** Length of the Spec ID header record: 4 + 4 + 20 + 4 + event size. */
const headerLength = 32 + ccel.readUInt32LE(28)

function record(mrIndex: number, eventType: number, digests: [number, Buffer][], event: Buffer) {
  const head = Buffer.alloc(12)
  head.writeUInt32LE(mrIndex, 0)
  head.writeUInt32LE(eventType, 4)
  head.writeUInt32LE(digests.length, 8)
  const parts: Buffer[] = [head]
  for (const [alg, d] of digests) {
    const a = Buffer.alloc(2)
    a.writeUInt16LE(alg)
    parts.push(a, d)
  }
  const size = Buffer.alloc(4)
  size.writeUInt32LE(event.length)
  parts.push(size, event)
  return Buffer.concat(parts)
}

const END = Buffer.alloc(4, 0xff)

describe('CCEL', () => {
  const v = vectors.ccel

  it('parses ccel.bin: 18 records, labels, replay', () => {
    const parsed = parseCcel(ccel)
    assert.equal(parsed.specId.specVersionMajor, 2)
    assert.equal(parsed.specId.specVersionMinor, 0)
    assert.equal(parsed.specId.uintnSize, 2)
    assert.deepEqual(parsed.specId.algorithms, [{ algId: 0x000c, digestSize: 48 }])
    assert.equal(parsed.specId.vendorInfo.length, 0)
    assert.equal(parsed.records.length, v.records)
    assert.equal(parsed.endOffset, v.end_offset)
    const events = parsed.events
    assert.equal(events.length, v.records)
    assert.equal(events.filter((e) => e.imr === 0).length, v.rtmr0_events)
    assert.equal(events.filter((e) => e.imr === 1).length, v.rtmr1_events)
    assert.equal(hex(events[0]?.digest ?? Buffer.alloc(0)), v.first_digest)
    assert.deepEqual(
      events.map((e) => e.eventType.toString(16)),
      [
        '8000000b',
        '8000000a',
        ...Array<string>(5).fill('80000001'),
        '4',
        'a',
        'a',
        'a',
        '80000003',
        '80000002',
        '80000002',
        '80000007',
        '4',
        '80000007',
        '80000007',
      ],
    )
    const acpi = events.filter(isAcpiDataEvent)
    assert.deepEqual(
      acpi.map((e) => e.event),
      [...TDX_ACPI_DATA_EVENT_NAMES],
    )
    assert.ok(events.filter((e) => !isAcpiDataEvent(e)).every((e) => e.event === ''))
    assert.ok(events.every((e) => e.digest.length === 48))
    assert.deepEqual(replayEventLogRtmrs(events).map(hex), [v.rtmr0, v.rtmr1, v.rtmr2, v.rtmr3])
  })

  it('drops mr_index 0 records and stops at the terminator', () => {
    const d = Buffer.alloc(48, 0xab)
    const log = Buffer.concat([
      ccel.subarray(0, headerLength),
      record(0, 1, [[0x000c, d]], Buffer.from('gcp')),
      record(4, 5, [[0x000c, d]], Buffer.from('x')),
      END,
      Buffer.from('ignored'),
    ])
    const parsed = parseCcel(log)
    assert.equal(parsed.records.length, 2)
    assert.deepEqual(parsed.events, [
      { imr: 3, eventType: 5, digest: d, event: '', eventPayload: Buffer.from('x') },
    ])
  })

  it('fails with upstream texts', () => {
    throwsMessage(
      () => parseCcel(ccel.subarray(0, v.end_offset)),
      'failed to decode imr: Not enough data to fill buffer',
      'KMS_ERR_ATTESTATION',
    )
    const badAlg = Buffer.concat([
      ccel.subarray(0, headerLength),
      record(1, 1, [[0x0012, Buffer.alloc(48)]], Buffer.alloc(0)),
      END,
    ])
    throwsMessage(
      () => parseCcel(badAlg),
      /^Failed to parse event log: Could not decode `TcgEvent::digests`:\n\tUnsupported algorithm ID/,
      'KMS_ERR_ATTESTATION',
    )
    const twoDigests = Buffer.concat([
      ccel.subarray(0, headerLength),
      record(
        1,
        1,
        [
          [0x000c, Buffer.alloc(48)],
          [0x000b, Buffer.alloc(32)],
        ],
        Buffer.alloc(0),
      ),
      END,
    ])
    throwsMessage(() => parseCcel(twoDigests), 'expected 1 digest, got 2')
    const tooMany = Buffer.concat([
      ccel.subarray(0, headerLength),
      record(1, 1, [], Buffer.alloc(0)),
    ])
    tooMany.writeUInt32LE(65537, headerLength + 8)
    throwsMessage(() => parseCcel(tooMany), /VecOf length exceeds upper bound/)
    throwsMessage(
      () => parseCcel(ccel.subarray(0, 20)),
      /^Failed to parse spec id event: failed to decode log_item: /,
    )
  })

  it('labels only the first three ACPI DATA events', () => {
    const acpi = () => ({
      imr: 0,
      eventType: 10,
      digest: Buffer.alloc(48),
      event: '',
      eventPayload: Buffer.from('ACPI DATA'),
    })
    const events = [acpi(), { ...acpi(), imr: 1 }, acpi(), acpi(), acpi()]
    labelAcpiDataEvents(events)
    assert.deepEqual(
      events.map((e) => e.event),
      ['acpi-loader', '', 'acpi-rsdp', 'acpi-tables', ''],
    )
  })
})

describe('JSON event log', () => {
  it('parses the GetQuote log and re-encodes it exactly', () => {
    const events = parseTdxEventLogJson(getQuote.event_log)
    assert.equal(events.length, 29)
    assert.deepEqual(
      events.filter(isAcpiDataEvent).map((e) => e.event),
      ['acpi-loader', 'acpi-rsdp', 'acpi-tables'],
    )
    const runtime = events.filter((e) => e.eventType === DSTACK_RUNTIME_EVENT_TYPE)
    assert.equal(runtime.length, 9)
    assert.ok(runtime.every((e) => e.digest.length === 0 && e.imr === 3))
    assert.equal(encodeTdxEventLogJson(events), getQuote.event_log)
    assert.deepEqual(parseTdxEventLogJson(Buffer.from(getQuote.event_log)), events)
  })

  it('accepts missing/empty digests and either hex case; reads version and preimage', () => {
    const [a, b, c] = parseTdxEventLogJson(
      '[{"imr":3,"event_type":134217729,"event":"x","event_payload":"AbCd","extra":1},' +
        '{"imr":0,"event_type":1,"digest":"","event":"","event_payload":""},' +
        '{"imr":3,"event_type":134217729,"digest":"FF","event":"y","event_payload":"01",' +
        '"version":2,"preimage":"7B7D"}]',
    )
    assert.deepEqual(a, {
      imr: 3,
      eventType: DSTACK_RUNTIME_EVENT_TYPE,
      digest: Buffer.alloc(0),
      event: 'x',
      eventPayload: hexBytes('abcd'),
    })
    assert.equal(b?.digest.length, 0)
    assert.equal(c?.version, 2)
    assert.deepEqual(c?.preimage, Buffer.from('{}'))
    assert.equal(
      encodeTdxEventLogJson(c === undefined ? [] : [c]),
      '[{"imr":3,"event_type":134217729,"digest":"ff","event":"y","event_payload":"01","version":2,"preimage":"7b7d"}]',
    )
  })

  it('fails with serde_json / hex texts', () => {
    throwsMessage(() => parseTdxEventLogJson(''), 'EOF while parsing a value at line 1 column 0')
    throwsMessage(() => parseTdxEventLogJson('{}'), 'invalid type: map, expected a sequence')
    throwsMessage(
      () =>
        parseTdxEventLogJson(
          '[{"imr":0,"event_type":1,"digest":"zz","event":"","event_payload":""}]',
        ),
      "Invalid character 'z' at position 0",
    )
    throwsMessage(
      () => parseTdxEventLogJson('[{"imr":0,"event_type":1,"event":"","event_payload":"abc"}]'),
      'Odd number of digits',
    )
    throwsMessage(
      () => parseTdxEventLogJson('[{"imr":-1,"event_type":1,"event":"","event_payload":""}]'),
      'invalid value: integer `-1`, expected u32',
    )
    throwsMessage(
      () => parseTdxEventLogJson('[{"imr":0,"event_type":1,"event_payload":""}]'),
      'missing field `event`',
    )
    throwsMessage(
      () =>
        parseTdxEventLogJson(
          '[{"imr":0,"event_type":1,"event":"","event_payload":"","version":3}]',
        ),
      'unknown event log version: 3',
    )
    throwsMessage(
      () => parseTdxEventLogJson('[1]'),
      'invalid type: integer `1`, expected struct TdxEvent',
    )
  })
})

describe('runtime event log file', () => {
  it('formats and parses lines with base64 payloads', () => {
    const events: RuntimeEvent[] = [
      { event: 'app-id', payload: hexBytes('deadbeef') },
      { event: 'system-preparing', payload: Buffer.alloc(0) },
      { event: 'na"me', payload: Buffer.from([0xff]), version: 2 },
    ]
    const lines = events.map(formatRuntimeEventLine)
    assert.deepEqual(lines, [
      '{"event":"app-id","payload":"3q2+7w=="}',
      '{"event":"system-preparing","payload":""}',
      '{"event":"na\\"me","payload":"/w==","version":2}',
    ])
    const text = lines.join('\n') + '\n\n  \n'
    assert.deepEqual(parseRuntimeEventLog(text), events)
    assert.deepEqual(parseRuntimeEventLog(Buffer.from(text)), events)
    assert.deepEqual(parseRuntimeEventLog(''), [])
    // as the guest appends them to its event log
    const tdx = runtimeEventToTdxEvent(events[0] as RuntimeEvent)
    assert.equal(tdx.imr, 3)
    assert.equal(tdx.eventType, DSTACK_RUNTIME_EVENT_TYPE)
    assert.equal(
      hex(tdx.digest),
      '67b4be4efed0893cfa2bb1d35dca209ad8348b4c97f980807bcde8b9a0f26398dd0923d6eccb5aa2096d98046da8740f',
    )
    assert.deepEqual(tdxEventToRuntimeEvent(tdx), events[0])
    assert.equal(runtimeEventToTdxEvent(events[2] as RuntimeEvent).version, 2)
  })

  it('rejects malformed lines', () => {
    throwsMessage(
      () => parseRuntimeEventLog('{"event":"a","payload":"3q2+7w="}\n'),
      'Failed to decode user event log: Invalid input length.',
      'KMS_ERR_ATTESTATION',
    )
    throwsMessage(
      () => parseRuntimeEventLog('{"event":"a","payload":"3q2-7w=="}'),
      'Failed to decode user event log: Invalid symbol 45, offset 3.',
    )
    throwsMessage(
      () => parseRuntimeEventLog('{"event":"a"}'),
      'Failed to decode user event log: missing field `payload`',
    )
    throwsMessage(() => parseRuntimeEventLog('not json'), /^Failed to decode user event log: /)
    throwsMessage(() => decodeBase64Strict('3q2+7x=='), 'Invalid last symbol 120, offset 5.')
  })
})

describe('runtime event digests and RTMR replay', () => {
  it('matches the V1 and V2 digest vectors', () => {
    for (const e of vectors.runtime_event_digests.events) {
      const ev: RuntimeEvent = { event: e.name, payload: hexBytes(e.payload_hex) }
      assert.equal(hex(runtimeEventPreimage(ev)), e.v1_preimage)
      assert.equal(hex(runtimeEventDigest(ev)), e.v1_sha384)
      if (e.v2_canonical_json !== undefined) {
        const v2: RuntimeEvent = { ...ev, version: 2 }
        assert.equal(canonicalEventJsonV2(e.name, ev.payload), e.v2_canonical_json)
        assert.equal(runtimeEventPreimage(v2).toString('utf8'), e.v2_canonical_json)
        assert.equal(hex(runtimeEventDigest(v2)), e.v2_sha384)
      }
    }
  })

  it('builds the canonical V2 JSON like serde_jcs', () => {
    assert.equal(
      canonicalEventJsonV2('', Buffer.alloc(0)),
      '{"name":"","payload":"","type":134217729}',
    )
    assert.equal(
      canonicalEventJsonV2('event"with\\special\nchars', Buffer.from([0xff])),
      '{"name":"event\\"with\\\\special\\nchars","payload":"ff","type":134217729}',
    )
    assert.ok(
      canonicalEventJsonV2('\b\f\n\r\t\x01', Buffer.alloc(0)).includes(
        '"name":"\\b\\f\\n\\r\\t\\u0001"',
      ),
    )
    assert.ok(canonicalEventJsonV2('测试-emoji-🦀', Buffer.alloc(0)).includes('测试-emoji-🦀'))
    assert.ok(
      canonicalEventJsonV2('t', Buffer.from([0xab, 0xcd, 0xef])).includes('"payload":"abcdef"'),
    )
  })

  it('extends and replays registers', () => {
    const x = vectors.rtmr_extend
    assert.equal(hex(extendRtmr(hexBytes(x.initial), hexBytes(x.digest))), x.result)
    assert.equal(hex(replayRtmr([hexBytes(x.digest)])), x.result)
    throwsMessage(() => extendRtmr(Buffer.alloc(48), Buffer.alloc(32)), /expected 48/)
    const r = vectors.rtmr3_replay_v1
    const events = r.events.map((e) => ({ event: e.name, payload: hexBytes(e.payload_hex) }))
    assert.equal(hex(replayRuntimeEvents(events)), r.rtmr3)
    assert.equal(hex(replayRtmr(events.map((e) => runtimeEventDigest(e)))), r.rtmr3)
    // to_event: stops after the first match, or replays everything when absent
    assert.equal(
      hex(replayRuntimeEvents([...events, events[1] as RuntimeEvent], 'boot-mr-done')),
      r.rtmr3,
    )
    assert.equal(hex(replayRuntimeEvents(events, 'no-such-event')), r.rtmr3)
    assert.notEqual(hex(replayRuntimeEvents(events, 'app-id')), r.rtmr3)
    assert.deepEqual(replayRuntimeEvents([]), Buffer.alloc(48))
    // SHA-256 variant (TPM PCR14): 32-byte register
    assert.equal(replayRuntimeEvents(events, undefined, 'sha256').length, 32)
  })

  it('replays a JSON event log with recomputed runtime digests', () => {
    const events = parseTdxEventLogJson(getQuote.event_log)
    const rtmrs = replayEventLogRtmrs(events)
    const runtime = events.map(tdxEventToRuntimeEvent).filter((e): e is RuntimeEvent => e !== null)
    assert.deepEqual(rtmrs[3], replayRuntimeEvents(runtime))
    const first = events.find((e) => e.eventType === DSTACK_RUNTIME_EVENT_TYPE)
    assert.ok(first !== undefined)
    assert.equal(tdxEventDigest(first).length, 48)
    throwsMessage(
      () => replayEventLogRtmrs([{ ...first, imr: 4 }]),
      'event 0: invalid imr index 4',
      'KMS_ERR_ATTESTATION',
    )
    throwsMessage(
      () =>
        replayEventLogRtmrs([
          {
            imr: 0,
            eventType: 1,
            digest: Buffer.alloc(32),
            event: '',
            eventPayload: Buffer.alloc(0),
          },
        ]),
      'event 0: digest is 32 bytes, expected 48',
    )
  })

  it('finds payloads only before system-ready', () => {
    const events: RuntimeEvent[] = [
      { event: 'app-id', payload: Buffer.from([1]) },
      { event: 'instance-id', payload: Buffer.alloc(0) },
      { event: 'system-ready', payload: Buffer.alloc(0) },
      { event: 'key-provider', payload: Buffer.from('late') },
      { event: 'app-id', payload: Buffer.from([2]) },
    ]
    assert.deepEqual(findEventPayload(events, 'app-id'), Buffer.from([1]))
    assert.equal(findEventPayload(events, 'key-provider').length, 0)
    assert.equal(findEventPayload(events, 'compose-hash').length, 0)
    assert.notEqual(findEvent(events, 'instance-id'), null)
    assert.equal(findEvent(events, 'key-provider'), null)
  })
})
