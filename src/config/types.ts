// The resolved configuration after layering (built-in defaults, /etc/kms/kms.toml, ./kms.toml,
// -c FILE). Key names mirror upstream kms.toml in camelCase; durations are resolved to
// milliseconds (null = "never") and byte limits to bytes. The value sets of enumerated keys come
// from their declaration in keys.ts.
import type { AUTH_API_TYPES, CRYPTO_BACKENDS, QUOTE_VERIFIERS, TEE_BACKENDS } from './keys.js'

export type TeeBackendName = (typeof TEE_BACKENDS)[number]

export interface RpcTlsConfig {
  key: string
  certs: string
  mutual: { caCerts: string; mandatory: boolean }
}

export interface RpcConfig {
  address: string
  port: number
  tls: RpcTlsConfig
  /** per-method body limits in bytes (`[rpc.limits] GetAppKey = "1MiB"`); unset → 10 MiB */
  limits: Record<string, number>
  /** main KMS worker processes sharing the listening socket; 0 = one per CPU core */
  workers: number
}

export type CryptoBackendPreference = (typeof CRYPTO_BACKENDS)[number]
export type QuoteVerifierEngine = (typeof QUOTE_VERIFIERS)[number]

export interface TeeConfig {
  backend: TeeBackendName
  simulator: {
    /** 64 hex digits, or "" when unset (required with backend = "simulator") */
    seed: string
    /** verify quotes against this simulator's mock root and serve its collateral locally */
    trustMockRoot: boolean
  }
}

export interface AuthSimpleConfig {
  /** run auth-simple as a supervised worker */
  enabled: boolean
  address: string
  port: number
  /** the policy file (JSON, auth-simple's format) */
  config: string
}

export type AuthApiType = (typeof AUTH_API_TYPES)[number]

export type AuthApiConfig = {
  [T in AuthApiType]: {
    type: T
    webhook: { url: string; timeoutMs: number }
    dev: { gatewayAppId: string }
  }
}[AuthApiType]

export interface ImageConfig {
  verify: boolean
  cacheDir: string
  downloadUrl: string
  downloadTimeoutMs: number | null
  /** LRU cap on the downloaded images kept under `cache_dir/images` */
  cacheMaxBytes: number
  /** a download larger than this is aborted */
  maxImageBytes: number
  /** argv of the command producing QEMU's ACPI tables for legacy RTMR0 (no shell); empty = none */
  acpiTablesCommand: string[]
  acpiTimeoutMs: number | null
  /** legacy scheme without an ACPI command: fail closed (`require`) or check MRTD+RTMR1+RTMR2 only */
  legacyRtmr0: 'require' | 'skip'
}

export interface OnboardConfig {
  enabled: boolean
  autoBootstrapDomain: string
  /** replicate the keys of this running KMS at first start (ours); "" = off */
  autoOnboardSource: string
  /** the RPC domain of this replica when auto-onboarding */
  autoOnboardDomain: string
  address: string
  port: number
  /** HTTPS with an ephemeral self-signed certificate (false = upstream plain HTTP) */
  tls: boolean
}

export interface AdminConfig {
  enabled: boolean
  address: string
  port: number
  authToken: string
  htpasswdFile: string
  insecureNoAuth: boolean
}

/** Upstream HEAD's `[core.attestation]` (verifier trust anchors and collateral URLs). */
export interface AttestationConfig {
  /** must be true for any `rootCa` entry to be accepted (upstream HEAD rule) */
  insecureAllowExternalTrustAnchors: boolean
  /** ours, not upstream: which DCAP verifier checks quotes (`dcap-qvl` is the pure-JS library
   * the node:crypto one is tested against, kept selectable for comparison) */
  quoteVerifier: QuoteVerifierEngine
  /** "" = not set; `core.pccs_url` / `core.amd_kds_base_url` are the resolved values */
  urls: { pccs: string; amdKds: string }
  /** absolute paths of replacement root CAs; "" = vendor production root */
  rootCa: {
    tdx: string
    gcpTpm: string
    awsNitroEnclave: string
    awsNitroTpm: string
    sevSnpMilan: string
    sevSnpGenoa: string
    sevSnpTurin: string
  }
}

/** The key-release audit log (docs/design.md#key-release-audit-log). */
export interface AuditConfig {
  enabled: boolean
  /** absolute path of the SQLite file ("" in the file resolves to kms-audit.sqlite3 in the cert dir's parent) */
  path: string
  /** oldest rows are dropped above this many bytes; 0 = no size limit */
  maxBytes: number
  /** rows older than this are dropped (ms); null = never */
  maxAgeMs: number | null
}

export interface CoreConfig {
  certDir: string
  subjectPostfix: string
  /** hex SHA-256 of the admin token; "" = ClearImageCache always refused */
  adminTokenHash: string
  siteName: string
  enforceSelfAuthorization: boolean
  amdKdsBaseUrl: string
  pccsUrl: string
  sevSnpKeyRelease: boolean
  awsNitroTpmKeyRelease: boolean
  image: ImageConfig
  metrics: { enabled: boolean }
  audit: AuditConfig
  authApi: AuthApiConfig
  onboard: OnboardConfig
  admin: AdminConfig
  attestation: AttestationConfig
}

export interface LogConfig {
  /** pino level; from `[default] log_level` or RUST_LOG-like env, default "info" */
  level: string
}

export interface KmsConfig {
  rpc: RpcConfig
  core: CoreConfig
  tee: TeeConfig
  crypto: { backend: CryptoBackendPreference }
  authSimple: AuthSimpleConfig
  log: LogConfig
  /** the files that were layered, in order, for the start-up log */
  sources: string[]
  /** keys that were accepted but have no effect, and other non-fatal findings, for the log */
  warnings: string[]
}
