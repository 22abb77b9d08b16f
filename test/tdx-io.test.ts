// The TDX guest protocols over the injectable TdxIo: an in-memory fake kernel (test/helpers/
// fake-tdx-kernel.ts) for the configfs-tsm quote sequence, RTMR extension, the runtime event log
// and CCEL; and the real NodeTdxIo over temporary files for the parts plain files can model
// (overrides, the log with real flock, CCEL from the shared vector).
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { runtimeEventDigest } from '../src/attestation/runtime-events.js'
import { ccelPath, readCcelEvents } from '../src/tee/tdx/ccel.js'
import {
  BUSY_RETRY_WAIT_MS,
  CONFIGFS_DEFAULT,
  ConfigfsTsmQuoter,
  GENERATION_POLL_MS,
} from '../src/tee/tdx/configfs-tsm.js'
import { isTdxAvailable, readVsockPort, selectQuoteMethod } from '../src/tee/tdx/detect.js'
import { isTdxError, TdxError } from '../src/tee/tdx/errors.js'
import { NodeTdxIo } from '../src/tee/tdx/io.js'
import { TdxQuoter } from '../src/tee/tdx/quote.js'
import { getTdReport, tdReportRtmrs } from '../src/tee/tdx/report.js'
import { extendRtmr, readRtmrSysfs } from '../src/tee/tdx/rtmr.js'
import {
  appendRuntimeEvent,
  emitRuntimeEvent,
  readRuntimeEvents,
  runtimeLogPaths,
} from '../src/tee/tdx/runtime-log.js'
import { readVectorFile, VECTORS_DIR } from './helpers/crypto-vectors.js'
import {
  CCEL_DATA,
  DCAP_REPORT,
  FakeTdxKernel,
  MEASUREMENTS,
  TDX_GUEST,
} from './helpers/fake-tdx-kernel.js'
import { tempDir } from './helpers/temp-dir.js'

const reportData = Buffer.from(Array.from({ length: 64 }, (_, i) => i))
const inblob = `${DCAP_REPORT}/inblob`
const outblob = `${DCAP_REPORT}/outblob`

function sha384(...parts: Buffer[]): Buffer {
  const h = createHash('sha384')
  for (const p of parts) h.update(p)
  return h.digest()
}

async function rejectsWith(p: Promise<unknown>, code: TdxError['code'], message: string) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof TdxError, `not a TdxError: ${String(err)}`)
    assert.equal(err.message, message)
    assert.equal(err.code, code)
    return true
  })
}

function quoteOfSize(n: number) {
  return (rd: Buffer): Buffer => {
    const q = Buffer.alloc(n, 0x11)
    rd.copy(q, 0, 0, Math.min(64, n))
    return q
  }
}

