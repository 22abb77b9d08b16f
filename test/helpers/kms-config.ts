// Test configurations for `dstack-kms serve`: everything under one temp directory, explicit
// backend "none", dev auth, loopback only.
import { createHash } from 'node:crypto'
import { join } from 'node:path'

export const ADMIN_TOKEN = 'my-secret-admin-token'

export interface TestConfigOptions {
  dir: string
  port: number
  /** extra TOML appended at the end (later keys in new tables) */
  extra?: string
  core?: string
  onboard?: string
  authApi?: string
  /** [rpc] workers (default 1: tests start many KMS processes on two cores) */
  workers?: number
}

export interface SharedTomlOptions {
  dir: string
  port: number
  workers: number
  enforceSelfAuthorization: boolean
  siteName: string
  /** extra lines in [core] */
  core: string
  /** [core.image] verify (default false) */
  imageVerify?: boolean
}

/** What every test KMS shares: the main listener on loopback, TLS files and caches under
 * `dir`, the admin token hash of ADMIN_TOKEN, image verification off unless asked for. */
export function sharedToml(o: SharedTomlOptions): string {
  const certs = join(o.dir, 'certs')
  const hash = createHash('sha256').update(ADMIN_TOKEN).digest('hex')
  return `
[rpc]
address = "127.0.0.1"
port = ${o.port}
workers = ${o.workers}

[rpc.tls]
key = "${certs}/rpc.key"
certs = "${certs}/rpc.crt"

[rpc.tls.mutual]
ca_certs = "${certs}/tmp-ca.crt"
mandatory = false

[core]
cert_dir = "${certs}"
admin_token_hash = "${hash}"
enforce_self_authorization = ${o.enforceSelfAuthorization}
site_name = "${o.siteName}"
${o.core}

[core.image]
verify = ${o.imageVerify === true}
cache_dir = "${join(o.dir, 'cache')}"
`
}

export function testConfigToml(o: TestConfigOptions): string {
  return `${sharedToml({
    dir: o.dir,
    port: o.port,
    workers: o.workers ?? 1,
    enforceSelfAuthorization: false,
    siteName: 'e2e-site',
    core: o.core ?? '',
  })}
${o.authApi ?? '[core.auth_api]\ntype = "dev"\n\n[core.auth_api.dev]\ngateway_app_id = "any"'}

[core.onboard]
enabled = true
address = "127.0.0.1"
port = ${o.port}
${o.onboard ?? ''}

[tee]
backend = "none"
${o.extra ?? ''}
`
}

export interface AttestedConfigOptions {
  dir: string
  port: number
  /** the sidecar's TCP port (used only with sidecarListen = "tcp") */
  authPort?: number
  /** [auth_simple] listen (default "unix": the socket run/auth-simple.sock under `dir`) */
  sidecarListen?: 'unix' | 'tcp'
  seed: string
  /** the auth-simple policy file (default <dir>/auth-config.json) */
  policyFile?: string
  /** instead of the auth-simple sidecar: an external webhook URL */
  webhookUrl?: string
  webhookTimeout?: string
  autoBootstrapDomain?: string
  /** extra lines in [core] */
  core?: string
  extra?: string
  /** [core.image] verify (default true: simulated guests carry lite measurement documents) */
  imageVerify?: boolean
}

/** A KMS on the TEE simulator trusting its mock root, self-authorizing against an auth-simple
 * sidecar (or an external webhook): the attested configuration the quick start uses. */
export function attestedConfigToml(o: AttestedConfigOptions): string {
  const tcp = o.sidecarListen === 'tcp'
  if (tcp && o.authPort === undefined) throw new Error('a TCP sidecar needs authPort')
  const webhook =
    o.webhookUrl ??
    (tcp ? `http://127.0.0.1:${o.authPort}` : `unix:${join(o.dir, 'run', 'auth-simple.sock')}`)
  return `${sharedToml({
    dir: o.dir,
    port: o.port,
    workers: 1,
    enforceSelfAuthorization: true,
    siteName: 'attested-site',
    core: o.core ?? '',
    imageVerify: o.imageVerify ?? true,
  })}
[core.auth_api]
type = "webhook"

[core.auth_api.webhook]
url = "${webhook}"
timeout = "${o.webhookTimeout ?? '10s'}"

[core.onboard]
enabled = true
address = "127.0.0.1"
port = ${o.port}
auto_bootstrap_domain = "${o.autoBootstrapDomain ?? ''}"

[auth_simple]
enabled = ${o.webhookUrl === undefined}
${tcp ? `listen = "tcp"\naddress = "127.0.0.1"\nport = ${o.authPort}` : 'listen = "unix"'}
config = "${o.policyFile ?? join(o.dir, 'auth-config.json')}"

[tee]
backend = "simulator"

[tee.simulator]
seed = "${o.seed}"
trust_mock_root = true
${o.extra ?? ''}
`
}
