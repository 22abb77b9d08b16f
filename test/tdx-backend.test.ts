// TdxBackend over the in-memory fake kernel: its attestations decode with the codec, carry the
// quote the kernel produced for our report_data, an event log of CCEL + runtime events whose
// replay equals the registers the kernel accumulated, and the sys-config's vm_config. Without
// TDX, creating the backend fails with the exact reasons (never a fallback).
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { describe, test } from 'node:test'
import { parseCcel } from '../src/attestation/event-log.js'
import { parseQuote } from '../src/attestation/quote.js'
import { replayEventLogRtmrs, runtimeEventDigest } from '../src/attestation/runtime-events.js'
import type { Attestation, TdxEvent } from '../src/attestation/types.js'
import { decodeVersionedAttestation } from '../src/attestation/versioned.js'
import { KmsError } from '../src/errors.js'
import { NodeTdxIo } from '../src/tee/tdx/io.js'
import { createTdxBackend, sysConfigPath, TdxBackend } from '../src/tee/tdx/backend.js'
import { readVectorFile } from './helpers/crypto-vectors.js'
import { CCEL_DATA, FakeTdxKernel, type FakeKernelOptions } from './helpers/fake-tdx-kernel.js'

const ccel = readVectorFile('ccel.bin')
const quoteTemplate = readVectorFile('ratls-assets-tdx_quote')

function sha384(...parts: Buffer[]): Buffer {
  const h = createHash('sha384')
  for (const p of parts) h.update(p)
  return h.digest()
}

/** RTMR0..3 after the firmware: the CCEL replayed with our own SHA-384. */
function bootRtmrs(): Buffer[] {
  const rtmrs: Buffer[] = [0, 1, 2, 3].map(() => Buffer.alloc(48))
  for (const e of parseCcel(ccel).events) {
    rtmrs[e.imr] = sha384(rtmrs[e.imr] ?? Buffer.alloc(48), e.digest)
  }
  return rtmrs
}

/** A real v4 quote with the kernel's current RTMRs and REPORTDATA patched in (signature void). */
function patchedQuote(reportData: Buffer, rtmrs: readonly Buffer[]): Buffer {
  const quote = Buffer.from(quoteTemplate)
  rtmrs.forEach((r, i) => r.copy(quote, 48 + 328 + 48 * i))
  reportData.copy(quote, 568)
  return quote
}

const VM_CONFIG =
  '{"os_image_hash":"e61be43dd1cc6a6f5edefd7c51b608983780839b0000ce60dd99737dcffe09b9"}'

function tdxGuest(options: FakeKernelOptions = {}): FakeTdxKernel {
  const kernel = new FakeTdxKernel({
    ccel,
    rtmrs: bootRtmrs(),
    makeQuote: patchedQuote,
    ...options,
  })
  kernel.writeFileSync('/run/log/dstack/runtime_event_version', '1\n')
  kernel.writeFileSync(
    '/dstack/.host-shared/.sys-config.json',
    JSON.stringify({ kms_urls: ['https://kms.example:12001'], vm_config: VM_CONFIG }),
  )
  return kernel
}

function decode(bytes: Buffer): { version: number; attestation: Attestation } {
  return decodeVersionedAttestation(bytes)
}

function tdxQuoteOf(a: Attestation): { quote: Buffer; eventLog: TdxEvent[] } {
  assert.equal(a.quote.kind, 'dstack-tdx')
  if (a.quote.kind !== 'dstack-tdx') throw new Error('unreachable')
  return a.quote
}

