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
}

export function testConfigToml(o: TestConfigOptions): string {
  const certs = join(o.dir, 'certs')
  const hash = createHash('sha256').update(ADMIN_TOKEN).digest('hex')
  return `
[rpc]
address = "127.0.0.1"
port = ${o.port}

[rpc.tls]
key = "${certs}/rpc.key"
certs = "${certs}/rpc.crt"

[rpc.tls.mutual]
ca_certs = "${certs}/tmp-ca.crt"
mandatory = false

[core]
cert_dir = "${certs}"
admin_token_hash = "${hash}"
enforce_self_authorization = false
site_name = "e2e-site"
${o.core ?? ''}

[core.image]
verify = false
cache_dir = "${join(o.dir, 'cache')}"

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