describe('configfs-tsm quote sequence', () => {
  test('the full sequence: lock, write REPORTDATA, generation +1, read outblob, recheck', async () => {
    const kernel = new FakeTdxKernel()
    const quote = await new ConfigfsTsmQuoter(kernel).getQuote(reportData)
    assert.deepEqual(quote, kernel.makeQuote(reportData, kernel.rtmrs))
    assert.equal(quote.length, 2000)
    assert.deepEqual(quote.subarray(568, 632), reportData)
    assert.deepEqual(kernel.inblobWrites, [reportData])
    assert.equal(kernel.generation(), 1n)
    assert.deepEqual(kernel.sleeps, [])
  })

  test('consecutive quotes each advance the generation once', async () => {
    const kernel = new FakeTdxKernel()
    const quoter = new ConfigfsTsmQuoter(kernel)
    const other = Buffer.alloc(64, 0xee)
    const [a, b] = await Promise.all([quoter.getQuote(reportData), quoter.getQuote(other)])
    assert.deepEqual(a?.subarray(568, 632), reportData)
    assert.deepEqual(b?.subarray(568, 632), other)
    assert.equal(kernel.generation(), 2n)
  })

  test('two processes (two quoters) are serialised by flock on inblob', async () => {
    const kernel = new FakeTdxKernel()
    const other = Buffer.alloc(64, 0x77)
    const [a, b] = await Promise.all([
      new ConfigfsTsmQuoter(kernel).getQuote(reportData),
      new ConfigfsTsmQuoter(kernel).getQuote(other),
    ])
    assert.deepEqual(a.subarray(568, 632), reportData)
    assert.deepEqual(b.subarray(568, 632), other)
    assert.equal(kernel.generation(), 2n)
  })

  test('REPORTDATA must be exactly 64 bytes', async () => {
    const kernel = new FakeTdxKernel()
    await rejectsWith(
      new ConfigfsTsmQuoter(kernel).getQuote(Buffer.alloc(32)),
      'KMS_ERR_TDX_INVALID_PARAMETER',
      'invalid parameter',
    )
    assert.deepEqual(kernel.inblobWrites, [])
  })

  test('EBUSY on the inblob write: wait 10 s and retry', async () => {
    const kernel = new FakeTdxKernel()
    kernel.inject('write', inblob, 'EBUSY', 'EBUSY')
    const quote = await new ConfigfsTsmQuoter(kernel).getQuote(reportData)
    assert.deepEqual(quote.subarray(568, 632), reportData)
    assert.deepEqual(kernel.sleeps, [BUSY_RETRY_WAIT_MS, BUSY_RETRY_WAIT_MS])
    assert.equal(BUSY_RETRY_WAIT_MS, 10_000)
  })

  test('EBUSY three times: device busy', async () => {
    const kernel = new FakeTdxKernel()
    kernel.inject('write', inblob, 'EBUSY', 'EBUSY', 'EBUSY')
    await rejectsWith(
      new ConfigfsTsmQuoter(kernel).getQuote(reportData),
      'KMS_ERR_TDX_BUSY',
      'device busy',
    )
    assert.deepEqual(kernel.sleeps, [10_000, 10_000, 10_000])
    assert.deepEqual(kernel.inblobWrites, [])
  })

  test('another inblob write error is not retried', async () => {
    const kernel = new FakeTdxKernel()
    kernel.inject('write', inblob, 'EIO')
    await rejectsWith(
      new ConfigfsTsmQuoter(kernel).getQuote(reportData),
      'KMS_ERR_TDX_UNEXPECTED',
      `unexpected error: write ${inblob}: Input/output error (os error 5)`,
    )
    assert.deepEqual(kernel.sleeps, [])
  })

  test('the lock descriptor cannot be opened: unexpected error naming inblob', async () => {
    const kernel = new FakeTdxKernel()
    kernel.inject('open', inblob, 'EACCES')
    await rejectsWith(
      new ConfigfsTsmQuoter(kernel).getQuote(reportData),
      'KMS_ERR_TDX_UNEXPECTED',
      `unexpected error: open ${inblob}: Permission denied (os error 13)`,
    )
  })

  test('flock failure', async () => {
    const kernel = new FakeTdxKernel()
    kernel.inject('flock', inblob, 'EINTR')
    await rejectsWith(
      new ConfigfsTsmQuoter(kernel).getQuote(reportData),
      'KMS_ERR_TDX_UNEXPECTED',
      `unexpected error: flock ${inblob}: Interrupted system call (os error 4)`,
    )
  })

  test('outblob EBUSY/EINTR/ETIMEDOUT are retried after 10 s', async () => {
    const kernel = new FakeTdxKernel()
    kernel.inject('read', outblob, 'EBUSY', 'ETIMEDOUT')
    const quote = await new ConfigfsTsmQuoter(kernel).getQuote(reportData)
    assert.equal(quote.length, 2000)
    assert.deepEqual(kernel.sleeps, [10_000, 10_000])
  })

  test('outblob EBUSY three times: device busy; ETIMEDOUT three times: quote failure', async () => {
    const busy = new FakeTdxKernel()
    busy.inject('read', outblob, 'EBUSY', 'EBUSY', 'EBUSY')
    await rejectsWith(
      new ConfigfsTsmQuoter(busy).getQuote(reportData),
      'KMS_ERR_TDX_BUSY',
      'device busy',
    )

    const slow = new FakeTdxKernel()
    slow.inject('read', outblob, 'EINTR', 'EBUSY', 'ETIMEDOUT')
    await rejectsWith(
      new ConfigfsTsmQuoter(slow).getQuote(reportData),
      'KMS_ERR_TDX_QUOTE_FAILURE',
      `quote failure: read ${outblob}: Connection timed out (os error 110)`,
    )
    assert.deepEqual(slow.sleeps, [10_000, 10_000, 10_000])
  })

  test('other outblob errors (EFBIG over the kernel maximum, EIO) fail at once', async () => {
    for (const [code, text] of [
      ['EFBIG', 'File too large (os error 27)'],
      ['EIO', 'Input/output error (os error 5)'],
    ] as const) {
      const kernel = new FakeTdxKernel()
      kernel.inject('read', outblob, code)
      await rejectsWith(
        new ConfigfsTsmQuoter(kernel).getQuote(reportData),
        'KMS_ERR_TDX_QUOTE_FAILURE',
        `quote failure: read ${outblob}: ${text}`,
      )
      assert.deepEqual(kernel.sleeps, [])
    }
  })

  test('a writer racing between our write and the generation check: busy', async () => {
    const kernel = new FakeTdxKernel()
    kernel.afterInblobWrite = (dir) => {
      kernel.afterInblobWrite = undefined
      kernel.bumpGeneration(dir)
    }
    await rejectsWith(
      new ConfigfsTsmQuoter(kernel).getQuote(reportData),
      'KMS_ERR_TDX_BUSY',
      'device busy',
    )
    assert.equal(kernel.generation(), 2n)
  })

  test('a writer racing during the outblob read: busy (the quote may be for its data)', async () => {
    const kernel = new FakeTdxKernel()
    kernel.beforeOutblobRead = (dir) => {
      kernel.beforeOutblobRead = undefined
      kernel.bumpGeneration(dir)
    }
    await rejectsWith(
      new ConfigfsTsmQuoter(kernel).getQuote(reportData),
      'KMS_ERR_TDX_BUSY',
      'device busy',
    )
  })

  test('a generation that never advances times out after 5 s of 10 ms polls', async () => {
    const kernel = new FakeTdxKernel()
    kernel.generationAdvances = false
    await rejectsWith(
      new ConfigfsTsmQuoter(kernel).getQuote(reportData),
      'KMS_ERR_TDX_QUOTE_FAILURE',
      'quote failure: timed out waiting for configfs generation to advance',
    )
    assert.ok(kernel.sleeps.every((ms) => ms === GENERATION_POLL_MS))
    assert.equal(
      kernel.sleeps.reduce((a, b) => a + b, 0),
      5000,
    )
  })

  test('size limits: 1020 < size < 8192, one read of at most 8192 bytes', async () => {
    for (const [size, expected] of [
      [1020, 'quote failure: invalid quote size: 1020'],
      [1021, null],
      [8191, null],
      [8192, 'quote failure: invalid quote size: 8192'],
      [32768, 'quote failure: invalid quote size: 8192'],
      [0, 'quote failure: empty outblob'],
    ] as const) {
      const kernel = new FakeTdxKernel({ makeQuote: quoteOfSize(size) })
      const p = new ConfigfsTsmQuoter(kernel).getQuote(reportData)
      if (expected === null) assert.equal((await p).length, size)
      else await rejectsWith(p, 'KMS_ERR_TDX_QUOTE_FAILURE', expected)
    }
  })

  test('an unparsable generation', async () => {
    const kernel = new FakeTdxKernel({
      configfs: 'absent',
      env: { DCAP_TDX_QUOTE_CONFIGFS_PATH: '/x' },
    })
    kernel.writeFileSync('/x/provider', 'tdx_guest\n')
    kernel.writeFileSync('/x/inblob', '')
    kernel.writeFileSync('/x/generation', 'seven\n')
    await rejectsWith(
      new ConfigfsTsmQuoter(kernel).getQuote(reportData),
      'KMS_ERR_TDX_UNEXPECTED',
      'unexpected error: parse generation: invalid digit found in string',
    )
  })
})