describe('TdxBackend over a fake TDX guest', () => {
  test('the template quote parses and our patch offsets are the RTMR/REPORTDATA fields', () => {
    const rtmrs = [1, 2, 3, 4].map((b) => Buffer.alloc(48, b))
    const parsed = parseQuote(patchedQuote(Buffer.alloc(64, 9), rtmrs))
    assert.ok(parsed.report.type === 'td10' || parsed.report.type === 'td15')
    const td = parsed.report.td
    assert.deepEqual([td.rtmr0, td.rtmr1, td.rtmr2, td.rtmr3], rtmrs)
    assert.deepEqual(td.reportData, Buffer.alloc(64, 9))
  })

  test('attest: V0 attestation with quote, full event log, runtime events and vm_config', async () => {
    const kernel = tdxGuest()
    const backend = await createTdxBackend({ io: kernel })
    assert.ok(backend instanceof TdxBackend)
    assert.equal(backend.name, 'tdx')
    assert.equal(backend.canAttest, true)

    await backend.emitEvent(
      'app-id',
      Buffer.from('5bb4ff9a3837357f19dc176407a5709c62eb6c56', 'hex'),
    )
    await backend.emitEvent('compose-hash', Buffer.alloc(32, 0xc1))
    await backend.emitEvent('system-ready', Buffer.alloc(0))
    assert.equal(kernel.extends.length, 3)

    const reportData = createHash('sha512').update('report').digest()
    const bytes = await backend.attest(reportData)
    const { version, attestation } = decode(bytes)
    assert.equal(version, 0)
    assert.equal(bytes[0], 0)
    assert.deepEqual(attestation.reportData, reportData)
    assert.equal(attestation.config, VM_CONFIG)
    assert.deepEqual(attestation.stack, { kind: 'dstack' })
    assert.deepEqual(
      attestation.runtimeEvents.map((e) => e.event),
      ['app-id', 'compose-hash', 'system-ready'],
    )

    const { quote, eventLog } = tdxQuoteOf(attestation)
    const td = parseQuote(quote).report
    assert.ok(td.type === 'td10' || td.type === 'td15')
    assert.deepEqual(td.td.reportData, reportData)
    assert.deepEqual(td.td.rtmr3, kernel.rtmrs[3])

    // CCEL events first, then the runtime events as RTMR3 events with computed digests
    assert.equal(eventLog.length, 18 + 3)
    assert.deepEqual(
      eventLog.slice(18).map((e) => [e.imr, e.eventType, e.event]),
      [
        [3, 0x08000001, 'app-id'],
        [3, 0x08000001, 'compose-hash'],
        [3, 0x08000001, 'system-ready'],
      ],
    )
    assert.deepEqual(
      eventLog.slice(18).map((e) => e.digest),
      kernel.extends.map((e) => e.digest),
    )
    // the replay of the attested log equals what the kernel accumulated, register by register
    assert.deepEqual(replayEventLogRtmrs(eventLog), kernel.rtmrs)
    assert.deepEqual(replayEventLogRtmrs(eventLog), [
      td.td.rtmr0,
      td.td.rtmr1,
      td.td.rtmr2,
      td.td.rtmr3,
    ])
    assert.deepEqual(kernel.inblobWrites, [reportData])
  })

  test('eventLog and the runtime log file agree with what was extended', async () => {
    const kernel = tdxGuest()
    const backend = await createTdxBackend({ io: kernel })
    assert.equal((await backend.eventLog()).length, 18)
    await backend.emitEvent('instance-id', Buffer.alloc(20, 7))
    const log = await backend.eventLog()
    assert.equal(log.length, 19)
    const last = log[18]
    assert.ok(last !== undefined)
    assert.deepEqual(
      last.digest,
      runtimeEventDigest({ event: 'instance-id', payload: Buffer.alloc(20, 7) }),
    )
    assert.equal(
      kernel.fileContent('/run/log/dstack/runtime_events.log')?.toString(),
      `{"event":"instance-id","payload":"${Buffer.alloc(20, 7).toString('base64')}"}\n`,
    )
  })

  test('V2 runtime events make the attestation V1 (msgpack keeps their version)', async () => {
    const kernel = tdxGuest()
    kernel.writeFileSync('/run/log/dstack/runtime_event_version', '2')
    const backend = await createTdxBackend({ io: kernel })
    await backend.emitEvent('app-id', Buffer.from([1, 2, 3]))
    const { version, attestation } = decode(await backend.attest(Buffer.alloc(64)))
    assert.equal(version, 1)
    assert.deepEqual(attestation.runtimeEvents, [
      { event: 'app-id', payload: Buffer.from([1, 2, 3]), version: 2 },
    ])
    const { quote, eventLog } = tdxQuoteOf(attestation)
    const td = parseQuote(quote).report
    assert.ok(td.type === 'td10' || td.type === 'td15')
    assert.deepEqual(replayEventLogRtmrs(eventLog)[3], td.td.rtmr3)
  })

  test('emitEvent fails without extending when the version is not configured', async () => {
    const kernel = tdxGuest()
    kernel.remove('/run/log/dstack/runtime_event_version')
    const backend = await createTdxBackend({ io: kernel })
    await assert.rejects(backend.emitEvent('x', Buffer.alloc(0)), {
      message: /^runtime event version is not configured; complete dstack system setup/,
    })
    assert.equal(kernel.extends.length, 0)
  })

  test('vmConfig: the sys-config vm_config, DSTACK_HOST_SHARED_DIR, "" without a sys-config', async () => {
    const kernel = tdxGuest()
    const backend = await createTdxBackend({ io: kernel })
    assert.equal(await backend.vmConfig(), VM_CONFIG)

    kernel.env.DSTACK_HOST_SHARED_DIR = '/tmp/shared'
    assert.equal(sysConfigPath(kernel.env), '/tmp/shared/.sys-config.json')
    const moved = await createTdxBackend({ io: kernel })
    assert.equal(await moved.vmConfig(), '')
    kernel.writeFileSync('/tmp/shared/.sys-config.json', '{"vm_config":"{}"}')
    assert.equal(await moved.vmConfig(), '{}')
    kernel.writeFileSync('/tmp/shared/.sys-config.json', '{"kms_urls":[]}')
    await assert.rejects(moved.vmConfig(), {
      message: 'Failed to parse sys-config: missing field `vm_config`',
    })
    await assert.rejects(moved.attest(Buffer.alloc(64)), {
      code: 'KMS_ERR_TEE',
      message: 'Failed to read vm config: Failed to parse sys-config: missing field `vm_config`',
    })
  })

  test('attest errors carry upstream contexts', async () => {
    const kernel = tdxGuest()
    const backend = await createTdxBackend({ io: kernel })
    kernel.inject('write', '/sys/kernel/config/tsm/report/com.intel.dcap/inblob', 'EIO')
    await assert.rejects(backend.attest(Buffer.alloc(64)), {
      code: 'KMS_ERR_TEE',
      message:
        'Failed to get quote: unexpected error: write /sys/kernel/config/tsm/report/com.intel.dcap/inblob: Input/output error (os error 5)',
    })
    kernel.remove(CCEL_DATA)
    await assert.rejects(backend.attest(Buffer.alloc(64)), {
      message: `Failed to read event log: failed to read CCEL from ${CCEL_DATA}: No such file or directory (os error 2)`,
    })
    kernel.writeFileSync('/run/log/dstack/runtime_events.log', 'garbage\n')
    await assert.rejects(backend.attest(Buffer.alloc(64)), {
      message: /^Failed to read runtime events: Failed to decode user event log: /,
    })
    await assert.rejects(backend.attest(Buffer.alloc(32)), {
      code: 'KMS_ERR_TEE',
      message: 'report_data must be 64 bytes',
    })
  })

  test('concurrent attestations are serialised and each gets its own report_data', async () => {
    const kernel = tdxGuest()
    const backend = await createTdxBackend({ io: kernel })
    const datas = [1, 2, 3, 4].map((b) => Buffer.alloc(64, b))
    const results = await Promise.all(datas.map((d) => backend.attest(d)))
    results.forEach((bytes, i) => {
      assert.deepEqual(decode(bytes).attestation.reportData, datas[i])
    })
    assert.equal(kernel.generation(), 4n)
    await backend.close()
  })
})

