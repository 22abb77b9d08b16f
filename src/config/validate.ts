// Cross-key checks on the resolved configuration (fatal at start), the domain rules shared with
// Bootstrap/Onboard, the admin token source
// (docs/design.md#two-ways-to-authorize-clearimagecache) and the list of production-unsafe
// settings that the CLI logs loudly.

import { isIP } from 'node:net'
import { isAbsolute } from 'node:path'
import { socketPathTooLong, unixSocketOf, unixUrl } from '../http/unix-url.js'
import { KmsError, type KmsErrorCode } from '../errors.js'
import { trimLikeRust } from '../util/rust-text.js'
import { EMPTY_TOKEN_HASH } from '../util/token-digest.js'
import type { AdminConfig, AuthApiConfig, KmsConfig, LimitsConfig } from './types.js'
import { MAX_TIMER_MS, formatDuration } from './units.js'

export const ENV_ADMIN_TOKEN = 'DSTACK_KMS_ADMIN_TOKEN'
export const ENV_ADMIN_TOKEN_COMPAT = 'ADMIN_API_TOKEN'

/** Upstream HEAD's message when the admin listener would start without credentials. */
export const ADMIN_NO_AUTH_MESSAGE =
  'admin API is enabled but neither auth_token nor htpasswd_file is configured; ' +
  `set core.admin.auth_token, ${ENV_ADMIN_TOKEN}, ${ENV_ADMIN_TOKEN_COMPAT}, ` +
  'core.admin.htpasswd_file, or insecure_no_auth = true (testing only)'

/** Upstream's text, logged at start when self-authorization is off (docs/design.md#trust-model). */
export const SELF_AUTH_DISABLED_MESSAGE =
  'self-authorization is disabled; trusted RPCs will not be gated by KMS self-attestation - do not use in production TEE deployments'

/**
 * Onboarding/bootstrap domain rules of upstream HEAD (docs/design.md#bootstrap-happens-once): non-empty ASCII, at most 253
 * bytes, every dot-separated label 1–63 bytes of `[A-Za-z0-9-]` not starting or ending with `-`.
 * Throws with upstream's exact messages; `code` defaults to the RPC error code.
 */
export function validateDomain(domain: string, code: KmsErrorCode = 'KMS_ERR_RPC'): void {
  // eslint-disable-next-line no-control-regex
  if (domain === '' || domain.length > 253 || !/^[\x00-\x7f]*$/.test(domain)) {
    throw new KmsError(code, 'domain must be a non-empty ASCII DNS name of at most 253 bytes')
  }
  for (const label of domain.split('.')) {
    if (
      label === '' ||
      label.length > 63 ||
      label.startsWith('-') ||
      label.endsWith('-') ||
      !/^[A-Za-z0-9-]+$/.test(label)
    ) {
      throw new KmsError(code, 'domain contains an invalid DNS label')
    }
  }
}

/**
 * The admin listener's token (docs/design.md#two-ways-to-authorize-clearimagecache): `auth_token` trimmed if it is non-empty untrimmed;
 * otherwise `DSTACK_KMS_ADMIN_TOKEN`, and `ADMIN_API_TOKEN` only when the former is unset (a
 * variable set to "" shadows the compatibility one); trimmed. "" = no token.
 */
export function resolveAdminToken(
  admin: Pick<AdminConfig, 'authToken'>,
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (admin.authToken !== '') return trimLikeRust(admin.authToken)
  const primary = env[ENV_ADMIN_TOKEN]
  return trimLikeRust(primary ?? env[ENV_ADMIN_TOKEN_COMPAT] ?? '')
}

/** more main workers than this only multiply memory (each holds the whole runtime) */
export const MAX_RPC_WORKERS = 64

function configError(message: string): KmsError {
  return new KmsError('KMS_ERR_CONFIG', message)
}

function checkAddress(key: string, address: string): void {
  if (isIP(address) === 0) {
    throw configError(
      `${key} must be an IP address (like "0.0.0.0" or "::1"), got ${JSON.stringify(address)}`,
    )
  }
}

