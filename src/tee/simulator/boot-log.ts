// The simulated boot of a CVM: MRTD and a CCEL-style boot event log (RTMR0–2) in the shape of a
// real dstack guest's (the event types and order of `ccel.bin` plus the kernel's two RTMR2 tag
// events, three `ACPI DATA` events named acpi-loader/acpi-rsdp/acpi-tables). The digests are the
// ones a real pre-202505 OVMF boot of the image would log: image-derived values from the image's
// lite measurement document (os-image.ts), the host's ACPI digests, and OVMF's fixed events. So
// the quote matches the document, and the KMS verifies simulated guests like real ones.
import { TDX_ACPI_DATA_EVENT_NAMES } from '../../attestation/event-log.js'
import { replayEventLogRtmrs } from '../../attestation/runtime-events.js'
import type { TdxEvent } from '../../attestation/types.js'
import { tdHobDigest } from '../../image/td-hob.js'
import { rtmr0Log, rtmr1Log, rtmr2Log } from '../../image/tdx-registers.js'
import { type SimulatedOsImage, bootedImage, simulatedAcpiDigests } from './os-image.js'

const EV_SEPARATOR = 0x4
const EV_EVENT_TAG = 0x6
const EV_PLATFORM_CONFIG_FLAGS = 0xa
const EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
const EV_EFI_VARIABLE_BOOT = 0x80000002
const EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
const EV_EFI_ACTION = 0x80000007
const EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000a
const EV_EFI_HANDOFF_TABLES2 = 0x8000000b

const TPM_ALG_SHA384 = 0x000c

const EFI_GLOBAL_VARIABLE = Buffer.from('61dfe48bca93d211aa0d00e098032b8c', 'hex')
const EFI_IMAGE_SECURITY_DATABASE = Buffer.from('cbb219d73a3d9645a3bcdad00e67656f', 'hex')

/** UEFI_VARIABLE_DATA: GUID, name length (chars), data length, UTF-16LE name (data omitted). */
function variableData(guid: Buffer, name: string): Buffer {
  const lengths = Buffer.alloc(16)
  lengths.writeBigUInt64LE(BigInt(name.length), 0)
  return Buffer.concat([guid, lengths, Buffer.from(name, 'utf16le')])
}

interface Template {
  imr: number
  eventType: number
  payload: Buffer
}

const ascii = (s: string): Buffer => Buffer.from(s, 'latin1')
const SEPARATOR = Buffer.alloc(4)
const ACPI_DATA = ascii('ACPI DATA')

const TEMPLATE: readonly Template[] = [
  { imr: 0, eventType: EV_EFI_HANDOFF_TABLES2, payload: ascii('\tTdxTable\0') },
  {
    imr: 0,
    eventType: EV_EFI_PLATFORM_FIRMWARE_BLOB2,
    payload: ascii(')Fv(XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)\0'),
  },
  {
    imr: 0,
    eventType: EV_EFI_VARIABLE_DRIVER_CONFIG,
    payload: variableData(EFI_GLOBAL_VARIABLE, 'SecureBoot'),
  },
  {
    imr: 0,
    eventType: EV_EFI_VARIABLE_DRIVER_CONFIG,
    payload: variableData(EFI_GLOBAL_VARIABLE, 'PK'),
  },
  {
    imr: 0,
    eventType: EV_EFI_VARIABLE_DRIVER_CONFIG,
    payload: variableData(EFI_GLOBAL_VARIABLE, 'KEK'),
  },
  {
    imr: 0,
    eventType: EV_EFI_VARIABLE_DRIVER_CONFIG,
    payload: variableData(EFI_IMAGE_SECURITY_DATABASE, 'db'),
  },
  {
    imr: 0,
    eventType: EV_EFI_VARIABLE_DRIVER_CONFIG,
    payload: variableData(EFI_IMAGE_SECURITY_DATABASE, 'dbx'),
  },
  { imr: 0, eventType: EV_SEPARATOR, payload: SEPARATOR },
  { imr: 0, eventType: EV_PLATFORM_CONFIG_FLAGS, payload: ACPI_DATA },
  { imr: 0, eventType: EV_PLATFORM_CONFIG_FLAGS, payload: ACPI_DATA },
  { imr: 0, eventType: EV_PLATFORM_CONFIG_FLAGS, payload: ACPI_DATA },
  { imr: 1, eventType: EV_EFI_BOOT_SERVICES_APPLICATION, payload: ascii('kernel') },
  {
    imr: 0,
    eventType: EV_EFI_VARIABLE_BOOT,
    payload: variableData(EFI_GLOBAL_VARIABLE, 'BootOrder'),
  },
  {
    imr: 0,
    eventType: EV_EFI_VARIABLE_BOOT,
    payload: variableData(EFI_GLOBAL_VARIABLE, 'Boot0000'),
  },
  { imr: 1, eventType: EV_EFI_ACTION, payload: ascii('Calling EFI Application from Boot Option') },
  { imr: 1, eventType: EV_SEPARATOR, payload: SEPARATOR },
  { imr: 2, eventType: EV_EVENT_TAG, payload: ascii('LOADED_IMAGE::LoadOptions') },
  { imr: 2, eventType: EV_EVENT_TAG, payload: ascii('Linux initrd') },
  { imr: 1, eventType: EV_EFI_ACTION, payload: ascii('Exit Boot Services Invocation') },
  { imr: 1, eventType: EV_EFI_ACTION, payload: ascii('Exit Boot Services Returned with Success') },
]

