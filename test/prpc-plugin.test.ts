// The pRPC Fastify plugin and the shared HTTP surface, against real servers on 127.0.0.1.
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { after, before, describe, it } from 'node:test'
import Fastify, { type FastifyRequest } from 'fastify'
import { defaultLimits } from '../src/config/load.js'
import { KmsError, withContext } from '../src/errors.js'
import {
  SHIELD_HEADERS,
  acceptPrefersJson,
  appVersionString,
  registerCommonHttp,
} from '../src/http/common.js'
import {
  AdminClearImageCacheRequestType,
  AppIdType,
  AppKeyResponseType,
  GetAppKeyRequestType,
  GetKmsKeyRequestType,
  GetMetaResponseType,
  ProtoErrorType,
  type AppId,
  type AppKeyResponse,
  type GetKmsKeyRequest,
  type GetMetaResponse,
} from '../src/prpc/messages.js'
import {
  BodyBudget,
  DEFAULT_BODY_LIMIT,
  defineMethod,
  registerPrpc,
  stripServicePrefix,
  type AnyRpcMethod,
} from '../src/prpc/plugin.js'
import { decodeMessage, encodeMessage } from '../src/prpc/schema.js'
import { listenOnLoopback } from './helpers/listen.js'

const APP_VERSION = 'v0.1.0 (git:0123456789abcdef0123)'
const MIB = 1024 * 1024

interface Ctx {
  peer: string
}

interface Response {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
}

interface CallOptions {
  headers?: Record<string, string>
  body?: Buffer | string
  chunked?: boolean
}

const agent = new Agent({ keepAlive: false })

function call(
  port: number,
  method: string,
  path: string,
  opts: CallOptions = {},
): Promise<Response> {
  const body = opts.body === undefined ? undefined : Buffer.from(opts.body)
  const headers: Record<string, string> = { ...opts.headers }
  if (body !== undefined && opts.chunked !== true) headers['content-length'] = String(body.length)
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
    if (body !== undefined && opts.chunked === true) {
      req.write(body.subarray(0, 1))
      req.write(body.subarray(1))
    } else if (body !== undefined) {
      req.write(body)
    }
    req.end()
  })
}

const errorJson = (message: string): string => `{\n  "error": ${JSON.stringify(message)}\n}`

const META: GetMetaResponse = {
  ca_cert: 'CA',
  allow_any_upgrade: true,
  k256_pubkey: Buffer.from('02aa', 'hex'),
  bootstrap_info: null,
  is_dev: true,
  gateway_app_id: 'any',
  kms_contract_address: null,
  chain_id: null,
  app_auth_implementation: null,
}
const META_JSON =
  '{"ca_cert":"CA","allow_any_upgrade":true,"k256_pubkey":"02aa","bootstrap_info":null,"is_dev":true,' +
  '"gateway_app_id":"any","kms_contract_address":null,"chain_id":null,"app_auth_implementation":null}'

const errorsSeen: Array<[string, string]> = []

function toyMethods(): Record<string, AnyRpcMethod<Ctx>> {
  return {
    GetMeta: defineMethod<Ctx, null, GetMetaResponse>(null, GetMetaResponseType, async () => META),
    GetAppKey: defineMethod(GetAppKeyRequestType, AppKeyResponseType, async (input) => {
      if (input.api_version > 1) {
        throw new KmsError('KMS_ERR_RPC', `Unsupported API version: ${input.api_version}`)
      }
      const out: AppKeyResponse = {
        ...AppKeyResponseType.create(),
        ca_cert: `v${input.api_version}`,
        gateway_app_id: input.vm_config,
        k256_key: Buffer.from('0102', 'hex'),
      }
      return out
    }),
    Echo: defineMethod(AppIdType, AppIdType, async (input: AppId) => input),
    Limited: defineMethod(
      GetKmsKeyRequestType,
      GetKmsKeyRequestType,
      async (input: GetKmsKeyRequest) => input,
    ),
    WhoAmI: defineMethod<Ctx, null, GetKmsKeyRequest>(
      null,
      GetKmsKeyRequestType,
      async (_input, call) => ({
        vm_config: `${call.ctx.peer} ${call.request.method}`,
      }),
    ),
    Finish: defineMethod<Ctx, null, null>(null, null, async () => null),
    Fail: defineMethod<Ctx, null, null>(null, null, async () => {
      throw withContext(
        'KMS self authorization failed',
        new Error('Failed to load "boot info"\nline 2'),
      )
    }),
  }
}