describe('TdxBackend on a legacy guest: QGS over vsock', () => {
  test('TDREPORT → QGS → quote, inside a normal attestation', async () => {
    const kernel = tdxGuest({ configfs: 'absent' })
    kernel.writeFileSync('/etc/tdx-attest.conf', 'port = 4050\n')
    kernel.qgs = (_cid, _port, request) => {
      // REPORTDATA sits at offset 128 of the TDREPORT, which starts at 4 + 24 in the frame
      const quote = patchedQuote(request.subarray(28 + 128, 28 + 192), kernel.rtmrs)
      const body = Buffer.alloc(24 + quote.length)
      body.writeUInt32LE(1, 4)
      body.writeUInt32LE(quote.length, 20)
      quote.copy(body, 24)
      const frame = Buffer.alloc(4)
      frame.writeUInt32BE(body.length)
      return Buffer.concat([frame, body])
    }
    const backend = await createTdxBackend({ io: kernel })
    await backend.emitEvent('app-id', Buffer.from([1]))
    const reportData = Buffer.alloc(64, 0x42)
    const { attestation } = decode(await backend.attest(reportData))
    const { quote, eventLog } = tdxQuoteOf(attestation)
    const td = parseQuote(quote).report
    assert.ok(td.type === 'td10' || td.type === 'td15')
    assert.deepEqual(td.td.reportData, reportData)
    assert.deepEqual(replayEventLogRtmrs(eventLog), [
      td.td.rtmr0,
      td.td.rtmr1,
      td.td.rtmr2,
      td.td.rtmr3,
    ])
    assert.equal(kernel.vsockRequests.length, 1)
    assert.equal(kernel.vsockRequests[0]?.port, 4050)
    assert.equal(kernel.vsockRequests[0]?.cid, 2)
  })
})

