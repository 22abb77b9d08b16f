import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { KmsError } from '../src/errors.js'
import {
  QUICKSTART_TOML,
  defaultLimits,
  loadConfig,
  parseByteSize,
  parseDuration,
  type LoadOptions,
} from '../src/config/load.js'
import { ensureQuickstartAdminToken, ensureQuickstartSeed } from '../src/quickstart/files.js'
import type { KmsConfig } from '../src/config/types.js'
import {
  ADMIN_NO_AUTH_MESSAGE,
  resolveAdminToken,
  unsafeDefaultWarnings,
  validateDomain,
} from '../src/config/validate.js'
import { formatDuration } from '../src/config/units.js'
import { tempDir as scratchDir } from './helpers/temp-dir.js'

const tempDirs: string[] = []
after(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
})

function tempDir(): string {
  const dir = scratchDir('kms-config-test-')
  tempDirs.push(dir)
  return dir
}

/** Loads with an isolated cwd and no /etc file unless the test provides one. */
function load(toml: string | undefined, opts: LoadOptions = {}): KmsConfig {
  const dir = opts.cwd ?? tempDir()
  let configFile = opts.configFile
  if (toml !== undefined) {
    configFile = join(dir, 'test.toml')
    writeFileSync(configFile, toml)
  }
  return loadConfig({
    etcFile: join(dir, 'no-etc', 'kms.toml'),
    env: {},
    ...opts,
    cwd: dir,
    configFile,
  })
}

function configError(re: RegExp | string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof KmsError, `expected KmsError, got ${String(err)}`)
    assert.equal(err.code, 'KMS_ERR_CONFIG')
    if (typeof re === 'string') assert.equal(err.message, re)
    else assert.match(err.message, re)
    return true
  }
}

const IMAGE_VERIFY_OFF =
  'core.image.verify = false: OS images are not verified, so the osImageHash the auth API sees is the one the caller claims in its vm_config; only a policy that pins measurements (mrAggregated, or mrSystem for auth-simple apps) binds the OS image of an app (see docs/design.md#trust-model).'

const LEGACY_NO_ACPI =
  'core.image.acpi_tables_command is not set: legacy TDX guests (every image before 0.6.0, and VMs below 3 GiB except exactly 2 GiB) are refused because their RTMR0 cannot be recomputed; lite guests are verified.'

const UPSTREAM_DEFAULTS: KmsConfig = {
  rpc: {
    address: '0.0.0.0',
    port: 8000,
    tls: {
      key: '/etc/kms/certs/rpc.key',
      certs: '/etc/kms/certs/rpc.crt',
      mutual: { caCerts: '/etc/kms/certs/tmp-ca.crt', mandatory: false },
    },
    limits: {},
    workers: 0,
  },
  core: {
    certDir: '/etc/kms/certs',
    subjectPostfix: '.dstack',
    adminTokenHash: '',
    siteName: '',
    enforceSelfAuthorization: true,
    amdKdsBaseUrl: '',
    pccsUrl: 'https://pccs.phala.network',
    sevSnpKeyRelease: false,
    awsNitroTpmKeyRelease: false,
    image: {
      verify: false,
      cacheDir: '/usr/share/dstack/images',
      downloadUrl: 'http://localhost:8000/{OS_IMAGE_HASH}.tar.gz',
      downloadTimeoutMs: 120_000,
      cacheMaxBytes: 8 * 1024 ** 3,
      maxImageBytes: 2 * 1024 ** 3,
      acpiTablesCommand: [],
      acpiTimeoutMs: 30_000,
      legacyRtmr0: 'require',
    },
    metrics: { enabled: true },
    audit: {
      enabled: true,
      path: '/etc/kms/kms-audit.sqlite3',
      maxBytes: 256 * 1024 * 1024,
      maxAgeMs: null,
    },
    authApi: {
      type: 'webhook',
      webhook: { url: 'http://auth-api:8000', timeoutMs: 30_000, tokenFile: '' },
      dev: { gatewayAppId: 'any' },
    },
    onboard: {
      enabled: true,
      autoBootstrapDomain: '',
      autoOnboardSource: '',
      autoOnboardDomain: '',
      address: '0.0.0.0',
      port: 8000,
      tls: true,
    },
    admin: {
      enabled: false,
      address: '127.0.0.1',
      port: 8001,
      authToken: '',
      htpasswdFile: '',
      insecureNoAuth: false,
    },
    attestation: {
      insecureAllowExternalTrustAnchors: false,
      quoteVerifier: 'node-crypto',
      urls: { pccs: '', amdKds: '' },
      rootCa: {
        tdx: '',
        gcpTpm: '',
        awsNitroEnclave: '',
        awsNitroTpm: '',
        sevSnpMilan: '',
        sevSnpGenoa: '',
        sevSnpTurin: '',
      },
    },
  },
  tee: { backend: 'tdx', simulator: { seed: '', trustMockRoot: false } },
  crypto: { backend: 'auto' },
  authSimple: {
    enabled: false,
    listen: 'unix',
    socket: '/etc/kms/run/auth-simple.sock',
    tokenFile: '',
    address: '127.0.0.1',
    port: 8001,
    config: '',
  },
  limits: {
    headersTimeoutMs: 15_000,
    requestTimeoutMs: 60_000,
    keepAliveTimeoutMs: 10_000,
    idleTimeoutMs: 120_000,
    maxRequestsPerSocket: 0,
    tlsHandshakeTimeoutMs: 10_000,
    maxConnections: 8192,
    maxConnectionsPerSource: 2048,
    maxHeaderBytes: 16 * 1024,
    bodyBudgetBytes: 64 * 1024 * 1024,
    bodyBudgetPerSourceBytes: 16 * 1024 * 1024,
    bodyReadDeadlineMs: 30_000,
  },
  log: { level: 'info' },
  sources: [],
  warnings: [],
}