async function preDispatch(request: FastifyRequest): Promise<Ctx> {
  const bad = request.headers['x-bad-cert']
  if (typeof bad === 'string') throw new KmsError('KMS_ERR_BAD_REQUEST', `invalid quote: ${bad}`)
  // the plugin hides Content-Type from Fastify's parsers only, not from pre-dispatch checks
  const expectedType = request.headers['x-expect-content-type']
  if (expectedType !== undefined && expectedType !== request.headers['content-type']) {
    throw new Error(`content type seen: ${String(request.headers['content-type'])}`)
  }
  const peer = request.headers['x-peer']
  return { peer: typeof peer === 'string' ? peer : 'anonymous' }
}

describe('pRPC plugin over HTTP', () => {
  const app = Fastify()
  // the admin-style server registers pRPC first and the common surface second, without a version
  const admin = Fastify()
  let port = 0
  let adminPort = 0

  before(async () => {
    registerCommonHttp(app, { appVersion: APP_VERSION })
    await registerPrpc<Ctx>(app, {
      servicePrefix: 'KMS.',
      methods: toyMethods(),
      limits: { Limited: 16 },
      preDispatch,
      bodyBudget: new BodyBudget(defaultLimits()),
      onError: (err, method) => {
        errorsSeen.push([method, err instanceof Error ? err.message : String(err)])
      },
    })
    port = await listenOnLoopback(app)

    await registerPrpc(admin, {
      servicePrefix: 'Admin.',
      bodyBudget: new BodyBudget(defaultLimits()),
      methods: {
        ClearImageCache: defineMethod(
          AdminClearImageCacheRequestType,
          null,
          async (input, call) => {
            assert.equal(call.ctx, undefined)
            if (input.image_hash === '') throw new Error('image_hash required')
            return null
          },
        ),
      },
    })
    registerCommonHttp(admin, {})
    adminPort = await listenOnLoopback(admin)
  })

  after(async () => {
    await app.close()
    await admin.close()
    agent.destroy()
  })

  const post = (path: string, opts: CallOptions = {}): Promise<Response> =>
    call(port, 'POST', path, opts)

  it('strips every leading service prefix', async () => {
    for (const path of [
      '/prpc/GetMeta?json',
      '/prpc/KMS.GetMeta?json',
      '/prpc/KMS.KMS.GetMeta?json',
      '/prpc/KMS%2EGetMeta?json',
    ]) {
      const res = await post(path, { body: 'null' })
      assert.equal(res.status, 200, path)
      assert.equal(res.body.toString(), META_JSON, path)
    }
    assert.equal(stripServicePrefix('Onboard.Onboard.Finish', 'Onboard.'), 'Finish')
    assert.equal(stripServicePrefix('KMS.GetMeta', ''), 'KMS.GetMeta')
  })

  it('answers 400 for unknown methods, never 404', async () => {
    const res = await post('/prpc/Nope?json', { body: '{}' })
    assert.equal(res.status, 400)
    assert.equal(res.headers['content-type'], 'application/json')
    assert.equal(res.body.toString(), '{\n  "error": "Service not found: Nope"\n}')
    for (const [path, method] of [
      ['/prpc/toString?json', 'toString'],
      ['/prpc/__proto__', '__proto__'],
      ['/prpc/KMS.', ''],
      ['/prpc/getmeta', 'getmeta'],
      ['/prpc/a%2Fb', 'a/b'],
      [`/prpc/KMS.${'X'.repeat(300)}`, 'X'.repeat(300)],
    ]) {
      const r = await post(path ?? '', { body: '{}' })
      assert.equal(r.status, 400, path)
      assert.equal(r.body.toString(), errorJson(`Service not found: ${method ?? ''}`), path)
    }
    // upstream HEAD's answer for the main-listener ClearImageCache is the same kind of 400
    const get = await call(port, 'GET', '/prpc/ClearImageCache')
    assert.equal(get.status, 400)
    assert.equal(get.body.toString(), errorJson('Service not found: ClearImageCache'))
  })

  it('accepts a body of exactly 10 MiB and refuses one byte more with 400', async () => {
    assert.equal(DEFAULT_BODY_LIMIT, 10 * MIB)
    const json = '{"app_id":"0x0102"}'
    const exact = Buffer.alloc(10 * MIB, ' ')
    exact.write(json, 0)
    const ok = await post('/prpc/Echo?json', { body: exact })
    assert.equal(ok.status, 200)
    assert.equal(ok.body.toString(), '{"app_id":"0102"}')

    const over = Buffer.alloc(10 * MIB + 1, ' ')
    over.write(json, 0)
    const tooLarge = await post('/prpc/Echo?json', { body: over })
    assert.equal(tooLarge.status, 400)
    assert.equal(tooLarge.headers['content-type'], 'application/json')
    assert.equal(tooLarge.body.toString(), errorJson('failed to read data: payload too large'))

    // chunked (no Content-Length) and protobuf mode: ProtoError body
    const chunked = await post('/prpc/Echo', {
      body: Buffer.alloc(10 * MIB + 1),
      chunked: true,
      headers: { 'content-type': 'application/octet-stream' },
    })
    assert.equal(chunked.status, 400)
    assert.equal(chunked.headers['content-type'], 'application/octet-stream')
    assert.deepStrictEqual(decodeMessage(ProtoErrorType, chunked.body), {
      message: 'failed to read data: payload too large',
    })
  })

  it('applies per-method limits to the stripped method name only', async () => {
    const body16 = '{"vm_config":""}'
    assert.equal(body16.length, 16)
    const ok = await post('/prpc/KMS.Limited?json', { body: body16 })
    assert.equal(ok.status, 200)
    assert.equal(ok.body.toString(), '{"vm_config":""}')
    const over = await post('/prpc/KMS.Limited?json', { body: `${body16} ` })
    assert.equal(over.status, 400)
    assert.equal(over.body.toString(), errorJson('failed to read data: payload too large'))
    // other methods keep the default limit
    const echo = await post('/prpc/Echo?json', { body: `{"app_id":"${'00'.repeat(100)}"}` })
    assert.equal(echo.status, 200)
  })

  it('never looks at the payload of Empty-input methods', async () => {
    const garbage = Buffer.from([0xff, 0x00, 0x7b, 0x7b, 0x22])
    const json = await post('/prpc/GetMeta?json', { body: garbage })
    assert.equal(json.status, 200)
    assert.equal(json.body.toString(), META_JSON)
    const pb = await post('/prpc/GetMeta', {
      body: garbage,
      headers: { 'content-type': 'application/x-protobuf' },
    })
    assert.equal(pb.status, 200)
    assert.equal(pb.headers['content-type'], 'application/octet-stream')
    assert.deepStrictEqual(decodeMessage(GetMetaResponseType, pb.body), META)
    assert.deepStrictEqual(pb.body, encodeMessage(GetMetaResponseType, META))
    const get = await call(port, 'GET', '/prpc/GetMeta?%zz=%%&json')
    assert.equal(get.status, 200)
    assert.equal(get.body.toString(), META_JSON)
  })

  it('round-trips protobuf over HTTP, errors included', async () => {
    const body = encodeMessage(GetAppKeyRequestType, { api_version: 1, vm_config: 'vm' })
    const res = await post('/prpc/GetAppKey', {
      body,
      headers: { 'content-type': 'application/x-protobuf; charset=x' },
    })
    assert.equal(res.status, 200)
    assert.equal(res.headers['content-type'], 'application/octet-stream')
    const expected: AppKeyResponse = {
      ...AppKeyResponseType.create(),
      ca_cert: 'v1',
      gateway_app_id: 'vm',
      k256_key: Buffer.from('0102', 'hex'),
    }
    assert.deepStrictEqual(decodeMessage(AppKeyResponseType, res.body), expected)

    const refused = await post('/prpc/GetAppKey', {
      body: encodeMessage(GetAppKeyRequestType, { api_version: 2, vm_config: '' }),
      headers: { 'content-type': 'application/octet-stream' },
    })
    assert.equal(refused.status, 400)
    assert.equal(refused.headers['content-type'], 'application/octet-stream')
    assert.equal(
      refused.body.toString('hex'),
      encodeMessage(ProtoErrorType, { message: 'Unsupported API version: 2' }).toString('hex'),
    )

    const malformed = await post('/prpc/GetAppKey', {
      body: Buffer.from('1202c328', 'hex'),
      headers: { 'content-type': 'application/protobuf' },
    })
    assert.equal(malformed.status, 400)
    assert.deepStrictEqual(decodeMessage(ProtoErrorType, malformed.body), {
      message:
        'failed to decode Protobuf message: GetAppKeyRequest.vm_config: invalid string value: data is not UTF-8 encoded',
    })

    // empty protobuf body → all defaults
    const empty = await post('/prpc/GetAppKey', {
      headers: { 'content-type': 'application/octet-stream' },
    })
    assert.equal(empty.status, 200)
    assert.equal(decodeMessage(AppKeyResponseType, empty.body).ca_cert, 'v0')
  })

  it('decodes GET query strings, and answers HEAD like GET without a body', async () => {
    const get = await call(port, 'GET', '/prpc/GetAppKey?api_version=1&vm_config=x')
    assert.equal(get.status, 200)
    assert.equal(get.headers['content-type'], 'application/json')
    assert.equal(
      get.body.toString(),
      '{"ca_cert":"v1","disk_crypt_key":"","env_crypt_key":"","k256_key":"0102","k256_signature":"",' +
        '"tproxy_app_id":"","gateway_app_id":"x","os_image_hash":""}',
    )
    const head = await call(port, 'HEAD', '/prpc/GetAppKey?api_version=1&vm_config=x')
    assert.equal(head.status, 200)
    assert.equal(head.body.length, 0)
    assert.equal(head.headers['content-type'], 'application/json')
    assert.equal(head.headers['content-length'], String(get.body.length))

    const decoded = await call(port, 'GET', '/prpc/GetAppKey?vm_config=a+b%26c&json=false')
    assert.match(decoded.body.toString(), /"gateway_app_id":"a b&c"/)
    // the query starts at the first `?`; a later one is part of it
    const laterMark = await call(port, 'GET', '/prpc/GetAppKey?vm_config=a?b')
    assert.match(laterMark.body.toString(), /"gateway_app_id":"a\?b"/)
    const badQuery = await call(port, 'GET', '/prpc/GetAppKey?api_version=x')
    assert.equal(badQuery.status, 400)
    assert.equal(badQuery.body.toString(), errorJson('invalid value: string "x", expected u32'))
    // a GET body is ignored
    const withBody = await call(port, 'GET', '/prpc/Echo?app_id=0a0b', { body: '{"app_id":"ff"}' })
    assert.equal(withBody.body.toString(), '{"app_id":"0a0b"}')
  })

  it('writes error bodies exactly as serde_json pretty-prints them', async () => {
    const res = await post('/prpc/Fail?json', { body: 'null' })
    assert.equal(res.status, 400)
    assert.equal(res.headers['content-type'], 'application/json')
    assert.equal(
      res.body.toString(),
      '{\n  "error": "KMS self authorization failed: Failed to load \\"boot info\\"\\nline 2"\n}',
    )
    const decodeErr = await post('/prpc/GetAppKey?json', {
      body: '{"api_version":1,"api_version":2}',
    })
    assert.equal(decodeErr.status, 400)
    assert.equal(
      decodeErr.body.toString(),
      errorJson('duplicate field `api_version` at line 1 column 30'),
    )
    const badHex = await post('/prpc/Echo?json', { body: '{"app_id":"abc"}' })
    assert.equal(badHex.body.toString(), errorJson('Odd number of digits at line 1 column 16'))
    assert.ok(
      errorsSeen.some(
        ([m, msg]) => m === 'Fail' && msg.startsWith('KMS self authorization failed: '),
      ),
    )
  })

  it('answers Empty outputs with JSON null or an empty protobuf body', async () => {
    const json = await post('/prpc/Finish?json', { body: 'null' })
    assert.equal(json.status, 200)
    assert.equal(json.body.toString(), 'null')
    assert.equal(json.headers['content-length'], '4')
    const pb = await post('/prpc/Finish', {
      headers: { 'content-type': 'application/octet-stream' },
    })
    assert.equal(pb.status, 200)
    assert.equal(pb.headers['content-type'], 'application/octet-stream')
    assert.equal(pb.body.length, 0)
  })

  it('negotiates JSON or protobuf over HTTP', async () => {
    const body = '{"app_id":"ab"}'
    const jsonCases: Array<[string, Record<string, string>]> = [
      ['/prpc/Echo', {}], // no Content-Type (real Rust clients also send ?json)
      ['/prpc/Echo', { 'content-type': 'application/x-www-form-urlencoded' }], // curl -d
      ['/prpc/Echo', { 'content-type': 'application/json' }],
      ['/prpc/Echo', { 'content-type': 'text/json' }],
      ['/prpc/Echo', { 'content-type': 'garbage' }], // Fastify would say 415; upstream takes anything
      ['/prpc/Echo?json', { 'content-type': 'application/octet-stream' }],
      ['/prpc/Echo?json=true', { 'content-type': 'application/x-protobuf' }],
    ]
    for (const [path, headers] of jsonCases) {
      const res = await post(path, { body, headers })
      assert.equal(res.status, 200, `${path} ${JSON.stringify(headers)}`)
      assert.equal(res.headers['content-type'], 'application/json')
      assert.equal(res.body.toString(), '{"app_id":"ab"}')
    }
    const chunkedJson = await post('/prpc/Echo?json', { body, chunked: true })
    assert.equal(chunkedJson.body.toString(), '{"app_id":"ab"}')

    const pbBody = encodeMessage(AppIdType, { app_id: Buffer.from('ab', 'hex') })
    for (const path of ['/prpc/Echo', '/prpc/Echo?json=false', '/prpc/Echo?JSON']) {
      const res = await post(path, {
        body: pbBody,
        headers: { 'content-type': 'Application/Octet-Stream' },
      })
      assert.equal(res.status, 200, path)
      assert.equal(res.headers['content-type'], 'application/octet-stream')
      assert.deepStrictEqual(res.body, pbBody)
    }
    // the same decision applies to pre-dispatch errors
    const pre = await post('/prpc/Echo', {
      body: pbBody,
      headers: { 'content-type': 'application/x-protobuf', 'x-bad-cert': 'nope' },
    })
    assert.equal(pre.status, 400)
    assert.deepStrictEqual(decodeMessage(ProtoErrorType, pre.body), {
      message: 'invalid quote: nope',
    })
  })

  it('runs preDispatch after reading the body and before dispatch', async () => {
    const who = await post('/prpc/WhoAmI?json', { headers: { 'x-peer': 'app-1' } })
    const typed = await post('/prpc/WhoAmI?json', {
      body: 'x',
      headers: { 'content-type': 'garbage/x; a=b', 'x-expect-content-type': 'garbage/x; a=b' },
    })
    assert.equal(typed.body.toString(), '{"vm_config":"anonymous POST"}')
    assert.equal(who.body.toString(), '{"vm_config":"app-1 POST"}')
    const bad = await post('/prpc/GetMeta?json', {
      body: 'null',
      headers: { 'x-bad-cert': 'bad sig' },
    })
    assert.equal(bad.status, 400)
    assert.equal(bad.body.toString(), errorJson('invalid quote: bad sig'))
    // before dispatch: an unknown method with a bad certificate reports the certificate
    const unknown = await post('/prpc/Nope?json', { body: '{}', headers: { 'x-bad-cert': 'x' } })
    assert.equal(unknown.body.toString(), errorJson('invalid quote: x'))
    // after the body: an oversized body with a bad certificate reports the size
    const big = await post('/prpc/Limited?json', {
      body: 'x'.repeat(17),
      headers: { 'x-bad-cert': 'x' },
    })
    assert.equal(big.body.toString(), errorJson('failed to read data: payload too large'))
  })

  it('sends the shared headers on every response', async () => {
    const responses = [
      await post('/prpc/GetMeta?json'),
      await post('/prpc/Nope?json'),
      await call(port, 'GET', '/health'),
      await call(port, 'GET', '/missing'),
      await call(port, 'OPTIONS', '/prpc/GetMeta'),
    ]
    for (const res of responses) {
      for (const [name, value] of Object.entries(SHIELD_HEADERS)) {
        assert.equal(res.headers[name], value)
      }
      assert.equal(res.headers['x-app-version'], APP_VERSION)
      assert.equal(res.headers['strict-transport-security'], undefined)
    }
    assert.deepStrictEqual(SHIELD_HEADERS, {
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'SAMEORIGIN',
      'permissions-policy': 'interest-cohort=()',
    })
  })

  it('serves /health', async () => {
    const res = await call(port, 'GET', '/health')
    assert.equal(res.status, 200)
    assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8')
    assert.equal(res.body.toString(), 'OK')
    const head = await call(port, 'HEAD', '/health')
    assert.equal(head.status, 200)
    assert.equal(head.body.length, 0)
  })

  it('answers 404 with Rocket’s catcher, JSON when Accept prefers it', async () => {
    const json = await call(port, 'GET', '/nope', { headers: { accept: 'application/json' } })
    assert.equal(json.status, 404)
    assert.equal(json.headers['content-type'], 'application/json')
    assert.equal(
      json.body.toString(),
      '{\n  "error": {\n    "code": 404,\n    "reason": "Not Found",\n    "description": "The requested resource could not be found."\n  }\n}',
    )
    const html = await call(port, 'GET', '/nope')
    assert.equal(html.status, 404)
    assert.equal(html.headers['content-type'], 'text/html; charset=utf-8')
    const page = html.body.toString()
    assert.match(page, /^<!DOCTYPE html>\n<html lang="en">/)
    assert.match(page, /<title>404 Not Found<\/title>/)
    assert.match(
      page,
      /<h1>404: Not Found<\/h1>\n {8}<p>The requested resource could not be found\.<\/p>/,
    )
    assert.match(page, /<small>Rocket<\/small>/)
    const weighted = await call(port, 'GET', '/nope', {
      headers: { accept: 'text/html;q=0.9, application/json' },
    })
    assert.equal(weighted.headers['content-type'], 'application/json')
  })

  it('routes only /prpc/<one segment>', async () => {
    for (const [method, path] of [
      ['GET', '/prpc/a/b'],
      ['POST', '/prpc/GetMeta/x?json'],
      ['GET', '/prpc'],
      ['GET', '/prpc/'],
      ['POST', '/prpc/'],
      ['PUT', '/prpc/GetMeta'],
      ['DELETE', '/prpc/GetMeta'],
      ['OPTIONS', '/prpc/GetMeta'],
      ['GET', '/prpc/GetMeta/'],
    ]) {
      const res = await call(port, method ?? 'GET', path ?? '/', {
        headers: { accept: 'application/json' },
      })
      assert.equal(res.status, 404, `${method} ${path}`)
      assert.match(res.body.toString(), /"code": 404/)
    }
  })

  it('works with the common surface registered after the plugin, without a version', async () => {
    const ok = await call(adminPort, 'POST', '/prpc/Admin.Admin.ClearImageCache?json', {
      headers: { 'content-type': 'application/json' },
      body: '{"image_hash": "all", "config_hash": "all"}',
    })
    assert.equal(ok.status, 200)
    assert.equal(ok.body.toString(), 'null')
    assert.equal(ok.headers['x-content-type-options'], 'nosniff')
    assert.equal(ok.headers['x-app-version'], undefined)
    const refused = await call(adminPort, 'POST', '/prpc/ClearImageCache?json', { body: '{}' })
    assert.equal(refused.status, 400)
    assert.equal(refused.body.toString(), errorJson('image_hash required'))
    const notFound = await call(adminPort, 'GET', '/prpc/a/b')
    assert.equal(notFound.status, 404)
    assert.equal(notFound.headers['x-frame-options'], 'SAMEORIGIN')
    const health = await call(adminPort, 'GET', '/health')
    assert.equal(health.body.toString(), 'OK')
  })
})

