// RTMR extension: the tsm-mr sysfs attribute of Linux ≥ 6.16 (plain file I/O),
// else the legacy out-of-tree ioctl on /dev/tdx_guest, else not supported. Never a silent skip:
// an event that is logged but not measured would make the log lie.
import { TDX_GUEST_DEVICE } from '../../native/tdx.js'
import { absoluteOverride, MAX_OVERRIDE_PATH_LENGTH } from './configfs-tsm.js'
import { errnoCode } from '../../fs/errno.js'
import { ioErrorText, TdxError } from './errors.js'
import { joinPath, writeAll, type TdxFile, type TdxIo } from './io.js'

export const RTMR_SYSFS_BASE = '/sys/devices/virtual/misc/tdx_guest/measurements'
export const RTMR_SYSFS_PATH_ENV = 'DCAP_TDX_RTMR_SYSFS_PATH'
export const RTMR_DIGEST_SIZE = 48

/** The measurements directory, or null when there is none; an invalid override is an error. */
export async function rtmrSysfsBase(io: TdxIo): Promise<string | null> {
  const override = io.env[RTMR_SYSFS_PATH_ENV]
  if (override !== undefined) {
    const path = absoluteOverride(RTMR_SYSFS_PATH_ENV, override)
    if (path.length < MAX_OVERRIDE_PATH_LENGTH && (await io.isDirectory(path))) return path
    throw TdxError.notSupported(`invalid RTMR sysfs path from ${RTMR_SYSFS_PATH_ENV}: ${path}`)
  }
  return (await io.isDirectory(RTMR_SYSFS_BASE)) ? RTMR_SYSFS_BASE : null
}

export function rtmrSysfsFile(base: string, index: number): string {
  return joinPath(base, `rtmr${index}:sha384`)
}

/** `RTMR[index] ← SHA-384(RTMR[index] ‖ digest)`. dstack extends RTMR3 only. */
export async function extendRtmr(io: TdxIo, index: number, digest: Uint8Array): Promise<void> {
  if (!Number.isInteger(index) || index < 0 || index > 3) throw TdxError.invalidRtmrIndex(index)
  if (digest.length !== RTMR_DIGEST_SIZE) throw new TdxError('KMS_ERR_TDX_INVALID_PARAMETER')

  const base = await rtmrSysfsBase(io)
  if (base !== null) return extendViaSysfs(io, base, index, digest)
  if (await io.exists(TDX_GUEST_DEVICE)) return extendViaIoctl(io, index, digest)
  throw TdxError.notSupported(
    'no extend_rtmr method available (no sysfs measurements, no /dev/tdx_guest)',
  )
}

async function extendViaSysfs(
  io: TdxIo,
  base: string,
  index: number,
  digest: Uint8Array,
): Promise<void> {
  const path = rtmrSysfsFile(base, index)
  let file: TdxFile
  try {
    file = await io.open(path, 'write')
  } catch (err) {
    throw TdxError.extendFailure(`open ${path}: ${ioErrorText(err)}`, err)
  }
  try {
    await writeAll(file, digest)
  } catch (err) {
    const code = errnoCode(err)
    // The driver answers EINVAL for a register it does not let guests extend.
    if (code === 'EINVAL') throw TdxError.invalidRtmrIndex(index, err)
    if (code === 'EPERM' || code === 'EACCES') {
      throw TdxError.extendFailure(`permission denied for RTMR ${index}`, err)
    }
    throw TdxError.extendFailure(`write ${path}: ${ioErrorText(err)}`, err)
  } finally {
    await file.close().catch(() => undefined)
  }
}

async function extendViaIoctl(io: TdxIo, index: number, digest: Uint8Array): Promise<void> {
  try {
    await io.extendRtmrIoctl(TDX_GUEST_DEVICE, index, digest)
  } catch (err) {
    if (isOpenFailure(err)) {
      throw TdxError.extendFailure(`open ${TDX_GUEST_DEVICE}: ${ioErrorText(err)}`, err)
    }
    if (errnoCode(err) === 'EINVAL') throw TdxError.invalidRtmrIndex(index, err)
    throw TdxError.extendFailure(`ioctl: ${ioErrorText(err)}`, err)
  }
}

/** Reads the current value of an RTMR from sysfs (48 bytes), or null without sysfs. */
export async function readRtmrSysfs(io: TdxIo, index: number): Promise<Buffer | null> {
  if (!Number.isInteger(index) || index < 0 || index > 3) throw TdxError.invalidRtmrIndex(index)
  const base = await rtmrSysfsBase(io)
  if (base === null) return null
  const path = rtmrSysfsFile(base, index)
  try {
    return await io.readFile(path)
  } catch (err) {
    throw TdxError.unexpected(`read ${path}: ${ioErrorText(err)}`, err)
  }
}

export function isOpenFailure(err: unknown): boolean {
  return typeof err === 'object' && err !== null && 'syscall' in err && err.syscall === 'open'
}
