// The addon's /dev/tdx_guest ioctls against the real kernel of a machine without TDX: they exist,
// validate their arguments synchronously, and fail with Node-shaped errno errors (ENOENT from
// open, ENOTTY from an ioctl the file does not understand) instead of crashing.
import assert from 'node:assert/strict'
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { getSystemErrorName } from 'node:util'
import { isNativeErrnoError, type NativeErrnoError } from '../src/native/binding.js'
import {
  extendRtmr,
  getTdReport,
  loadNativeTdx,
  TDX_GUEST_DEVICE,
  vsockRoundTrip,
  type NativeTdx,
} from '../src/native/tdx.js'
import { TdxError } from '../src/tee/tdx/errors.js'
import { NodeTdxIo } from '../src/tee/tdx/io.js'
import { getTdReport as getTdReportViaIo } from '../src/tee/tdx/report.js'
import { extendRtmr as extendRtmrViaIo } from '../src/tee/tdx/rtmr.js'
import { tempDir } from './helpers/temp-dir.js'

const dir = tempDir('dstack-kms-tdx-native-')
after(() => rmSync(dir, { recursive: true, force: true }))
const regularFile = join(dir, 'not-a-device')
writeFileSync(regularFile, 'plain file')
const missing = join(dir, 'missing', 'tdx_guest')

async function rejection(p: Promise<unknown>): Promise<NativeErrnoError> {
  try {
    await p
  } catch (err) {
    assert.ok(isNativeErrnoError(err), `not an errno error: ${String(err)}`)
    return err
  }
  assert.fail('expected a rejection')
}

function assertErrno(
  err: NativeErrnoError,
  code: string,
  syscall: string,
  path: string,
  text: string,
): void {
  assert.equal(err.code, code)
  assert.ok(err.errno < 0)
  assert.equal(getSystemErrorName(err.errno), code)
  assert.equal(err.syscall, syscall)
  assert.equal(err.path, path)
  assert.equal(err.message, `${code}: ${text}, ${syscall} '${path}'`)
}

const native: NativeTdx = loadNativeTdx()
const reportData = Buffer.alloc(64, 0xab)
const digest = Buffer.alloc(48, 0xcd)

describe('addon exports', () => {
  test('tdxGetReport0 and tdxExtendRtmr are functions returning promises', async () => {
    assert.equal(typeof native.tdxGetReport0, 'function')
    assert.equal(typeof native.tdxExtendRtmr, 'function')
    const p = native.tdxGetReport0(missing, reportData)
    assert.ok(p instanceof Promise)
    await assert.rejects(p)
  })
})

describe('getTdReport (TDX_CMD_GET_REPORT0)', () => {
  test('a missing device: ENOENT from open, with the path', async () => {
    const err = await rejection(getTdReport(reportData, { devicePath: missing }))
    assertErrno(err, 'ENOENT', 'open', missing, 'no such file or directory')
    assert.equal(err.errno, -2)
  })

  test('a file that is not the TDX device: ENOTTY from ioctl', async () => {
    assertErrno(
      await rejection(getTdReport(reportData, { devicePath: '/dev/null' })),
      'ENOTTY',
      'ioctl',
      '/dev/null',
      'inappropriate ioctl for device',
    )
    assertErrno(
      await rejection(getTdReport(reportData, { devicePath: regularFile })),
      'ENOTTY',
      'ioctl',
      regularFile,
      'inappropriate ioctl for device',
    )
  })

  test('a directory cannot be opened read-write: EISDIR', async () => {
    assertErrno(
      await rejection(getTdReport(reportData, { devicePath: dir })),
      'EISDIR',
      'open',
      dir,
      'illegal operation on a directory',
    )
  })

  test('the default device of this machine', async () => {
    if (existsSync(TDX_GUEST_DEVICE)) {
      const report = await getTdReport(reportData)
      assert.equal(report.length, 1024)
      assert.deepEqual(report.subarray(128, 192), reportData)
    } else {
      const err = await rejection(getTdReport(reportData))
      assertErrno(err, 'ENOENT', 'open', TDX_GUEST_DEVICE, 'no such file or directory')
    }
  })

  test('many concurrent calls all settle with their own errors', async () => {
    const paths = Array.from({ length: 32 }, (_, i) => (i % 2 === 0 ? missing : '/dev/null'))
    const results = await Promise.allSettled(
      paths.map((p) => getTdReport(reportData, { devicePath: p })),
    )
    results.forEach((r, i) => {
      assert.equal(r.status, 'rejected')
      const reason: unknown = r.status === 'rejected' ? r.reason : undefined
      assert.ok(isNativeErrnoError(reason))
      assert.equal(reason.code, i % 2 === 0 ? 'ENOENT' : 'ENOTTY')
    })
  })

  test('argument errors throw synchronously, in TypeScript and in the addon', () => {
    assert.throws(() => getTdReport(Buffer.alloc(63), { devicePath: missing }), {
      name: 'RangeError',
      message: 'reportData must be exactly 64 bytes',
    })
    assert.throws(() => native.tdxGetReport0(missing, Buffer.alloc(65)), {
      name: 'RangeError',
      message: 'reportData must be exactly 64 bytes',
    })
    assert.throws(() => native.tdxGetReport0(missing, 'x'.repeat(64) as unknown as Uint8Array), {
      name: 'TypeError',
      message: 'reportData must be a Buffer or Uint8Array',
    })
    assert.throws(() => native.tdxGetReport0(42 as unknown as string, reportData), {
      name: 'TypeError',
      message: 'devicePath must be a string',
    })
    assert.throws(() => native.tdxGetReport0('', reportData), {
      name: 'TypeError',
      message: 'devicePath must be non-empty and contain no NUL byte',
    })
    assert.throws(
      () => (native.tdxGetReport0 as unknown as (p: string) => Promise<Buffer>)(missing),
      { name: 'TypeError', message: 'tdxGetReport0(devicePath, reportData) takes 2 arguments' },
    )
  })
})

