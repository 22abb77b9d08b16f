// auth-simple: upstream's index.test.ts vectors one to one through app.inject, then
// our additions — hot reload, broken policy files, request validation, a real listening server
// driven by the KMS's own webhook client, and the command as a child process with real signals.
import assert from 'node:assert/strict'
import type { BootInfo } from '../src/attestation/boot-info.js'
import { spawn } from 'node:child_process'
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import { join, resolve } from 'node:path'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { WebhookAuthApi } from '../src/auth/auth-api.js'
import { checkBoot, normalizeHex } from '../src/auth-simple/check.js'
import {
  AuthSimpleConfigSource,
  authSimpleConfigSchema,
  defaultAuthSimpleConfig,
  loadAuthSimpleConfig,
  type ConfigFileIo,
} from '../src/auth-simple/config.js'
import { buildAuthSimpleServer, UNAUTHORIZED_MESSAGE } from '../src/auth-simple/server.js'
import { defaultLimits } from '../src/config/load.js'
import { runAuthSimple } from '../src/commands/auth-simple.js'
import { HttpClient } from '../src/http/http-client.js'
import { unixUrl } from '../src/http/unix-url.js'
import { collectLines } from './helpers/line-collector.js'
import { tempDir as scratchDir } from './helpers/temp-dir.js'
import { captureLogger } from './helpers/capture-logger.js'
import { sampleBootInfo } from './helpers/boot-info.js'

const OS_IMAGE = '0x1fbb0cf9cc6cfbf23d6b779776fabad2c5403d643badb9e5e238615e4960a78a'

const baseBootInfo = {
  attestationMode: 'dstack-tdx',
  mrAggregated: '0xabc123',
  osImageHash: OS_IMAGE,
  appId: '0xapp123',
  composeHash: '0xcompose456',
  instanceId: '0xinstance789',
  deviceId: '0xdevice999',
  tcbStatus: 'UpToDate',
  advisoryIds: [] as string[],
  mrSystem: '',
}

type LogLine = Record<string, unknown> & { msg?: string; level?: number }

function tempDir(): string {
  return scratchDir('auth-simple-test-')
}

interface Harness {
  app: FastifyInstance
  configPath: string
  logs: LogLine[]
  writeConfig(config: object): void
  post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }>
}

