// App info (upstream `ra-tls/src/attestation.rs`): the identity and measurements of a guest as
// derived from its attestation. `decodeAppInfo` is upstream's V1 path
// (`into_v1().decode_app_info_ex`), which feeds the `.1.9` certificate extension;
// `computeMrSystem`/`computeMrAggregated` are shared with the BootInfo computation, which
// uses the same formulas on a verified report.
import { createHash } from 'node:crypto'
import { encode as msgpackEncode } from '@msgpack/msgpack'
import { KmsError, withContext } from '../errors.js'
import { parseQuote, tdReportOf, type TdReport10 } from './quote.js'
import { BOOT_MR_DONE_EVENT, findEventPayload, replayRuntimeEvents } from './runtime-events.js'
import type { Attestation } from './types.js'
import { vmConfigOsImageHash } from './vm-config.js'

export interface AppInfo {
  appId: Buffer
  composeHash: Buffer
  instanceId: Buffer
  deviceId: Buffer
  /** 32 bytes */
  mrSystem: Buffer
  /** 32 bytes */
  mrAggregated: Buffer
  osImageHash: Buffer
  keyProviderInfo: Buffer
}

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest()
}

/** SHA-256("") (docs/design.md#legacy-quirks-kept-byte-for-byte): the app-info path never knows the
 * PPID. */
export const EMPTY_DEVICE_ID = sha256()

/** `mr_key_provider`: 32 zero bytes when there is no key-provider info, else its SHA-256. */
export function mrKeyProvider(keyProviderInfo: Uint8Array): Buffer {
  return keyProviderInfo.length === 0 ? Buffer.alloc(32) : sha256(keyProviderInfo)
}

/**
 * `mrSystem = SHA-256(mr_td ‖ rtmr0 ‖ rtmr1 ‖ rtmr2 ‖ mr_key_provider)`, as upstream.
 * @param td the quote's TD report (its RTMR3 is not used)
 * @param keyProviderInfo the raw `key-provider` event payload (the JSON bytes), or empty when
 *   there is none or for boot-time values (`use_boottime_mr`); it is hashed here
 */
export function computeMrSystem(td: TdReport10, keyProviderInfo: Uint8Array): Buffer {
  return sha256(td.mrTd, td.rtmr0, td.rtmr1, td.rtmr2, mrKeyProvider(keyProviderInfo))
}

/**
 * `mrAggregated = SHA-256(mr_td ‖ rtmr0 ‖ rtmr1 ‖ rtmr2 ‖ rtmr3 [‖ mr_config_id ‖ mr_owner ‖
 * mr_owner_config])`, the bracket only when one of those three is non-zero, as upstream.
 * @param td the quote's TD report (its own RTMR3 is ignored)
 * @param rtmr3 the RTMR3 replayed from the runtime events: full, or up to `boot-mr-done` for
 *   boot-time values
 */
export function computeMrAggregated(td: TdReport10, rtmr3: Uint8Array): Buffer {
  const parts: Uint8Array[] = [td.mrTd, td.rtmr0, td.rtmr1, td.rtmr2, rtmr3]
  const isZero = (b: Buffer): boolean => b.every((x) => x === 0)
  if (!isZero(td.mrConfigId) || !isZero(td.mrOwner) || !isZero(td.mrOwnerConfig)) {
    parts.push(td.mrConfigId, td.mrOwner, td.mrOwnerConfig)
  }
  return sha256(...parts)
}

export interface DecodeAppInfoOptions {
  /** boot-time values: RTMR3 up to `boot-mr-done`, no key-provider (default false) */
  boottimeMr?: boolean
  /** an external vm_config; empty (default) falls back to the attestation's `config` */
  vmConfig?: string
  /** the TD report of a verified TDX attestation, whose runtime events were checked to replay to
   * its RTMR3: the full values then take RTMR3 from it instead of parsing the quote and
   * replaying the events again */
  verifiedTd?: TdReport10
}

