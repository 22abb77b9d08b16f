// A BootInfo whose every measurement is a distinct filler byte (mrAggregated 0x01 … deviceId 0x07),
// so a field sent under the wrong name or in the wrong place shows in what the policy received.
import type { BootInfo } from '../../src/attestation/boot-info.js'

export function sampleBootInfo(overrides: Partial<BootInfo> = {}): BootInfo {
  return {
    attestationMode: 'dstack-tdx',
    mrAggregated: Buffer.alloc(32, 0x01),
    osImageHash: Buffer.alloc(32, 0x02),
    mrSystem: Buffer.alloc(32, 0x03),
    appId: Buffer.alloc(20, 0x04),
    composeHash: Buffer.alloc(32, 0x05),
    instanceId: Buffer.alloc(20, 0x06),
    deviceId: Buffer.alloc(32, 0x07),
    keyProviderInfo: Buffer.alloc(0),
    tcbStatus: 'UpToDate',
    advisoryIds: [],
    ...overrides,
  }
}
