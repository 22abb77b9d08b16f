// The TDX "lite" scheme (upstream `verifier` `verify_os_image_hash_for_dstack_tdx_lite` and
// `dstack-mr` `tdx_measurements_from_measurement_document`): no image download and no QEMU. The
// guest ships `sha256sum.txt` + `measurement.tdx.cbor` in its vm_config; the three ACPI digests
// come from the (quote-bound) event log, so ACPI table *contents* are not checked — see
// docs/design.md#os-image-verification for why that is accepted.
import { KmsError, withContext } from '../errors.js'
import { TDX_ACPI_DATA_EVENT_NAMES, isAcpiDataEvent } from '../attestation/event-log.js'
import { RTMR_LENGTH, replayRtmr } from '../attestation/runtime-events.js'
import { BoundedCache } from '../util/bounded-cache.js'
import type { TdxEvent } from '../attestation/types.js'
import { TDX_MEASUREMENT_FILENAME, verifyMeasurementMaterial } from './measurement-document.js'
import { HIGH_MEMORY_MIN, tdHobDigest } from './td-hob.js'
import { type TdxOsImageMeasurement, decodeTdxMeasurement } from './tdx-measurement.js'
import {
  type AcpiDigests,
  MR_LENGTH,
  type TdxRegisters,
  qemuOptions,
  rtmr0Log,
  rtmr1Log,
  rtmr2Log,
} from './tdx-registers.js'
import type { VmConfig } from './vm-config.js'

/** QEMU patches the kernel's initrd address from the RAM size; at exactly 2 GiB and from
 * 0xB0000000 up the patched bytes are the same, which is what the document's kernel hash is. */
export const LITE_MEMORY_2G = 0x80000000n

/** Everything the lite registers need except the ACPI digests: a function of the vm_config
 * alone, hence cacheable under its config hash. */
export interface LiteImageMeasurements {
  mrtd: Buffer
  tdHobDigest: Buffer
  rtmr1: Buffer
  rtmr2: Buffer
}

function attErr(message: string): KmsError {
  return new KmsError('KMS_ERR_ATTESTATION', message)
}

function inContext<T>(context: string, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw withContext(context, err, 'KMS_ERR_ATTESTATION')
  }
}

/** Upstream `tdx_acpi_hashes_from_event_log`: exactly three RTMR0 `ACPI DATA` events, named
 * once each by the guest. Older guests leave them unnamed and are refused. */
export function acpiDigestsFromEventLog(events: readonly TdxEvent[]): AcpiDigests {
  const rtmr0 = events.filter((e) => e.imr === 0)
  const acpi = rtmr0.filter(isAcpiDataEvent)
  if (acpi.length !== 3) {
    throw attErr(
      `TDX lite attestation requires exactly 3 RTMR0 ACPI DATA events; found ${acpi.length} candidates and ${rtmr0.length} RTMR0 events`,
    )
  }
  const digestFor = (name: string): Buffer => {
    const matches = acpi.filter((e) => e.event === name)
    if (matches.length !== 1) {
      throw attErr(
        `TDX lite attestation requires exactly one RTMR0 ACPI DATA event named ${name}; found ${matches.length}`,
      )
    }
    const digest = matches[0]?.digest ?? Buffer.alloc(0)
    if (digest.length !== MR_LENGTH) {
      throw attErr(
        `TDX RTMR0 ACPI DATA event ${name} has invalid digest length ${digest.length}, expected 48`,
      )
    }
    return Buffer.from(digest)
  }
  const [loader, rsdp, tables] = TDX_ACPI_DATA_EVENT_NAMES
  return { loader: digestFor(loader), rsdp: digestFor(rsdp), tables: digestFor(tables) }
}

function decodeDocument(vm: VmConfig): TdxOsImageMeasurement {
  const doc = vm.tdxMeasurement
  if (doc === null) throw attErr('tdx lite attestation requires vm_config.tdx_measurement')
  inContext('tdx lite measurement material does not match os_image_hash', () =>
    verifyMeasurementMaterial(
      vm.osImageHash,
      doc.checksumFile,
      doc.measurement,
      TDX_MEASUREMENT_FILENAME,
    ),
  )
  const m = inContext('failed to decode vm_config.tdx_measurement CBOR', () =>
    decodeTdxMeasurement(doc.measurement),
  )
  if (vm.ovmfVariant !== null && vm.ovmfVariant !== m.tdvf.ovmfVariant) {
    throw attErr(
      `tdx measurement ovmf_variant mismatch: vm_config=${vm.ovmfVariant}, document=${m.tdvf.ovmfVariant}`,
    )
  }
  return m
}

