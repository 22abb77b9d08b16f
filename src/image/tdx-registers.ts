// The fixed parts of a dstack TDX boot's RTMR0–2 event logs and the QEMU-version rules that pick
// the MRTD page-add order (upstream `dstack-mr` `tdvf.rs`
// `rtmr0_log_from_td_hob_hash_with_acpi_hashes`, `tdx.rs` `rtmr1_log_from_kernel_hash`,
// `machine.rs` `versioned_options`). Shared by the lite scheme, the legacy scheme and the
// simulator; a log becomes a register with runtime-events.ts `replayRtmr`.
import { createHash } from 'node:crypto'
import { KmsError } from '../errors.js'

export const MR_LENGTH = 48

export interface TdxRegisters {
  mrtd: Buffer
  rtmr0: Buffer
  rtmr1: Buffer
  rtmr2: Buffer
}

export const REGISTER_NAMES = ['mrtd', 'rtmr0', 'rtmr1', 'rtmr2'] as const
export type RegisterName = (typeof REGISTER_NAMES)[number]

export interface AcpiDigests {
  loader: Buffer
  rsdp: Buffer
  tables: Buffer
}

export function sha384(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha384')
  for (const p of parts) h.update(p)
  return h.digest()
}

/** EFI GUID text `a-b-c-d-e` to bytes: the first three groups little-endian, the rest as written. */
export function encodeGuid(text: string): Buffer {
  const groups = text.split('-')
  if (groups.length !== 5 || !groups.every((g) => /^[0-9a-fA-F]+$/.test(g) && g.length % 2 === 0)) {
    throw new Error(`invalid GUID ${text}`)
  }
  return Buffer.concat(
    groups.map((g, i) => {
      const b = Buffer.from(g, 'hex')
      return i <= 2 ? b.reverse() : b
    }),
  )
}

export function efiVariableDigest(guid: string, name: string): Buffer {
  const lengths = Buffer.alloc(16)
  lengths.writeBigUInt64LE(BigInt(name.length), 0)
  return sha384(encodeGuid(guid), lengths, Buffer.from(name, 'utf16le'))
}

const EFI_GLOBAL_VARIABLE = '8BE4DF61-93CA-11D2-AA0D-00E098032B8C'
const EFI_IMAGE_SECURITY_DATABASE = 'D719B2CB-3D3A-4596-A3BC-DAD00E67656F'

/** The CFV firmware-volume blob of dstack's pre-202505 OVMF. */
const CFV_DIGEST = Buffer.from(
  '344bc51c980ba621aaa00da3ed7436f7d6e549197dfe699515dfa2c6583d95e6412af21c097d473155875ffd561d6790',
  'hex',
)
/** Boot0000 = OVMF's UiApp entry in pre-202505 firmware. */
const BOOT0000_DIGEST = Buffer.from(
  '23ada07f5261f12f34a0bd8e46760962d6b4d576a416f1fea1c64bc656b1d28eacf7047ae6e967c58fd2a98bfa74c298',
  'hex',
)
const SEPARATOR_DIGEST = sha384(Buffer.alloc(4))
const BOOT_ORDER_DIGEST = sha384(Buffer.alloc(2))
const EFI_VARIABLE_DIGESTS = [
  efiVariableDigest(EFI_GLOBAL_VARIABLE, 'SecureBoot'),
  efiVariableDigest(EFI_GLOBAL_VARIABLE, 'PK'),
  efiVariableDigest(EFI_GLOBAL_VARIABLE, 'KEK'),
  efiVariableDigest(EFI_IMAGE_SECURITY_DATABASE, 'db'),
  efiVariableDigest(EFI_IMAGE_SECURITY_DATABASE, 'dbx'),
]

/** The 13 RTMR0 events of OVMF `pre202505`. */
export function rtmr0Log(tdHobDigest: Buffer, acpi: AcpiDigests): Buffer[] {
  return [
    tdHobDigest,
    CFV_DIGEST,
    ...EFI_VARIABLE_DIGESTS,
    SEPARATOR_DIGEST,
    acpi.loader,
    acpi.rsdp,
    acpi.tables,
    BOOT_ORDER_DIGEST,
    BOOT0000_DIGEST,
  ]
}

/** The 5 RTMR1 events: the patched kernel's Authenticode hash, then OVMF's fixed actions. */
export function rtmr1Log(kernelAuthenticode: Buffer): Buffer[] {
  return [
    kernelAuthenticode,
    sha384(Buffer.from('Calling EFI Application from Boot Option')),
    SEPARATOR_DIGEST,
    sha384(Buffer.from('Exit Boot Services Invocation')),
    sha384(Buffer.from('Exit Boot Services Returned with Success')),
  ]
}

export function rtmr2Log(cmdlineSha384: Buffer, initrdSha384: Buffer): Buffer[] {
  return [cmdlineSha384, initrdSha384]
}

export interface QemuOptions {
  version: [number, number, number]
  pic: boolean
  twoPassAddPages: boolean
}

function parseVersion(v: string): [number, number, number] {
  const parts = v.split('.').map((p) => {
    if (!/^\+?[0-9]+$/.test(p) || Number(p) > 0xffffffff) {
      throw new KmsError(
        'KMS_ERR_ATTESTATION',
        'Failed to parse QEMU version: Invalid version number',
      )
    }
    return Number(p)
  })
  if (parts.length !== 3) {
    throw new KmsError(
      'KMS_ERR_ATTESTATION',
      `Failed to parse QEMU version: Version string must have exactly 3 parts (major.minor.patch), got ${parts.length}`,
    )
  }
  return [parts[0] ?? 0, parts[1] ?? 0, parts[2] ?? 0]
}

function versionLess(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < 3; i++) {
    const x = a[i] ?? 0
    const y = b[i] ?? 0
    if (x !== y) return x < y
  }
  return false
}

/** Upstream passes `qemu_single_pass_add_pages` unchanged as `two_pass_add_pages` (the name says
 * the opposite); kept as is, because that is what the measured guests were verified with. */
export function qemuOptions(vm: {
  qemuVersion: string | null
  pic: boolean | null
  qemuSinglePassAddPages: boolean | null
}): QemuOptions {
  const version =
    vm.qemuVersion === null ? ([9, 1, 0] as [number, number, number]) : parseVersion(vm.qemuVersion)
  if (versionLess(version, [8, 0, 0])) {
    throw new KmsError('KMS_ERR_ATTESTATION', `Unsupported QEMU version: (${version.join(', ')})`)
  }
  const qemu8 = !versionLess(version, [8, 0, 0]) && versionLess(version, [9, 0, 0])
  return {
    version,
    pic: vm.pic ?? qemu8,
    twoPassAddPages: vm.qemuSinglePassAddPages ?? qemu8,
  }
}

export function registersToHex(r: TdxRegisters): Record<RegisterName, string> {
  return {
    mrtd: r.mrtd.toString('hex'),
    rtmr0: r.rtmr0.toString('hex'),
    rtmr1: r.rtmr1.toString('hex'),
    rtmr2: r.rtmr2.toString('hex'),
  }
}