function decodeAppInfoInner(
  a: Attestation,
  boottimeMr: boolean,
  vmConfig: string,
  verifiedTd: TdReport10 | undefined,
): AppInfo {
  const events = a.runtimeEvents
  const keyProviderInfo = boottimeMr ? Buffer.alloc(0) : findEventPayload(events, 'key-provider')
  let osImageHash: Buffer
  try {
    osImageHash = vmConfigOsImageHash(vmConfig === '' ? a.config : vmConfig, true)
  } catch (err) {
    throw withContext('Failed to decode os image hash', err)
  }
  const toEvent = boottimeMr ? BOOT_MR_DONE_EVENT : undefined
  let mrSystem: Buffer
  let mrAggregated: Buffer
  switch (a.quote.kind) {
    case 'dstack-tdx': {
      if (verifiedTd !== undefined && !boottimeMr) {
        mrSystem = computeMrSystem(verifiedTd, keyProviderInfo)
        mrAggregated = computeMrAggregated(verifiedTd, verifiedTd.rtmr3)
        break
      }
      let td: TdReport10 | null
      try {
        td = tdReportOf(parseQuote(a.quote.quote))
      } catch (err) {
        throw withContext('Failed to parse quote', err, 'KMS_ERR_ATTESTATION')
      }
      if (td === null) throw new KmsError('KMS_ERR_ATTESTATION', 'TDX report not found')
      mrSystem = computeMrSystem(td, keyProviderInfo)
      mrAggregated = computeMrAggregated(td, replayRuntimeEvents(events, toEvent))
      break
    }
    case 'dstack-gcp-tdx': {
      // GCP: the TPM's PCR0/PCR2 stand for the boot chain, PCR14 (SHA-256) for RTMR3
      const pcrValues = a.quote.tpmQuote.pcrValues
      const pcr = (index: number): Buffer => {
        const found = pcrValues.find((v) => v.index === index)
        if (found === undefined) throw new KmsError('KMS_ERR_ATTESTATION', `PCR ${index} not found`)
        return found.value
      }
      mrSystem = sha256(osImageHash, mrKeyProvider(keyProviderInfo))
      const pcr0 = pcr(0)
      const pcr2 = pcr(2)
      mrAggregated = sha256(pcr0, pcr2, replayRuntimeEvents(events, toEvent, 'sha256'))
      break
    }
    default:
      throw new KmsError('KMS_ERR_ATTESTATION', `app info of ${a.quote.kind} is not supported`)
  }
  return {
    appId: findEventPayload(events, 'app-id'),
    composeHash: findEventPayload(events, 'compose-hash'),
    instanceId: findEventPayload(events, 'instance-id'),
    deviceId: Buffer.from(EMPTY_DEVICE_ID),
    mrSystem,
    mrAggregated,
    osImageHash,
    keyProviderInfo,
  }
}

/** Upstream `into_v1().decode_app_info_ex(boottime_mr, vm_config)` (default: full values, the
 * embedded config): os_image_hash from the config with a nested `vm_config` unwrapped, and
 * `device_id = SHA-256("")`. Errors carry upstream's `decode app info: …` context. */
export function decodeAppInfo(a: Attestation, opts: DecodeAppInfoOptions = {}): AppInfo {
  try {
    return decodeAppInfoInner(a, opts.boottimeMr ?? false, opts.vmConfig ?? '', opts.verifiedTd)
  } catch (err) {
    throw withContext('decode app info', err, 'KMS_ERR_ATTESTATION')
  }
}

/** rmp-serde compact form of `AppInfo` (the `.1.9` extension): an 8-element array of `bin`s in
 * field order (the spec revision's form, without HEAD's `init_script_hashes`). */
export function encodeAppInfoMsgpack(info: AppInfo): Buffer {
  return Buffer.from(
    msgpackEncode([
      info.appId,
      info.composeHash,
      info.instanceId,
      info.deviceId,
      info.mrSystem,
      info.mrAggregated,
      info.osImageHash,
      info.keyProviderInfo,
    ]),
  )
}