// Modelled on upstream dstack/kms/kms.toml (HEAD), plus the spec-revision-only keys and the
// compose-dev overrides, so every upstream key appears at least once.
const UPSTREAM_FULL_TOML = `
[default]
workers = 8
max_blocking = 64
ident = "DStack KMS"
temp_dir = "/tmp"
keep_alive = 10
log_level = "debug"

[rpc]
address = "0.0.0.0"
port = 8000

[rpc.tls]
key = "/kms/certs/rpc.key"
certs = "/kms/certs/rpc.crt"

[rpc.tls.mutual]
ca_certs = "/kms/certs/tmp-ca.crt"
mandatory = false

[rpc.limits]
GetAppKey = "1MiB"
SignCert = 65536

[core]
cert_dir = "/kms/certs"
subject_postfix = ".dstack"
admin_token_hash = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
site_name = "prod-1"
enforce_self_authorization = true
amd_kds_base_url = ""
attest_rpc_cert = true
sev_snp_key_release = false
aws_nitro_tpm_key_release = false

[core.attestation]
insecure_allow_external_trust_anchors = false

[core.attestation.urls]
pccs = "https://pccs.example"

[core.attestation.root_ca]

[core.image]
verify = true
cache_dir = "/kms/images"
download_url = "https://images.example/{OS_IMAGE_HASH}.tar.gz"
download_timeout = "5m"

[core.admin]
enabled = false
address = "127.0.0.1"
port = 8001
auth_token = ""
htpasswd_file = ""
insecure_no_auth = false

[core.metrics]
enabled = false

[core.auth_api]
type = "webhook"

[core.auth_api.webhook]
url = "http://auth-api:8000"

[core.auth_api.dev]
gateway_app_id = "any"

[core.onboard]
enabled = true
auto_bootstrap_domain = ""
address = "0.0.0.0"
port = 8000
`

describe('defaults', () => {
  test('no files: the built-in defaults equal upstream kms.toml plus our keys', () => {
    const cfg = load(undefined)
    assert.ok(cfg.authSimple.config.endsWith('/auth-config.json'))
    assert.deepEqual({ ...cfg, authSimple: { ...cfg.authSimple, config: '' } }, UPSTREAM_DEFAULTS)
  })

  test('defaultLimits() is the [limits] table of a configuration loaded without files', () => {
    assert.deepEqual(defaultLimits(), load(undefined).limits)
  })

  test('the defaults are safe except for the exposed metrics endpoint and image checks', () => {
    assert.deepEqual(unsafeDefaultWarnings(load(undefined)), [
      IMAGE_VERIFY_OFF,
      'core.metrics.enabled = true: unauthenticated Prometheus metrics are served at /metrics on 0.0.0.0:8000; disable them unless the listener is protected by network policy.',
    ])
  })
})

describe('layering', () => {
  test('built-in < /etc/kms/kms.toml < ./kms.toml < -c FILE; tables deep-merge', () => {
    const dir = tempDir()
    const etc = join(dir, 'etc', 'kms.toml')
    mkdirSync(join(dir, 'etc'))
    writeFileSync(
      etc,
      `[rpc]\nport = 1111\n[core]\nsite_name = "etc"\n[core.image]\nverify = false\n[core.auth_api.webhook]\nurl = "https://auth.example"\n`,
    )
    writeFileSync(join(dir, 'kms.toml'), `[rpc]\nport = 2222\n[core]\nsite_name = "cwd"\n`)
    const cli = join(dir, 'cli.toml')
    writeFileSync(cli, `[core]\nsite_name = "cli"\n[core.auth_api.webhook]\ntimeout = "5s"\n`)
    const cfg = loadConfig({ cwd: dir, etcFile: etc, configFile: cli, env: {} })
    assert.equal(cfg.core.siteName, 'cli')
    assert.equal(cfg.rpc.port, 2222)
    assert.equal(cfg.rpc.address, '0.0.0.0')
    assert.equal(cfg.core.image.verify, false)
    assert.equal(cfg.core.image.downloadTimeoutMs, 120_000)
    assert.deepEqual(cfg.core.authApi.webhook, {
      url: 'https://auth.example',
      timeoutMs: 5000,
      tokenFile: '',
    })
    assert.deepEqual(cfg.sources, [etc, join(dir, 'kms.toml'), cli])
  })

  test('kms.json files follow their .toml sibling; -c picks the format by extension', () => {
    const dir = tempDir()
    const etc = join(dir, 'kms.toml.d', 'kms.toml')
    mkdirSync(join(dir, 'kms.toml.d'))
    writeFileSync(etc, `[core]\nsite_name = "etc-toml"\n`)
    writeFileSync(join(dir, 'kms.toml.d', 'kms.json'), `{"core":{"site_name":"etc-json"}}`)
    writeFileSync(join(dir, 'kms.toml'), `[rpc]\nport = 3000\n`)
    writeFileSync(join(dir, 'kms.json'), `{"rpc":{"port":3001}}`)
    const cli = join(dir, 'override.json')
    writeFileSync(cli, `{"core":{"onboard":{"enabled":false}}}`)
    const cfg = loadConfig({ cwd: dir, etcFile: etc, configFile: cli, env: {} })
    assert.equal(cfg.core.siteName, 'etc-json')
    assert.equal(cfg.rpc.port, 3001)
    assert.equal(cfg.core.onboard.enabled, false)
    assert.deepEqual(cfg.sources, [
      etc,
      join(dir, 'kms.toml.d', 'kms.json'),
      join(dir, 'kms.toml'),
      join(dir, 'kms.json'),
      cli,
    ])
  })

  test('-c ./kms.toml from the working directory is one layer, listed once', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'kms.toml'), `[core]\nsite_name = "x"\n`)
    const cfg = loadConfig({
      cwd: dir,
      etcFile: join(dir, 'none.toml'),
      configFile: './kms.toml',
      env: {},
    })
    assert.deepEqual(cfg.sources, [join(dir, 'kms.toml')])
    assert.equal(cfg.core.siteName, 'x')
  })

  test('-c with a missing file is an error', () => {
    const dir = tempDir()
    assert.throws(
      () => loadConfig({ cwd: dir, etcFile: join(dir, 'none.toml'), configFile: 'missing.toml' }),
      configError(`config file ${join(dir, 'missing.toml')} (given with -c) does not exist`),
    )
  })

  test('a TOML syntax error names the file', () => {
    const dir = tempDir()
    assert.throws(
      () => load('[core\n', { cwd: dir }),
      configError(new RegExp(`^failed to parse config file ${join(dir, 'test.toml')}: `)),
    )
  })

  test('relative paths resolve against the working directory', () => {
    const dir = tempDir()
    const cfg = load(
      `[core]\ncert_dir = "state/certs"\n[core.image]\ncache_dir = "./images"\n[rpc.tls]\nkey = "k.pem"\n`,
      { cwd: dir },
    )
    assert.equal(cfg.core.certDir, join(dir, 'state', 'certs'))
    assert.equal(cfg.core.image.cacheDir, join(dir, 'images'))
    assert.equal(cfg.rpc.tls.key, join(dir, 'k.pem'))
    assert.equal(cfg.rpc.tls.certs, '/etc/kms/certs/rpc.crt')
  })
})

