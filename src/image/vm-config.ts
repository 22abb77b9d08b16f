// The guest's `vm_config` as the OS-image check reads it (upstream `dstack-types` `VmConfig`):
// every field typed like serde would type it, unknown keys ignored, and the canonical
// re-serialisation whose SHA-256 is the measurement-cache key (the `config_hash` operators pass
// to ClearImageCache). See docs/design.md#os-image-verification.
import { createHash } from 'node:crypto'
import { KmsError, errorMessage } from '../errors.js'
import { decodeHex } from '../util/hex.js'

export type TdxAttestationVariant = 'legacy' | 'lite'

/** The only OVMF RTMR0 layout upstream accepts; any other value fails the whole parse. */
export const OVMF_VARIANTS = ['pre202505'] as const
export type OvmfVariant = (typeof OVMF_VARIANTS)[number]

/** `{checksum_file, measurement}`: the raw `sha256sum.txt` and measurement CBOR bytes. */
export interface MeasurementDocument {
  checksumFile: Buffer
  measurement: Buffer
}

export interface VmConfig {
  osImageHash: Buffer
  cpuCount: number
  memorySize: bigint
  qemuSinglePassAddPages: boolean | null
  pic: boolean | null
  qemuVersion: string | null
  pciHole64Size: bigint
  hugepages: boolean
  numGpus: number
  numNvswitches: number
  numNics: number
  numVerityVolumes: number
  swtpm: boolean
  hotplugOff: boolean
  image: string | null
  hostShareMode: string
  ovmfVariant: OvmfVariant | null
  tdxAttestationVariant: TdxAttestationVariant
  tdxMeasurement: MeasurementDocument | null
  gcpMeasurement: MeasurementDocument | null
  awsMeasurement: MeasurementDocument | null
}

const U32_MAX = 0xffffffff
const U64_MAX = (1n << 64n) - 1n

function kind(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'sequence'
  if (typeof v === 'number') {
    return Number.isInteger(v) ? `integer \`${v}\`` : `floating point \`${v}\``
  }
  if (typeof v === 'string') return `string ${JSON.stringify(v)}`
  if (typeof v === 'boolean') return `boolean \`${v}\``
  return 'map'
}

function fieldError(field: string, v: unknown, expected: string): Error {
  return new Error(`${field}: invalid type: ${kind(v)}, expected ${expected}`)
}

function u32(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw fieldError(field, v, 'u32')
  if (v < 0 || v > U32_MAX) throw new Error(`${field}: invalid value: ${kind(v)}, expected u32`)
  return v
}

/** JSON numbers above 2^53 lose precision in JSON.parse; such a value is refused rather than
 * silently rounded (no real guest has exabytes of memory). */
function u64(field: string, v: unknown): bigint {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw fieldError(field, v, 'u64')
  if (v < 0 || !Number.isSafeInteger(v)) {
    throw new Error(`${field}: invalid value: ${kind(v)}, expected u64`)
  }
  const out = BigInt(v)
  if (out > U64_MAX) throw new Error(`${field}: invalid value: ${kind(v)}, expected u64`)
  return out
}

function bool(field: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw fieldError(field, v, 'a boolean')
  return v
}

function str(field: string, v: unknown): string {
  if (typeof v !== 'string') throw fieldError(field, v, 'a string')
  return v
}

function opt<T>(parse: (field: string, v: unknown) => T, field: string, v: unknown): T | null {
  return v === undefined || v === null ? null : parse(field, v)
}

const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

function base64Field(field: string, v: unknown): Buffer {
  const text = str(field, v)
  if (!STRICT_BASE64.test(text)) throw new Error(`${field}: invalid base64`)
  return Buffer.from(text, 'base64')
}

function document(field: string, v: unknown): MeasurementDocument {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw fieldError(field, v, 'struct MeasurementDocument')
  }
  const o = v as Record<string, unknown>
  if (!Object.hasOwn(o, 'checksum_file')) {
    throw new Error(`${field}: missing field \`checksum_file\``)
  }
  if (!Object.hasOwn(o, 'measurement')) throw new Error(`${field}: missing field \`measurement\``)
  return {
    checksumFile: base64Field(`${field}.checksum_file`, o['checksum_file']),
    measurement: base64Field(`${field}.measurement`, o['measurement']),
  }
}

function ovmfVariant(field: string, v: unknown): OvmfVariant {
  const s = str(field, v)
  const known = OVMF_VARIANTS.find((x) => x === s)
  if (known === undefined) {
    throw new Error(
      `${field}: unknown variant \`${s}\`, expected ${OVMF_VARIANTS.map((x) => `\`${x}\``).join(', ')}`,
    )
  }
  return known
}

function attestationVariant(field: string, v: unknown): TdxAttestationVariant {
  const s = str(field, v)
  if (s !== 'legacy' && s !== 'lite') {
    throw new Error(`${field}: unknown variant \`${s}\`, expected \`legacy\` or \`lite\``)
  }
  return s
}

function hexField(field: string, v: unknown): Buffer {
  const text = str(field, v)
  try {
    return decodeHex(text)
  } catch (err) {
    throw new Error(`${field}: ${errorMessage(err)}`)
  }
}