function sized(value: Buffer, field: string): Buffer {
  if (value.length !== MR_LENGTH) {
    throw attErr(`${field} has invalid length ${value.length}, expected ${MR_LENGTH}`)
  }
  return value
}

function imageMeasurements(vm: VmConfig, m: TdxOsImageMeasurement): LiteImageMeasurements {
  return inContext('Failed to compute TDX expected measurements without image download', () => {
    if (!(vm.memorySize === LITE_MEMORY_2G || vm.memorySize >= HIGH_MEMORY_MIN)) {
      throw attErr(
        `TDX lite attestation without image download requires memory_size == 2147483648 bytes (2048 MiB) or >= 2952790016 bytes (2816 MiB); got ${vm.memorySize} bytes`,
      )
    }
    const opts = inContext('failed to resolve QEMU measurement options', () => qemuOptions(vm))
    const mrtd = sized(
      opts.twoPassAddPages ? m.tdvf.mrtd.twoPass : m.tdvf.mrtd.singlePass,
      'tdx.measurement.tdvf.mrtd',
    )
    const hob = inContext('failed to measure TD HOB from witness', () =>
      tdHobDigest(m.tdvf.tdHobWitness, vm.memorySize),
    )
    const kernel = sized(m.image.kernelAuthenticode, 'tdx.measurement.image.kernel_authenticode')
    const initrd = sized(m.image.initrdSha384, 'tdx.measurement.image.initrd_sha384')
    const cmdline = sized(m.image.cmdlineSha384, 'tdx.measurement.image.kernel_cmdline_sha384')
    return {
      mrtd,
      tdHobDigest: hob,
      rtmr1: replayRtmr(rtmr1Log(kernel)),
      rtmr2: replayRtmr(rtmr2Log(cmdline, initrd)),
    }
  })
}

/** RTMR0 replays remembered (one per image and ACPI layout a KMS sees). */
const RTMR0_MEMO_SIZE = 256
/** RTMR0 by the digests that vary in its log (TD HOB, then the three ACPI digests; the rest of
 * the log is constant): every guest of one image and VM shape replays the same 13 events. */
const rtmr0Replays = new BoundedCache<Buffer>(RTMR0_MEMO_SIZE)

export function liteRegisters(image: LiteImageMeasurements, acpi: AcpiDigests): TdxRegisters {
  const varying = [image.tdHobDigest, acpi.loader, acpi.rsdp, acpi.tables]
  // Keyed only when every digest has its SHA-384 length: the ACPI digests come from the guest's event
  // log, and a 47 + 49 byte pair would otherwise share the key of a valid 48 + 48 one and be
  // answered from it instead of failing in the replay as it does uncached.
  const key = varying.every((d) => d.length === RTMR_LENGTH)
    ? Buffer.concat(varying).toString('latin1')
    : undefined
  let rtmr0 = key === undefined ? undefined : rtmr0Replays.get(key)
  if (rtmr0 === undefined) {
    rtmr0 = replayRtmr(rtmr0Log(image.tdHobDigest, acpi))
    if (key !== undefined) rtmr0Replays.set(key, rtmr0)
  }
  return {
    mrtd: image.mrtd,
    // the memo keeps its own
    rtmr0: Buffer.from(rtmr0),
    rtmr1: image.rtmr1,
    rtmr2: image.rtmr2,
  }
}

export function acpiDigestsInContext(events: readonly TdxEvent[]): AcpiDigests {
  return inContext('TDX lite attestation is missing named RTMR0 ACPI DATA digests', () =>
    acpiDigestsFromEventLog(events),
  )
}

/** The whole lite computation in upstream's order of checks (document, CBOR, OVMF variant,
 * ACPI events, memory gate, MRTD, TD HOB, RTMR1/2). */
export function liteExpected(
  vm: VmConfig,
  events: readonly TdxEvent[],
): { image: LiteImageMeasurements; acpi: AcpiDigests; expected: TdxRegisters } {
  const m = decodeDocument(vm)
  const acpi = acpiDigestsInContext(events)
  const image = imageMeasurements(vm, m)
  return { image, acpi, expected: liteRegisters(image, acpi) }
}
