// The resolved configuration after layering (built-in defaults, /etc/kms/kms.toml, ./kms.toml,
// -c FILE). Key names mirror upstream kms.toml (spec 06 §1) in camelCase; durations are resolved
// to milliseconds (null = "never") and byte limits to bytes.

export type TeeBackendName = 'none' | 'simulator' | 'tdx'

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
}

export type AuthApiConfig =
  | { type: 'webhook'; webhook: { url: string; timeoutMs: number }; dev: { gatewayAppId: string } }
  | { type: 'dev'; webhook: { url: string; timeoutMs: number }; dev: { gatewayAppId: string } }

export interface ImageConfig {
  verify: boolean
  cacheDir: string
  downloadUrl: string
  downloadTimeoutMs: number | null
}

export interface OnboardConfig {
  enabled: boolean
  autoBootstrapDomain: string
  address: string
  port: number
  /** D5: HTTPS with an ephemeral self-signed certificate (false = upstream plain HTTP) */
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

export interface CoreConfig {
  certDir: string
  subjectPostfix: string
  /** hex SHA-256 of the admin token (D3); "" = ClearImageCache always refused */
  adminTokenHash: string
  siteName: string
  enforceSelfAuthorization: boolean
  amdKdsBaseUrl: string
  pccsUrl: string
  sevSnpKeyRelease: boolean
  awsNitroTpmKeyRelease: boolean
  image: ImageConfig
  metrics: { enabled: boolean }
  authApi: AuthApiConfig
  onboard: OnboardConfig
  admin: AdminConfig
}

export interface LogConfig {
  /** pino level; from `[default] log_level` or RUST_LOG-like env, default "info" */
  level: string
}

export interface KmsConfig {
  rpc: RpcConfig
  core: CoreConfig
  tee: { backend: TeeBackendName }
  log: LogConfig
  /** the files that were layered, in order, for the start-up log */
  sources: string[]
}