function harness(): Harness {
  const dir = tempDir()
  const configPath = join(dir, 'test-auth-config.json')
  const { logger, lines } = captureLogger()
  const app = buildAuthSimpleServer({ configPath, logger, limits: defaultLimits() })
  after(async () => {
    await app.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return {
    app,
    configPath,
    logs: lines,
    writeConfig: (config) => writeFileSync(configPath, JSON.stringify(config, null, 2)),
    async post(path, body) {
      const res = await app.inject({
        method: 'POST',
        url: path,
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify(body),
      })
      return { status: res.statusCode, json: res.json<Record<string, unknown>>() }
    },
  }
}

describe('auth-simple: upstream index.test.ts vectors', () => {
  const h = harness()

  describe('GET /', () => {
    it('returns health check info', async () => {
      h.writeConfig({ gatewayAppId: '0xgateway' })
      const res = await h.app.inject({ method: 'GET', url: '/' })
      const json = res.json<Record<string, unknown>>()
      assert.equal(res.statusCode, 200)
      assert.equal(json.status, 'ok')
      assert.equal(json.gatewayAppId, '0xgateway')
    })
  })

  describe('POST /bootAuth/kms', () => {
    it('allows KMS boot with valid config', async () => {
      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE],
        kms: { mrAggregated: ['0xabc123'], devices: ['0xdevice999'], allowAnyDevice: false },
      })
      const { json } = await h.post('/bootAuth/kms', baseBootInfo)
      assert.equal(json.isAllowed, true)
      assert.equal(json.reason, '')
    })

    it('rejects KMS boot with invalid TCB status', async () => {
      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE],
        kms: { mrAggregated: ['0xabc123'], allowAnyDevice: true },
      })
      const { json } = await h.post('/bootAuth/kms', { ...baseBootInfo, tcbStatus: 'OutOfDate' })
      assert.equal(json.isAllowed, false)
      assert.match(String(json.reason), /TCB status/)
    })

    it('requires explicit opt-in for non-UpToDate SEV-SNP TCB status', async () => {
      const kms = { mrAggregated: ['0xabc123'], devices: ['0xdevice999'], allowAnyDevice: false }
      h.writeConfig({ gatewayAppId: '0xgateway', osImages: [OS_IMAGE], kms })
      const sevSnpBootInfo = {
        ...baseBootInfo,
        attestationMode: 'dstack-amd-sev-snp',
        tcbStatus: 'OutOfDate',
      }
      assert.equal((await h.post('/bootAuth/kms', sevSnpBootInfo)).json.isAllowed, false)

      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE],
        allowedTcbStatuses: ['OutOfDate'],
        kms,
      })
      const { json } = await h.post('/bootAuth/kms', sevSnpBootInfo)
      assert.equal(json.isAllowed, true)
      assert.equal(json.reason, '')
    })

    it('rejects unallowlisted advisory IDs by default', async () => {
      const kms = { mrAggregated: ['0xabc123'], allowAnyDevice: true }
      h.writeConfig({ gatewayAppId: '0xgateway', osImages: [OS_IMAGE], kms })
      const withAdvisory = { ...baseBootInfo, advisoryIds: ['INTEL-SA-TEST'] }
      const denied = await h.post('/bootAuth/kms', withAdvisory)
      assert.equal(denied.json.isAllowed, false)
      assert.match(String(denied.json.reason), /advisory/)

      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE],
        allowedAdvisoryIds: ['INTEL-SA-TEST'],
        kms,
      })
      assert.equal((await h.post('/bootAuth/kms', withAdvisory)).json.isAllowed, true)
    })

    it('rejects KMS boot with invalid OS image', async () => {
      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: ['0xdifferentimage'],
        kms: { mrAggregated: ['0xabc123'], allowAnyDevice: true },
      })
      const { json } = await h.post('/bootAuth/kms', baseBootInfo)
      assert.equal(json.isAllowed, false)
      assert.match(String(json.reason), /OS image/)
    })

    it('rejects KMS boot with invalid mrAggregated', async () => {
      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE],
        kms: { mrAggregated: ['0xdifferentmr'], allowAnyDevice: true },
      })
      const { json } = await h.post('/bootAuth/kms', baseBootInfo)
      assert.equal(json.isAllowed, false)
      assert.match(String(json.reason), /MR/)
    })

    it('rejects KMS boot when the identity allowlist is empty', async () => {
      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE],
        kms: { mrAggregated: [], allowAnyDevice: true },
      })
      const { json } = await h.post('/bootAuth/kms', baseBootInfo)
      assert.equal(json.isAllowed, false)
      assert.match(String(json.reason), /MR/)
    })

    it('allows KMS boot with allowAnyDevice', async () => {
      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE],
        kms: { mrAggregated: ['0xabc123'], devices: ['0xotherdevice'], allowAnyDevice: true },
      })
      assert.equal((await h.post('/bootAuth/kms', baseBootInfo)).json.isAllowed, true)
    })
  })

  describe('POST /bootAuth/app', () => {
    it('allows app boot with valid config', async () => {
      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE],
        apps: {
          '0xapp123': {
            composeHashes: ['0xcompose456'],
            devices: ['0xdevice999'],
            allowAnyDevice: false,
          },
        },
      })
      const { json } = await h.post('/bootAuth/app', baseBootInfo)
      assert.equal(json.isAllowed, true)
      assert.equal(json.reason, '')
    })

    it('rejects app boot with unregistered app', async () => {
      h.writeConfig({ gatewayAppId: '0xgateway', osImages: [OS_IMAGE], apps: {} })
      const { json } = await h.post('/bootAuth/app', baseBootInfo)
      assert.equal(json.isAllowed, false)
      assert.match(String(json.reason), /not registered/)
    })

    it('rejects app boot with invalid compose hash', async () => {
      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE],
        apps: { '0xapp123': { composeHashes: ['0xdifferenthash'], allowAnyDevice: true } },
      })
      const { json } = await h.post('/bootAuth/app', baseBootInfo)
      assert.equal(json.isAllowed, false)
      assert.match(String(json.reason), /compose hash/)
    })

    it('rejects app boot with invalid device', async () => {
      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE],
        apps: {
          '0xapp123': {
            composeHashes: ['0xcompose456'],
            devices: ['0xotherdevice'],
            allowAnyDevice: false,
          },
        },
      })
      const { json } = await h.post('/bootAuth/app', baseBootInfo)
      assert.equal(json.isAllowed, false)
      assert.match(String(json.reason), /device/)
    })

    it('allows app boot with allowAnyDevice', async () => {
      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE],
        apps: {
          '0xapp123': { composeHashes: ['0xcompose456'], devices: [], allowAnyDevice: true },
        },
      })
      assert.equal((await h.post('/bootAuth/app', baseBootInfo)).json.isAllowed, true)
    })
  })

  describe('hex normalization', () => {
    it('handles uppercase hex', async () => {
      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE.toUpperCase().replace('0X', '0x')],
        apps: { '0xAPP123': { composeHashes: ['0xCOMPOSE456'], allowAnyDevice: true } },
      })
      assert.equal((await h.post('/bootAuth/app', baseBootInfo)).json.isAllowed, true)
    })

    it('handles hex without 0x prefix', async () => {
      h.writeConfig({
        gatewayAppId: '0xgateway',
        osImages: [OS_IMAGE.slice(2)],
        apps: { app123: { composeHashes: ['compose456'], allowAnyDevice: true } },
      })
      assert.equal((await h.post('/bootAuth/app', baseBootInfo)).json.isAllowed, true)
    })
  })
})

