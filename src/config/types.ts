// The resolved configuration after layering (built-in defaults, /etc/kms/kms.toml, ./kms.toml,
// -c FILE). Every field a kms.toml key fills one-to-one is derived from that key's declaration
// in keys.ts (its `to` path and its kind: durations in milliseconds, null = "never"); only the
// settings the loader computes from several keys (aliases that must agree, the auth API union,
// the log level, byte limits) are written out here.
import type {
  AUTH_API_TYPES,
  CONFIG_KEYS,
  CRYPTO_BACKENDS,
  QUOTE_VERIFIERS,
  TEE_BACKENDS,
} from './keys.js'

type Decls = typeof CONFIG_KEYS

/** What a value of each kind is once resolved (durations in milliseconds, null = never; byte
 * sizes in bytes). */
type ResolvedOfKind<K> = K extends { kind: 'bool' }
  ? boolean
  : K extends { kind: 'port' | 'uint' }
    ? number
    : K extends { kind: 'duration' }
      ? number | null
      : K extends { kind: 'timeout' | 'bytes' }
        ? number
        : K extends { kind: 'enum'; values: readonly (infer V)[] }
          ? V
          : string

/** `'a.b.c'` with value V → `{ a: { b: { c: V } } }` */
type Nest<P extends string, V> = P extends `${infer Head}.${infer Rest}`
  ? { [F in Head]: Nest<Rest, V> }
  : { [F in P]: V }

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (
  x: infer I,
) => void
  ? I
  : never

/** Flattens intersections of nested objects into one plain object type. */
type Merge<T> = T extends object ? { [F in keyof T]: Merge<T[F]> } : T

/** One nested fragment per declared key with a `to` path. */
type Fragments = {
  [K in keyof Decls]: Decls[K] extends { to: infer P extends string; kind: infer Kind }
    ? Nest<P, ResolvedOfKind<Kind>>
    : never
}[keyof Decls]

export type TeeBackendName = (typeof TEE_BACKENDS)[number]
export type CryptoBackendPreference = (typeof CRYPTO_BACKENDS)[number]
export type AuthApiType = (typeof AUTH_API_TYPES)[number]
export type QuoteVerifierEngine = (typeof QUOTE_VERIFIERS)[number]

export type AuthApiConfig = {
  [T in AuthApiType]: {
    type: T
    /** `url` is http(s):// or `unix:<absolute socket path>`; `tokenFile` "" = no bearer secret */
    webhook: { url: string; timeoutMs: number; tokenFile: string }
    dev: { gatewayAppId: string }
  }
}[AuthApiType]

/** What the loader computes itself, beyond the one-to-one keys. */
interface Computed {
  rpc: {
    /** per-method body limits in bytes (`[rpc.limits] GetAppKey = "1MiB"`); unset → 10 MiB */
    limits: Record<string, number>
  }
  core: {
    /** `core.subject_postfix`, ".dstack" when unset (read by nothing; kept for completeness) */
    subjectPostfix: string
    /** `core.amd_kds_base_url` or its upstream HEAD spelling `core.attestation.urls.amd_kds` */
    amdKdsBaseUrl: string
    /** `core.pccs_url` or `core.attestation.urls.pccs`, else the Phala PCCS */
    pccsUrl: string
    authApi: AuthApiConfig
    attestation: {
      /** `root_ca.tdx` or its flat spelling `root_ca_tdx`; "" = Intel's production root */
      rootCa: { tdx: string }
    }
    image: {
      /** argv of the command producing QEMU's ACPI tables for legacy RTMR0 (no shell); [] = none */
      acpiTablesCommand: string[]
    }
    audit: {
      /** absolute path of the SQLite file (kms-audit.sqlite3 in the cert dir's parent unless set) */
      path: string
    }
  }
  authSimple: {
    /** absolute path of the sidecar's unix socket (used when `listen` is "unix") */
    socket: string
  }
  log: {
    /** pino level; from `[default] log_level` or RUST_LOG-like env, default "info" */
    level: string
  }
  /** the files that were layered, in order, for the start-up log */
  sources: string[]
  /** keys that were accepted but have no effect, and other non-fatal findings, for the log */
  warnings: string[]
}

export type KmsConfig = Merge<UnionToIntersection<Fragments> & Computed>

export type RpcConfig = KmsConfig['rpc']
export type RpcTlsConfig = RpcConfig['tls']
export type CoreConfig = KmsConfig['core']
export type TeeConfig = KmsConfig['tee']
export type AuthSimpleConfig = KmsConfig['authSimple']
export type ImageConfig = CoreConfig['image']
export type OnboardConfig = CoreConfig['onboard']
export type AdminConfig = CoreConfig['admin']
/** Upstream HEAD's `[core.attestation]` (verifier trust anchors and collateral URLs). */
export type AttestationConfig = CoreConfig['attestation']
export type LogConfig = KmsConfig['log']
/** The key-release audit log (docs/design.md#key-release-audit-log). */
export type AuditConfig = CoreConfig['audit']
/** Resource limits of every listener, in milliseconds and bytes
 * (docs/design.md#resource-limits-on-every-listener). */
export type LimitsConfig = KmsConfig['limits']