describe('common HTTP helpers', () => {
  it('formats X-App-Version like upstream', () => {
    const commit = '0123456789abcdef0123456789abcdef01234567'
    assert.equal(appVersionString('0.6.0'), 'v0.6.0 (unknown)')
    assert.equal(appVersionString('0.6.0', ''), 'v0.6.0 (unknown)')
    assert.equal(appVersionString('0.6.0', commit), 'v0.6.0 (git:0123456789abcdef0123)')
    assert.equal(
      appVersionString('0.6.0', commit, true),
      'v0.6.0 (git:0123456789abcdef0123-modified)',
    )
  })

  it('follows Rocket’s Accept preference', () => {
    const table: Array<[string | undefined, boolean]> = [
      [undefined, false],
      ['', false],
      ['*/*', false],
      ['application/json', true],
      ['Application/JSON; charset=utf-8', true],
      ['text/html, application/json', false],
      ['application/json, text/html', true],
      ['text/html;q=0.9, application/json', true],
      ['application/json;q=0.5, text/html;q=0.9', false],
      ['application/json;q=0.9, text/html;q=0.5', true],
      ['*/*, application/json', true],
      ['application/*, application/json', true],
      ['not a media type', false],
    ]
    for (const [accept, json] of table) {
      assert.equal(acceptPrefersJson(accept), json, String(accept))
    }
  })
})