describe('auth-simple: decision details', () => {
  const cfg = (over: object) => ({ ...defaultAuthSimpleConfig(), ...over })
  const boot = (over: object = {}) => ({ ...baseBootInfo, teeVariant: '', ...over })

  it('answers with exact reasons and the gateway app id, first failing check deciding', () => {
    const base = cfg({ gatewayAppId: 'gw', osImages: [OS_IMAGE] })
    const deny = (reason: string) => ({ isAllowed: false, reason, gatewayAppId: 'gw' })
    // TCB before advisory before OS image
    assert.deepEqual(
      checkBoot(
        { ...base, osImages: [] },
        boot({ tcbStatus: 'OutOfDate', advisoryIds: ['A'] }),
        true,
      ),
      deny('TCB status is not allowed'),
    )
    assert.deepEqual(
      checkBoot({ ...base, osImages: [] }, boot({ advisoryIds: ['A'] }), false),
      deny('advisory ID is not allowed'),
    )
    assert.deepEqual(
      checkBoot({ ...base, osImages: [] }, boot(), true),
      deny('OS image is not allowed'),
    )
    assert.deepEqual(checkBoot(base, boot(), true), deny('aggregated MR not allowed'))
    assert.deepEqual(
      checkBoot(
        { ...base, kms: { mrAggregated: ['abc123'], devices: ['0xother'], allowAnyDevice: false } },
        boot(),
        true,
      ),
      deny('KMS is not allowed to boot on this device'),
    )
    assert.deepEqual(checkBoot(base, boot(), false), deny('app not registered'))
    const app = {
      composeHashes: ['0xcompose456'],
      devices: ['0xother'],
      allowAnyDevice: false,
      mrSystem: [],
    }
    assert.deepEqual(
      checkBoot({ ...base, apps: { '0xapp123': app } }, boot({ composeHash: '0xnope' }), false),
      deny('compose hash not allowed'),
    )
    assert.deepEqual(
      checkBoot({ ...base, apps: { '0xapp123': app } }, boot(), false),
      deny('app is not allowed to boot on this device'),
    )
  })

  it('ours: an app may pin mrSystem (the measured OS identity); empty means unchecked', () => {
    const base = cfg({ osImages: [OS_IMAGE] })
    const deny = (reason: string) => ({ isAllowed: false, reason, gatewayAppId: '' })
    const app = { composeHashes: ['0xcompose456'], devices: [], allowAnyDevice: true }
    const pinned = { ...app, mrSystem: ['0xAAAA', '0xbbbb'] }
    assert.deepEqual(
      checkBoot({ ...base, apps: { '0xapp123': pinned } }, boot({ mrSystem: 'cccc' }), false),
      deny('system MR not allowed'),
    )
    assert.equal(
      checkBoot({ ...base, apps: { '0xapp123': pinned } }, boot({ mrSystem: 'aaaa' }), false)
        .isAllowed,
      true,
    )
    assert.equal(
      checkBoot({ ...base, apps: { '0xapp123': { ...app, mrSystem: [] } } }, boot(), false)
        .isAllowed,
      true,
    )
    // an upstream policy file (no mrSystem key) loads with the check off
    assert.deepEqual(authSimpleConfigSchema.parse({ apps: { a: app } }).apps.a?.mrSystem, [])
  })

  it('keeps the upstream quirks: an empty device list allows any device, "" is "0x"', () => {
    const base = cfg({
      gatewayAppId: 'gw',
      osImages: [OS_IMAGE],
      kms: { mrAggregated: ['0xabc123'], devices: [], allowAnyDevice: false },
      apps: {
        '0xapp123': {
          composeHashes: ['0xcompose456'],
          devices: [],
          allowAnyDevice: false,
          mrSystem: [],
        },
      },
    })
    const allowed = { isAllowed: true, reason: '', gatewayAppId: 'gw' }
    assert.deepEqual(checkBoot(base, boot({ deviceId: '0xanything' }), true), allowed)
    assert.deepEqual(checkBoot(base, boot({ deviceId: '0xanything' }), false), allowed)
    assert.equal(normalizeHex(''), '0x')
    assert.equal(normalizeHex(' AB'), '0x ab')
    assert.equal(normalizeHex('0XAB'), '0xab')
    assert.equal(normalizeHex('xyz'), '0xxyz')
    // an empty compose hash matches a configured "0x"
    const emptyCompose = {
      ...base,
      apps: { app123: { composeHashes: ['0x'], devices: [], allowAnyDevice: false, mrSystem: [] } },
    }
    assert.deepEqual(checkBoot(emptyCompose, boot({ composeHash: '' }), false), allowed)
    // the TCB status match is exact and case-sensitive
    assert.equal(checkBoot(base, boot({ tcbStatus: 'uptodate' }), true).isAllowed, false)
  })
})