export interface SimulatedBoot {
  mrTd: Buffer
  /** boot events (imr 0–2) as the guest reports them: ACPI DATA events named */
  events: TdxEvent[]
  rtmr0: Buffer
  rtmr1: Buffer
  rtmr2: Buffer
}

/** Guest RAM of every simulated CVM: 2 GiB, a size the lite scheme accepts. */
export const SIMULATED_MEMORY_SIZE = 2n * 1024n * 1024n * 1024n

/** The boot measurements of a CVM running `image` with `memorySize` bytes of RAM on the mock
 * platform of `seed`: each register's event digests are exactly what the lite scheme recomputes
 * from the image's measurement document, so the quote matches the document. */
export function simulatedBootOfImage(
  seed: Uint8Array,
  image: SimulatedOsImage,
  memorySize: bigint = SIMULATED_MEMORY_SIZE,
  qemu: { twoPassAddPages: boolean } = { twoPassAddPages: false },
): SimulatedBoot {
  const m = image.measurement
  const logs: Buffer[][] = [
    rtmr0Log(tdHobDigest(m.tdvf.tdHobWitness, memorySize), simulatedAcpiDigests(seed)),
    rtmr1Log(m.image.kernelAuthenticode),
    rtmr2Log(m.image.cmdlineSha384, m.image.initrdSha384),
  ]
  const next = [0, 0, 0]
  let acpi = 0
  const events = TEMPLATE.map((t): TdxEvent => {
    const i = next[t.imr] ?? 0
    next[t.imr] = i + 1
    const digest = logs[t.imr]?.[i]
    if (digest === undefined) throw new Error('simulated boot template out of step with the logs')
    const isAcpi = t.imr === 0 && t.eventType === EV_PLATFORM_CONFIG_FLAGS
    const event = isAcpi ? (TDX_ACPI_DATA_EVENT_NAMES[acpi++] ?? '') : ''
    return {
      imr: t.imr,
      eventType: t.eventType,
      digest: Buffer.from(digest),
      event,
      eventPayload: Buffer.from(t.payload),
    }
  })
  const [rtmr0, rtmr1, rtmr2] = replayEventLogRtmrs(events)
  const mrTd = qemu.twoPassAddPages ? m.tdvf.mrtd.twoPass : m.tdvf.mrtd.singlePass
  return { mrTd: Buffer.from(mrTd), events, rtmr0, rtmr1, rtmr2 }
}

/** The boot of a CVM claiming image `osImageHash` (see `bootedImage`). */
export function simulatedBoot(seed: Uint8Array, osImageHash: Uint8Array): SimulatedBoot {
  return simulatedBootOfImage(seed, bootedImage(seed, osImageHash))
}

/** The boot log as firmware leaves it in the CCEL ACPI table: SHA-384-only TCG2
 * log, records with mr_index = imr + 1, then 0xFF fill to 64 KiB (at least one terminator). */
export function encodeCcel(events: readonly TdxEvent[]): Buffer {
  const specId = Buffer.concat([
    ascii('Spec ID Event03\0'),
    Buffer.from([0, 0, 0, 0]), // platformClass
    Buffer.from([0, 2, 0, 2]), // spec version 2.0, errata 0, uintnSize 2 (64-bit)
    Buffer.from([1, 0, 0, 0]), // one algorithm
    Buffer.from([TPM_ALG_SHA384 & 0xff, TPM_ALG_SHA384 >> 8, 48, 0]),
    Buffer.from([0]), // no vendor info
  ])
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4)
    b.writeUInt32LE(n)
    return b
  }
  const parts: Buffer[] = [u32(1), u32(3), Buffer.alloc(20), u32(specId.length), specId]
  for (const e of events) {
    const alg = Buffer.alloc(2)
    alg.writeUInt16LE(TPM_ALG_SHA384)
    parts.push(
      u32(e.imr + 1),
      u32(e.eventType),
      u32(1),
      alg,
      e.digest,
      u32(e.eventPayload.length),
      e.eventPayload,
    )
  }
  const body = Buffer.concat(parts)
  const out = Buffer.alloc(Math.max(65536, body.length + 4), 0xff)
  body.copy(out)
  return out
}
