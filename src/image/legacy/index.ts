// Placeholder for the legacy TDX image path (image download, TDVF/MRTD, kernel RTMR1, RTMR2,
// RTMR0 through the ACPI-tables command), which lands separately with this exact interface. Until
// then a legacy boot fails closed with a clear error; nothing is ever accepted unverified.
import type { Logger } from 'pino'
import { KmsError } from '../../errors.js'

export interface LegacyVmParams {
  cpuCount: number
  memorySize: bigint
  qemuVersion?: string
  numGpus?: number
  numNvswitches?: number
  hotplugOff?: boolean
  pciHoleBase?: bigint
}

export interface ExpectedRegisters {
  mrtd: Buffer
  rtmr0: Buffer | null
  rtmr1: Buffer
  rtmr2: Buffer
}

export interface LegacyVerifierOptions {
  imageCacheDir: string
  downloadUrl: string
  maxImageBytes: number
  downloadTimeoutMs: number
  acpiTablesCommand: string[] | null
  acpiTimeoutMs: number
  legacyRtmr0: 'require' | 'skip'
  log: Logger
}

export interface LegacyVerifier {
  expectedRegisters(
    osImageHash: Buffer,
    vm: LegacyVmParams,
  ): Promise<{ expected: ExpectedRegisters; skipped: string[] }>
  clear(osImageHash: Buffer | 'all'): Promise<void>
}

export function createLegacyVerifier(_opts: LegacyVerifierOptions): LegacyVerifier {
  return {
    expectedRegisters: () =>
      Promise.reject(
        new KmsError(
          'KMS_ERR_NOT_IMPLEMENTED',
          'legacy TDX image verification is not available in this build; only lite guests can be verified',
        ),
      ),
    clear: () => Promise.resolve(),
  }
}
