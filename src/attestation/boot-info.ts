// BootInfo (upstream `kms/src/main_service.rs`): what the KMS tells the auth webhook about a
// verified guest. Upstream's `build_boot_info` → `VerifiedAttestation::decode_app_info_ex` (the
// legacy path, not the V1 one that feeds the `.1.9` extension): the vm_config is not unwrapped and
// the device id comes from the PPID, both unlike `decodeAppInfo`
// (docs/design.md#legacy-quirks-kept-byte-for-byte).
import { createHash } from 'node:crypto'
import { KmsError, withContext } from '../errors.js'
import { computeMrAggregated, computeMrSystem } from './app-info.js'
import { tdReportOf } from './quote.js'
import { BOOT_MR_DONE_EVENT, findEventPayload, replayRuntimeEvents } from './runtime-events.js'
import type { TeeVariant } from './types.js'
import type { VerifiedAttestation } from './verify.js'
import { vmConfigOsImageHash } from './vm-config.js'

export interface BootInfo {
  attestationMode: TeeVariant
  /** 32 bytes */
  mrAggregated: Buffer
  osImageHash: Buffer
  /** 32 bytes */
  mrSystem: Buffer
  /** exactly 20 bytes */
  appId: Buffer
  composeHash: Buffer
  instanceId: Buffer
  /** SHA-256(PPID) for TDX */
  deviceId: Buffer
  /** the raw `key-provider` event payload; empty for boot-time values */
  keyProviderInfo: Buffer
  tcbStatus: string
  advisoryIds: string[]
}

export interface BuildBootInfoOptions {
  /** `SignCert`: RTMR3 up to `boot-mr-done` and no key-provider */
  useBoottimeMr: boolean
  /** the request's vm_config; empty falls back to the attestation's `config` */
  vmConfig: string
}

function decodeTdxAppInfo(v: VerifiedAttestation, opts: BuildBootInfoOptions) {
  const a = v.attestation
  const events = a.runtimeEvents
  const keyProviderInfo = opts.useBoottimeMr
    ? Buffer.alloc(0)
    : findEventPayload(events, 'key-provider')
  let osImageHash: Buffer
  try {
    // not unwrapped: a whole sys-config as `config` yields an empty hash, as upstream
    osImageHash = vmConfigOsImageHash(opts.vmConfig === '' ? a.config : opts.vmConfig, false)
  } catch (err) {
    throw withContext('Failed to decode os image hash', err, 'KMS_ERR_ATTESTATION')
  }
  if (v.variant !== 'dstack-tdx') {
    throw new KmsError('KMS_ERR_ATTESTATION', `boot info of ${v.variant} is not supported`)
  }
  const td = tdReportOf(v.report.quote)
  if (td === null) throw new KmsError('KMS_ERR_ATTESTATION', 'no td report')
  // AttestationVerifier.verify replayed all the runtime events and found the quoted RTMR3:
  // the full replay is that register, only the boot-time one needs replaying
  const rtmr3 = opts.useBoottimeMr ? replayRuntimeEvents(events, BOOT_MR_DONE_EVENT) : td.rtmr3
  return {
    appId: findEventPayload(events, 'app-id'),
    composeHash: findEventPayload(events, 'compose-hash'),
    instanceId: findEventPayload(events, 'instance-id'),
    deviceId: createHash('sha256').update(v.report.ppid).digest(),
    mrSystem: computeMrSystem(td, keyProviderInfo),
    mrAggregated: computeMrAggregated(td, rtmr3),
    osImageHash,
    keyProviderInfo,
  }
}

/** Upstream `build_boot_info`. Throws `app_id must be 20 bytes` before any webhook could be called. */
export function buildBootInfo(v: VerifiedAttestation, opts: BuildBootInfoOptions): BootInfo {
  let info: ReturnType<typeof decodeTdxAppInfo>
  try {
    info = decodeTdxAppInfo(v, opts)
  } catch (err) {
    throw withContext('decode app info', err, 'KMS_ERR_ATTESTATION')
  }
  if (info.appId.length !== 20) throw new KmsError('KMS_ERR_ATTESTATION', 'app_id must be 20 bytes')
  return {
    attestationMode: v.variant,
    mrAggregated: info.mrAggregated,
    osImageHash: info.osImageHash,
    mrSystem: info.mrSystem,
    appId: info.appId,
    composeHash: info.composeHash,
    instanceId: info.instanceId,
    deviceId: info.deviceId,
    keyProviderInfo: info.keyProviderInfo,
    tcbStatus: v.report.status,
    advisoryIds: [...v.report.advisoryIds],
  }
}

/** The webhook body: camelCase keys in upstream's order, `teeVariant` (upstream HEAD's name) right
 * after `attestationMode` (docs/design.md#bootinfo-carries-attestationmode-and-teevariant), bytes
 * as lowercase hex without `0x`. */
export function bootInfoToJson(b: BootInfo): Record<string, unknown> {
  return {
    attestationMode: b.attestationMode,
    teeVariant: b.attestationMode,
    mrAggregated: b.mrAggregated.toString('hex'),
    osImageHash: b.osImageHash.toString('hex'),
    mrSystem: b.mrSystem.toString('hex'),
    appId: b.appId.toString('hex'),
    composeHash: b.composeHash.toString('hex'),
    instanceId: b.instanceId.toString('hex'),
    deviceId: b.deviceId.toString('hex'),
    keyProviderInfo: b.keyProviderInfo.toString('hex'),
    tcbStatus: b.tcbStatus,
    advisoryIds: [...b.advisoryIds],
  }
}