describe('extendRtmr (legacy TDX_CMD_EXTEND_RTMR)', () => {
  test('a missing device: ENOENT from open', async () => {
    assertErrno(
      await rejection(extendRtmr(3, digest, { devicePath: missing })),
      'ENOENT',
      'open',
      missing,
      'no such file or directory',
    )
  })

  test('mainline drivers and other files answer ENOTTY', async () => {
    assertErrno(
      await rejection(extendRtmr(3, digest, { devicePath: '/dev/null' })),
      'ENOTTY',
      'ioctl',
      '/dev/null',
      'inappropriate ioctl for device',
    )
  })

  test('argument errors throw synchronously', () => {
    assert.throws(() => extendRtmr(3, Buffer.alloc(47), { devicePath: missing }), {
      name: 'RangeError',
      message: 'digest must be exactly 48 bytes',
    })
    assert.throws(() => extendRtmr(1.5, digest, { devicePath: missing }), RangeError)
    assert.throws(() => native.tdxExtendRtmr(missing, 256, digest), {
      name: 'RangeError',
      message: 'index must be an integer from 0 to 255',
    })
    assert.throws(() => native.tdxExtendRtmr(missing, -1, digest), RangeError)
    assert.throws(() => native.tdxExtendRtmr(missing, '3' as unknown as number, digest), {
      name: 'TypeError',
      message: 'index must be a number',
    })
    assert.throws(() => native.tdxExtendRtmr(missing, 3, Buffer.alloc(49)), {
      name: 'RangeError',
      message: 'digest must be exactly 48 bytes',
    })
  })
})

describe('typed TdxErrors over the real addon (NodeTdxIo)', () => {
  const io = new NodeTdxIo({ env: {} })

  test('getTdReport: upstream texts for a missing device', async () => {
    if (existsSync(TDX_GUEST_DEVICE)) {
      assert.equal((await getTdReportViaIo(io, reportData)).length, 1024)
      return
    }
    await assert.rejects(getTdReportViaIo(io, reportData), (err: unknown) => {
      assert.ok(err instanceof TdxError)
      assert.equal(err.code, 'KMS_ERR_TDX_DEVICE_FAILURE')
      assert.equal(
        err.message,
        'device failure: open /dev/tdx_guest: No such file or directory (os error 2)',
      )
      assert.ok(isNativeErrnoError(err.cause))
      assert.equal(err.cause.code, 'ENOENT')
      return true
    })
  })

  test('extend_rtmr without sysfs measurements or device: not supported', async () => {
    if (existsSync(TDX_GUEST_DEVICE) || existsSync('/sys/devices/virtual/misc/tdx_guest')) return
    await assert.rejects(extendRtmrViaIo(io, 3, digest), {
      name: 'TdxError',
      code: 'KMS_ERR_TDX_NOT_SUPPORTED',
      message:
        'not supported: no extend_rtmr method available (no sysfs measurements, no /dev/tdx_guest)',
    })
  })
})

describe('vsockRoundTrip (QGS transport)', () => {
  test('fails with an errno error from socket or connect, never a crash', async () => {
    // port 1 on the host: nothing listens there (or AF_VSOCK is missing altogether)
    const err = await rejection(
      vsockRoundTrip(1, Buffer.from([0, 0, 0, 0]), { maxResponse: 16, timeoutMs: 2000 }),
    )
    assert.ok(['socket', 'connect'].includes(err.syscall), err.message)
    assert.equal(getSystemErrorName(err.errno), err.code)
    assert.equal(err.message.startsWith(`${err.code}: `), true)
    assert.equal(err.path, undefined)
  })

  test('argument errors throw synchronously', () => {
    assert.throws(() => vsockRoundTrip(-1, Buffer.alloc(1), { maxResponse: 1 }), RangeError)
    assert.throws(() => vsockRoundTrip(1, Buffer.alloc(1), { maxResponse: 1.5 }), RangeError)
    assert.throws(() => native.vsockRoundTrip(2, 1, 'x' as unknown as Uint8Array, 1, 0), {
      name: 'TypeError',
      message: 'request must be a Buffer or Uint8Array',
    })
    assert.throws(() => native.vsockRoundTrip(2, 2 ** 32, Buffer.alloc(1), 1, 0), {
      name: 'RangeError',
      message: 'port must be a 32-bit unsigned integer',
    })
  })
})
