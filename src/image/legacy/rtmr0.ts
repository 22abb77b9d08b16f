// The 13 RTMR0 events of the `pre202505` OVMF layout (upstream `dstack-mr/src/tdvf.rs`
// `rtmr0_log_from_td_hob_hash_with_acpi_hashes`): the TD HOB, the CFV firmware volume, five
// Secure Boot variables, a separator, the three ACPI blobs and the two boot variables.
import { encodeGuid, sha384, utf16le } from './digest.js'

const CFV_DIGEST = Buffer.from(
  '344bc51c980ba621aaa00da3ed7436f7d6e549197dfe699515dfa2c6583d95e6412af21c097d473155875ffd561d6790',
  'hex',
)
/** Boot0000 (OVMF UiApp) of pre-202505 firmware */
const BOOT0000_DIGEST = Buffer.from(
  '23ada07f5261f12f34a0bd8e46760962d6b4d576a416f1fea1c64bc656b1d28eacf7047ae6e967c58fd2a98bfa74c298',
  'hex',
)
const EFI_GLOBAL = '8BE4DF61-93CA-11D2-AA0D-00E098032B8C'
const EFI_IMAGE_SECURITY_DB = 'D719B2CB-3D3A-4596-A3BC-DAD00E67656F'

export function efiVariableDigest(guid: string, name: string): Buffer {
  const lens = Buffer.alloc(16)
  lens.writeBigUInt64LE(BigInt(name.length), 0)
  return sha384(encodeGuid(guid), lens, utf16le(name))
}

export interface AcpiDigests {
  loader: Buffer
  rsdp: Buffer
  tables: Buffer
}

/** events 1–7: the same for every VM of the layout */
const FIXED_EARLY = [
  CFV_DIGEST,
  efiVariableDigest(EFI_GLOBAL, 'SecureBoot'),
  efiVariableDigest(EFI_GLOBAL, 'PK'),
  efiVariableDigest(EFI_GLOBAL, 'KEK'),
  efiVariableDigest(EFI_IMAGE_SECURITY_DB, 'db'),
  efiVariableDigest(EFI_IMAGE_SECURITY_DB, 'dbx'),
  sha384(Buffer.alloc(4)), // separator
]
/** events 11–12: BootOrder (two raw bytes in legacy OVMF), Boot0000 */
const FIXED_LATE = [sha384(Buffer.alloc(2)), BOOT0000_DIGEST]

export function rtmr0Log(tdHobDigest: Buffer, acpi: AcpiDigests): Buffer[] {
  return [tdHobDigest, ...FIXED_EARLY, acpi.loader, acpi.rsdp, acpi.tables, ...FIXED_LATE]
}