function checkNonEmpty(key: string, value: string): void {
  if (value === '') throw configError(`${key} must not be empty`)
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::'
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1'
}

/** Whether two listeners would try to bind the same socket (port 0 = ephemeral never clashes). */
function sameSocket(a: { address: string; port: number }, b: { address: string; port: number }) {
  if (a.port === 0 || a.port !== b.port) return false
  return a.address === b.address || isWildcard(a.address) || isWildcard(b.address)
}

/** Node buffers a request head up to this size on every open connection: more than this,
 * times `max_connections`, is memory an idle flood can pin. */
const MAX_HEADER_BYTES_CEILING = 1024 * 1024
const MIN_HEADER_BYTES = 1024

/** The `[limits]` table (docs/design.md#resource-limits-on-every-listener): every timeout is
 * already finite and positive (its kind), so what is left are the counts and how the keys
 * relate. */
function checkLimits(limits: LimitsConfig, warnings: string[]): void {
  const atLeastOne: Array<[string, number]> = [
    ['limits.max_connections', limits.maxConnections],
    ['limits.max_connections_per_source', limits.maxConnectionsPerSource],
    ['limits.body_budget', limits.bodyBudgetBytes],
    ['limits.body_budget_per_source', limits.bodyBudgetPerSourceBytes],
  ]
  for (const [key, n] of atLeastOne) {
    if (n < 1) throw configError(`${key} must be at least 1, got ${n}`)
  }
  if (limits.maxConnectionsPerSource > limits.maxConnections) {
    throw configError(
      `limits.max_connections_per_source (${limits.maxConnectionsPerSource}) must not exceed limits.max_connections (${limits.maxConnections})`,
    )
  }
  if (limits.bodyBudgetPerSourceBytes > limits.bodyBudgetBytes) {
    throw configError(
      `limits.body_budget_per_source (${limits.bodyBudgetPerSourceBytes} bytes) must not exceed limits.body_budget (${limits.bodyBudgetBytes} bytes)`,
    )
  }
  if (
    limits.maxHeaderBytes < MIN_HEADER_BYTES ||
    limits.maxHeaderBytes > MAX_HEADER_BYTES_CEILING
  ) {
    throw configError(
      `limits.max_header_size must be from 1KiB to 1MiB, got ${limits.maxHeaderBytes} bytes`,
    )
  }
  // Node refuses to create a server otherwise: the head is part of the request
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw configError(
      `limits.headers_timeout (${formatDuration(limits.headersTimeoutMs)}) must not exceed limits.request_timeout (${formatDuration(limits.requestTimeoutMs)}): the head is part of the request`,
    )
  }
  if (limits.bodyReadDeadlineMs > limits.requestTimeoutMs) {
    warnings.push(
      `limits.body_read_deadline (${formatDuration(limits.bodyReadDeadlineMs)}) is longer than limits.request_timeout (${formatDuration(limits.requestTimeoutMs)}): a slow body is cut by the request timeout first`,
    )
  }
}

function checkUnixSocketPath(key: string, socketPath: string): void {
  if (!isAbsolute(socketPath)) {
    throw configError(
      `${key} must name a unix socket by an absolute path, got ${JSON.stringify(socketPath)}`,
    )
  }
  const tooLong = socketPathTooLong(socketPath)
  if (tooLong !== undefined) throw configError(`${key} ${tooLong}`)
}

/** The webhook URL's form, and no bearer secret in clear beyond this host
 * (docs/design.md#auth-simple-on-a-private-unix-socket). */
function checkWebhook(webhook: AuthApiConfig['webhook']): void {
  const { url, tokenFile } = webhook
  const socketPath = unixSocketOf(url)
  if (socketPath !== undefined) {
    checkUnixSocketPath('core.auth_api.webhook.url', socketPath)
    return
  }
  let parsed: URL | null = null
  try {
    parsed = new URL(url)
  } catch {
    parsed = null
  }
  if (parsed === null || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    throw configError(
      `core.auth_api.webhook.url must be an http:// or https:// URL, or unix:/path/to.sock, when core.auth_api.type = "webhook", got ${JSON.stringify(url)}`,
    )
  }
  if (tokenFile !== '' && parsed.protocol === 'http:' && !isLoopbackHost(parsed.hostname)) {
    throw configError(
      `core.auth_api.webhook.token_file is set but core.auth_api.webhook.url ${JSON.stringify(url)} is plain http:// to a host beyond this machine, so the bearer secret would travel in clear; use https:// (or a loopback or unix: URL)`,
    )
  }
}

