// auth-simple's decision (upstream `kms/auth-simple`): a pure function of the policy and one
// BootInfo, so the upstream test vectors run against it directly. The first failing check decides.
import { z } from 'zod'
import type { BootResponse } from '../auth/auth-api.js'
import type { AuthSimpleConfig } from './config.js'

/** What the routes accept: unknown keys such as keyProviderInfo are dropped. */
export const bootInfoRequestSchema = z.object({
  // the spec revision's name and upstream HEAD's; neither is checked
  attestationMode: z.string().optional().default(''),
  teeVariant: z.string().optional().default(''),
  mrAggregated: z.string(),
  osImageHash: z.string(),
  appId: z.string(),
  composeHash: z.string(),
  instanceId: z.string(),
  deviceId: z.string(),
  tcbStatus: z.string().optional().default(''),
  advisoryIds: z.array(z.string()).optional().default([]),
  mrSystem: z.string().optional().default(''),
})

export type AuthSimpleBootInfo = z.infer<typeof bootInfoRequestSchema>

/** Lower case with a `0x` prefix; deliberately no trimming or hex validation (upstream). */
export function normalizeHex(hex: string): string {
  const lower = hex.toLowerCase()
  return lower.startsWith('0x') ? lower : `0x${lower}`
}

export function checkBoot(
  cfg: AuthSimpleConfig,
  bootInfo: AuthSimpleBootInfo,
  isKms: boolean,
): BootResponse {
  const deny = (reason: string): BootResponse => ({
    isAllowed: false,
    reason,
    gatewayAppId: cfg.gatewayAppId,
  })
  if (!cfg.allowedTcbStatuses.includes(bootInfo.tcbStatus)) {
    return deny('TCB status is not allowed')
  }
  for (const id of bootInfo.advisoryIds) {
    if (!cfg.allowedAdvisoryIds.includes(id)) return deny('advisory ID is not allowed')
  }
  if (!cfg.osImages.map(normalizeHex).includes(normalizeHex(bootInfo.osImageHash))) {
    return deny('OS image is not allowed')
  }
  const deviceId = normalizeHex(bootInfo.deviceId)
  if (isKms) {
    // an empty allowlist matches nothing: every KMS is denied until one is pinned
    if (!cfg.kms.mrAggregated.map(normalizeHex).includes(normalizeHex(bootInfo.mrAggregated))) {
      return deny('aggregated MR not allowed')
    }
    // upstream quirk kept (docs/design.md#legacy-quirks-kept-byte-for-byte): an empty device list with allowAnyDevice = false allows any
    if (!cfg.kms.allowAnyDevice && !deviceAllowed(cfg.kms.devices, deviceId)) {
      return deny('KMS is not allowed to boot on this device')
    }
  } else {
    const appId = normalizeHex(bootInfo.appId)
    const app = Object.entries(cfg.apps).find(([id]) => normalizeHex(id) === appId)?.[1]
    if (app === undefined) return deny('app not registered')
    if (!app.composeHashes.map(normalizeHex).includes(normalizeHex(bootInfo.composeHash))) {
      return deny('compose hash not allowed')
    }
    if (!app.allowAnyDevice && !deviceAllowed(app.devices, deviceId)) {
      return deny('app is not allowed to boot on this device')
    }
    if (
      app.mrSystem.length > 0 &&
      !app.mrSystem.map(normalizeHex).includes(normalizeHex(bootInfo.mrSystem))
    ) {
      return deny('system MR not allowed')
    }
  }
  return { isAllowed: true, reason: '', gatewayAppId: cfg.gatewayAppId }
}

function deviceAllowed(devices: string[], deviceId: string): boolean {
  return devices.length === 0 || devices.map(normalizeHex).includes(deviceId)
}
