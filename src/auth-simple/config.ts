// The auth-simple policy file (upstream `kms/auth-simple`'s `auth-config.json`). Read on every
// request, so an edit takes effect on the next boot check without a restart or a watcher; a file
// that is missing or broken yields the defaults, which deny every boot ("OS image is not allowed"),
// so a bad edit fails closed.
import { existsSync, readFileSync } from 'node:fs'
import { z } from 'zod'

const ZERO_ADDRESS = '0x0000000000000000000000000000000000000000'

const appPolicySchema = z.object({
  composeHashes: z.array(z.string()).default([]),
  devices: z.array(z.string()).default([]),
  allowAnyDevice: z.boolean().default(false),
  // Ours, optional: without OS-image verification (core.image.verify = false) osImageHash is the
  // caller's claim, so the measured OS identity (mrSystem: MRTD, RTMR0-2, key provider) is what
  // can pin an app's image. Empty = not checked, as upstream (which has no such key).
  mrSystem: z.array(z.string()).default([]),
})

const kmsPolicySchema = z.object({
  mrAggregated: z.array(z.string()).default([]),
  devices: z.array(z.string()).default([]),
  allowAnyDevice: z.boolean().default(false),
})

export const authSimpleConfigSchema = z.object({
  gatewayAppId: z.string().default(''),
  kmsContractAddr: z.string().default(ZERO_ADDRESS),
  chainId: z.number().default(0),
  appImplementation: z.string().default(ZERO_ADDRESS),
  osImages: z.array(z.string()).default([]),
  allowedTcbStatuses: z.array(z.string()).default(['UpToDate']),
  allowedAdvisoryIds: z.array(z.string()).default([]),
  kms: kmsPolicySchema.default({}),
  apps: z.record(z.string(), appPolicySchema).default({}),
})

export type AuthSimpleConfig = z.infer<typeof authSimpleConfigSchema>

export function defaultAuthSimpleConfig(): AuthSimpleConfig {
  return authSimpleConfigSchema.parse({})
}

/** Where load problems are reported (a pino logger fits). */
export interface ConfigLogger {
  error(msg: string): void
}

export function loadAuthSimpleConfig(path: string, logger: ConfigLogger): AuthSimpleConfig {
  if (!existsSync(path)) {
    logger.error(`config file not found: ${path}`)
    return defaultAuthSimpleConfig()
  }
  try {
    return authSimpleConfigSchema.parse(JSON.parse(readFileSync(path, 'utf8')))
  } catch (err) {
    // `${err}` as upstream: "SyntaxError: …", a ZodError's issues as JSON, "Error: EISDIR: …"
    logger.error(`failed to load config: ${String(err)}`)
    return defaultAuthSimpleConfig()
  }
}