/** Parses a vm_config JSON text (`""` counts as `{}`). Unknown keys are ignored, as serde does. */
export function parseVmConfig(text: string): VmConfig {
  let parsed: unknown
  try {
    parsed = JSON.parse(text === '' ? '{}' : text)
  } catch (err) {
    throw new KmsError('KMS_ERR_ATTESTATION', `Failed to decode VM config: ${errorMessage(err)}`)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new KmsError(
      'KMS_ERR_ATTESTATION',
      `Failed to decode VM config: invalid type: ${kind(parsed)}, expected struct VmConfig`,
    )
  }
  const o = parsed as Record<string, unknown>
  const get = (k: string): unknown => (Object.hasOwn(o, k) ? o[k] : undefined)
  const or = <T>(k: string, dflt: T, parse: (field: string, v: unknown) => T): T => {
    const v = get(k)
    return v === undefined ? dflt : parse(k, v)
  }
  try {
    return {
      osImageHash: or('os_image_hash', Buffer.alloc(0), hexField),
      cpuCount: or('cpu_count', 0, u32),
      memorySize: or('memory_size', 0n, u64),
      qemuSinglePassAddPages: opt(
        bool,
        'qemu_single_pass_add_pages',
        get('qemu_single_pass_add_pages'),
      ),
      pic: opt(bool, 'pic', get('pic')),
      qemuVersion: opt(str, 'qemu_version', get('qemu_version')),
      pciHole64Size: or('pci_hole64_size', 0n, u64),
      hugepages: or('hugepages', false, bool),
      numGpus: or('num_gpus', 0, u32),
      numNvswitches: or('num_nvswitches', 0, u32),
      numNics: or('num_nics', 1, u32),
      numVerityVolumes: or('num_verity_volumes', 0, u32),
      swtpm: or('swtpm', false, bool),
      hotplugOff: or('hotplug_off', false, bool),
      image: opt(str, 'image', get('image')),
      hostShareMode: or('host_share_mode', '', str),
      ovmfVariant: opt(ovmfVariant, 'ovmf_variant', get('ovmf_variant')),
      tdxAttestationVariant: or('tdx_attestation_variant', 'legacy', attestationVariant),
      tdxMeasurement: opt(document, 'tdx_measurement', get('tdx_measurement')),
      gcpMeasurement: opt(document, 'gcp_measurement', get('gcp_measurement')),
      awsMeasurement: opt(document, 'aws_measurement', get('aws_measurement')),
    }
  } catch (err) {
    throw new KmsError('KMS_ERR_ATTESTATION', `Failed to decode VM config: ${errorMessage(err)}`, {
      cause: err,
    })
  }
}

function documentJson(d: MeasurementDocument): string {
  return `{"checksum_file":${JSON.stringify(d.checksumFile.toString('base64'))},"measurement":${JSON.stringify(d.measurement.toString('base64'))}}`
}

/** Upstream's `serde_json::to_string(&vm_config)`: compact, keys in struct order, optional
 * fields left out exactly where upstream skips them, unknown input keys gone. Numbers are
 * written from bigint so that u64 values never pass through a float. */
export function canonicalVmConfigJson(c: VmConfig): string {
  const parts: string[] = []
  const put = (key: string, json: string): void => {
    parts.push(`${JSON.stringify(key)}:${json}`)
  }
  put('os_image_hash', JSON.stringify(c.osImageHash.toString('hex')))
  put('cpu_count', String(c.cpuCount))
  put('memory_size', c.memorySize.toString())
  if (c.qemuSinglePassAddPages !== null) {
    put('qemu_single_pass_add_pages', String(c.qemuSinglePassAddPages))
  }
  if (c.pic !== null) put('pic', String(c.pic))
  if (c.qemuVersion !== null) put('qemu_version', JSON.stringify(c.qemuVersion))
  put('pci_hole64_size', c.pciHole64Size.toString())
  put('hugepages', String(c.hugepages))
  put('num_gpus', String(c.numGpus))
  put('num_nvswitches', String(c.numNvswitches))
  if (c.numNics !== 1) put('num_nics', String(c.numNics))
  if (c.numVerityVolumes !== 0) put('num_verity_volumes', String(c.numVerityVolumes))
  if (c.swtpm) put('swtpm', 'true')
  put('hotplug_off', String(c.hotplugOff))
  if (c.image !== null) put('image', JSON.stringify(c.image))
  put('host_share_mode', JSON.stringify(c.hostShareMode))
  if (c.ovmfVariant !== null) put('ovmf_variant', JSON.stringify(c.ovmfVariant))
  if (c.tdxAttestationVariant !== 'legacy') {
    put('tdx_attestation_variant', JSON.stringify(c.tdxAttestationVariant))
  }
  if (c.tdxMeasurement !== null) put('tdx_measurement', documentJson(c.tdxMeasurement))
  if (c.gcpMeasurement !== null) put('gcp_measurement', documentJson(c.gcpMeasurement))
  if (c.awsMeasurement !== null) put('aws_measurement', documentJson(c.awsMeasurement))
  return `{${parts.join(',')}}`
}

/** Lowercase hex SHA-256 of the canonical serialisation: the measurement-cache key. */
export function vmConfigHash(c: VmConfig): string {
  return createHash('sha256').update(canonicalVmConfigJson(c)).digest('hex')
}

/** Upstream's source rule: the request's vm_config if non-empty, else the attestation's. */
export function vmConfigText(requestVmConfig: string, attestationConfig: string): string {
  return requestVmConfig !== '' ? requestVmConfig : attestationConfig
}
