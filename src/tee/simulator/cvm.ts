// One simulated CVM on the mock platform: its boot measurements, its runtime events (RTMR3) and
// its vm_config, turned into a signed quote and a V0 VersionedAttestation exactly as a real dstack
// guest assembles it (full event log = boot events + runtime events).
import { KmsError } from '../../errors.js'
import { replayRuntimeEvents, runtimeEventToTdxEvent } from '../../attestation/runtime-events.js'
import type { RuntimeEvent, TdxEvent } from '../../attestation/types.js'
import { encodeVersionedAttestation } from '../../attestation/versioned.js'
import { SIMULATED_MEMORY_SIZE, type SimulatedBoot, simulatedBootOfImage } from './boot-log.js'
import { mockIntelPki } from './mock-pki.js'
import {
  KMS_IMAGE_LABEL,
  type SimulatedOsImage,
  bootedImage,
  simulatedOsImage,
} from './os-image.js'
import { SIM_DEBUG_TD_ATTRIBUTES, buildTdxQuote } from './quote-builder.js'

export interface CvmRegisters {
  mrTd: Buffer
  rtmr0: Buffer
  rtmr1: Buffer
  rtmr2: Buffer
  rtmr3: Buffer
  /** always zero: the simulator does not bind a config id */
  mrConfigId: Buffer
}

export interface SimulatedCvm {
  seed: Buffer
  osImageHash: Buffer
  boot: SimulatedBoot
  vmConfig: string
}

/** The image the KMS's own simulated CVM runs: SHA-256 of its `sha256sum.txt`. */
export function defaultOsImageHash(seed: Uint8Array): Buffer {
  return simulatedOsImage(seed).osImageHash
}

/** The vm_config a dstack VMM gives a lite guest: the claimed image hash and the measurement
 * document of the image the CVM really boots (they disagree for a guest claiming another image,
 * which is what OS-image verification catches). */
export function simulatedVmConfig(seed: Uint8Array, osImageHash: Uint8Array): string {
  return vmConfigOf(osImageHash, bootedImage(seed, osImageHash))
}

function vmConfigOf(osImageHash: Uint8Array, image: SimulatedOsImage): string {
  return JSON.stringify({
    os_image_hash: Buffer.from(osImageHash).toString('hex'),
    cpu_count: 2,
    memory_size: Number(SIMULATED_MEMORY_SIZE),
    pci_hole64_size: 0,
    hugepages: false,
    num_gpus: 0,
    num_nvswitches: 0,
    hotplug_off: false,
    image: KMS_IMAGE_LABEL,
    host_share_mode: '9p',
    ovmf_variant: 'pre202505',
    tdx_attestation_variant: 'lite',
    tdx_measurement: {
      checksum_file: image.checksumFile.toString('base64'),
      measurement: image.measurementCbor.toString('base64'),
    },
    spec_version: 1,
  })
}

/** The vm_config of a CVM that boots the KMS image but claims `claimed` as its image hash (the
 * document is still the booted image's): what a host lying about the image would send. */
export function claimingVmConfig(seed: Uint8Array, claimed: Uint8Array): string {
  return JSON.stringify({
    ...(JSON.parse(simulatedVmConfig(seed, defaultOsImageHash(seed))) as object),
    os_image_hash: Buffer.from(claimed).toString('hex'),
  })
}

export function simulatedCvm(seed: Uint8Array, osImageHash: Uint8Array): SimulatedCvm {
  if (osImageHash.length !== 32) {
    throw new KmsError('KMS_ERR_TEE', `os_image_hash must be 32 bytes, got ${osImageHash.length}`)
  }
  // one image for both: the boot log and the vm_config document describe the same booted image
  const image = bootedImage(seed, osImageHash)
  return {
    seed: Buffer.from(seed),
    osImageHash: Buffer.from(osImageHash),
    boot: simulatedBootOfImage(seed, image),
    vmConfig: vmConfigOf(osImageHash, image),
  }
}

export function cvmRegisters(
  cvm: SimulatedCvm,
  runtimeEvents: readonly RuntimeEvent[],
): CvmRegisters {
  return {
    mrTd: cvm.boot.mrTd,
    rtmr0: cvm.boot.rtmr0,
    rtmr1: cvm.boot.rtmr1,
    rtmr2: cvm.boot.rtmr2,
    rtmr3: replayRuntimeEvents(runtimeEvents),
    mrConfigId: Buffer.alloc(48),
  }
}

/** The guest agent's rule: up to 64 bytes, zero-padded; longer is refused with its text. */
export function padReportData(reportData: Uint8Array): Buffer {
  if (reportData.length > 64) throw new KmsError('KMS_ERR_TEE', 'Report data is too long')
  const padded = Buffer.alloc(64)
  padded.set(reportData)
  return padded
}

export function cvmEventLog(cvm: SimulatedCvm, runtimeEvents: readonly RuntimeEvent[]): TdxEvent[] {
  return [
    ...cvm.boot.events.map((e) => ({
      ...e,
      digest: Buffer.from(e.digest),
      eventPayload: Buffer.from(e.eventPayload),
    })),
    ...runtimeEvents.map(runtimeEventToTdxEvent),
  ]
}

/** The V0 VersionedAttestation bytes of `cvm` with `runtimeEvents` for `reportData`. */
export function cvmAttestation(
  cvm: SimulatedCvm,
  runtimeEvents: readonly RuntimeEvent[],
  reportData: Uint8Array,
  opts: { debug?: boolean } = {},
): Buffer {
  const padded = padReportData(reportData)
  const quote = buildTdxQuote(mockIntelPki(cvm.seed), {
    ...cvmRegisters(cvm, runtimeEvents),
    reportData: padded,
    ...(opts.debug === true ? { tdAttributes: SIM_DEBUG_TD_ATTRIBUTES } : {}),
  })
  return encodeVersionedAttestation({
    version: 0,
    attestation: {
      quote: { kind: 'dstack-tdx', quote, eventLog: cvmEventLog(cvm, runtimeEvents) },
      runtimeEvents: runtimeEvents.map((e) => ({
        event: e.event,
        payload: Buffer.from(e.payload),
      })),
      reportData: padded,
      config: cvm.vmConfig,
      stack: { kind: 'dstack' },
    },
  })
}
