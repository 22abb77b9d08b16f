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
  return new AuthSimpleConfigSource(path, logger).load()
}

/** How the policy file is reached (injectable for tests). */
export interface ConfigFileIo {
  exists(path: string): boolean
  readText(path: string): string
}

const fileIo: ConfigFileIo = {
  exists: existsSync,
  readText: (path) => readFileSync(path, 'utf8'),
}

/** One parse of one version of the file: the policy, or why it was refused. */
type Parsed = { ok: true; config: AuthSimpleConfig } | { ok: false; message: string }

/**
 * The policy file as a boot check sees it: read on every call, as upstream does, so an edit
 * applies to the next check; parsed again only when its text changed. The JSON parse and the
 * schema validation were the larger part of the file's cost in a boot check (measured on the
 * sidecar under load), and a KMS makes two checks per GetAppKey. A file that is missing or broken
 * yields the defaults and its error line on every call, as before.
 */
export class AuthSimpleConfigSource {
  readonly #path: string
  readonly #logger: ConfigLogger
  readonly #io: ConfigFileIo
  #text: string | undefined
  #parsed: Parsed | undefined

  constructor(path: string, logger: ConfigLogger, io: ConfigFileIo = fileIo) {
    this.#path = path
    this.#logger = logger
    this.#io = io
  }

  /** The policy now. Frozen: every later call until the file changes returns the same object. */
  load(): AuthSimpleConfig {
    if (!this.#io.exists(this.#path)) {
      this.#logger.error(`config file not found: ${this.#path}`)
      return defaultAuthSimpleConfig()
    }
    let parsed: Parsed
    try {
      const text = this.#io.readText(this.#path)
      if (text !== this.#text || this.#parsed === undefined) {
        this.#parsed = parseConfigText(text)
        this.#text = text
      }
      parsed = this.#parsed
    } catch (err) {
      parsed = { ok: false, message: String(err) }
    }
    if (parsed.ok) return parsed.config
    // `${err}` as upstream: "SyntaxError: …", a ZodError's issues as JSON, "Error: EISDIR: …"
    this.#logger.error(`failed to load config: ${parsed.message}`)
    return defaultAuthSimpleConfig()
  }
}

function parseConfigText(text: string): Parsed {
  try {
    return { ok: true, config: deepFreeze(authSimpleConfigSchema.parse(JSON.parse(text))) }
  } catch (err) {
    return { ok: false, message: String(err) }
  }
}

/** Shared between calls, so nobody may change it in place. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