/** A host name that can only reach this machine. */
function isLoopbackHost(hostname: string): boolean {
  const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname
  return host === 'localhost' || (isIP(host) !== 0 && isLoopback(host))
}

function checkAuthSimple(cfg: KmsConfig): string[] {
  const { authSimple, rpc, core } = cfg
  checkNonEmpty('auth_simple.config', authSimple.config)
  if (authSimple.listen === 'unix') {
    checkUnixSocketPath('auth_simple.socket', authSimple.socket)
    const url = unixUrl(authSimple.socket)
    if (core.authApi.type === 'webhook' && core.authApi.webhook.url !== url) {
      return [
        `auth_simple listens on ${url} but core.auth_api.webhook.url is ${JSON.stringify(core.authApi.webhook.url)}: the KMS does not ask the sidecar (set url = ${JSON.stringify(url)})`,
      ]
    }
    return []
  }
  checkAddress('auth_simple.address', authSimple.address)
  for (const [key, other] of [
    ['rpc', rpc],
    ['core.admin', core.admin.enabled ? core.admin : null],
  ] as const) {
    if (other !== null && sameSocket(authSimple, other)) {
      throw configError(
        `auth_simple listens on ${authSimple.address}:${authSimple.port}, which clashes with ${key} ${other.address}:${other.port}; give it its own port`,
      )
    }
  }
  return []
}

/**
 * Cross-key validation of a resolved configuration. Throws KMS_ERR_CONFIG on the first fatal
 * problem; returns non-fatal findings for the start-up log.
 */