describe('auth-simple: GET /, hot reload and broken policy files', () => {
  const h = harness()

  it('GET / answers the info the KMS expects, without ethRpcUrl', async () => {
    h.writeConfig({
      gatewayAppId: '0xgw',
      kmsContractAddr: '0xkms',
      chainId: 8453,
      appImplementation: '0ximpl',
    })
    const res = await h.app.inject({ method: 'GET', url: '/' })
    assert.equal(res.statusCode, 200)
    assert.equal(
      res.body,
      JSON.stringify({
        status: 'ok',
        kmsContractAddr: '0xkms',
        gatewayAppId: '0xgw',
        chainId: 8453,
        appAuthImplementation: '0ximpl',
        appImplementation: '0ximpl',
      }),
    )
  })

  it('re-reads the file on every request: an edit takes effect on the next call', async () => {
    const policy = {
      gatewayAppId: 'gw-1',
      osImages: [OS_IMAGE],
      kms: { mrAggregated: ['0xabc123'], allowAnyDevice: true },
    }
    h.writeConfig(policy)
    assert.deepEqual((await h.post('/bootAuth/kms', baseBootInfo)).json, {
      isAllowed: true,
      reason: '',
      gatewayAppId: 'gw-1',
    })
    h.writeConfig({ ...policy, gatewayAppId: 'gw-2', kms: { mrAggregated: [] } })
    assert.deepEqual((await h.post('/bootAuth/kms', baseBootInfo)).json, {
      isAllowed: false,
      reason: 'aggregated MR not allowed',
      gatewayAppId: 'gw-2',
    })
    const info = await h.app.inject({ method: 'GET', url: '/' })
    assert.equal(info.json<{ gatewayAppId: string }>().gatewayAppId, 'gw-2')
    h.writeConfig(policy)
    assert.equal((await h.post('/bootAuth/kms', baseBootInfo)).json.isAllowed, true)
  })

  it('a missing file logs and applies the defaults (everything denied)', async () => {
    unlinkSync(h.configPath)
    h.logs.length = 0
    const { status, json } = await h.post('/bootAuth/kms', baseBootInfo)
    assert.equal(status, 200)
    assert.deepEqual(json, {
      isAllowed: false,
      reason: 'OS image is not allowed',
      gatewayAppId: '',
    })
    assert.ok(h.logs.some((l) => l.msg === `config file not found: ${h.configPath}`))
    const info = await h.app.inject({ method: 'GET', url: '/' })
    assert.deepEqual(info.json(), {
      status: 'ok',
      kmsContractAddr: '0x0000000000000000000000000000000000000000',
      gatewayAppId: '',
      chainId: 0,
      appAuthImplementation: '0x0000000000000000000000000000000000000000',
      appImplementation: '0x0000000000000000000000000000000000000000',
    })
  })

  it('broken JSON or a schema mismatch logs "failed to load config" and applies the defaults', async () => {
    const cases: Array<[string, RegExp]> = [
      ['{"osImages": [', /^failed to load config: SyntaxError: /],
      // a ZodError renders as its issues (its toString is its message)
      [
        JSON.stringify({ osImages: 'not-a-list', gatewayAppId: 'gw' }),
        /^failed to load config: \[\n {2}\{\n {4}"code": "invalid_type"/,
      ],
      [JSON.stringify({ kms: { allowAnyDevice: 'yes' } }), /"path": \[\n {6}"kms",/],
    ]
    for (const [text, logged] of cases) {
      writeFileSync(h.configPath, text)
      h.logs.length = 0
      const { json } = await h.post('/bootAuth/app', baseBootInfo)
      assert.deepEqual(json, {
        isAllowed: false,
        reason: 'OS image is not allowed',
        gatewayAppId: '',
      })
      assert.ok(
        h.logs.some((l) => typeof l.msg === 'string' && logged.test(l.msg)),
        `expected a log matching ${logged}: ${JSON.stringify(h.logs)}`,
      )
    }
  })

  it('drops unknown keys in the policy and fills defaults per app', async () => {
    h.writeConfig({
      osImages: [OS_IMAGE],
      someFutureKey: true,
      apps: { '0xapp123': { composeHashes: ['0xcompose456'], note: 'x' } },
    })
    assert.deepEqual((await h.post('/bootAuth/app', baseBootInfo)).json, {
      isAllowed: true,
      reason: '',
      gatewayAppId: '',
    })
  })

  it('the shipped example policy loads without complaint', () => {
    const errors: string[] = []
    const example = resolve(import.meta.dirname, '../auth-config.example.json')
    const cfg = loadAuthSimpleConfig(example, { error: (msg) => errors.push(msg) })
    assert.deepEqual(errors, [])
    assert.equal(cfg.osImages.length, 1)
    assert.deepEqual(cfg.kms.devices, [])
    assert.equal(cfg.kms.allowAnyDevice, true)
    assert.deepEqual(Object.keys(cfg.apps), ['0xYourAppId'])
    assert.deepEqual(cfg.allowedTcbStatuses, ['UpToDate'])
  })

  it('logs each request and its result', async () => {
    h.writeConfig({ osImages: [OS_IMAGE] })
    h.logs.length = 0
    await h.post('/bootAuth/app', baseBootInfo)
    await h.post('/bootAuth/kms', baseBootInfo)
    const pick = (msg: string) => h.logs.find((l) => l.msg === msg)
    assert.deepEqual(
      [pick('app boot auth request:')?.appId, pick('app boot auth request:')?.composeHash],
      ['0xapp123', '0xcompose456'],
    )
    assert.equal(pick('app boot auth result:')?.reason, 'app not registered')
    assert.equal(pick('KMS boot auth request:')?.mrAggregated, '0xabc123')
    assert.equal(pick('KMS boot auth result:')?.reason, 'aggregated MR not allowed')
  })
})

describe('auth-simple: the policy file read per check, parsed per version', () => {
  /** A file in memory whose reads are counted: undefined = missing. */
  const memoryFile = () => {
    const file = { text: undefined as string | undefined, reads: 0 }
    const io: ConfigFileIo = {
      exists: () => file.text !== undefined,
      readText: () => {
        file.reads++
        if (file.text === undefined) throw new Error('ENOENT')
        return file.text
      },
    }
    return { file, io }
  }
  const source = (io: ConfigFileIo) => {
    const errors: string[] = []
    return {
      errors,
      src: new AuthSimpleConfigSource('/p/auth.json', { error: (m) => errors.push(m) }, io),
    }
  }

  it('reads the file on every call and parses it again only when its text changed', () => {
    const { file, io } = memoryFile()
    const { errors, src } = source(io)
    file.text = JSON.stringify({ osImages: ['0xaa'] })
    const first = src.load()
    const again = src.load()
    assert.equal(file.reads, 2)
    // the same object: nothing was parsed the second time
    assert.equal(again, first)
    assert.deepEqual(first.osImages, ['0xaa'])
    file.text = JSON.stringify({ osImages: ['0xbb'] })
    const edited = src.load()
    assert.notEqual(edited, first)
    assert.deepEqual(edited.osImages, ['0xbb'])
    // the same bytes as an earlier version are parsed again: only the last text is kept
    file.text = JSON.stringify({ osImages: ['0xaa'] })
    assert.deepEqual(src.load().osImages, ['0xaa'])
    assert.deepEqual(errors, [])
  })

  it('hands out a frozen policy, so one check cannot change the next', () => {
    const { file, io } = memoryFile()
    const { src } = source(io)
    file.text = JSON.stringify({ osImages: ['0xaa'], apps: { '0x01': { composeHashes: ['0xc'] } } })
    const cfg = src.load()
    assert.throws(() => cfg.osImages.push('0xevil'), TypeError)
    assert.throws(() => (cfg.apps['0x01']?.composeHashes ?? []).push('0xevil'), TypeError)
    assert.throws(() => {
      cfg.kms.allowAnyDevice = true
    }, TypeError)
    assert.deepEqual(src.load().osImages, ['0xaa'])
    // the defaults handed out for a missing file stay the caller's own
    assert.equal(Object.isFrozen(defaultAuthSimpleConfig().osImages), false)
  })

  it('a missing or broken file gives the defaults and its error line on every call', () => {
    const { file, io } = memoryFile()
    const { errors, src } = source(io)
    assert.deepEqual(src.load(), defaultAuthSimpleConfig())
    assert.deepEqual(src.load(), defaultAuthSimpleConfig())
    assert.deepEqual(errors, [
      'config file not found: /p/auth.json',
      'config file not found: /p/auth.json',
    ])
    errors.length = 0
    file.text = '{ not json'
    assert.deepEqual(src.load(), defaultAuthSimpleConfig())
    assert.deepEqual(src.load(), defaultAuthSimpleConfig())
    assert.equal(errors.length, 2)
    assert.match(errors[0] ?? '', /^failed to load config: SyntaxError/)
    assert.equal(errors[1], errors[0])
    errors.length = 0
    file.text = JSON.stringify({ osImages: 'not a list' })
    src.load()
    assert.match(errors[0] ?? '', /^failed to load config: .*expected/s)
    // fixed: the fixed text is parsed, the broken version is not remembered as the policy
    errors.length = 0
    file.text = JSON.stringify({ osImages: ['0xaa'] })
    assert.deepEqual(src.load().osImages, ['0xaa'])
    assert.deepEqual(errors, [])
    // and broken again with the very text that failed before: it fails again
    file.text = '{ not json'
    assert.deepEqual(src.load(), defaultAuthSimpleConfig())
    assert.equal(errors.length, 1)
  })

  it('an unreadable file is an error line, not a throw', () => {
    const { errors, src } = source({
      exists: () => true,
      readText: () => {
        throw new Error('EISDIR: illegal operation on a directory, read')
      },
    })
    assert.deepEqual(src.load(), defaultAuthSimpleConfig())
    assert.deepEqual(errors, [
      'failed to load config: Error: EISDIR: illegal operation on a directory, read',
    ])
  })
})

describe('auth-simple: request validation', () => {
  const h = harness()

  it('answers 400 with the zod-validator body when a required key is missing or mistyped', async () => {
    h.writeConfig({ osImages: [OS_IMAGE] })
    const { appId: _appId, ...noAppId } = baseBootInfo
    const missing = await h.post('/bootAuth/app', noAppId)
    assert.equal(missing.status, 400)
    assert.deepEqual(missing.json, {
      success: false,
      error: {
        issues: [
          {
            code: 'invalid_type',
            expected: 'string',
            received: 'undefined',
            path: ['appId'],
            message: 'Required',
          },
        ],
        name: 'ZodError',
      },
    })
    const mistyped = await h.post('/bootAuth/kms', { ...baseBootInfo, advisoryIds: 'INTEL-SA-1' })
    assert.equal(mistyped.status, 400)
    const error = mistyped.json.error as { issues: Array<{ path: string[] }>; name: string }
    assert.equal(error.name, 'ZodError')
    assert.deepEqual(
      error.issues.map((i) => i.path),
      [['advisoryIds']],
    )
  })

  it('accepts the optional keys absent and ignores extra keys (the KMS sends keyProviderInfo)', async () => {
    h.writeConfig({
      osImages: [OS_IMAGE],
      allowedTcbStatuses: [''],
      kms: { mrAggregated: ['abc123'] },
    })
    const {
      tcbStatus: _t,
      advisoryIds: _a,
      mrSystem: _m,
      attestationMode: _mode,
      ...required
    } = baseBootInfo
    const res = await h.post('/bootAuth/kms', { ...required, keyProviderInfo: '7b7d', extra: 1 })
    assert.deepEqual(res, { status: 200, json: { isAllowed: true, reason: '', gatewayAppId: '' } })
  })

  it('a malformed JSON body is a 400 text, a non-JSON media type fails validation', async () => {
    const malformed = await h.app.inject({
      method: 'POST',
      url: '/bootAuth/kms',
      headers: { 'content-type': 'application/json' },
      payload: '{"appId":',
    })
    assert.equal(malformed.statusCode, 400)
    assert.equal(malformed.body, 'Malformed JSON in request body')
    const text = await h.app.inject({
      method: 'POST',
      url: '/bootAuth/app',
      headers: { 'content-type': 'text/plain' },
      payload: JSON.stringify(baseBootInfo),
    })
    assert.equal(text.statusCode, 400)
    assert.equal(text.json<{ error: { issues: unknown[] } }>().error.issues.length, 6)
  })
})

describe('auth-simple + the KMS webhook client over real HTTP', () => {
  const h = harness()
  let url = ''
  before(async () => {
    await h.app.listen({ port: 0, host: '127.0.0.1' })
    const addr = h.app.server.address()
    assert.ok(addr !== null && typeof addr === 'object')
    url = `http://127.0.0.1:${addr.port}`
  })

  // what the KMS sends: lowercase hex without 0x, both mode keys, keyProviderInfo
  const kmsBootInfo = sampleBootInfo({ keyProviderInfo: Buffer.alloc(16, 0x08) })
  const client = (base: string) =>
    new WebhookAuthApi({ url: base, timeoutMs: 10_000, userAgent: 'dstack-kms/test' })

  it('decides app and KMS boots for the KMS client, config written with 0x and upper case', async () => {
    h.writeConfig({
      gatewayAppId: '0xgateway',
      osImages: [`0x${'02'.repeat(32)}`],
      kms: { mrAggregated: [`0X${'01'.repeat(32)}`.toLowerCase()], allowAnyDevice: true },
      apps: {
        [`0x${'04'.repeat(20)}`]: {
          composeHashes: [`0x${'05'.repeat(32)}`],
          devices: [`0x${'07'.repeat(32)}`.toUpperCase().replace('0X', '0x')],
        },
      },
    })
    for (const base of [url, `${url}/`]) {
      assert.deepEqual(await client(base).bootAuth(kmsBootInfo, true), {
        isAllowed: true,
        gatewayAppId: '0xgateway',
        reason: '',
      })
      assert.deepEqual(await client(base).bootAuth(kmsBootInfo, false), {
        isAllowed: true,
        gatewayAppId: '0xgateway',
        reason: '',
      })
    }
    assert.deepEqual(
      await client(url).bootAuth({ ...kmsBootInfo, deviceId: Buffer.from('ff', 'hex') }, false),
      {
        isAllowed: false,
        gatewayAppId: '0xgateway',
        reason: 'app is not allowed to boot on this device',
      },
    )
  })

  it('answers the info call the KMS makes for GetMeta', async () => {
    h.writeConfig({ gatewayAppId: '0xgw', kmsContractAddr: '0xkms', chainId: 1 })
    assert.deepEqual(await client(url).info(), {
      isDev: false,
      gatewayAppId: '0xgw',
      kmsContractAddress: '0xkms',
      chainId: 1n,
      appAuthImplementation: '0x0000000000000000000000000000000000000000',
      ethRpcUrl: null,
    })
  })

  it('a BootInfo auth-simple cannot validate surfaces as the KMS error text for a 400', async () => {
    // the KMS's types cannot express it, so the cast stands for a malformed BootInfo on the wire
    const malformed = { ...kmsBootInfo, advisoryIds: [7] as unknown as string[] }
    await assert.rejects(client(url).bootAuth(malformed, false), (err: Error) => {
      assert.match(
        err.message,
        new RegExp(
          `^auth api ${url}/bootAuth/app returned 400 Bad Request: \\{"success":false,"error":\\{"issues":\\[`,
        ),
      )
      return true
    })
  })
})

describe('dstack-kms auth-simple as a process', () => {
  const FIXTURE = resolve(import.meta.dirname, 'fixtures/run-auth-simple.ts')

  function start(args: string[], env: Record<string, string> = {}) {
    const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, ...args], {
      env: { ...process.env, PORT: '', AUTH_CONFIG_PATH: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const stdout = collectLines(proc.stdout)
    const stderr = collectLines(proc.stderr)
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
    after(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    })
    return { proc, stdout, stderr, exited }
  }

  async function bound(p: ReturnType<typeof start>): Promise<{ address: string; port: number }> {
    const line = await p.stderr.waitFor((l) => l.startsWith('auth-simple bound '))
    const [, , address = '', port = ''] = line.split(' ')
    return { address, port: Number(port) }
  }

  /** `policy` written as policy.json into a fresh directory (removed after the test). */
  function policyIn(policy: object): { dir: string; configPath: string } {
    const dir = tempDir()
    after(() => rmSync(dir, { recursive: true, force: true }))
    const configPath = join(dir, 'policy.json')
    writeFileSync(configPath, JSON.stringify(policy))
    return { dir, configPath }
  }

  /** A policy admitting the app of `socketAppBoot`, in a fresh directory. */
  function socketPolicy(): { dir: string; configPath: string } {
    return policyIn({
      gatewayAppId: '0xgw',
      osImages: [OS_IMAGE],
      apps: { ['0x' + '0a'.repeat(20)]: { composeHashes: ['0x' + '0c'.repeat(32)] } },
    })
  }

  it('serves over HTTP on 127.0.0.1 by default and exits 0 on SIGTERM', async () => {
    const { configPath } = policyIn({
      gatewayAppId: '0xgw',
      osImages: [OS_IMAGE],
      kms: { mrAggregated: ['0xabc123'] },
    })
    const p = start(['--config', configPath, '--port', '0'])
    const { address, port } = await bound(p)
    assert.equal(address, '127.0.0.1')
    const logged = (msg: string) =>
      p.stdout.lines.some((l) => (JSON.parse(l) as LogLine).msg === msg)
    assert.ok(logged('starting auth-simple server on port 0'))
    assert.ok(logged(`config path: ${configPath}`))

    const base = `http://127.0.0.1:${port}`
    const info = (await (await fetch(`${base}/`)).json()) as {
      status: string
      gatewayAppId: string
    }
    assert.deepEqual([info.status, info.gatewayAppId], ['ok', '0xgw'])
    const api = new WebhookAuthApi({ url: base, timeoutMs: 10_000, userAgent: 'dstack-kms/test' })
    const kmsBoot = demoBoot(Buffer.from('abc123', 'hex'))
    assert.deepEqual(await api.bootAuth(kmsBoot, true), {
      isAllowed: true,
      gatewayAppId: '0xgw',
      reason: '',
    })

    p.proc.kill('SIGTERM')
    assert.equal(await p.exited, 0)
    await assert.rejects(fetch(`${base}/`))
  })

  it('takes PORT and AUTH_CONFIG_PATH from the environment when the flags are absent', async () => {
    const { configPath } = policyIn({ gatewayAppId: '0xfrom-env' })
    const p = start([], { PORT: '0', AUTH_CONFIG_PATH: configPath })
    const { port } = await bound(p)
    const info = (await (await fetch(`http://127.0.0.1:${port}/`)).json()) as {
      gatewayAppId: string
    }
    assert.equal(info.gatewayAppId, '0xfrom-env')
    p.proc.kill('SIGINT')
    assert.equal(await p.exited, 0)
  })

  it('--token-file (or AUTH_SIMPLE_TOKEN_FILE) requires the bearer secret; a readable file is refused', async () => {
    const { dir, configPath } = policyIn({ gatewayAppId: '0xgw' })
    const tokenFile = join(dir, 'token')
    writeFileSync(tokenFile, 'cli-secret\n', { mode: 0o600 })
    for (const p of [
      start(['--config', configPath, '--port', '0', '--token-file', tokenFile]),
      start(['--config', configPath, '--port', '0'], { AUTH_SIMPLE_TOKEN_FILE: tokenFile }),
    ]) {
      const { port } = await bound(p)
      const base = `http://127.0.0.1:${port}/`
      const denied = await fetch(base, { headers: { authorization: 'Bearer other' } })
      assert.equal(denied.status, 401)
      assert.deepEqual(await denied.json(), { error: UNAUTHORIZED_MESSAGE })
      assert.equal((await fetch(base)).status, 401)
      const ok = await fetch(base, { headers: { authorization: 'Bearer cli-secret' } })
      assert.equal(ok.status, 200)
      assert.equal(((await ok.json()) as { gatewayAppId: string }).gatewayAppId, '0xgw')
      p.proc.kill('SIGTERM')
      assert.equal(await p.exited, 0)
      assert.ok(!p.stdout.lines.some((l) => l.includes('cli-secret')), 'the secret is never logged')
    }
    chmodSync(tokenFile, 0o644)
    const refused = start(['--config', configPath, '--port', '0', '--token-file', tokenFile])
    assert.equal(await refused.exited, 1)
    assert.match(
      refused.stderr.lines.join('\n'),
      /--token-file: .* has mode 0644, so other users may read the secret/,
    )
  })

  const socketAppBoot = demoBoot(Buffer.alloc(32, 0x01))

  async function boundSocket(p: ReturnType<typeof start>): Promise<string> {
    const line = await p.stderr.waitFor((l) => l.startsWith('auth-simple bound socket '))
    return line.slice('auth-simple bound socket '.length)
  }

  it('--socket serves on a private unix socket, with the [limits] defaults, and replaces only a dead socket', async () => {
    const { dir, configPath } = socketPolicy()
    const socketPath = join(dir, 'run', 'auth-simple.sock')
    const p = start(['--config', configPath, '--socket', socketPath])
    assert.equal(await boundSocket(p), socketPath)
    assert.equal(lstatSync(join(dir, 'run')).mode & 0o777, 0o700)
    const st = lstatSync(socketPath)
    assert.ok(st.isSocket())
    assert.equal(st.mode & 0o777, 0o600)
    assert.ok(
      p.stdout.lines.some(
        (l) =>
          (JSON.parse(l) as LogLine).msg === `starting auth-simple server on unix:${socketPath}`,
      ),
    )

    // the KMS's own webhook client, dialling the URL a kms.toml would name
    const api = new WebhookAuthApi({
      url: unixUrl(socketPath),
      timeoutMs: 10_000,
      userAgent: 'dstack-kms/test',
    })
    assert.deepEqual(await api.bootAuth(socketAppBoot, false), {
      isAllowed: true,
      gatewayAppId: '0xgw',
      reason: '',
    })
    assert.deepEqual(
      await api.bootAuth({ ...socketAppBoot, composeHash: Buffer.alloc(32, 0x0e) }, false),
      { isAllowed: false, gatewayAppId: '0xgw', reason: 'compose hash not allowed' },
    )
    // the listener has limits.max_header_size (16 KiB by default)
    const client = new HttpClient({ socketPath, timeoutMs: 10_000, maxResponseBytes: 65536 })
    const big = await client.request('http://localhost/', {
      method: 'GET',
      headers: { 'x-padding': 'a'.repeat(32 * 1024) },
    })
    assert.equal(big.status, 431)

    // a second server on the same path while the first answers is refused
    const second = start(['--config', configPath, '--socket', socketPath])
    assert.equal(await second.exited, 1)
    assert.match(
      second.stderr.lines.join('\n'),
      /another process is already listening on .*auth-simple\.sock; refusing to start a second server there/,
    )
    assert.ok(lstatSync(socketPath).isSocket(), 'the live socket stays')

    // a killed server leaves its socket behind; the next start replaces it
    p.proc.kill('SIGKILL')
    await p.exited
    assert.ok(lstatSync(socketPath).isSocket())
    const restarted = start(['--config', configPath, '--socket', socketPath])
    await boundSocket(restarted)
    assert.equal((await api.bootAuth(socketAppBoot, false)).isAllowed, true)
    restarted.proc.kill('SIGTERM')
    assert.equal(await restarted.exited, 0)
    assert.ok(!existsSync(socketPath), 'a clean stop removes the socket')
  })

  it('--socket refuses a directory others can write or a symbolic link, and anything not a socket at the path', async () => {
    const { dir, configPath } = socketPolicy()
    const shared = join(dir, 'shared')
    mkdirSync(shared)
    chmodSync(shared, 0o770)
    const open = start(['--config', configPath, '--socket', join(shared, 'a.sock')])
    assert.equal(await open.exited, 1)
    assert.match(
      open.stderr.lines.join('\n'),
      /the socket directory .*shared has mode 0770; it must be 0700/,
    )
    assert.ok(!existsSync(join(shared, 'a.sock')))

    const real = join(dir, 'real')
    mkdirSync(real, { mode: 0o700 })
    symlinkSync(real, join(dir, 'link'))
    const linked = start(['--config', configPath, '--socket', join(dir, 'link', 'a.sock')])
    assert.equal(await linked.exited, 1)
    assert.match(
      linked.stderr.lines.join('\n'),
      /the socket directory .*link is a symbolic link; refusing to use it/,
    )
    assert.ok(!existsSync(join(real, 'a.sock')))

    writeFileSync(join(real, 'a.sock'), 'not a socket')
    const file = start(['--config', configPath, '--socket', join(real, 'a.sock')])
    assert.equal(await file.exited, 1)
    assert.match(file.stderr.lines.join('\n'), /exists and is not a socket of this user/)
    assert.ok(lstatSync(join(real, 'a.sock')).isFile(), 'the file is left alone')
  })

  it('--socket with --port or --address is a usage error (exit 2)', async () => {
    const { dir, configPath } = socketPolicy()
    const socketPath = join(dir, 'run', 'a.sock')
    for (const [flag, value] of [
      ['--port', '0'],
      ['-p', '0'],
      ['--address', '127.0.0.1'],
    ] as const) {
      const p = start(['--config', configPath, '--socket', socketPath, flag, value])
      assert.equal(await p.exited, 2)
      assert.match(
        p.stderr.lines.join('\n'),
        /option '--socket' cannot be combined with '--(port|address)': a unix socket has no port or address\nRun 'dstack-kms auth-simple --help' for usage\./,
      )
    }
    assert.ok(!existsSync(join(dir, 'run')), 'nothing was created')
  })

  it('refuses bad options with exit status 2, prints help with 0', async () => {
    const chunks: string[] = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        chunks.push(chunk.toString('utf8'))
        done()
      },
    })
    const io = { stdout: sink, stderr: sink, env: {} }
    assert.equal(await runAuthSimple(['--port', 'x'], io), 2)
    assert.match(chunks.join(''), /invalid port 'x'/)
    assert.equal(await runAuthSimple(['--port', '70000'], io), 2)
    assert.equal(await runAuthSimple(['--bogus'], io), 2)
    assert.equal(await runAuthSimple([], { ...io, env: { PORT: '3o00' } }), 2)
    chunks.length = 0
    assert.equal(await runAuthSimple(['--socket', ''], io), 2)
    assert.match(chunks.join(''), /option '--socket' needs a path/)
    assert.equal(await runAuthSimple(['--socket', `/${'s'.repeat(120)}`], io), 2)
    assert.match(chunks.join(''), /is longer than the 107 bytes a unix socket path may have/)
    chunks.length = 0
    assert.equal(await runAuthSimple(['--help'], io), 0)
    assert.match(chunks.join(''), /^Usage: dstack-kms auth-simple/)
  })
})

/** The boot of the demo policy's app (OS image, app id, compose hash the policy files list). */
function demoBoot(mrAggregated: Buffer): BootInfo {
  return sampleBootInfo({
    mrAggregated,
    osImageHash: Buffer.from(OS_IMAGE.slice(2), 'hex'),
    mrSystem: Buffer.alloc(0),
    appId: Buffer.alloc(20, 0x0a),
    composeHash: Buffer.alloc(32, 0x0c),
    instanceId: Buffer.alloc(20, 0x01),
    deviceId: Buffer.alloc(32, 0x0d),
  })
}