describe('configfs-tsm report directory and provider', () => {
  test('a mounted configfs without com.intel.dcap: mkdir it, then quote', async () => {
    const kernel = new FakeTdxKernel({ configfs: 'mounted' })
    assert.equal(await kernel.isDirectory(DCAP_REPORT), false)
    const quote = await new ConfigfsTsmQuoter(kernel).getQuote(reportData)
    assert.equal(quote.length, 2000)
    assert.equal(await kernel.isDirectory(DCAP_REPORT), true)
  })

  test('the simulator provider tdx_guest_sim is accepted', async () => {
    const kernel = new FakeTdxKernel({ provider: 'tdx_guest_sim\n' })
    assert.equal(await new ConfigfsTsmQuoter(kernel).prepare(), CONFIGFS_DEFAULT)
  })

  test('an SEV provider: failed to prepare configfs, then already tried', async () => {
    const kernel = new FakeTdxKernel({ provider: 'sev_guest\n' })
    const quoter = new ConfigfsTsmQuoter(kernel)
    await rejectsWith(
      quoter.getQuote(reportData),
      'KMS_ERR_TDX_NOT_SUPPORTED',
      `not supported: failed to prepare configfs: ${CONFIGFS_DEFAULT}`,
    )
    await rejectsWith(
      quoter.getQuote(reportData),
      'KMS_ERR_TDX_NOT_SUPPORTED',
      'not supported: configfs already tried',
    )
    assert.deepEqual(kernel.inblobWrites, [])
  })

  test('no configfs at all', async () => {
    const kernel = new FakeTdxKernel({ configfs: 'absent' })
    const quoter = new ConfigfsTsmQuoter(kernel)
    await rejectsWith(
      quoter.prepare(),
      'KMS_ERR_TDX_NOT_SUPPORTED',
      'not supported: configfs base not found: /sys/kernel/config/tsm/report',
    )
    await rejectsWith(
      selectQuoteMethod(kernel, new ConfigfsTsmQuoter(kernel)),
      'KMS_ERR_TDX_NOT_SUPPORTED',
      'not supported: no quote method available (configfs not mounted, no vsock port configured)',
    )
  })

  test('a provider file that cannot be read', async () => {
    const kernel = new FakeTdxKernel()
    kernel.inject('read', `${DCAP_REPORT}/provider`, 'EIO')
    await rejectsWith(
      new ConfigfsTsmQuoter(kernel).prepare(),
      'KMS_ERR_TDX_UNEXPECTED',
      `unexpected error: read ${DCAP_REPORT}/provider: Input/output error (os error 5)`,
    )
  })
})