describe('upstream kms.toml', () => {
  test('a full upstream file loads unchanged, with the no-effect keys listed', () => {
    const cfg = load(UPSTREAM_FULL_TOML)
    assert.equal(cfg.log.level, 'debug')
    assert.deepEqual(cfg.rpc.limits, { GetAppKey: 1_048_576, SignCert: 65_536 })
    assert.equal(cfg.rpc.tls.mutual.caCerts, '/kms/certs/tmp-ca.crt')
    assert.equal(cfg.core.certDir, '/kms/certs')
    assert.equal(
      cfg.core.adminTokenHash,
      '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
    )
    assert.equal(cfg.core.siteName, 'prod-1')
    assert.equal(cfg.core.pccsUrl, 'https://pccs.example')
    assert.deepEqual(cfg.core.image, {
      ...UPSTREAM_DEFAULTS.core.image,
      verify: true,
      cacheDir: '/kms/images',
      downloadUrl: 'https://images.example/{OS_IMAGE_HASH}.tar.gz',
      downloadTimeoutMs: 300_000,
    })
    assert.equal(cfg.core.metrics.enabled, false)
    assert.equal(cfg.tee.backend, 'tdx')
    const rocket =
      'is a Rocket server knob with no effect in dstack-kms-ts (upstream loads it non-nested, so it never reaches Rocket either)'
    assert.deepEqual(cfg.warnings, [
      `default.workers ${rocket}`,
      `default.max_blocking ${rocket}`,
      `default.ident ${rocket}`,
      `default.temp_dir ${rocket}`,
      `default.keep_alive ${rocket}`,
      'core.subject_postfix is unused (upstream never reads it)',
      'core.attest_rpc_cert has no effect: the RPC certificate is attested whenever tee.backend can attest; use [tee] backend = "none" to run without attestation',
    ])
  })

  test('Rocket knobs under [rpc] (which upstream passes to Rocket) are accepted and listed', () => {
    const cfg = load(`[rpc]\nworkers = 16\nkeep_alive = 5\n`)
    assert.deepEqual(cfg.warnings, [
      'rpc.keep_alive is a Rocket server knob with no effect in dstack-kms-ts',
    ])
    // [rpc] workers is ours: the number of main KMS worker processes sharing the port
    assert.equal(cfg.rpc.workers, 16)
    assert.throws(
      () => load(`[rpc]\nworkers = 65\n`),
      configError(/rpc.workers must be at most 64/),
    )
  })

  test('[tee.simulator]: a 64-hex seed is required with the simulator; trust_mock_root only there', () => {
    const base = `[core]\nenforce_self_authorization = false\n`
    assert.throws(
      () => load(`${base}[tee]\nbackend = "simulator"\n`),
      configError(/tee.simulator.seed must be 64 hex digits/),
    )
    const seed = 'ab'.repeat(32)
    const cfg = load(
      `[tee]\nbackend = "simulator"\n[tee.simulator]\nseed = "${seed.toUpperCase()}"\ntrust_mock_root = true\n`,
    )
    assert.deepEqual(cfg.tee, { backend: 'simulator', simulator: { seed, trustMockRoot: true } })
    assert.throws(
      () => load(`[tee.simulator]\ntrust_mock_root = true\n`),
      configError(/requires tee.backend = "simulator"/),
    )
  })

  test('core.attestation.quote_verifier: node-crypto by default, dcap-qvl on request', () => {
    assert.equal(load('').core.attestation.quoteVerifier, 'node-crypto')
    const cfg = load(`[core.attestation]\nquote_verifier = "dcap-qvl"\n`)
    assert.equal(cfg.core.attestation.quoteVerifier, 'dcap-qvl')
    assert.throws(() => load(`[core.attestation]\nquote_verifier = "openssl"\n`), KmsError)
  })

  test('[crypto] backend and [auth_simple] are parsed and checked', () => {
    const cfg = load(
      `[crypto]\nbackend = "js"\n[auth_simple]\nenabled = true\nport = 9101\nconfig = "p.json"\n`,
    )
    assert.equal(cfg.crypto.backend, 'js')
    assert.equal(cfg.authSimple.enabled, true)
    assert.equal(cfg.authSimple.port, 9101)
    assert.ok(cfg.authSimple.config.endsWith('/p.json'))
    assert.throws(() => load(`[crypto]\nbackend = "fast"\n`), KmsError)
    assert.throws(
      () =>
        load(
          `[rpc]\naddress = "127.0.0.1"\nport = 9000\n[auth_simple]\nenabled = true\nlisten = "tcp"\nport = 9000\n`,
        ),
      configError(/auth_simple listens on 127.0.0.1:9000, which clashes with rpc/),
    )
  })

  test('core.attestation.root_ca_tdx is the flat spelling of root_ca.tdx', () => {
    const cfg = load(
      `[core.attestation]\ninsecure_allow_external_trust_anchors = true\nroot_ca_tdx = "/x/root.pem"\n`,
    )
    assert.equal(cfg.core.attestation.rootCa.tdx, '/x/root.pem')
    assert.throws(
      () =>
        load(
          `[core.attestation]\ninsecure_allow_external_trust_anchors = true\nroot_ca_tdx = "/a.pem"\n[core.attestation.root_ca]\ntdx = "/b.pem"\n`,
        ),
      configError(/set the same thing to different values/),
    )
  })

  test('spec-revision [core] pccs_url works; disagreeing with [core.attestation.urls] is an error', () => {
    assert.equal(load(`[core]\npccs_url = "https://p.example"\n`).core.pccsUrl, 'https://p.example')
    assert.throws(
      () =>
        load(
          `[core]\npccs_url = "https://a.example"\n[core.attestation.urls]\npccs = "https://b.example"\n`,
        ),
      configError(
        'core.pccs_url ("https://a.example") and core.attestation.urls.pccs ("https://b.example") set the same thing to different values; keep one',
      ),
    )
  })

  test('external root CAs need insecure_allow_external_trust_anchors (upstream HEAD rule)', () => {
    assert.throws(
      () => load(`[core.attestation.root_ca]\ntdx = "/roots/mock.der"\n`),
      configError(
        /^external attestation trust anchors are configured but insecure_allow_external_trust_anchors is false/,
      ),
    )
    const cfg = load(
      `[core.attestation]\ninsecure_allow_external_trust_anchors = true\n[core.attestation.root_ca]\ntdx = "/roots/mock.der"\n`,
    )
    assert.equal(cfg.core.attestation.rootCa.tdx, '/roots/mock.der')
  })

  test('RUST_LOG global level wins over [default] log_level; Rocket names are mapped', () => {
    assert.equal(load(`[default]\nlog_level = "normal"\n`).log.level, 'info')
    assert.equal(load(`[default]\nlog_level = "off"\n`).log.level, 'silent')
    const cfg = load(`[default]\nlog_level = "debug"\n`, {
      env: { RUST_LOG: 'warn,rocket=info' },
    })
    assert.equal(cfg.log.level, 'warn')
  })
})