describe('createTdxBackend without TDX: exact reasons, no fallback', () => {
  async function startError(kernel: FakeTdxKernel): Promise<string> {
    try {
      await createTdxBackend({ io: kernel })
    } catch (err) {
      assert.ok(err instanceof KmsError)
      assert.equal(err.code, 'KMS_ERR_TEE')
      return err.message
    }
    assert.fail('createTdxBackend succeeded')
  }
  const prefix = 'tee.backend = "tdx" but TDX attestation is not available on this machine: '

  test('a machine with neither device nor configfs', async () => {
    assert.equal(
      await startError(
        new FakeTdxKernel({ device: false, configfs: 'absent', measurements: false }),
      ),
      prefix +
        'no /dev/tdx_guest; no TDX configfs-tsm provider (no tdx_guest provider under /sys/kernel/config/tsm/report); ' +
        'not supported: no quote method available (configfs not mounted, no vsock port configured)',
    )
  })

  test('configfs-tsm with an SEV provider', async () => {
    assert.equal(
      await startError(new FakeTdxKernel({ device: false, provider: 'sev_guest\n' })),
      prefix +
        'no /dev/tdx_guest; no TDX configfs-tsm provider (no tdx_guest provider under /sys/kernel/config/tsm/report); ' +
        'not supported: failed to prepare configfs: /sys/kernel/config/tsm/report/com.intel.dcap',
    )
  })

  test('a TDX device but no configfs-tsm and no QGS port', async () => {
    assert.equal(
      await startError(new FakeTdxKernel({ configfs: 'absent' })),
      prefix +
        'not supported: no quote method available (configfs not mounted, no vsock port configured)',
    )
  })

  test('a QGS vsock port but no /dev/tdx_guest for the TDREPORT', async () => {
    const kernel = new FakeTdxKernel({ configfs: 'absent', device: false })
    kernel.writeFileSync('/etc/tdx-attest.conf', 'port=4050\n')
    assert.equal(
      await startError(kernel),
      prefix +
        'no /dev/tdx_guest; no TDX configfs-tsm provider (no tdx_guest provider under /sys/kernel/config/tsm/report)',
    )
  })

  test('an invalid DCAP_TDX_QUOTE_CONFIGFS_PATH on a working guest', async () => {
    const kernel = tdxGuest({ env: { DCAP_TDX_QUOTE_CONFIGFS_PATH: '/nowhere' } })
    assert.equal(
      await startError(kernel),
      prefix + 'not supported: invalid configfs path from env: /nowhere',
    )
  })

  test('this machine, through the real NodeTdxIo', async () => {
    const io = new NodeTdxIo({ env: {} })
    if (existsSync('/dev/tdx_guest') || existsSync('/sys/kernel/config/tsm/report')) {
      // a TDX (or configfs-tsm) machine: creation either succeeds or names its reason
      await createTdxBackend({ io }).then(
        (b) => assert.equal(b.name, 'tdx'),
        (err: unknown) => assert.ok(err instanceof KmsError && err.message.startsWith(prefix)),
      )
      return
    }
    await assert.rejects(createTdxBackend({ io }), {
      code: 'KMS_ERR_TEE',
      message:
        prefix +
        'no /dev/tdx_guest; no TDX configfs-tsm provider (no tdx_guest provider under /sys/kernel/config/tsm/report); ' +
        'not supported: no quote method available (configfs not mounted, no vsock port configured)',
    })
  })
})