export function validateConfig(cfg: KmsConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  const warnings: string[] = []
  const { core, rpc } = cfg

  const hash = core.adminTokenHash
  if (hash !== '' && !/^(?:[0-9a-fA-F]{2})+$/.test(hash)) {
    throw configError(
      'core.admin_token_hash must be "" or the hex SHA-256 of the admin token (an even number of hex digits, no 0x prefix)',
    )
  }
  if (hash !== '' && hash.length !== 64) {
    warnings.push(
      `core.admin_token_hash is ${hash.length / 2} bytes, not 32: ClearImageCache will refuse every token`,
    )
  }
  if (hash.toLowerCase() === EMPTY_TOKEN_HASH.toString('hex')) {
    warnings.push(
      'core.admin_token_hash is the SHA-256 of the EMPTY token (was ADMIN_TOKEN unset when it was computed?): ClearImageCache refuses every token',
    )
  }

  checkAddress('rpc.address', rpc.address)
  checkAddress('core.onboard.address', core.onboard.address)
  checkAddress('core.admin.address', core.admin.address)
  checkNonEmpty('rpc.tls.key', rpc.tls.key)
  checkNonEmpty('rpc.tls.certs', rpc.tls.certs)
  checkNonEmpty('rpc.tls.mutual.ca_certs', rpc.tls.mutual.caCerts)
  checkNonEmpty('core.cert_dir', core.certDir)
  checkNonEmpty('core.image.cache_dir', core.image.cacheDir)

  if (core.authApi.type === 'webhook') checkWebhook(core.authApi.webhook)
  if (core.authApi.webhook.timeoutMs <= 0) {
    throw configError('core.auth_api.webhook.timeout must be greater than zero')
  }
  if (core.image.downloadTimeoutMs === 0) {
    throw configError('core.image.download_timeout must be greater than zero (or "never")')
  }
  // Node timers overflow above 2^31-1 ms and would then fire at once.
  for (const [key, ms] of [
    ['core.auth_api.webhook.timeout', core.authApi.webhook.timeoutMs],
    ['core.image.download_timeout', core.image.downloadTimeoutMs],
  ] as const) {
    if (ms !== null && ms > MAX_TIMER_MS) {
      throw configError(`${key} must be at most 24d (or "never" where allowed)`)
    }
  }

  // Without a TEE the KMS has no attestation to authorize itself with
  // (docs/design.md#no-self-authorization-without-a-tee).
  if (cfg.tee.backend === 'none' && core.enforceSelfAuthorization) {
    throw configError(
      'core.enforce_self_authorization must be false when tee.backend = "none": a KMS without a TEE cannot attest itself to its auth API; set core.enforce_self_authorization = false or choose tee.backend = "tdx" or "simulator"',
    )
  }

  const rootCa = core.attestation.rootCa
  const externalRoots = Object.values(rootCa).some((p) => p !== '')
  if (externalRoots && !core.attestation.insecureAllowExternalTrustAnchors) {
    throw configError(
      'external attestation trust anchors are configured but insecure_allow_external_trust_anchors is false (set core.attestation.insecure_allow_external_trust_anchors = true or remove the [core.attestation.root_ca] entries)',
    )
  }

  if (cfg.tee.backend === 'simulator' && !/^[0-9a-f]{64}$/.test(cfg.tee.simulator.seed)) {
    throw configError(
      'tee.simulator.seed must be 64 hex digits (32 bytes) when tee.backend = "simulator"; the mock Intel PKI and the simulated measurements derive from it',
    )
  }
  if (cfg.tee.simulator.trustMockRoot && cfg.tee.backend !== 'simulator') {
    throw configError(
      'tee.simulator.trust_mock_root = true requires tee.backend = "simulator": a real TEE must never trust a mock root',
    )
  }
  checkLimits(cfg.limits, warnings)
  if (rpc.workers > MAX_RPC_WORKERS) {
    throw configError(`rpc.workers must be at most ${MAX_RPC_WORKERS} (0 = one per CPU core)`)
  }

  if (cfg.authSimple.enabled) warnings.push(...checkAuthSimple(cfg))

  if (core.onboard.autoBootstrapDomain !== '') {
    try {
      validateDomain(core.onboard.autoBootstrapDomain, 'KMS_ERR_CONFIG')
    } catch (err) {
      throw configError(
        `core.onboard.auto_bootstrap_domain ${JSON.stringify(core.onboard.autoBootstrapDomain)} is invalid: ${(err as Error).message}`,
      )
    }
  }

  const { autoOnboardSource, autoOnboardDomain, autoBootstrapDomain } = core.onboard
  if (autoOnboardSource !== '' || autoOnboardDomain !== '') {
    if (autoOnboardSource === '' || autoOnboardDomain === '') {
      throw configError(
        'core.onboard.auto_onboard_source and core.onboard.auto_onboard_domain must be set together',
      )
    }
    if (autoBootstrapDomain !== '') {
      throw configError(
        'core.onboard.auto_onboard_source and core.onboard.auto_bootstrap_domain exclude each other: a replica takes its keys from the source, it never generates its own',
      )
    }
    let url: URL | null = null
    try {
      url = new URL(autoOnboardSource)
    } catch {
      url = null
    }
    if (url === null || url.protocol !== 'https:') {
      throw configError(
        `core.onboard.auto_onboard_source ${JSON.stringify(autoOnboardSource)} must be an https:// URL of a running KMS`,
      )
    }
    try {
      validateDomain(autoOnboardDomain, 'KMS_ERR_CONFIG')
    } catch (err) {
      throw configError(
        `core.onboard.auto_onboard_domain ${JSON.stringify(autoOnboardDomain)} is invalid: ${(err as Error).message}`,
      )
    }
  }

  if (core.admin.enabled) {
    if (
      !core.admin.insecureNoAuth &&
      resolveAdminToken(core.admin, env) === '' &&
      core.admin.htpasswdFile === ''
    ) {
      throw configError(ADMIN_NO_AUTH_MESSAGE)
    }
    if (sameSocket(core.admin, rpc)) {
      throw configError(
        `core.admin listens on ${core.admin.address}:${core.admin.port}, which clashes with rpc ${rpc.address}:${rpc.port}; the admin listener needs its own port`,
      )
    }
  }
  return warnings
}