describe('kms.toml.example', () => {
  test('the shipped example loads cleanly and is safe for production', () => {
    const example = new URL('../kms.toml.example', import.meta.url)
    const cfg = load(readFileSync(example, 'utf8'))
    assert.deepEqual(cfg.warnings, [])
    // verify = true, the production setting; the only finding: legacy guests need the ACPI command
    assert.equal(cfg.core.image.verify, true)
    assert.deepEqual(unsafeDefaultWarnings(cfg), [LEGACY_NO_ACPI])
    assert.equal(cfg.tee.backend, 'tdx')
    assert.equal(cfg.core.authApi.webhook.timeoutMs, 30_000)
    assert.equal(cfg.core.image.cacheDir, '/var/lib/dstack-kms/cache')
  })
})

describe('unknown keys and types', () => {
  test('an unknown key is an error naming the full dotted key and the file', () => {
    const dir = tempDir()
    const file = join(dir, 'test.toml')
    assert.throws(
      () => load(`[core.onbaord]\nenabled = true\n`, { cwd: dir }),
      configError(`unknown configuration key: core.onbaord (in ${file})`),
    )
    assert.throws(
      () => load(`[rpc.tls.mutual]\nmandatroy = true\n`, { cwd: dir }),
      configError(`unknown configuration key: rpc.tls.mutual.mandatroy (in ${file})`),
    )
    assert.throws(
      () => load(`[core.onboard]\nquote_enabled = false\n`, { cwd: dir }),
      configError(/^unknown configuration key: core\.onboard\.quote_enabled \(removed upstream;/),
    )
  })

  test('an unknown key in /etc/kms/kms.toml names that file', () => {
    const dir = tempDir()
    const etc = join(dir, 'kms-etc.toml')
    writeFileSync(etc, `bogus = 1\n`)
    assert.throws(
      () => loadConfig({ cwd: dir, etcFile: etc, env: {} }),
      configError(`unknown configuration key: bogus (in ${etc})`),
    )
  })

  test('wrong types name the key and the expected type', () => {
    const dir = tempDir()
    const at = ` (in ${join(dir, 'test.toml')})`
    const cases: Array<[string, string]> = [
      [
        `[rpc]\nport = "8000"\n`,
        `invalid type for configuration key rpc.port: expected an integer port from 0 to 65535, found string "8000"`,
      ],
      [
        `[rpc]\nport = 70000\n`,
        `invalid type for configuration key rpc.port: expected an integer port from 0 to 65535, found integer 70000`,
      ],
      [
        `[core.onboard]\nport = 8000.5\n`,
        `invalid type for configuration key core.onboard.port: expected an integer port from 0 to 65535, found float 8000.5`,
      ],
      [
        `[core]\nenforce_self_authorization = "false"\n`,
        `invalid type for configuration key core.enforce_self_authorization: expected a boolean (true or false), found string "false"`,
      ],
      [
        `[core]\nimage = 5\n`,
        `invalid type for configuration key core.image: expected a table, found integer 5`,
      ],
      [
        `[tee]\nbackend = "sgx"\n`,
        `invalid type for configuration key tee.backend: expected one of "none", "simulator", "guest-agent", "tdx", found string "sgx"`,
      ],
      [
        `[core.auth_api]\ntype = "static"\n`,
        `invalid type for configuration key core.auth_api.type: expected one of "webhook", "dev", found string "static"`,
      ],
      [
        `[core]\nsite_name = ["a"]\n`,
        `invalid type for configuration key core.site_name: expected a string, found an array`,
      ],
      [
        `[core.image]\ndownload_timeout = "5"\n`,
        `invalid value for configuration key core.image.download_timeout: invalid duration "5": cannot parse integer from empty string (expected <integer><s|m|h|d> or "never")`,
      ],
      [
        `[rpc.limits]\nGetAppKey = "1 MB "\n`,
        `invalid value for configuration key rpc.limits.GetAppKey: invalid byte size "1 MB ": expected <number>[ ]<unit>, e.g. "1MiB" or "512 KiB"`,
      ],
    ]
    for (const [toml, message] of cases) {
      assert.throws(() => load(toml, { cwd: dir }), configError(message + at), toml)
    }
  })

  test('port 0 (ephemeral) is accepted', () => {
    assert.equal(load(`[rpc]\nport = 0\n`).rpc.port, 0)
  })

  test('listen addresses must be IP addresses', () => {
    assert.throws(
      () => load(`[rpc]\naddress = "localhost"\n`),
      configError('rpc.address must be an IP address (like "0.0.0.0" or "::1"), got "localhost"'),
    )
    assert.equal(load(`[core.onboard]\naddress = "::"\n`).core.onboard.address, '::')
  })
})

describe('units', () => {
  test('durations', () => {
    assert.equal(parseDuration('2m'), 120_000)
    assert.equal(parseDuration('30s'), 30_000)
    assert.equal(parseDuration('1h'), 3_600_000)
    assert.equal(parseDuration('7d'), 604_800_000)
    assert.equal(parseDuration('0s'), 0)
    assert.equal(parseDuration('never'), null)
    const bad: Array<[string, string]> = [
      ['', 'Duration string cannot be empty'],
      // upstream parses the number before the unit
      ['5', 'cannot parse integer from empty string'],
      ['1.5s', 'invalid digit found in string'],
      ['-1s', 'invalid digit found in string'],
      ['5x', 'Invalid time unit. Use s, m, h, or d'],
      ['s', 'cannot parse integer from empty string'],
      ['5分', 'Invalid time unit. Use s, m, h, or d'],
      ['Never', 'invalid digit found in string'],
      ['18446744073709551615d', 'Duration 18446744073709551615d is too large'],
    ]
    for (const [s, reason] of bad) {
      assert.throws(
        () => parseDuration(s),
        configError(
          `invalid duration ${JSON.stringify(s)}: ${reason} (expected <integer><s|m|h|d> or "never")`,
        ),
      )
    }
    assert.equal(formatDuration(300_000), '5m')
    assert.equal(formatDuration(null), 'never')
  })

  test('byte sizes like Rocket limits', () => {
    const good: Array<[string | number, number]> = [
      ['1MiB', 1_048_576],
      ['10 MiB', 10_485_760],
      ['512KiB', 524_288],
      ['512 kib', 524_288],
      ['1kB', 1000],
      ['1 mb', 1_000_000],
      ['0.5KiB', 512],
      ['7.25GB', 7_250_000_000],
      ['349b', 349],
      ['524288', 524_288],
      [65_536, 65_536],
      [0, 0],
    ]
    for (const [s, n] of good) assert.equal(parseByteSize(s), n, String(s))
    for (const s of [
      '',
      'a',
      '1.2',
      '99k',
      '1 k b',
      ' 1MB',
      '1MB ',
      '.5KiB',
      '1.kb',
      '-1',
      '1ZB',
    ]) {
      assert.throws(() => parseByteSize(s), configError(/^invalid byte size /), s)
    }
    assert.throws(() => parseByteSize(-1), configError(/^invalid byte size -1: /))
    assert.throws(() => parseByteSize(1.5), configError(/^invalid byte size 1\.5: /))
  })

  test('the webhook timeout is finite and positive', () => {
    assert.equal(
      load(`[core.auth_api.webhook]\ntimeout = "2m"\n`).core.authApi.webhook.timeoutMs,
      120_000,
    )
    assert.throws(
      () => load(`[core.auth_api.webhook]\ntimeout = "never"\n`),
      configError('core.auth_api.webhook.timeout must be a finite duration, not "never"'),
    )
    assert.throws(
      () => load(`[core.auth_api.webhook]\ntimeout = "0s"\n`),
      configError('core.auth_api.webhook.timeout must be greater than zero'),
    )
    assert.throws(
      () => load(`[core.auth_api.webhook]\ntimeout = "25d"\n`),
      configError('core.auth_api.webhook.timeout must be at most 24d (or "never" where allowed)'),
    )
    assert.equal(
      load(`[core.image]\ndownload_timeout = "never"\n`).core.image.downloadTimeoutMs,
      null,
    )
  })
})

describe('[limits]', () => {
  type Limits = KmsConfig['limits']
  /** every key: its field, its default, an override in TOML and the value it resolves to, and
   * values its kind refuses */
  const KEYS: Array<{
    key: string
    field: keyof Limits
    byDefault: number
    toml: string
    value: number
    bad: string[]
  }> = [
    {
      key: 'headers_timeout',
      field: 'headersTimeoutMs',
      byDefault: 15_000,
      toml: '"5s"',
      value: 5000,
      bad: ['"never"', '"0s"', '"25d"', '15', '"15"'],
    },
    {
      key: 'request_timeout',
      field: 'requestTimeoutMs',
      byDefault: 60_000,
      toml: '"2m"',
      value: 120_000,
      bad: ['"never"', '"0s"', '"25d"'],
    },
    {
      key: 'keep_alive_timeout',
      field: 'keepAliveTimeoutMs',
      byDefault: 10_000,
      toml: '"3s"',
      value: 3000,
      bad: ['"never"', '"0s"', '"1x"'],
    },
    {
      key: 'idle_timeout',
      field: 'idleTimeoutMs',
      byDefault: 120_000,
      toml: '"1h"',
      value: 3_600_000,
      bad: ['"never"', '"0m"', '60'],
    },
    {
      key: 'max_requests_per_connection',
      field: 'maxRequestsPerSocket',
      byDefault: 0,
      toml: '100',
      value: 100,
      bad: ['-1', '"100"', '1.5'],
    },
    {
      key: 'tls_handshake_timeout',
      field: 'tlsHandshakeTimeoutMs',
      byDefault: 10_000,
      toml: '"3s"',
      value: 3000,
      bad: ['"never"', '"0s"', '"25d"'],
    },
    {
      key: 'max_connections',
      field: 'maxConnections',
      byDefault: 8192,
      toml: '16384',
      value: 16_384,
      bad: ['-1', '"8192"', '0'],
    },
    {
      key: 'max_connections_per_source',
      field: 'maxConnectionsPerSource',
      byDefault: 2048,
      toml: '64',
      value: 64,
      bad: ['-1', '0', '9000'],
    },
    {
      key: 'max_header_size',
      field: 'maxHeaderBytes',
      byDefault: 16_384,
      toml: '"32KiB"',
      value: 32_768,
      bad: ['"16 kilobytes"', '-1', '512', '"2MiB"'],
    },
    {
      key: 'body_budget',
      field: 'bodyBudgetBytes',
      byDefault: 64 * 1024 ** 2,
      toml: '"128MiB"',
      value: 128 * 1024 ** 2,
      bad: ['"lots"', '0', '"8MiB"'],
    },
    {
      key: 'body_budget_per_source',
      field: 'bodyBudgetPerSourceBytes',
      byDefault: 16 * 1024 ** 2,
      toml: '1048576',
      value: 1024 ** 2,
      bad: ['-5', '0', '"65MiB"'],
    },
    {
      key: 'body_read_deadline',
      field: 'bodyReadDeadlineMs',
      byDefault: 30_000,
      toml: '"10s"',
      value: 10_000,
      bad: ['"never"', '"0s"', '30'],
    },
  ]

  test('every key has its default, takes an override and refuses bad values', () => {
    const defaults = load(undefined).limits
    assert.equal(Object.keys(defaults).length, KEYS.length, 'a [limits] key without a test row')
    for (const k of KEYS) {
      assert.equal(defaults[k.field], k.byDefault, `${k.key} default`)
      assert.equal(load(`[limits]\n${k.key} = ${k.toml}\n`).limits[k.field], k.value, k.key)
      for (const bad of k.bad) {
        assert.throws(
          () => load(`[limits]\n${k.key} = ${bad}\n`),
          configError(new RegExp(`limits\\.${k.key}`)),
          `${k.key} = ${bad}`,
        )
      }
    }
  })

  test('the messages name the key and the rule', () => {
    assert.throws(
      () => load(`[limits]\nheaders_timeout = "never"\n`),
      configError(
        /^invalid value for configuration key limits\.headers_timeout: "never" is not a finite duration from "1s" to "24d" \(in .*test\.toml\)$/,
      ),
    )
    assert.throws(
      () => load(`[limits]\nmax_connections = 100\nmax_connections_per_source = 101\n`),
      configError(
        'limits.max_connections_per_source (101) must not exceed limits.max_connections (100)',
      ),
    )
    assert.throws(
      () => load(`[limits]\nbody_budget = "1MiB"\nbody_budget_per_source = "2MiB"\n`),
      configError(
        'limits.body_budget_per_source (2097152 bytes) must not exceed limits.body_budget (1048576 bytes)',
      ),
    )
    assert.throws(
      () => load(`[limits]\nheaders_timeout = "2m"\n`),
      configError(
        'limits.headers_timeout (2m) must not exceed limits.request_timeout (1m): the head is part of the request',
      ),
    )
    assert.throws(
      () => load(`[limits]\nmax_header_size = 512\n`),
      configError('limits.max_header_size must be from 1KiB to 1MiB, got 512 bytes'),
    )
    assert.throws(
      () => load(`[limits]\nmax_connections = 0\nmax_connections_per_source = 0\n`),
      configError('limits.max_connections must be at least 1, got 0'),
    )
  })

  test('a body read deadline beyond the request timeout is a warning', () => {
    const cfg = load(`[limits]\nrequest_timeout = "20s"\n`)
    assert.ok(
      cfg.warnings.includes(
        'limits.body_read_deadline (30s) is longer than limits.request_timeout (20s): a slow body is cut by the request timeout first',
      ),
      cfg.warnings.join('\n'),
    )
    assert.deepEqual(
      load(undefined).warnings.filter((w) => w.startsWith('limits.')),
      [],
    )
  })
})

describe('validation', () => {
  test('backend none requires enforce_self_authorization = false', () => {
    assert.throws(
      () => load(`[tee]\nbackend = "none"\n`),
      configError(
        'core.enforce_self_authorization must be false when tee.backend = "none": a KMS without a TEE cannot attest itself to its auth API; set core.enforce_self_authorization = false or choose tee.backend = "tdx" or "simulator"',
      ),
    )
    const cfg = load(`[core]\nenforce_self_authorization = false\n[tee]\nbackend = "none"\n`)
    assert.equal(cfg.tee.backend, 'none')
  })

  test('admin_token_hash must be empty or hex; a non-32-byte hash is warned about', () => {
    for (const bad of ['0x9f86', 'xyz', 'abc']) {
      assert.throws(
        () => load(`[core]\nadmin_token_hash = "${bad}"\n`),
        configError(
          'core.admin_token_hash must be "" or the hex SHA-256 of the admin token (an even number of hex digits, no 0x prefix)',
        ),
        bad,
      )
    }
    const cfg = load(`[core]\nadmin_token_hash = "ABCD"\n`)
    assert.equal(cfg.core.adminTokenHash, 'abcd')
    assert.deepEqual(cfg.warnings, [
      'core.admin_token_hash is 2 bytes, not 32: ClearImageCache will refuse every token',
    ])
    const empty = load(
      `[core]\nadmin_token_hash = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"\n`,
    )
    assert.deepEqual(empty.warnings, [
      'core.admin_token_hash is the SHA-256 of the EMPTY token (was ADMIN_TOKEN unset when it was computed?): ClearImageCache refuses every token',
    ])
  })

  test('a webhook auth API needs an http(s) URL; dev mode does not', () => {
    for (const url of ['', 'auth-api:8000', 'ftp://auth.example']) {
      assert.throws(
        () => load(`[core.auth_api.webhook]\nurl = "${url}"\n`),
        configError(
          `core.auth_api.webhook.url must be an http:// or https:// URL, or unix:/path/to.sock, when core.auth_api.type = "webhook", got ${JSON.stringify(url)}`,
        ),
      )
    }
    const cfg = load(`[core.auth_api]\ntype = "dev"\n[core.auth_api.webhook]\nurl = ""\n`)
    assert.equal(cfg.core.authApi.type, 'dev')
  })

  test('a unix: webhook URL names a socket; a relative one follows the working directory', () => {
    const dir = tempDir()
    const rel = load(`[core.auth_api.webhook]\nurl = "unix:run/a.sock"\n`, { cwd: dir })
    assert.equal(rel.core.authApi.webhook.url, `unix:${join(dir, 'run/a.sock')}`)
    const abs = load(`[core.auth_api.webhook]\nurl = "unix:/run/kms/a.sock"\n`)
    assert.equal(abs.core.authApi.webhook.url, 'unix:/run/kms/a.sock')
    assert.throws(
      () => load(`[core.auth_api.webhook]\nurl = "unix:"\n`),
      configError('core.auth_api.webhook.url must name a unix socket by an absolute path, got ""'),
    )
    const long = `/${'x'.repeat(120)}.sock`
    assert.throws(
      () => load(`[core.auth_api.webhook]\nurl = "unix:${long}"\n`),
      configError(/is longer than the 107 bytes a unix socket path may have/),
    )
  })

  test('a webhook bearer secret never travels over plain http beyond this host', () => {
    const tokenFile = '[core.auth_api.webhook]\ntoken_file = "/etc/kms/webhook.token"\n'
    for (const url of ['http://auth.example:8000', 'http://10.0.0.1/', 'http://[::2]:80']) {
      assert.throws(
        () => load(`${tokenFile}url = "${url}"\n`),
        configError(
          `core.auth_api.webhook.token_file is set but core.auth_api.webhook.url ${JSON.stringify(url)} is plain http:// to a host beyond this machine, so the bearer secret would travel in clear; use https:// (or a loopback or unix: URL)`,
        ),
      )
    }
    for (const url of [
      'https://auth.example',
      'http://127.0.0.1:8001',
      'http://localhost:8001',
      'http://[::1]:8001',
      'unix:/run/kms/a.sock',
    ]) {
      const cfg = load(`${tokenFile}url = "${url}"\n`)
      assert.equal(cfg.core.authApi.webhook.tokenFile, '/etc/kms/webhook.token')
    }
    // without a token plain http stays allowed (upstream's default URL is one)
    assert.equal(load(undefined).core.authApi.webhook.url, 'http://auth-api:8000')
  })

  test('[auth_simple]: a unix socket beside the cert dir by default; a webhook elsewhere is flagged', () => {
    const dir = tempDir()
    const on = `[core]\ncert_dir = "state/certs"\n[auth_simple]\nenabled = true\n`
    const cfg = load(`${on}[core.auth_api.webhook]\nurl = "unix:state/run/auth-simple.sock"\n`, {
      cwd: dir,
    })
    assert.equal(cfg.authSimple.listen, 'unix')
    assert.equal(cfg.authSimple.socket, join(dir, 'state/run/auth-simple.sock'))
    assert.deepEqual(
      cfg.warnings.filter((w) => w.startsWith('auth_simple')),
      [],
    )
    const elsewhere = load(`${on}[core.auth_api.webhook]\nurl = "http://127.0.0.1:8001"\n`, {
      cwd: dir,
    })
    assert.ok(
      elsewhere.warnings.includes(
        `auth_simple listens on unix:${join(dir, 'state/run/auth-simple.sock')} but core.auth_api.webhook.url is "http://127.0.0.1:8001": the KMS does not ask the sidecar (set url = "unix:${join(dir, 'state/run/auth-simple.sock')}")`,
      ),
      elsewhere.warnings.join('\n'),
    )
    // the TCP clash check applies to the TCP listener only
    const clash = `[rpc]\naddress = "127.0.0.1"\nport = 8001\n${on}`
    assert.equal(load(clash, { cwd: dir }).authSimple.port, 8001)
    assert.throws(
      () => load(`${clash}listen = "tcp"\n`, { cwd: dir }),
      configError(/auth_simple listens on 127.0.0.1:8001, which clashes with rpc/),
    )
    assert.throws(
      () => load(`${on}socket = "/${'s'.repeat(110)}"\n`, { cwd: dir }),
      configError(/auth_simple.socket .* is longer than the 107 bytes/),
    )
  })

  test('admin listener: fail-closed start and the token sources', () => {
    const enabled = `[core.admin]\nenabled = true\n`
    assert.throws(() => load(enabled), configError(ADMIN_NO_AUTH_MESSAGE))
    assert.equal(
      ADMIN_NO_AUTH_MESSAGE,
      'admin API is enabled but neither auth_token nor htpasswd_file is configured; set core.admin.auth_token, DSTACK_KMS_ADMIN_TOKEN, ADMIN_API_TOKEN, core.admin.htpasswd_file, or insecure_no_auth = true (testing only)',
    )
    // DSTACK_KMS_ADMIN_TOKEN set to "" shadows the compatibility variable.
    assert.throws(
      () => load(enabled, { env: { DSTACK_KMS_ADMIN_TOKEN: '', ADMIN_API_TOKEN: 'secret' } }),
      configError(ADMIN_NO_AUTH_MESSAGE),
    )
    assert.throws(
      () => load(`${enabled}auth_token = "   "\n`, { env: { ADMIN_API_TOKEN: 'secret' } }),
      configError(ADMIN_NO_AUTH_MESSAGE),
    )
    assert.equal(load(enabled, { env: { ADMIN_API_TOKEN: 'secret' } }).core.admin.enabled, true)
    assert.equal(load(enabled, { env: { DSTACK_KMS_ADMIN_TOKEN: ' s ' } }).core.admin.enabled, true)
    assert.equal(load(`${enabled}auth_token = "t"\n`).core.admin.authToken, 't')
    const dir = tempDir()
    assert.equal(
      load(`${enabled}htpasswd_file = "admin.htpasswd"\n`, { cwd: dir }).core.admin.htpasswdFile,
      join(dir, 'admin.htpasswd'),
    )
    const open = load(`${enabled}insecure_no_auth = true\n`)
    assert.ok(
      unsafeDefaultWarnings(open).includes(
        'core.admin.insecure_no_auth = true: the admin API on 127.0.0.1:8001 accepts requests without any authentication.',
      ),
    )

    assert.equal(resolveAdminToken({ authToken: ' a ' }, { DSTACK_KMS_ADMIN_TOKEN: 'b' }), 'a')
    assert.equal(resolveAdminToken({ authToken: '' }, { DSTACK_KMS_ADMIN_TOKEN: ' b\n' }), 'b')
    assert.equal(resolveAdminToken({ authToken: '' }, { ADMIN_API_TOKEN: 'c' }), 'c')
    assert.equal(
      resolveAdminToken({ authToken: '' }, { DSTACK_KMS_ADMIN_TOKEN: '', ADMIN_API_TOKEN: 'c' }),
      '',
    )
    assert.equal(resolveAdminToken({ authToken: '' }, {}), '')
  })

  test('the admin listener may not share the main port', () => {
    assert.throws(
      () => load(`[core.admin]\nenabled = true\nauth_token = "t"\nport = 8000\n`),
      configError(
        'core.admin listens on 127.0.0.1:8000, which clashes with rpc 0.0.0.0:8000; the admin listener needs its own port',
      ),
    )
  })

  test('domain validation uses upstream HEAD rules and messages', () => {
    const tooLong = 'DOMAIN_TOO_LONG'
    const badLabel = 'BAD_LABEL'
    const label63 = 'a'.repeat(63)
    const name253 = [label63, label63, label63, 'a'.repeat(61)].join('.')
    assert.equal(name253.length, 253)
    const cases: Array<[string, string | null]> = [
      ['kms.example.com', null],
      ['localhost', null],
      ['a-b.x1', null],
      [name253, null],
      [`${name253}a`, tooLong],
      ['', tooLong],
      ['kms.exämple.com', tooLong],
      [`${label63}a.com`, badLabel],
      [`${label63}.com`, null],
      ['-kms.example.com', badLabel],
      ['kms-.example.com', badLabel],
      ['kms..example.com', badLabel],
      ['kms.example.com.', badLabel],
      ['.kms', badLabel],
      ['kms_1.example.com', badLabel],
      ['kms example.com', badLabel],
    ]
    for (const [domain, expected] of cases) {
      if (expected === null) {
        assert.doesNotThrow(() => validateDomain(domain), domain)
        continue
      }
      const message =
        expected === tooLong
          ? 'domain must be a non-empty ASCII DNS name of at most 253 bytes'
          : 'domain contains an invalid DNS label'
      assert.throws(
        () => validateDomain(domain),
        (err: unknown) => {
          assert.ok(err instanceof KmsError)
          assert.equal(err.code, 'KMS_ERR_RPC')
          assert.equal(err.message, message)
          return true
        },
        domain,
      )
    }
    assert.throws(
      () => load(`[core.onboard]\nauto_bootstrap_domain = "kms-.example"\n`),
      configError(
        'core.onboard.auto_bootstrap_domain "kms-.example" is invalid: domain contains an invalid DNS label',
      ),
    )
    assert.equal(
      load(`[core.onboard]\nauto_bootstrap_domain = "kms.example"\n`).core.onboard
        .autoBootstrapDomain,
      'kms.example',
    )
  })

  test('auto_onboard_source needs auto_onboard_domain, an https URL, and no auto_bootstrap_domain', () => {
    const onboard = (body: string) => load(`[core.onboard]\n${body}\n`)
    const src = 'auto_onboard_source = "https://kms-1.example:8000"'
    const dom = 'auto_onboard_domain = "kms-2.example"'
    assert.throws(
      () => onboard(src),
      configError(
        'core.onboard.auto_onboard_source and core.onboard.auto_onboard_domain must be set together',
      ),
    )
    assert.throws(
      () => onboard(`${src}\n${dom}\nauto_bootstrap_domain = "kms-2.example"`),
      configError(
        'core.onboard.auto_onboard_source and core.onboard.auto_bootstrap_domain exclude each other: a replica takes its keys from the source, it never generates its own',
      ),
    )
    assert.throws(
      () => onboard(`auto_onboard_source = "http://kms-1.example:8000"\n${dom}`),
      configError(
        'core.onboard.auto_onboard_source "http://kms-1.example:8000" must be an https:// URL of a running KMS',
      ),
    )
    assert.throws(
      () => onboard(`${src}\nauto_onboard_domain = "kms-.example"`),
      configError(
        'core.onboard.auto_onboard_domain "kms-.example" is invalid: domain contains an invalid DNS label',
      ),
    )
    const ok = onboard(`${src}\n${dom}`).core.onboard
    assert.equal(ok.autoOnboardSource, 'https://kms-1.example:8000')
    assert.equal(ok.autoOnboardDomain, 'kms-2.example')
  })
})

describe('quick start', () => {
  test('the first call creates a token and stores only its hash (0600); later calls do not', () => {
    const dir = tempDir()
    const dataDir = join(dir, 'data')
    const first = ensureQuickstartAdminToken(dataDir)
    assert.ok(first.createdToken !== undefined)
    assert.match(first.createdToken, /^[0-9a-f]{64}$/)
    const expectedHash = createHash('sha256').update(first.createdToken).digest('hex')
    assert.equal(first.hash, expectedHash)
    const file = join(dataDir, 'admin-token.sha256')
    assert.equal(readFileSync(file, 'utf8'), `${expectedHash}\n`)
    assert.equal(statSync(file).mode & 0o777, 0o600)
    assert.deepEqual(readdirSync(dataDir), ['admin-token.sha256'])

    const second = ensureQuickstartAdminToken(dataDir)
    assert.deepEqual(second, { hash: expectedHash })
    assert.equal(readFileSync(file, 'utf8'), `${expectedHash}\n`)
  })

  test('a corrupt hash file is an error, not silently replaced', () => {
    const dataDir = join(tempDir(), 'data')
    mkdirSync(dataDir)
    writeFileSync(join(dataDir, 'admin-token.sha256'), 'not a hash\n')
    assert.throws(
      () => ensureQuickstartAdminToken(dataDir),
      configError(/^invalid quick-start admin token hash file .*admin-token\.sha256: /),
    )
  })

  test('the simulator seed: random per installation, 0600, kept across starts', () => {
    const dataDir = join(tempDir(), 'data')
    const seed = ensureQuickstartSeed(dataDir)
    assert.match(seed, /^[0-9a-f]{64}$/)
    const file = join(dataDir, 'tee-simulator.seed')
    assert.equal(statSync(file).mode & 0o777, 0o600)
    assert.equal(ensureQuickstartSeed(dataDir), seed)
    assert.notEqual(ensureQuickstartSeed(join(tempDir(), 'data')), seed)
    writeFileSync(file, 'short\n')
    assert.throws(
      () => ensureQuickstartSeed(dataDir),
      configError(/invalid quick-start simulator seed file/),
    )
  })

  test('the profile without its seed file says how to create it', () => {
    const dir = tempDir()
    assert.throws(
      () => loadConfig({ cwd: dir, etcFile: join(dir, 'none.toml'), quickstart: true, env: {} }),
      configError(
        /tee-simulator\.seed does not exist; start the quick-start KMS once \(dstack-kms serve --quickstart\)/,
      ),
    )
  })

  test('the profile: everything under ./data, simulator + auth-simple, admin hash from the file', () => {
    const dir = tempDir()
    const { hash } = ensureQuickstartAdminToken(join(dir, 'data'))
    const seed = ensureQuickstartSeed(join(dir, 'data'))
    const cfg = loadConfig({ cwd: dir, etcFile: join(dir, 'none.toml'), quickstart: true, env: {} })
    assert.deepEqual(cfg.rpc, {
      address: '0.0.0.0',
      port: 8000,
      tls: {
        key: join(dir, 'data/certs/rpc.key'),
        certs: join(dir, 'data/certs/rpc.crt'),
        mutual: { caCerts: join(dir, 'data/certs/tmp-ca.crt'), mandatory: false },
      },
      limits: {},
      workers: 0,
    })
    assert.equal(cfg.core.certDir, join(dir, 'data/certs'))
    assert.equal(cfg.core.image.cacheDir, join(dir, 'data/images'))
    assert.equal(cfg.core.image.verify, true)
    assert.equal(cfg.core.authApi.type, 'webhook')
    assert.equal(cfg.core.authApi.webhook.url, `unix:${join(dir, 'data/run/auth-simple.sock')}`)
    assert.deepEqual(cfg.authSimple, {
      enabled: true,
      listen: 'unix',
      socket: join(dir, 'data/run/auth-simple.sock'),
      tokenFile: '',
      address: '127.0.0.1',
      port: 8001,
      config: join(dir, 'data/auth-config.json'),
    })
    assert.equal(cfg.core.enforceSelfAuthorization, true)
    assert.equal(cfg.core.adminTokenHash, hash)
    // the profile leaves onboarding as upstream has it
    assert.deepEqual(cfg.core.onboard, UPSTREAM_DEFAULTS.core.onboard)
    assert.deepEqual(cfg.tee, { backend: 'simulator', simulator: { seed, trustMockRoot: true } })
    assert.deepEqual(cfg.sources, [])
    assert.deepEqual(cfg.warnings, [])
    assert.deepEqual(unsafeDefaultWarnings(cfg), [
      'tee.backend = "simulator": quotes are signed by a mock Intel PKI and prove nothing about real hardware. Never use it for production keys.',
      LEGACY_NO_ACPI,
      "tee.simulator.trust_mock_root = true: quotes signed by the simulator's mock Intel PKI are accepted as genuine. Development only.",
      'core.metrics.enabled = true: unauthenticated Prometheus metrics are served at /metrics on 0.0.0.0:8000; disable them unless the listener is protected by network policy.',
    ])
    assert.match(QUICKSTART_TOML, /backend = "simulator"/)
  })

  test('config files still override the profile', () => {
    const dir = tempDir()
    ensureQuickstartSeed(join(dir, 'data'))
    writeFileSync(join(dir, 'kms.toml'), `[rpc]\nport = 9000\n[core.onboard]\ntls = false\n`)
    const cfg = loadConfig({ cwd: dir, etcFile: join(dir, 'none.toml'), quickstart: true, env: {} })
    assert.equal(cfg.rpc.port, 9000)
    assert.equal(cfg.core.onboard.tls, false)
    assert.equal(cfg.core.adminTokenHash, '')
    assert.deepEqual(cfg.warnings, [
      `quick-start admin token hash ${join(dir, 'data', 'admin-token.sha256')} does not exist: ClearImageCache refuses every token`,
    ])
    assert.ok(
      unsafeDefaultWarnings(cfg).includes(
        'core.onboard.tls = false: the unauthenticated onboarding endpoint on 0.0.0.0 is served over plain HTTP, so bootstrap and onboarding answers can be read or altered in transit.',
      ),
    )
  })
})