describe('DCAP_TDX_QUOTE_CONFIGFS_PATH', () => {
  test('a valid override is used instead of the default directory', async () => {
    const kernel = new FakeTdxKernel({ env: { DCAP_TDX_QUOTE_CONFIGFS_PATH: '/run/sim/report' } })
    kernel.addReportDir('/run/sim/report')
    await new ConfigfsTsmQuoter(kernel).getQuote(reportData)
    assert.equal(kernel.generation('/run/sim/report'), 1n)
    assert.equal(kernel.generation(DCAP_REPORT), 0n)
  })

  test('an invalid override is authoritative: no fallback to the working default', async () => {
    const cases: [string, string][] = [
      ['', 'not supported: empty path override from DCAP_TDX_QUOTE_CONFIGFS_PATH'],
      [
        'relative/report',
        'not supported: path override from DCAP_TDX_QUOTE_CONFIGFS_PATH must be absolute: relative/report',
      ],
      ['/missing', 'not supported: invalid configfs path from env: /missing'],
      ['/' + 'a'.repeat(239), `not supported: invalid configfs path from env: /${'a'.repeat(239)}`],
      ['/sev', 'not supported: invalid configfs path from env: /sev'],
    ]
    for (const [value, message] of cases) {
      const kernel = new FakeTdxKernel({ env: { DCAP_TDX_QUOTE_CONFIGFS_PATH: value } })
      kernel.addReportDir('/' + 'a'.repeat(239))
      kernel.addReportDir('/sev')
      kernel.provider = value === '/sev' ? 'sev_guest\n' : 'tdx_guest\n'
      await rejectsWith(
        new ConfigfsTsmQuoter(kernel).getQuote(reportData),
        'KMS_ERR_TDX_NOT_SUPPORTED',
        message,
      )
      assert.deepEqual(kernel.inblobWrites, [])
    }
  })

  test('over real files: the override, its provider check and the length rule', async () => {
    const dir = tempDir('dstack-kms-configfs-')
    after(() => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(join(dir, 'provider'), 'tdx_guest\n')
    assert.equal(
      await new ConfigfsTsmQuoter(
        new NodeTdxIo({ env: { DCAP_TDX_QUOTE_CONFIGFS_PATH: dir } }),
      ).prepare(),
      dir,
    )
    writeFileSync(join(dir, 'provider'), 'sev_guest\n')
    await rejectsWith(
      new ConfigfsTsmQuoter(
        new NodeTdxIo({ env: { DCAP_TDX_QUOTE_CONFIGFS_PATH: dir } }),
      ).prepare(),
      'KMS_ERR_TDX_NOT_SUPPORTED',
      `not supported: invalid configfs path from env: ${dir}`,
    )
    const file = join(dir, 'provider')
    await rejectsWith(
      new ConfigfsTsmQuoter(
        new NodeTdxIo({ env: { DCAP_TDX_QUOTE_CONFIGFS_PATH: file } }),
      ).prepare(),
      'KMS_ERR_TDX_NOT_SUPPORTED',
      `not supported: invalid configfs path from env: ${file}`,
    )
  })
})

describe('TDX availability (is_tdx_available) and the vsock port', () => {
  test('the device alone, a TDX provider alone, or neither', async () => {
    assert.equal(await isTdxAvailable(new FakeTdxKernel({ configfs: 'absent' })), true)
    assert.equal(await isTdxAvailable(new FakeTdxKernel({ device: false })), true)
    assert.equal(
      await isTdxAvailable(new FakeTdxKernel({ device: false, provider: 'sev_guest\n' })),
      false,
    )
    assert.equal(
      await isTdxAvailable(new FakeTdxKernel({ device: false, configfs: 'mounted' })),
      false,
    )
    const other = new FakeTdxKernel({ device: false, configfs: 'mounted' })
    other.addReportDir('/sys/kernel/config/tsm/report/mine')
    assert.equal(await isTdxAvailable(other), true)
  })

  test('a set but invalid override answers false without looking further', async () => {
    const kernel = new FakeTdxKernel({
      device: false,
      env: { DCAP_TDX_QUOTE_CONFIGFS_PATH: 'rel' },
    })
    assert.equal(await isTdxAvailable(kernel), false)
    kernel.env.DCAP_TDX_QUOTE_CONFIGFS_PATH = '/missing'
    assert.equal(await isTdxAvailable(kernel), false)
    kernel.env.DCAP_TDX_QUOTE_CONFIGFS_PATH = DCAP_REPORT
    assert.equal(await isTdxAvailable(kernel), true)
  })

  test('/etc/tdx-attest.conf: first port line outside comments', async () => {
    const kernel = new FakeTdxKernel({ configfs: 'absent' })
    assert.equal(await readVsockPort(kernel), 0)
    kernel.writeFileSync('/etc/tdx-attest.conf', '# port=1\nfoo=2\n  port =  4050 \nport=5\n')
    assert.equal(await readVsockPort(kernel), 4050)
    kernel.writeFileSync('/etc/tdx-attest.conf', 'port=x\nport = 7\n')
    assert.equal(await readVsockPort(kernel), 7)
    assert.deepEqual(await selectQuoteMethod(kernel, new ConfigfsTsmQuoter(kernel)), {
      kind: 'vsock',
      port: 7,
    })
  })
})

describe('TDREPORT through the device', () => {
  test('REPORTDATA at 128 and RTMRs at 720..864', async () => {
    const kernel = new FakeTdxKernel()
    await extendRtmr(kernel, 3, Buffer.alloc(48, 1))
    const report = await getTdReport(kernel, reportData)
    assert.deepEqual(report.subarray(128, 192), reportData)
    assert.deepEqual(tdReportRtmrs(report), kernel.rtmrs)
  })

  test('no device: device failure with the open error', async () => {
    await rejectsWith(
      getTdReport(new FakeTdxKernel({ device: false }), reportData),
      'KMS_ERR_TDX_DEVICE_FAILURE',
      'device failure: open /dev/tdx_guest: No such file or directory (os error 2)',
    )
  })
})

describe('RTMR extension', () => {
  const ab = Buffer.alloc(48, 0xab)
  const abVector =
    '73bbee246f69b6bf7824b9e7643701dad9ed70c94c9880d033c0ac87b5043d0dd70cad576882faf2f6679a22ededfea4'

  test('through sysfs: RTMR3 ← SHA-384(RTMR3 ‖ digest)', async () => {
    const kernel = new FakeTdxKernel()
    await extendRtmr(kernel, 3, ab)
    assert.equal(kernel.rtmrs[3]?.toString('hex'), abVector)
    assert.deepEqual(kernel.extends, [{ index: 3, digest: ab, via: 'sysfs' }])
    assert.equal((await readRtmrSysfs(kernel, 3))?.toString('hex'), abVector)
    const d2 = Buffer.alloc(48, 2)
    await extendRtmr(kernel, 3, d2)
    assert.deepEqual(kernel.rtmrs[3], sha384(Buffer.from(abVector, 'hex'), d2))
  })

  test('index checks: > 3 before any I/O, EINVAL from the driver for 0..1', async () => {
    const kernel = new FakeTdxKernel()
    await rejectsWith(
      extendRtmr(kernel, 4, ab),
      'KMS_ERR_TDX_INVALID_RTMR_INDEX',
      'invalid RTMR index: 4',
    )
    await rejectsWith(
      extendRtmr(kernel, 1, ab),
      'KMS_ERR_TDX_INVALID_RTMR_INDEX',
      'invalid RTMR index: 1',
    )
    assert.equal(kernel.extends.length, 0)
  })

  test('sysfs write errors', async () => {
    const file = `${MEASUREMENTS}/rtmr3:sha384`
    const kernel = new FakeTdxKernel()
    kernel.inject('write', file, 'EACCES', 'EPERM', 'EIO')
    await rejectsWith(
      extendRtmr(kernel, 3, ab),
      'KMS_ERR_TDX_EXTEND_FAILURE',
      'extend failure: permission denied for RTMR 3',
    )
    await rejectsWith(
      extendRtmr(kernel, 3, ab),
      'KMS_ERR_TDX_EXTEND_FAILURE',
      'extend failure: permission denied for RTMR 3',
    )
    await rejectsWith(
      extendRtmr(kernel, 3, ab),
      'KMS_ERR_TDX_EXTEND_FAILURE',
      `extend failure: write ${file}: Input/output error (os error 5)`,
    )
    kernel.inject('open', file, 'ENOENT')
    await rejectsWith(
      extendRtmr(kernel, 3, ab),
      'KMS_ERR_TDX_EXTEND_FAILURE',
      `extend failure: open ${file}: No such file or directory (os error 2)`,
    )
    assert.equal(kernel.extends.length, 0)
  })

  test('no sysfs measurements: the legacy ioctl on /dev/tdx_guest', async () => {
    const kernel = new FakeTdxKernel({ measurements: false, legacyExtendIoctl: true })
    await extendRtmr(kernel, 3, ab)
    assert.deepEqual(kernel.extends, [{ index: 3, digest: ab, via: 'ioctl' }])
    assert.equal(kernel.rtmrs[3]?.toString('hex'), abVector)
  })

  test('a mainline driver without tsm-mr answers ENOTTY', async () => {
    const kernel = new FakeTdxKernel({ measurements: false })
    await rejectsWith(
      extendRtmr(kernel, 3, ab),
      'KMS_ERR_TDX_EXTEND_FAILURE',
      'extend failure: ioctl: Inappropriate ioctl for device (os error 25)',
    )
  })

  test('neither sysfs nor the device: not supported', async () => {
    const kernel = new FakeTdxKernel({ measurements: false, device: false })
    await rejectsWith(
      extendRtmr(kernel, 3, ab),
      'KMS_ERR_TDX_NOT_SUPPORTED',
      'not supported: no extend_rtmr method available (no sysfs measurements, no /dev/tdx_guest)',
    )
  })

  test('DCAP_TDX_RTMR_SYSFS_PATH: used when valid, authoritative when not', async () => {
    const kernel = new FakeTdxKernel({ env: { DCAP_TDX_RTMR_SYSFS_PATH: '/sim/measurements' } })
    kernel.addMeasurements('/sim/measurements')
    await extendRtmr(kernel, 2, ab)
    assert.equal(kernel.extends.length, 1)

    for (const [value, message] of [
      [
        'rel/m',
        'not supported: path override from DCAP_TDX_RTMR_SYSFS_PATH must be absolute: rel/m',
      ],
      ['', 'not supported: empty path override from DCAP_TDX_RTMR_SYSFS_PATH'],
      ['/nope', 'not supported: invalid RTMR sysfs path from DCAP_TDX_RTMR_SYSFS_PATH: /nope'],
    ] as const) {
      const k = new FakeTdxKernel({ env: { DCAP_TDX_RTMR_SYSFS_PATH: value } })
      await rejectsWith(extendRtmr(k, 3, ab), 'KMS_ERR_TDX_NOT_SUPPORTED', message)
      assert.equal(k.extends.length, 0)
    }
  })

  test('over real files: the override directory receives exactly the 48 digest bytes', async () => {
    const dir = tempDir('dstack-kms-rtmr-')
    after(() => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(join(dir, 'rtmr3:sha384'), '')
    const io = new NodeTdxIo({ env: { DCAP_TDX_RTMR_SYSFS_PATH: dir } })
    await extendRtmr(io, 3, ab)
    assert.deepEqual(readFileSync(join(dir, 'rtmr3:sha384')), ab)
    await rejectsWith(
      extendRtmr(io, 2, ab),
      'KMS_ERR_TDX_EXTEND_FAILURE',
      `extend failure: open ${dir}/rtmr2:sha384: No such file or directory (os error 2)`,
    )
  })
})

describe('runtime event log', () => {
  const paths = runtimeLogPaths()

  test('a missing log is empty; appended lines read back; mode 0600', async () => {
    const kernel = new FakeTdxKernel()
    assert.deepEqual(await readRuntimeEvents(kernel, paths), [])
    await appendRuntimeEvent(kernel, paths, {
      event: 'app-id',
      payload: Buffer.from('deadbeef', 'hex'),
    })
    await appendRuntimeEvent(kernel, paths, { event: 'x', payload: Buffer.from([1]), version: 2 })
    assert.equal(
      kernel.fileContent('/run/log/dstack/runtime_events.log')?.toString(),
      '{"event":"app-id","payload":"3q2+7w=="}\n{"event":"x","payload":"AQ==","version":2}\n',
    )
    assert.equal(kernel.fileMode('/run/log/dstack/runtime_events.log'), 0o600)
    assert.deepEqual(await readRuntimeEvents(kernel, paths), [
      { event: 'app-id', payload: Buffer.from('deadbeef', 'hex') },
      { event: 'x', payload: Buffer.from([1]), version: 2 },
    ])
  })

  test('blank lines are skipped; an undecodable line fails the whole read', async () => {
    const kernel = new FakeTdxKernel()
    kernel.writeFileSync(paths.log, '\n{"event":"a","payload":"AQID"}\n\n')
    assert.deepEqual(await readRuntimeEvents(kernel, paths), [
      { event: 'a', payload: Buffer.from([1, 2, 3]) },
    ])
    kernel.writeFileSync(paths.log, '{"event":"a","payload":"AQID"}\nnot json\n')
    await assert.rejects(readRuntimeEvents(kernel, paths), {
      code: 'KMS_ERR_ATTESTATION',
      message: /^Failed to decode user event log: /,
    })
  })

  test('emit: version from runtime_event_version, extend RTMR3 first, then append', async () => {
    const kernel = new FakeTdxKernel()
    const extend = (d: Buffer) => extendRtmr(kernel, 3, d)
    await assert.rejects(emitRuntimeEvent(kernel, paths, 'app-id', Buffer.from([1]), extend), {
      code: 'KMS_ERR_TDX',
      message:
        'runtime event version is not configured; complete dstack system setup before emitting events: No such file or directory (os error 2)',
    })
    kernel.writeFileSync(paths.version, '3\n')
    await assert.rejects(emitRuntimeEvent(kernel, paths, 'app-id', Buffer.from([1]), extend), {
      message: 'invalid runtime event version: 3',
    })
    assert.equal(kernel.extends.length, 0)

    kernel.writeFileSync(paths.version, '1\n')
    await emitRuntimeEvent(kernel, paths, 'app-id', Buffer.from([1, 2]), extend)
    kernel.writeFileSync(paths.version, '2')
    await emitRuntimeEvent(kernel, paths, 'compose-hash', Buffer.from([0xab, 0xcd]), extend)

    const events = await readRuntimeEvents(kernel, paths)
    assert.deepEqual(events, [
      { event: 'app-id', payload: Buffer.from([1, 2]) },
      { event: 'compose-hash', payload: Buffer.from([0xab, 0xcd]), version: 2 },
    ])
    // V1: sha384(le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload); V2: sha384 of the JCS form
    const v1 = sha384(Buffer.from([1, 0, 0, 8]), Buffer.from(':app-id:'), Buffer.from([1, 2]))
    const v2 = sha384(Buffer.from('{"name":"compose-hash","payload":"abcd","type":134217729}'))
    assert.deepEqual(
      kernel.extends.map((e) => e.digest),
      [v1, v2],
    )
    assert.deepEqual(kernel.rtmrs[3], sha384(sha384(Buffer.alloc(48), v1), v2))
    assert.ok(kernel.fileContent(paths.lock) !== undefined, 'the lock file is created')
  })

  test('a failed extension leaves no line in the log', async () => {
    const kernel = new FakeTdxKernel({ measurements: false, device: false })
    kernel.writeFileSync(paths.version, '1')
    await assert.rejects(
      emitRuntimeEvent(kernel, paths, 'app-id', Buffer.from([1]), (d) => extendRtmr(kernel, 3, d)),
      {
        code: 'KMS_ERR_TDX',
        message:
          'Failed to extend TDX RTMR: not supported: no extend_rtmr method available (no sysfs measurements, no /dev/tdx_guest)',
      },
    )
    assert.equal(kernel.fileContent(paths.log), undefined)
  })

  test('a failed append after the extension reports the emit context', async () => {
    const kernel = new FakeTdxKernel()
    kernel.writeFileSync(paths.version, '1')
    kernel.inject('open', paths.log, 'EROFS')
    await assert.rejects(
      emitRuntimeEvent(kernel, paths, 'a', Buffer.alloc(0), (d) => extendRtmr(kernel, 3, d)),
      {
        message:
          'Failed to emit runtime event: failed to open event log file: Read-only file system (os error 30)',
      },
    )
    assert.equal(kernel.extends.length, 1)
  })

  test('concurrent emitters are serialised by the lock: log order = extension order', async () => {
    const kernel = new FakeTdxKernel()
    kernel.writeFileSync(paths.version, '1')
    const names = Array.from({ length: 12 }, (_, i) => `e${i}`)
    await Promise.all(
      names.map((n) =>
        emitRuntimeEvent(kernel, paths, n, Buffer.from(n), (d) => extendRtmr(kernel, 3, d)),
      ),
    )
    const events = await readRuntimeEvents(kernel, paths)
    assert.deepEqual(
      events.map((e) => runtimeEventDigest(e)),
      kernel.extends.map((e) => e.digest),
    )
    assert.equal(events.length, 12)
  })

  test('over real files with real flock: directory created, mode 0600, lines intact', async () => {
    const dir = join(tempDir('dstack-kms-runtime-log-'), 'run', 'log', 'dstack')
    after(() => rmSync(join(dir, '..', '..', '..'), { recursive: true, force: true }))
    const real = runtimeLogPaths(dir)
    const io = new NodeTdxIo({ env: {} })
    mkdirSync(dir, { recursive: true })
    writeFileSync(real.version, '1\n')
    const extended: Buffer[] = []
    const extend = async (d: Buffer) => {
      extended.push(d)
    }
    await Promise.all(
      ['a', 'b', 'c', 'd'].map((n) =>
        emitRuntimeEvent(new NodeTdxIo({ env: {} }), real, n, Buffer.from(n), extend),
      ),
    )
    const events = await readRuntimeEvents(io, real)
    assert.equal(events.length, 4)
    assert.deepEqual(
      events.map((e) => runtimeEventDigest(e)),
      extended,
    )
    assert.equal(statSync(real.log).mode & 0o777, 0o600)
    assert.equal(statSync(real.lock).isFile(), true)
    assert.match(
      readFileSync(real.log, 'utf8'),
      /^(\{"event":"[abcd]","payload":"[A-Za-z0-9+/=]+"\}\n){4}$/,
    )
  })
})

describe('CCEL', () => {
  const ccel = readVectorFile('ccel.bin')

  test('read from DSTACK_CCEL_FILE through the fake and decoded to TDX events', async () => {
    const kernel = new FakeTdxKernel({ env: { DSTACK_CCEL_FILE: '/sim/ccel' } })
    kernel.writeFileSync('/sim/ccel', ccel)
    const events = await readCcelEvents(kernel)
    assert.equal(events.length, 18)
    assert.equal(events.filter((e) => e.imr === 0).length, 13)
    assert.equal(events.filter((e) => e.imr === 1).length, 5)
    assert.deepEqual(
      events.filter((e) => e.event !== '').map((e) => e.event),
      ['acpi-loader', 'acpi-rsdp', 'acpi-tables'],
    )
    assert.equal(
      events[0]?.digest.toString('hex'),
      '2b630fa1d8fa9b6e8c6507d2256803ed227888f7d1f62ca5cfbddfe495338b1c6a0fc339ea64700f0835c0897a662789',
    )
    // replay with the fake's own SHA-384, independent of the codec's replay
    let rtmr0: Buffer = Buffer.alloc(48)
    for (const e of events.filter((x) => x.imr === 0)) rtmr0 = sha384(rtmr0, e.digest)
    assert.equal(
      rtmr0.toString('hex'),
      '274c2344116db7c663470693b5ba62b8621eac28cb41d2f816ddf188f9f423f900a1c44d32386fd3c993dc814e62af9d',
    )
  })

  test('the ACPI data path by default; errors name the path', async () => {
    const kernel = new FakeTdxKernel()
    assert.equal(ccelPath(kernel), CCEL_DATA)
    await assert.rejects(readCcelEvents(kernel), {
      code: 'KMS_ERR_TDX',
      message: `failed to read CCEL from ${CCEL_DATA}: No such file or directory (os error 2)`,
    })
    kernel.writeFileSync(CCEL_DATA, Buffer.alloc(16, 0xff))
    await assert.rejects(readCcelEvents(kernel), {
      code: 'KMS_ERR_TDX',
      message: /^failed to decode CCEL: /,
    })
    kernel.writeFileSync(CCEL_DATA, ccel)
    assert.equal((await readCcelEvents(kernel)).length, 18)
  })

  test('DSTACK_CCEL_FILE must be absolute and non-empty (no fallback)', async () => {
    const kernel = new FakeTdxKernel({ ccel })
    kernel.env.DSTACK_CCEL_FILE = ''
    await assert.rejects(readCcelEvents(kernel), {
      message: 'empty path override from DSTACK_CCEL_FILE',
    })
    kernel.env.DSTACK_CCEL_FILE = 'relative/ccel.bin'
    await assert.rejects(readCcelEvents(kernel), {
      message: 'path override from DSTACK_CCEL_FILE must be absolute: relative/ccel.bin',
    })
  })

  test('over real files: DSTACK_CCEL_FILE = the shared ccel.bin', async () => {
    const io = new NodeTdxIo({ env: { DSTACK_CCEL_FILE: join(VECTORS_DIR, 'ccel.bin') } })
    const events = await readCcelEvents(io)
    assert.equal(events.length, 18)
    assert.ok(isTdxError(new TdxError('KMS_ERR_TDX_BUSY'), 'KMS_ERR_TDX_BUSY'))
  })
})

describe('fake kernel self-check', () => {
  test('TDX_GUEST is the device the protocols use', async () => {
    const kernel = new FakeTdxKernel()
    assert.equal(await kernel.exists(TDX_GUEST), true)
  })
})

describe('QGS over vsock', () => {
  function qgsReply(opts: {
    type?: number
    error?: number
    selectedId?: Buffer
    quote?: Buffer
    declaredQuoteSize?: number
    declaredLength?: number
  }): Buffer {
    const id = opts.selectedId ?? Buffer.alloc(0)
    const quote = opts.quote ?? Buffer.alloc(2000, 0x33)
    const body = Buffer.alloc(24 + id.length + quote.length)
    body.writeUInt16LE(1, 0)
    body.writeUInt32LE(opts.type ?? 1, 4)
    body.writeUInt32LE(body.length, 8)
    body.writeUInt32LE(opts.error ?? 0, 12)
    body.writeUInt32LE(id.length, 16)
    body.writeUInt32LE(opts.declaredQuoteSize ?? quote.length, 20)
    id.copy(body, 24)
    quote.copy(body, 24 + id.length)
    const frame = Buffer.alloc(4)
    frame.writeUInt32BE(opts.declaredLength ?? body.length)
    return Buffer.concat([frame, body])
  }

  function vsockGuest(reply: Buffer | undefined): FakeTdxKernel {
    const kernel = new FakeTdxKernel({ configfs: 'absent' })
    kernel.writeFileSync('/etc/tdx-attest.conf', 'port=4050\n')
    if (reply !== undefined) kernel.qgs = () => reply
    return kernel
  }

  test('the request: BE length 1048, LE header, the TDREPORT for our REPORTDATA', async () => {
    const quote = Buffer.alloc(3000, 0x44)
    const kernel = vsockGuest(qgsReply({ quote, selectedId: Buffer.alloc(16, 0xee) }))
    assert.deepEqual(await new TdxQuoter(kernel).getQuote(reportData), quote)
    const sent = kernel.vsockRequests[0]
    assert.ok(sent !== undefined)
    assert.equal(sent.cid, 2)
    assert.equal(sent.port, 4050)
    const r = sent.request
    assert.equal(r.length, 4 + 1048)
    assert.equal(r.readUInt32BE(0), 1048)
    assert.deepEqual(
      [r.readUInt16LE(4), r.readUInt16LE(6), r.readUInt32LE(8), r.readUInt32LE(12)],
      [1, 0, 0, 1048],
    )
    assert.deepEqual([r.readUInt32LE(16), r.readUInt32LE(20), r.readUInt32LE(24)], [0, 1024, 0])
    assert.deepEqual(r.subarray(28), await getTdReport(kernel, reportData))
  })

  test('reply checks, with upstream texts', async () => {
    const cases: [Buffer, string][] = [
      [qgsReply({ declaredLength: 16385 }), 'quote failure: response too large: 16385'],
      [
        Buffer.from([0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]),
        'quote failure: response too short: 8 bytes',
      ],
      [qgsReply({ type: 0 }), 'quote failure: unexpected message type: 0'],
      [qgsReply({ error: 0x12001 }), 'quote failure: QGS error code: 0x12001'],
      [
        qgsReply({ declaredQuoteSize: 5000 }),
        'quote failure: response truncated: got 2024 bytes, expected 5024',
      ],
      [qgsReply({ quote: Buffer.alloc(1019) }), 'quote failure: quote too short: 1019 bytes'],
    ]
    for (const [reply, message] of cases) {
      await rejectsWith(
        new TdxQuoter(vsockGuest(reply)).getQuote(reportData),
        'KMS_ERR_TDX_QUOTE_FAILURE',
        message,
      )
    }
    assert.equal(
      (
        await new TdxQuoter(vsockGuest(qgsReply({ quote: Buffer.alloc(1020) }))).getQuote(
          reportData,
        )
      ).length,
      1020,
    )
  })

  test('socket failures are vsock failures', async () => {
    await rejectsWith(
      new TdxQuoter(vsockGuest(undefined)).getQuote(reportData),
      'KMS_ERR_TDX_VSOCK_FAILURE',
      'vsock failure: Connection reset by peer (os error 104)',
    )
    const short = qgsReply({}).subarray(0, 100)
    await rejectsWith(
      new TdxQuoter(vsockGuest(short)).getQuote(reportData),
      'KMS_ERR_TDX_VSOCK_FAILURE',
      'vsock failure: failed to fill whole buffer',
    )
  })

  test('the TDREPORT needs /dev/tdx_guest', async () => {
    const kernel = new FakeTdxKernel({ configfs: 'absent', device: false })
    kernel.writeFileSync('/etc/tdx-attest.conf', 'port=4050\n')
    await rejectsWith(
      new TdxQuoter(kernel).getQuote(reportData),
      'KMS_ERR_TDX_DEVICE_FAILURE',
      'device failure: open /dev/tdx_guest: No such file or directory (os error 2)',
    )
    assert.equal(kernel.vsockRequests.length, 0)
  })

  test('configfs wins whenever it is present, even with a port configured', async () => {
    const kernel = new FakeTdxKernel()
    kernel.writeFileSync('/etc/tdx-attest.conf', 'port=4050\n')
    assert.equal((await new TdxQuoter(kernel).getQuote(reportData)).length, 2000)
    assert.equal(kernel.vsockRequests.length, 0)
    assert.equal(kernel.generation(), 1n)
  })
})