/** Every setting that is unsafe in production, one sentence each, for loud start-up warnings. */
export function unsafeDefaultWarnings(cfg: KmsConfig): string[] {
  const { core, rpc } = cfg
  const out: string[] = []
  if (cfg.tee.backend === 'none') {
    out.push(
      'tee.backend = "none": this KMS has no TEE and no attestation of its own; clients and other KMSs cannot verify it. Never use it for production keys.',
    )
  } else if (cfg.tee.backend === 'simulator') {
    out.push(
      'tee.backend = "simulator": quotes are signed by a mock Intel PKI and prove nothing about real hardware. Never use it for production keys.',
    )
  }
  if (core.authApi.type === 'dev') {
    out.push(
      'core.auth_api.type = "dev": every app and KMS boot is authorized without any policy check.',
    )
  }
  if (!core.enforceSelfAuthorization) out.push(SELF_AUTH_DISABLED_MESSAGE)
  if (!core.image.verify) {
    out.push(
      'core.image.verify = false: OS images are not verified, so the osImageHash the auth API sees is the one the caller claims in its vm_config; only a policy that pins measurements (mrAggregated, or mrSystem for auth-simple apps) binds the OS image of an app (see docs/design.md#trust-model).',
    )
  } else if (core.image.acpiTablesCommand.length === 0) {
    out.push(
      core.image.legacyRtmr0 === 'skip'
        ? 'core.image.legacy_rtmr0 = "skip" without core.image.acpi_tables_command: legacy TDX guests are checked on MRTD, RTMR1 and RTMR2 only; RTMR0 (firmware configuration and ACPI tables) is NOT verified for them, which is weaker than upstream. Lite guests are fully verified.'
        : 'core.image.acpi_tables_command is not set: legacy TDX guests (every image before 0.6.0, and VMs below 3 GiB except exactly 2 GiB) are refused because their RTMR0 cannot be recomputed; lite guests are verified.',
    )
  }
  if (cfg.tee.simulator.trustMockRoot) {
    out.push(
      "tee.simulator.trust_mock_root = true: quotes signed by the simulator's mock Intel PKI are accepted as genuine. Development only.",
    )
  }
  if (core.onboard.enabled && !core.onboard.tls) {
    const exposed = isLoopback(core.onboard.address) ? '' : ` on ${core.onboard.address}`
    out.push(
      `core.onboard.tls = false: the unauthenticated onboarding endpoint${exposed} is served over plain HTTP, so bootstrap and onboarding answers can be read or altered in transit.`,
    )
  }
  if (core.admin.enabled && core.admin.insecureNoAuth) {
    out.push(
      `core.admin.insecure_no_auth = true: the admin API on ${core.admin.address}:${core.admin.port} accepts requests without any authentication.`,
    )
  }
  if (core.admin.enabled && !isLoopback(core.admin.address)) {
    out.push(
      `core.admin.address = ${JSON.stringify(core.admin.address)}: the admin API is reachable beyond this host; keep it on a loopback or private address.`,
    )
  }
  if (core.metrics.enabled && !isLoopback(rpc.address)) {
    out.push(
      `core.metrics.enabled = true: unauthenticated Prometheus metrics are served at /metrics on ${rpc.address}:${rpc.port}; disable them unless the listener is protected by network policy.`,
    )
  }
  if (core.attestation.insecureAllowExternalTrustAnchors) {
    out.push(
      'core.attestation.insecure_allow_external_trust_anchors = true: quotes are verified against configured root CAs instead of the vendor roots.',
    )
  }
  if (core.awsNitroTpmKeyRelease) {
    out.push(
      'core.aws_nitro_tpm_key_release = true: keys are released to AWS NitroTPM guests, whose TCB includes the AWS hypervisor.',
    )
  }
  return out
}
