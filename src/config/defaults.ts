// Built-in defaults: upstream's embedded kms.toml (spec 06 §1.2) without the keys that have no
// effect here, plus our additions (spec 06 §1.3, D5, D9, D17). This is the bottom layer, so every
// key the typed configuration needs is always present.

import type { RawTable } from './schema.js'

export const DEFAULT_ETC_FILE = '/etc/kms/kms.toml'
export const DEFAULT_PCCS_URL = 'https://pccs.phala.network'
/** upstream: `share/dstack/images` under the `/usr` prefix */
export const DEFAULT_IMAGE_CACHE_DIR = '/usr/share/dstack/images'
export const DEFAULT_WEBHOOK_TIMEOUT = '30s'
export const DEFAULT_LOG_LEVEL = 'info'
export const DEFAULT_AUTH_SIMPLE_PORT = 8001

export function builtinDefaults(): RawTable {
  return {
    default: { log_level: DEFAULT_LOG_LEVEL },
    rpc: {
      address: '0.0.0.0',
      port: 8000,
      tls: {
        key: '/etc/kms/certs/rpc.key',
        certs: '/etc/kms/certs/rpc.crt',
        mutual: { ca_certs: '/etc/kms/certs/tmp-ca.crt', mandatory: false },
      },
      limits: {},
    },
    core: {
      cert_dir: '/etc/kms/certs',
      admin_token_hash: '',
      site_name: '',
      enforce_self_authorization: true,
      amd_kds_base_url: '',
      sev_snp_key_release: false,
      aws_nitro_tpm_key_release: false,
      attestation: {
        insecure_allow_external_trust_anchors: false,
        urls: {},
        root_ca: {},
      },
      image: {
        // OS-image verification is not implemented yet; verify = true fails closed at key release.
        verify: false,
        cache_dir: DEFAULT_IMAGE_CACHE_DIR,
        download_url: 'http://localhost:8000/{OS_IMAGE_HASH}.tar.gz',
        download_timeout: '2m',
      },
      metrics: { enabled: true },
      // key-release audit log; path "" = kms-audit.sqlite3 beside the cert dir
      audit: { enabled: true, path: '', max_size: '256MiB', max_age: 'never' },
      auth_api: {
        type: 'webhook',
        webhook: { url: 'http://auth-api:8000', timeout: DEFAULT_WEBHOOK_TIMEOUT },
        dev: { gateway_app_id: 'any' },
      },
      onboard: {
        enabled: true,
        auto_bootstrap_domain: '',
        address: '0.0.0.0',
        port: 8000,
        tls: true,
      },
      admin: {
        enabled: false,
        address: '127.0.0.1',
        port: 8001,
        auth_token: '',
        htpasswd_file: '',
        insecure_no_auth: false,
      },
    },
    // D17: with no configuration a KMS on a machine without TDX fails closed.
    tee: { backend: 'tdx', simulator: { seed: '', trust_mock_root: false } },
    crypto: { backend: 'auto' },
    auth_simple: {
      enabled: false,
      address: '127.0.0.1',
      port: DEFAULT_AUTH_SIMPLE_PORT,
      config: 'auth-config.json',
    },
  }
}
