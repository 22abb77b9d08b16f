// Every kms.toml key, declared once: its upstream (dotted, snake_case) name, its kind, its
// built-in default and one line of documentation. The layer checker (schema.ts), the built-in
// defaults (defaults.ts), the loader (load.ts), the KmsConfig type (types.ts) and the
// documentation test all walk this table, so adding a key that maps one-to-one onto a KmsConfig
// field (`to`) is this one entry.

/** What a key's value must be; each kind has one checker in schema.ts. */
export type LeafKind =
  | { readonly kind: 'string' }
  | { readonly kind: 'path' }
  | { readonly kind: 'bool' }
  | { readonly kind: 'port' }
  | { readonly kind: 'uint' }
  | { readonly kind: 'duration' }
  /** a duration that must end: from 1s to 24d, never "never" or 0 */
  | { readonly kind: 'timeout' }
  | { readonly kind: 'bytes' }
  | { readonly kind: 'enum'; readonly values: readonly string[] }
  | { readonly kind: 'string-or-bool' }

export interface KeyDecl {
  readonly kind: LeafKind
  /** the built-in default (the bottom layer); absent = optional, no value unless a file sets it */
  readonly default?: string | boolean | number
  readonly doc: string
  /** set when the key is accepted for compatibility but has no effect here: the warning text */
  readonly unused?: string
  /** where the loader puts the value in KmsConfig (dotted camelCase path), converted by kind:
   * paths resolved against the working directory, durations to milliseconds (null = never),
   * byte sizes to bytes; a
   * key without one is read by the loader's own code (aliases, derived settings) or not at all */
  readonly to?: string
  /** the value is stored lower-cased (hex digests and seeds) */
  readonly lowercase?: boolean
}

/** `[default] log_level` and RUST_LOG names → pino levels. Rocket's own names (`normal`,
 * `critical`, `off`) are accepted because upstream files may carry them. */
export const LOG_LEVELS: Readonly<Record<string, string>> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  normal: 'info',
  warn: 'warn',
  error: 'error',
  critical: 'error',
  fatal: 'fatal',
  off: 'silent',
  silent: 'silent',
}

export const DEFAULT_PCCS_URL = 'https://pccs.phala.network'

const str = { kind: 'string' } as const
const path = { kind: 'path' } as const
const bool = { kind: 'bool' } as const
const port = { kind: 'port' } as const
const uint = { kind: 'uint' } as const
const duration = { kind: 'duration' } as const
const timeout = { kind: 'timeout' } as const
const stringOrBool = { kind: 'string-or-bool' } as const
const bytes = { kind: 'bytes' } as const

const ROCKET_KNOB =
  'is a Rocket server knob with no effect in dstack-kms-ts (upstream loads it non-nested, so it never reaches Rocket either)'
// Upstream hands the whole [rpc] table to Rocket, so Rocket's own knobs work there.
const RPC_ROCKET_KNOB = 'is a Rocket server knob with no effect in dstack-kms-ts'

function enumOf<const V extends readonly string[]>(values: V): { kind: 'enum'; values: V } {
  return { kind: 'enum', values }
}

export const TEE_BACKENDS = ['none', 'simulator', 'guest-agent', 'tdx'] as const
export const CRYPTO_BACKENDS = ['auto', 'native', 'js'] as const
export const AUTH_API_TYPES = ['webhook', 'dev'] as const
export const QUOTE_VERIFIERS = ['node-crypto', 'dcap-qvl'] as const
export const LEGACY_RTMR0_MODES = ['require', 'skip'] as const
export const AUTH_SIMPLE_LISTENERS = ['unix', 'tcp'] as const

