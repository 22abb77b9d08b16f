// Upstream's `VmConfig` view of an attestation's `config` string: the scalar fields serde would
// type-check, and `os_image_hash`. Errors read like serde_json's.
import { errorMessage, withContext } from '../errors.js'
import { BoundedCache } from '../util/bounded-cache.js'
import { decodeHex } from '../util/hex.js'
import { msgKind } from './versioned-v1.js'

function jsonKind(v: unknown): string {
  return msgKind(v).replace('byte array', 'sequence')
}

type FieldCheck = (v: unknown) => void

const uintCheck =
  (max: number, ty: string): FieldCheck =>
  (v) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      throw new Error(`invalid type: ${jsonKind(v)}, expected ${ty}`)
    }
    if (v < 0 || v > max) throw new Error(`invalid value: integer \`${v}\`, expected ${ty}`)
  }
const boolCheck: FieldCheck = (v) => {
  if (typeof v !== 'boolean') throw new Error(`invalid type: ${jsonKind(v)}, expected a boolean`)
}
const stringCheck: FieldCheck = (v) => {
  if (typeof v !== 'string') throw new Error(`invalid type: ${jsonKind(v)}, expected a string`)
}
const optional =
  (inner: FieldCheck): FieldCheck =>
  (v) => {
    if (v !== null) inner(v)
  }

/** The scalar VmConfig fields whose types serde would check (structured ones are not read here). */
const VM_CONFIG_FIELDS: Record<string, FieldCheck> = {
  cpu_count: uintCheck(0xffffffff, 'u32'),
  memory_size: uintCheck(Number.MAX_SAFE_INTEGER, 'u64'),
  qemu_single_pass_add_pages: optional(boolCheck),
  pic: optional(boolCheck),
  qemu_version: optional(stringCheck),
  pci_hole64_size: uintCheck(Number.MAX_SAFE_INTEGER, 'u64'),
  hugepages: boolCheck,
  num_gpus: uintCheck(0xffffffff, 'u32'),
  num_nvswitches: uintCheck(0xffffffff, 'u32'),
  num_nics: uintCheck(0xffffffff, 'u32'),
  num_verity_volumes: uintCheck(0xffffffff, 'u32'),
  swtpm: boolCheck,
  hotplug_off: boolCheck,
  image: optional(stringCheck),
  host_share_mode: stringCheck,
}

function parseVmConfigObject(text: string): { osImageHash: Buffer; raw: Record<string, unknown> } {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new Error(errorMessage(err))
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error(`invalid type: ${jsonKind(parsed)}, expected struct VmConfig`)
  }
  const raw = parsed as Record<string, unknown>
  for (const [key, check] of Object.entries(VM_CONFIG_FIELDS)) {
    if (Object.hasOwn(raw, key)) check(raw[key])
  }
  let osImageHash: Buffer = Buffer.alloc(0)
  if (Object.hasOwn(raw, 'os_image_hash')) {
    const v = raw['os_image_hash']
    if (typeof v !== 'string') throw new Error(`invalid type: ${jsonKind(v)}, expected hex string`)
    osImageHash = decodeHex(v)
  }
  return { osImageHash, raw }
}

/** Upstream's VmConfig view of a `config` string: empty means `{}`; unknown keys are ignored, so a
 * whole sys-config yields an empty os_image_hash unless `unwrapNested` (the V1 / app-info path)
 * lets a string `vm_config` member stand in for the document. Errors: `Failed to parse vm config:
 * …`. */
export function decodeVmConfig(
  config: string,
  unwrapNested: boolean,
): { osImageHash: Buffer; raw: Record<string, unknown> } {
  let text = config === '' ? '{}' : config
  if (unwrapNested) {
    try {
      const outer: unknown = JSON.parse(text)
      if (outer !== null && typeof outer === 'object' && !Array.isArray(outer)) {
        const nested = (outer as Record<string, unknown>)['vm_config']
        if (typeof nested === 'string') text = nested
      }
    } catch {
      // not JSON: the parse below reports it
    }
  }
  try {
    return parseVmConfigObject(text)
  } catch (err) {
    throw withContext('Failed to parse vm config', err, 'KMS_ERR_ATTESTATION')
  }
}

/** vm_config texts whose os_image_hash is remembered, and the longest one remembered. */
const OS_IMAGE_HASH_ENTRIES = 64
const OS_IMAGE_HASH_MAX_TEXT = 64 * 1024
const osImageHashes = new BoundedCache<Buffer>(OS_IMAGE_HASH_ENTRIES)

/** `decodeVmConfig(config, unwrapNested).osImageHash`, remembered by the exact text: every
 * BootInfo needs it, the guests of a fleet send few distinct vm_configs, and the JSON parse was
 * most of a BootInfo's cost. A text that fails is parsed (and fails) again each time. */
export function vmConfigOsImageHash(config: string, unwrapNested: boolean): Buffer {
  if (config.length > OS_IMAGE_HASH_MAX_TEXT) {
    return decodeVmConfig(config, unwrapNested).osImageHash
  }
  const key = `${unwrapNested ? 'n' : 'f'}${config}`
  let hash = osImageHashes.get(key)
  if (hash === undefined) {
    hash = decodeVmConfig(config, unwrapNested).osImageHash
    osImageHashes.set(key, hash)
  }
  // the memo keeps its own
  return Buffer.from(hash)
}