describe('request body memory', () => {
  const app = Fastify()
  const budget = new BodyBudget({
    ...defaultLimits(),
    bodyBudgetBytes: 1024,
    bodyBudgetPerSourceBytes: 1024,
  })
  let port = 0

  before(async () => {
    await registerPrpc<Ctx>(app, {
      servicePrefix: 'KMS.',
      methods: toyMethods(),
      preDispatch,
      bodyBudget: budget,
    })
    port = await listenOnLoopback(app)
  })

  after(async () => {
    await app.close()
  })

  it('buffers input bodies against the shared budget and returns the bytes afterwards', async () => {
    const small = await call(port, 'POST', '/prpc/Echo?json', {
      body: JSON.stringify({ app_id: 'ab'.repeat(100) }),
    })
    assert.equal(small.status, 200, small.body.toString())
    assert.equal(budget.used, 0)
    // over the shared budget: refused like an oversized body, nothing held afterwards
    const big = await call(port, 'POST', '/prpc/Echo?json', {
      body: JSON.stringify({ app_id: 'ab'.repeat(600) }),
      chunked: true,
    })
    assert.equal(big.status, 400)
    assert.equal(big.body.toString(), errorJson('failed to read data: payload too large'))
    assert.equal(budget.used, 0)
  })

  it('never buffers the payload of Empty-input or unknown methods', async () => {
    const meta = await call(port, 'POST', '/prpc/GetMeta?json', { body: Buffer.alloc(4096, 0x20) })
    assert.equal(meta.status, 200)
    const unknown = await call(port, 'POST', '/prpc/Nope', { body: Buffer.alloc(4096, 0x20) })
    assert.equal(unknown.body.toString(), errorJson('Service not found: Nope'))
    assert.equal(budget.used, 0)
  })

  it('the budget refuses a take past its maximum and accounts gives', () => {
    const b = new BodyBudget({
      ...defaultLimits(),
      bodyBudgetBytes: 10,
      bodyBudgetPerSourceBytes: 10,
    })
    assert.equal(b.take(6), true)
    assert.equal(b.take(5), false)
    b.give(6)
    assert.equal(b.take(10), true)
  })

  it('the budget limits each source, and keeps its per-source entries bounded', () => {
    const b = new BodyBudget({
      ...defaultLimits(),
      bodyBudgetBytes: 1_000_000,
      bodyBudgetPerSourceBytes: 10,
    })
    assert.equal(b.take(8, 'a'), true)
    assert.equal(b.take(3, 'a'), false, 'a is at its share')
    assert.equal(b.take(10, 'b'), true, 'b has a share of its own')
    b.give(8, 'a')
    assert.equal(b.take(10, 'a'), true, 'a released its bytes')
    b.give(10, 'a')
    b.give(10, 'b')
    // a stream of one-request sources, as many clients behind many addresses make
    for (let k = 0; k < 20_000; k++) {
      const source = `10.0.${k >> 8}.${k & 255}`
      assert.equal(b.take(5, source), true)
      b.give(5, source)
    }
    assert.equal(b.used, 0)
    assert.ok(b.trackedSources <= 2048, `${b.trackedSources} per-source entries kept`)
    assert.equal(b.take(10, 'a'), true)
    assert.equal(b.take(1, 'a'), false)
  })
})
