// The simulated guest OS, described the way a dstack 0.6 image describes itself for the TDX lite
// scheme: a `measurement.tdx.cbor` (MRTD candidates, TD HOB witness, kernel/cmdline/initrd
// digests) listed in a `sha256sum.txt` whose SHA-256 is the os_image_hash. The simulator has no
// firmware or kernel, so the digests derive from (seed, label); the KMS verifies them with the
// same code as a real guest's. The host's ACPI tables derive from the seed alone.
import { createHash } from 'node:crypto'
import { TDX_MEASUREMENT_FILENAME } from '../../image/measurement-document.js'
import { encodeTdHobWitness } from '../../image/td-hob.js'
import { type TdxOsImageMeasurement, encodeTdxMeasurement } from '../../image/tdx-measurement.js'
import type { AcpiDigests } from '../../image/tdx-registers.js'
import { deriveBytes } from './mock-pki.js'

/** The label of the image the simulated KMS (and, by default, its guests) runs. */
export const KMS_IMAGE_LABEL = 'dstack-kms-ts-simulator'

export interface SimulatedOsImage {
  label: string
  osImageHash: Buffer
  /** the exact `sha256sum.txt` bytes */
  checksumFile: Buffer
  /** the exact `measurement.tdx.cbor` bytes */
  measurementCbor: Buffer
  measurement: TdxOsImageMeasurement
}

/** dstack OVMF's TD_HOB and TEMP_MEM sections (page, count): the layout of real images. */
const TDVF_HOB_PAGE = 0x809n
const TDVF_RANGES: Array<[bigint, bigint]> = [
  [0x810n, 0x10n],
  [0x80bn, 0x2n],
  [0x809n, 0x2n],
  [0x800n, 0x6n],
]

export function simulatedOsImage(
  seed: Uint8Array,
  label: string = KMS_IMAGE_LABEL,
): SimulatedOsImage {
  const d = (what: string): Buffer => deriveBytes(seed, `os-image:${label}:${what}`, 48)
  const measurement: TdxOsImageMeasurement = {
    image: {
      cmdlineSha384: d('cmdline'),
      kernelAuthenticode: d('kernel'),
      initrdSha384: d('initrd'),
    },
    tdvf: {
      ovmfVariant: 'pre202505',
      mrtd: { singlePass: d('mrtd-single-pass'), twoPass: d('mrtd-two-pass') },
      tdHobWitness: encodeTdHobWitness(TDVF_HOB_PAGE, TDVF_RANGES),
    },
  }
  const measurementCbor = encodeTdxMeasurement(measurement)
  const checksumFile = Buffer.from(
    `${createHash('sha256').update(measurementCbor).digest('hex')}  ${TDX_MEASUREMENT_FILENAME}\n`,
  )
  return {
    label,
    osImageHash: createHash('sha256').update(checksumFile).digest(),
    checksumFile,
    measurementCbor,
    measurement,
  }
}

/** The image a CVM claiming `osImageHash` really boots: the KMS image when the hash is that
 * image's, otherwise an image of its own (different registers) whose document does not hash to
 * the claimed value, so that OS-image verification refuses the claim. */
export function bootedImage(seed: Uint8Array, osImageHash: Uint8Array): SimulatedOsImage {
  const kms = simulatedOsImage(seed)
  if (kms.osImageHash.equals(osImageHash)) return kms
  return simulatedOsImage(seed, `claimed:${Buffer.from(osImageHash).toString('hex')}`)
}

/** The digests of the ACPI tables the (simulated) host's QEMU builds. */
export function simulatedAcpiDigests(seed: Uint8Array): AcpiDigests {
  return {
    loader: deriveBytes(seed, 'acpi:loader', 48),
    rsdp: deriveBytes(seed, 'acpi:rsdp', 48),
    tables: deriveBytes(seed, 'acpi:tables', 48),
  }
}
