// The TEE backend is chosen explicitly in configuration ([tee] backend,
// docs/design.md#tee-backend-chosen-explicitly-never-a-fallback) and never falls
// back silently: a KMS that believes it attests while it does not would hand out keys on the
// strength of nothing.
import { KmsError } from '../errors.js'
import type { TeeBackendName } from '../config/types.js'
import type { TdxEvent } from '../attestation/types.js'

export interface TeeBackend {
  readonly name: TeeBackendName
  /** true when the backend can produce an attestation of this KMS */
  readonly canAttest: boolean
  /** `Attest(report_data)`: the VersionedAttestation bytes of this KMS for 64 bytes of report data */
  attest(reportData: Uint8Array): Promise<Buffer>
  /** the `vm_config` string of this CVM (guest-agent `Info()`) */
  vmConfig(): Promise<string>
  /** the full event log of this CVM: boot events (RTMR0–2) then runtime events (RTMR3) */
  eventLog(): Promise<TdxEvent[]>
  /** emits a runtime event: extends RTMR3 and appends it to the runtime event log */
  emitEvent(name: string, payload: Uint8Array): Promise<void>
  /** releases sockets, timers and file handles */
  close(): Promise<void>
}

/** Upstream HEAD's outside-a-TEE mode: no attestation of our own anywhere. */
export class NoneBackend implements TeeBackend {
  readonly name = 'none' as const
  readonly canAttest = false
  async attest(): Promise<Buffer> {
    throw new KmsError('KMS_ERR_TEE', 'attestation is not available with tee.backend = "none"')
  }

  async vmConfig(): Promise<string> {
    return ''
  }

  async eventLog(): Promise<TdxEvent[]> {
    return []
  }

  async emitEvent(): Promise<void> {
    throw new KmsError('KMS_ERR_TEE', 'runtime events are not available with tee.backend = "none"')
  }

  async close(): Promise<void> {}
}