export const CONFIG_KEYS = {
  'default.workers': { kind: uint, doc: 'Rocket knob', unused: ROCKET_KNOB },
  'default.max_blocking': { kind: uint, doc: 'Rocket knob', unused: ROCKET_KNOB },
  'default.ident': { kind: stringOrBool, doc: 'Rocket knob', unused: ROCKET_KNOB },
  'default.temp_dir': { kind: str, doc: 'Rocket knob', unused: ROCKET_KNOB },
  'default.keep_alive': { kind: uint, doc: 'Rocket knob', unused: ROCKET_KNOB },
  'default.log_level': {
    kind: enumOf(Object.keys(LOG_LEVELS)),
    default: 'info',
    doc: 'log level (RUST_LOG overrides it)',
  },

  'rpc.address': { kind: str, default: '0.0.0.0', doc: 'main listener address', to: 'rpc.address' },
  'rpc.port': { kind: port, default: 8000, doc: 'main listener port', to: 'rpc.port' },
  'rpc.tls.key': {
    kind: path,
    default: '/etc/kms/certs/rpc.key',
    doc: 'server TLS key',
    to: 'rpc.tls.key',
  },
  'rpc.tls.certs': {
    kind: path,
    default: '/etc/kms/certs/rpc.crt',
    doc: 'server certificate',
    to: 'rpc.tls.certs',
  },
  'rpc.tls.mutual.ca_certs': {
    to: 'rpc.tls.mutual.caCerts',
    kind: path,
    default: '/etc/kms/certs/tmp-ca.crt',
    doc: 'client-certificate trust anchor',
  },
  'rpc.tls.mutual.mandatory': {
    kind: bool,
    default: false,
    doc: 'require a client certificate',
    to: 'rpc.tls.mutual.mandatory',
  },
  'rpc.workers': {
    kind: uint,
    default: 0,
    doc: 'main worker processes; 0 = one per CPU core',
    to: 'rpc.workers',
  },
  'rpc.max_blocking': { kind: uint, doc: 'Rocket knob', unused: RPC_ROCKET_KNOB },
  'rpc.ident': { kind: stringOrBool, doc: 'Rocket knob', unused: RPC_ROCKET_KNOB },
  'rpc.temp_dir': { kind: str, doc: 'Rocket knob', unused: RPC_ROCKET_KNOB },
  'rpc.keep_alive': { kind: uint, doc: 'Rocket knob', unused: RPC_ROCKET_KNOB },
  'rpc.log_level': { kind: str, doc: 'Rocket knob', unused: RPC_ROCKET_KNOB },

  'core.cert_dir': {
    kind: path,
    default: '/etc/kms/certs',
    doc: 'keys and certificates',
    to: 'core.certDir',
  },
  'core.subject_postfix': {
    kind: str,
    doc: 'unused upstream too',
    unused: 'is unused (upstream never reads it)',
  },
  'core.admin_token_hash': {
    kind: str,
    default: '',
    doc: 'SHA-256 of the ClearImageCache token',
    to: 'core.adminTokenHash',
    lowercase: true,
  },
  'core.site_name': {
    kind: str,
    default: '',
    doc: 'shown by GetAttestationInfo and onboarding',
    to: 'core.siteName',
  },
  'core.enforce_self_authorization': {
    to: 'core.enforceSelfAuthorization',
    kind: bool,
    default: true,
    doc: 'attest and authorize this KMS before serving',
  },
  'core.amd_kds_base_url': { kind: str, default: '', doc: 'AMD KDS base URL; "" = built-in' },
  'core.pccs_url': { kind: str, doc: 'Intel collateral source (default the Phala PCCS)' },
  'core.sev_snp_key_release': {
    kind: bool,
    default: false,
    doc: 'release keys to SEV-SNP',
    to: 'core.sevSnpKeyRelease',
  },
  'core.aws_nitro_tpm_key_release': {
    to: 'core.awsNitroTpmKeyRelease',
    kind: bool,
    default: false,
    doc: 'release keys to AWS NitroTPM',
  },
  'core.attest_rpc_cert': {
    kind: bool,
    doc: 'no effect',
    unused:
      'has no effect: the RPC certificate is attested whenever tee.backend can attest; use [tee] backend = "none" to run without attestation',
  },
  'core.attestation.insecure_allow_external_trust_anchors': {
    to: 'core.attestation.insecureAllowExternalTrustAnchors',
    kind: bool,
    default: false,
    doc: 'allow root_ca replacements',
  },
  'core.attestation.quote_verifier': {
    kind: enumOf(QUOTE_VERIFIERS),
    default: 'node-crypto',
    doc: 'DCAP quote verifier: node-crypto, or the dcap-qvl library on request',
    to: 'core.attestation.quoteVerifier',
  },
  'core.attestation.urls.pccs': {
    kind: str,
    doc: 'upstream HEAD spelling of core.pccs_url',
    to: 'core.attestation.urls.pccs',
  },
  'core.attestation.urls.amd_kds': {
    to: 'core.attestation.urls.amdKds',
    kind: str,
    doc: 'upstream HEAD spelling of core.amd_kds_base_url',
  },
  'core.attestation.root_ca_tdx': { kind: path, doc: 'flat spelling of root_ca.tdx' },
  'core.attestation.root_ca.tdx': { kind: path, doc: 'replacement TDX root CA' },
  'core.attestation.root_ca.gcp_tpm': {
    kind: path,
    doc: 'replacement GCP TPM root CA',
    to: 'core.attestation.rootCa.gcpTpm',
  },
  'core.attestation.root_ca.aws_nitro_enclave': {
    kind: path,
    doc: 'replacement root CA',
    to: 'core.attestation.rootCa.awsNitroEnclave',
  },
  'core.attestation.root_ca.aws_nitro_tpm': {
    kind: path,
    doc: 'replacement root CA',
    to: 'core.attestation.rootCa.awsNitroTpm',
  },
  'core.attestation.root_ca.sev_snp_milan': {
    kind: path,
    doc: 'replacement root CA',
    to: 'core.attestation.rootCa.sevSnpMilan',
  },
  'core.attestation.root_ca.sev_snp_genoa': {
    kind: path,
    doc: 'replacement root CA',
    to: 'core.attestation.rootCa.sevSnpGenoa',
  },
  'core.attestation.root_ca.sev_snp_turin': {
    kind: path,
    doc: 'replacement root CA',
    to: 'core.attestation.rootCa.sevSnpTurin',
  },
  // verify = true is the production setting (kms.toml.example); the built-in default stays false
  // so that a bare development start needs no image source.
  'core.image.verify': {
    kind: bool,
    default: false,
    doc: 'verify OS images before key release',
    to: 'core.image.verify',
  },
  'core.image.cache_dir': {
    to: 'core.image.cacheDir',
    kind: path,
    // upstream: `share/dstack/images` under the `/usr` prefix
    default: '/usr/share/dstack/images',
    doc: 'image and SQLite cache directory',
  },
  'core.image.download_url': {
    to: 'core.image.downloadUrl',
    kind: str,
    default: 'http://localhost:8000/{OS_IMAGE_HASH}.tar.gz',
    doc: 'where images are fetched from',
  },
  'core.image.download_timeout': {
    kind: duration,
    default: '2m',
    doc: 'image download timeout',
    to: 'core.image.downloadTimeoutMs',
  },
  'core.image.cache_max_bytes': {
    kind: bytes,
    default: '8GiB',
    doc: 'LRU cap on downloaded images',
    to: 'core.image.cacheMaxBytes',
  },
  'core.image.max_image_bytes': {
    kind: bytes,
    default: '2GiB',
    doc: 'image download size cap',
    to: 'core.image.maxImageBytes',
  },
  // the command line is computed in load.ts
  'core.image.acpi_tables_command': {
    kind: str,
    default: '',
    doc: 'argv (split on whitespace, no shell) printing QEMU ACPI tables for legacy RTMR0',
  },
  'core.image.acpi_timeout': {
    kind: duration,
    default: '30s',
    doc: 'ACPI tables command timeout',
    to: 'core.image.acpiTimeoutMs',
  },
  'core.image.legacy_rtmr0': {
    kind: enumOf(LEGACY_RTMR0_MODES),
    default: 'require',
    doc: 'legacy guests without an ACPI command: refuse (require) or skip RTMR0',
    to: 'core.image.legacyRtmr0',
  },
  'core.audit.enabled': {
    kind: bool,
    default: true,
    doc: 'write the key-release audit log',
    to: 'core.audit.enabled',
  },
  // the path is computed in load.ts
  'core.audit.path': {
    kind: path,
    default: '',
    doc: 'audit log SQLite file; "" = kms-audit.sqlite3 beside the cert dir',
  },
  'core.audit.max_size': {
    kind: bytes,
    default: '256MiB',
    doc: 'audit log size retention',
    to: 'core.audit.maxBytes',
  },
  'core.audit.max_age': {
    kind: duration,
    default: 'never',
    doc: 'audit log age retention',
    to: 'core.audit.maxAgeMs',
  },
  'core.metrics.enabled': {
    kind: bool,
    default: true,
    doc: 'serve GET /metrics',
    to: 'core.metrics.enabled',
  },
  'core.auth_api.type': { kind: enumOf(AUTH_API_TYPES), default: 'webhook', doc: 'auth API' },
  'core.auth_api.webhook.url': {
    kind: str,
    default: 'http://auth-api:8000',
    doc: 'auth webhook base URL',
  },
  'core.auth_api.webhook.timeout': { kind: duration, default: '30s', doc: 'webhook timeout' },
  // read by the loader into the webhook settings
  'core.auth_api.webhook.token_file': {
    kind: path,
    default: '',
    doc: 'file holding the bearer secret sent to the webhook; "" = none',
  },
  'core.auth_api.dev.gateway_app_id': { kind: str, default: 'any', doc: 'dev-mode gateway id' },
  'core.onboard.enabled': {
    kind: bool,
    default: true,
    doc: 'onboard when there are no keys',
    to: 'core.onboard.enabled',
  },
  'core.onboard.auto_bootstrap_domain': {
    to: 'core.onboard.autoBootstrapDomain',
    kind: str,
    default: '',
    doc: 'bootstrap for this domain without HTTP',
  },
  'core.onboard.auto_onboard_source': {
    to: 'core.onboard.autoOnboardSource',
    kind: str,
    default: '',
    doc: 'replicate this running KMS (https URL) at first start without HTTP',
  },
  'core.onboard.auto_onboard_domain': {
    to: 'core.onboard.autoOnboardDomain',
    kind: str,
    default: '',
    doc: 'RPC domain of this replica when auto-onboarding',
  },
  'core.onboard.address': {
    kind: str,
    default: '0.0.0.0',
    doc: 'onboarding listener address',
    to: 'core.onboard.address',
  },
  'core.onboard.port': {
    kind: port,
    default: 8000,
    doc: 'onboarding listener port',
    to: 'core.onboard.port',
  },
  'core.onboard.tls': {
    kind: bool,
    default: true,
    doc: 'onboarding over HTTPS',
    to: 'core.onboard.tls',
  },
  'core.admin.enabled': {
    kind: bool,
    default: false,
    doc: 'start the admin listener',
    to: 'core.admin.enabled',
  },
  'core.admin.address': {
    kind: str,
    default: '127.0.0.1',
    doc: 'admin listener address',
    to: 'core.admin.address',
  },
  'core.admin.port': {
    kind: port,
    default: 8001,
    doc: 'admin listener port',
    to: 'core.admin.port',
  },
  'core.admin.auth_token': {
    kind: str,
    default: '',
    doc: 'shared admin token',
    to: 'core.admin.authToken',
  },
  'core.admin.htpasswd_file': {
    kind: path,
    default: '',
    doc: 'bcrypt htpasswd file',
    to: 'core.admin.htpasswdFile',
  },
  'core.admin.insecure_no_auth': {
    kind: bool,
    default: false,
    doc: 'no admin authentication',
    to: 'core.admin.insecureNoAuth',
  },

  // With no configuration a KMS on a machine without TDX fails closed.
  'tee.backend': {
    kind: enumOf(TEE_BACKENDS),
    default: 'tdx',
    doc: 'TEE backend',
    to: 'tee.backend',
  },
  'tee.simulator.seed': {
    kind: str,
    default: '',
    doc: 'simulator seed (64 hex digits)',
    to: 'tee.simulator.seed',
    lowercase: true,
  },
  'tee.simulator.trust_mock_root': {
    to: 'tee.simulator.trustMockRoot',
    kind: bool,
    default: false,
    doc: "trust the simulator's mock root",
  },
  'crypto.backend': {
    kind: enumOf(CRYPTO_BACKENDS),
    default: 'auto',
    doc: 'secp256k1 backend',
    to: 'crypto.backend',
  },
  'auth_simple.enabled': {
    kind: bool,
    default: false,
    doc: 'run the auth-simple worker',
    to: 'authSimple.enabled',
  },
  'auth_simple.listen': {
    kind: enumOf(AUTH_SIMPLE_LISTENERS),
    default: 'unix',
    doc: 'unix socket in a directory only the KMS user can enter, or TCP',
    to: 'authSimple.listen',
  },
  // the default is computed in load.ts from the cert dir
  'auth_simple.socket': {
    kind: path,
    default: '',
    doc: 'socket path; "" = run/auth-simple.sock beside the cert dir',
  },
  'auth_simple.token_file': {
    kind: path,
    default: '',
    doc: 'file holding the bearer secret every request must carry; "" = none',
    to: 'authSimple.tokenFile',
  },
  'auth_simple.address': {
    kind: str,
    default: '127.0.0.1',
    doc: 'auth-simple address',
    to: 'authSimple.address',
  },
  'auth_simple.port': { kind: port, default: 8001, doc: 'auth-simple port', to: 'authSimple.port' },
  'auth_simple.config': {
    kind: path,
    default: 'auth-config.json',
    doc: 'auth-simple policy',
    to: 'authSimple.config',
  },

  // Resource limits of every listener (main, admin, onboarding, auth-simple), ours
  // (docs/design.md#resource-limits-on-every-listener). The defaults are the values the listeners
  // had before they were configurable.
  'limits.headers_timeout': {
    kind: timeout,
    default: '15s',
    doc: 'time for a request head to arrive',
    to: 'limits.headersTimeoutMs',
  },
  'limits.request_timeout': {
    kind: timeout,
    default: '60s',
    doc: 'time for a whole request (head and body) to arrive',
    to: 'limits.requestTimeoutMs',
  },
  'limits.keep_alive_timeout': {
    kind: timeout,
    default: '10s',
    doc: 'idle time between requests on a kept-alive connection',
    to: 'limits.keepAliveTimeoutMs',
  },
  'limits.idle_timeout': {
    kind: timeout,
    default: '2m',
    doc: 'a connection without traffic for this long is closed',
    to: 'limits.idleTimeoutMs',
  },
  'limits.max_requests_per_connection': {
    kind: uint,
    default: 0,
    doc: 'requests one kept-alive connection may carry; 0 = no limit',
    to: 'limits.maxRequestsPerSocket',
  },
  'limits.tls_handshake_timeout': {
    kind: timeout,
    default: '10s',
    doc: 'time for a TLS handshake to finish',
    to: 'limits.tlsHandshakeTimeoutMs',
  },
  'limits.max_connections': {
    kind: uint,
    default: 8192,
    doc: 'open connections per listener',
    to: 'limits.maxConnections',
  },
  'limits.max_connections_per_source': {
    kind: uint,
    default: 2048,
    doc: 'open connections per source address and listener',
    to: 'limits.maxConnectionsPerSource',
  },
  'limits.max_header_size': {
    kind: bytes,
    default: '16KiB',
    doc: 'size of a request head',
    to: 'limits.maxHeaderBytes',
  },
  'limits.body_budget': {
    kind: bytes,
    default: '64MiB',
    doc: 'pRPC request bodies buffered at once, per process',
    to: 'limits.bodyBudgetBytes',
  },
  'limits.body_budget_per_source': {
    kind: bytes,
    default: '16MiB',
    doc: 'pRPC request bodies one source address may have buffered at once',
    to: 'limits.bodyBudgetPerSourceBytes',
  },
  'limits.body_read_deadline': {
    kind: timeout,
    default: '30s',
    doc: 'time for a pRPC request body to arrive',
    to: 'limits.bodyReadDeadlineMs',
  },
} as const satisfies Record<string, KeyDecl>

/** Tables whose keys are free-form, each value checked against one kind. */
export const FREE_FORM_TABLES = {
  'rpc.limits': { kind: { kind: 'bytes' }, doc: 'per-method body limits' },
} as const satisfies Record<string, { kind: LeafKind; doc: string }>

export type ConfigKey = keyof typeof CONFIG_KEYS

/** The JavaScript value a checked key of each kind holds after merging. */
type ValueOfKind<K> = K extends { kind: 'bool' }
  ? boolean
  : K extends { kind: 'port' | 'uint' }
    ? number
    : K extends { kind: 'enum'; values: readonly (infer V)[] }
      ? V
      : K extends { kind: 'string-or-bool' }
        ? string | boolean
        : string

/** The type of each declared key's value, derived from its kind. */
export type ConfigValue<K extends ConfigKey> = ValueOfKind<(typeof CONFIG_KEYS)[K]['kind']>
