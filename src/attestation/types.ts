// The in-memory model of upstream's `VersionedAttestation` (upstream `ra-tls/src/attestation.rs`).
// Byte fields are Buffers; the wire codecs (SCALE V0, msgpack V1) live in versioned.ts.

/** TEE kinds, named as upstream's AttestationMode / TeeVariant serialise them. */
export type TeeVariant =
  | 'dstack-tdx'
  | 'dstack-gcp-tdx'
  | 'dstack-nitro-enclave'
  | 'dstack-amd-sev-snp'
  | 'dstack-aws-nitro-tpm'

/** `0x08000001`: the event type of dstack runtime events (RTMR3). */
export const DSTACK_RUNTIME_EVENT_TYPE = 0x08000001

/** Upper bound on decoded item counts (events, PCR values, certificates). Real guests log a few
 * dozen events; the bound only stops a small input from inflating into millions of objects. */
export const MAX_EVENTS = 16_384

export interface TdxEvent {
  /** 0..3 = RTMR0..3 */
  imr: number
  eventType: number
  /** empty for runtime events in logs that omit it */
  digest: Buffer
  event: string
  eventPayload: Buffer
  /** upstream HEAD: 2 for V2 runtime events; absent (= 1) otherwise. Not on the SCALE wire. */
  version?: 1 | 2
  /** upstream HEAD: the canonical preimage of a V2 event. Not on the SCALE wire. */
  preimage?: Buffer
}

export interface RuntimeEvent {
  event: string
  payload: Buffer
  /** upstream HEAD: 2 for V2 digests; absent (= 1) otherwise. Not on the SCALE wire. */
  version?: 1 | 2
}

export interface TpmPcrValue {
  index: number
  algorithm: string
  value: Buffer
}

/** Upstream `cc_eventlog::tpm::TpmEvent`: only the PCR index and its SHA-256 digest travel. */
export interface TpmEvent {
  pcrIndex: number
  digest: Buffer
}

export interface TpmQuote {
  message: Buffer
  signature: Buffer
  pcrValues: TpmPcrValue[]
  akCert: Buffer
  /** 0 Dstack, 1 Gcp, 2 NitroEnclave, 3 AwsEc2 */
  platform: number
  eventLog: TpmEvent[]
}

export type AttestationQuote =
  | { kind: 'dstack-tdx'; quote: Buffer; eventLog: TdxEvent[] }
  | { kind: 'dstack-gcp-tdx'; quote: Buffer; eventLog: TdxEvent[]; tpmQuote: TpmQuote }
  | { kind: 'dstack-nitro-enclave'; nsmQuote: Buffer }
  | { kind: 'dstack-amd-sev-snp'; report: Buffer; certChain: Buffer[]; mrConfig: string }
  | { kind: 'dstack-aws-nitro-tpm'; attestationDoc: Buffer }

/** V1 `stack`: `dstack` or, V1 only, `dstack-pod` with a report_data payload. */
export type AttestationStack =
  { kind: 'dstack' } | { kind: 'dstack-pod'; reportDataPayload: string }

export interface Attestation {
  quote: AttestationQuote
  runtimeEvents: RuntimeEvent[]
  /** 64 bytes for every V0 attestation and every `dstack` stack */
  reportData: Buffer
  /** the JSON text upstream calls `config` (a vm_config or, from older guests, a sys-config) */
  config: string
  stack: AttestationStack
}

export interface VersionedAttestation {
  /** 0 = SCALE, 1 = msgpack */
  version: 0 | 1
  attestation: Attestation
}
