import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest, type OutgoingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import bcrypt from 'bcryptjs'
import Fastify, { type FastifyInstance } from 'fastify'
import {
  createAdminAuthenticator,
  registerAdminAuthHook,
  type AdminAuthenticator,
} from '../src/admin/header-auth.js'
import { loadHtpasswd, parseHtpasswd } from '../src/admin/htpasswd.js'
import { INVALID_TOKEN_MESSAGE, parseAdminTokenHash, verifyAdminToken } from '../src/admin/token.js'
import type { AdminConfig } from '../src/config/types.js'
import { ADMIN_NO_AUTH_MESSAGE } from '../src/config/validate.js'
import { KmsError } from '../src/errors.js'
import { trimLikeRust } from '../src/util/rust-text.js'
import { readVectorJson } from './helpers/crypto-vectors.js'
import { tempDir } from './helpers/temp-dir.js'

const vectors = readVectorJson<{ misc: { sha256_empty: string } }>('vectors.json')

// printf '%s' secret | sha256sum
const SECRET_HASH = '2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b'
const ALICE_PASSWORD = 'correct horse battery staple'
// bcryptjs writes $2b$; Apache's `htpasswd -B` writes $2y$ (same algorithm)
const ALICE_HASH = bcrypt.hashSync(ALICE_PASSWORD, 4).replace(/^\$2b\$/, '$2y$')

const dir = tempDir('kms-admin-test-')
after(() => rmSync(dir, { recursive: true, force: true }))

let fileCounter = 0
function writeTemp(content: string): string {
  const path = join(dir, `htpasswd-${fileCounter++}`)
  writeFileSync(path, content)
  return path
}

function adminConfig(overrides: Partial<AdminConfig> = {}): AdminConfig {
  return {
    enabled: true,
    address: '127.0.0.1',
    port: 0,
    authToken: '',
    htpasswdFile: '',
    insecureNoAuth: false,
    ...overrides,
  }
}

function configError(message: string) {
  return (err: unknown) =>
    err instanceof KmsError && err.code === 'KMS_ERR_CONFIG' && err.message === message
}

describe('admin token (in-body)', () => {
  test('the message for a wrong token is "Invalid token"', () => {
    assert.equal(INVALID_TOKEN_MESSAGE, 'Invalid token')
  })

  test('parseAdminTokenHash', () => {
    assert.equal(parseAdminTokenHash(''), null)
    const lower = parseAdminTokenHash(SECRET_HASH)
    assert.equal(lower?.toString('hex'), SECRET_HASH)
    assert.deepEqual(parseAdminTokenHash(SECRET_HASH.toUpperCase()), lower)
    // valid hex of the wrong length is accepted at start-up and then refuses every token
    assert.equal(parseAdminTokenHash('abcd')?.length, 2)
    assert.throws(
      () => parseAdminTokenHash(`0x${SECRET_HASH}`),
      configError("Invalid admin_token_hash: Invalid character 'x' at position 1"),
    )
    assert.throws(
      () => parseAdminTokenHash('abc'),
      configError('Invalid admin_token_hash: Odd number of digits'),
    )
    assert.throws(
      () => parseAdminTokenHash(` ${SECRET_HASH} `.slice(0, 64)),
      configError("Invalid admin_token_hash: Invalid character ' ' at position 0"),
    )
  })

  test('verifyAdminToken compares SHA-256 of the untrimmed UTF-8 token', () => {
    const configured = parseAdminTokenHash(SECRET_HASH)
    assert.equal(verifyAdminToken(configured, 'secret'), true)
    for (const wrong of ['Secret', ' secret', 'secret\n', 'secre', '', 'secretsecret']) {
      assert.equal(verifyAdminToken(configured, wrong), false, JSON.stringify(wrong))
    }
    const upper = parseAdminTokenHash(SECRET_HASH.toUpperCase())
    assert.equal(verifyAdminToken(upper, 'secret'), true)

    const utf8Token = 'pässwörd 🔑'
    const utf8Hash = createHash('sha256').update(Buffer.from(utf8Token, 'utf8')).digest('hex')
    assert.equal(verifyAdminToken(parseAdminTokenHash(utf8Hash), utf8Token), true)

    // vector: SHA-256 of the empty string is what a deploy script with an unset ADMIN_TOKEN
    // produces; it must not open ClearImageCache to an empty token (or to any other)
    const emptyHash = parseAdminTokenHash(vectors.misc.sha256_empty)
    assert.equal(verifyAdminToken(emptyHash, ''), false)
    assert.equal(verifyAdminToken(emptyHash, 'secret'), false)
  })

  test('no hash, or a hash that is not 32 bytes, refuses every token (fail closed)', () => {
    for (const token of ['', 'secret', 'anything']) {
      assert.equal(verifyAdminToken(null, token), false)
      assert.equal(verifyAdminToken(Buffer.alloc(0), token), false)
    }
    const digest = Buffer.from(SECRET_HASH, 'hex')
    assert.equal(verifyAdminToken(digest.subarray(0, 31), 'secret'), false)
    assert.equal(verifyAdminToken(Buffer.concat([digest, Buffer.from([0])]), 'secret'), false)
    assert.equal(verifyAdminToken(parseAdminTokenHash(SECRET_HASH.slice(0, 62)), 'secret'), false)
  })

  test('trimLikeRust follows Unicode White_Space, not JS trim', () => {
    assert.equal(trimLikeRust(' \t\r\n tok en \u3000\u0085'), 'tok en')
    assert.equal(trimLikeRust('\ufefftoken\ufeff'), '\ufefftoken\ufeff')
  })
})

describe('htpasswd', () => {
  test('comments, blank lines and bcrypt variants', () => {
    const b = bcrypt.hashSync('pw-b', 4)
    const a = b.replace(/^\$2b\$/, '$2a$')
    const text = [
      '# operators',
      '',
      '   ',
      '   # indented comment',
      `alice:${ALICE_HASH}`,
      `bob:${a}`,
      `carol:${b}`,
      ` erin :${b}`,
    ].join('\n')
    const users = parseHtpasswd(text, '/x')
    // user names are taken as written (not trimmed), like upstream
    assert.deepEqual([...users.keys()], ['alice', 'bob', 'carol', ' erin '])
    assert.equal(users.get('alice'), ALICE_HASH)
    assert.equal(users.get('bob'), a)
  })

  test('CRLF line endings belong to the line ending, like Rust str::lines', () => {
    const path = writeTemp(`# c\r\nalice:${ALICE_HASH}\r\nbob:${ALICE_HASH}\r\n`)
    const users = loadHtpasswd(path)
    assert.equal(users.get('alice'), ALICE_HASH)
    assert.equal(users.get('bob'), ALICE_HASH)
    // a lone \r at the very end (no newline) stays in the hash, as in Rust
    assert.equal(parseHtpasswd(`alice:${ALICE_HASH}\r`, '/x').get('alice'), `${ALICE_HASH}\r`)
  })

  test('duplicate user: the last entry wins', () => {
    const other = bcrypt.hashSync('other', 4)
    const users = parseHtpasswd(`alice:${other}\nalice:${ALICE_HASH}\n`, '/x')
    assert.equal(users.size, 1)
    assert.equal(users.get('alice'), ALICE_HASH)
  })

  test('non-bcrypt entries, empty user names and malformed lines are fatal', () => {
    const unsupported = (user: string) =>
      configError(
        `unsupported htpasswd entry for "${user}" in /etc/kms/htpasswd (line 1); ` +
          'only bcrypt hashes are supported',
      )
    for (const [line, user] of [
      ['bob:$apr1$abc$0123456789012345678901', 'bob'],
      ['bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=', 'bob'],
      ['bob:plaintext', 'bob'],
      ['bob:$2x$04$abcdefghijklmnopqrstuu', 'bob'],
      [`:${ALICE_HASH}`, ''],
      // split at the first colon: the rest, `with:colon:$2b$…`, is not bcrypt-shaped
      [`dave:with:colon:${ALICE_HASH}`, 'dave'],
    ] as const) {
      assert.throws(() => parseHtpasswd(line, '/etc/kms/htpasswd'), unsupported(user), line)
    }
    assert.throws(
      () => parseHtpasswd(`alice:${ALICE_HASH}\njust-a-name\n`, '/etc/kms/htpasswd'),
      configError('invalid htpasswd entry in /etc/kms/htpasswd (line 2): expected user:hash'),
    )
  })

  test('a file without users, or that cannot be read, is fatal', () => {
    const empty = writeTemp('# nobody\n\n')
    assert.throws(
      () => loadHtpasswd(empty),
      configError(`htpasswd file ${empty} contains no users`),
    )
    const missing = join(dir, 'missing')
    assert.throws(
      () => loadHtpasswd(missing),
      (err: unknown) =>
        err instanceof KmsError &&
        err.code === 'KMS_ERR_CONFIG' &&
        err.message.startsWith(`failed to read htpasswd file ${missing}: ENOENT`),
    )
    const notUtf8 = join(dir, 'latin1')
    writeFileSync(notUtf8, Buffer.from([0x61, 0xe9, 0x3a, 0x24]))
    assert.throws(
      () => loadHtpasswd(notUtf8),
      (err: unknown) => err instanceof KmsError,
    )
  })
})

describe('createAdminAuthenticator (start-up)', () => {
  test('enabled with neither token nor htpasswd refuses to start with the upstream text', () => {
    assert.equal(
      ADMIN_NO_AUTH_MESSAGE,
      'admin API is enabled but neither auth_token nor htpasswd_file is configured; set ' +
        'core.admin.auth_token, DSTACK_KMS_ADMIN_TOKEN, ADMIN_API_TOKEN, ' +
        'core.admin.htpasswd_file, or insecure_no_auth = true (testing only)',
    )
    assert.throws(
      () => createAdminAuthenticator(adminConfig(), {}),
      configError(ADMIN_NO_AUTH_MESSAGE),
    )
    // a whitespace-only token is empty after trimming
    assert.throws(
      () => createAdminAuthenticator(adminConfig({ authToken: ' \t ' }), {}),
      configError(ADMIN_NO_AUTH_MESSAGE),
    )
    assert.throws(
      () => createAdminAuthenticator(adminConfig(), { DSTACK_KMS_ADMIN_TOKEN: '  ' }),
      configError(ADMIN_NO_AUTH_MESSAGE),
    )
  })

  test('an htpasswd file that does not load is fatal', () => {
    assert.throws(
      () => createAdminAuthenticator(adminConfig({ htpasswdFile: join(dir, 'nope') }), {}),
      (err: unknown) => err instanceof KmsError && err.code === 'KMS_ERR_CONFIG',
    )
  })

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

  test('token sources: auth_token, then DSTACK_KMS_ADMIN_TOKEN, then ADMIN_API_TOKEN if unset', async () => {
    const env = { DSTACK_KMS_ADMIN_TOKEN: 'from-env', ADMIN_API_TOKEN: 'from-compat' }
    let auth = createAdminAuthenticator(adminConfig({ authToken: ' configured\n' }), env)
    assert.equal(await auth.authenticate(bearer('configured')), true)
    assert.equal(await auth.authenticate(bearer('from-env')), false)
    assert.equal(await auth.authenticate(bearer('from-compat')), false)

    auth = createAdminAuthenticator(adminConfig(), { ...env, DSTACK_KMS_ADMIN_TOKEN: ' from-env ' })
    assert.equal(await auth.authenticate(bearer('from-env')), true)
    assert.equal(await auth.authenticate(bearer('from-compat')), false)

    auth = createAdminAuthenticator(adminConfig(), { ADMIN_API_TOKEN: 'from-compat' })
    assert.equal(await auth.authenticate(bearer('from-compat')), true)

    // set-but-empty shadows the compatibility variable
    assert.throws(
      () =>
        createAdminAuthenticator(adminConfig(), {
          DSTACK_KMS_ADMIN_TOKEN: '',
          ADMIN_API_TOKEN: 'x',
        }),
      configError(ADMIN_NO_AUTH_MESSAGE),
    )
  })

  test('htpasswd alone starts; then no token matches', async () => {
    const auth = createAdminAuthenticator(
      adminConfig({ htpasswdFile: writeTemp(`alice:${ALICE_HASH}\n`) }),
      {},
    )
    assert.equal(auth.mode, 'enforced')
    assert.equal(await auth.authenticate(bearer('')), false)
    assert.equal(await auth.authenticate({ 'x-admin-token': '' }), false)
    const basic = (s: string) => ({ authorization: `Basic ${Buffer.from(s).toString('base64')}` })
    assert.equal(await auth.authenticate(basic(`alice:${ALICE_PASSWORD}`)), true)
    assert.equal(await auth.authenticate(basic('alice:')), false)
    assert.equal(await auth.authenticate(basic(':')), false)
  })

  test('insecure_no_auth lets everything through', async () => {
    const auth = createAdminAuthenticator(adminConfig({ insecureNoAuth: true }), {})
    assert.equal(auth.mode, 'insecure')
    assert.equal(await auth.authenticate({}), true)
  })
})

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** Raw HTTP with node:http so that repeated and non-ASCII header bytes go out as written. */
function send(
  port: number,
  method: string,
  path: string,
  headers: OutgoingHttpHeaders = {},
  body?: string,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64')

async function startServer(
  auth: AdminAuthenticator,
): Promise<{ app: FastifyInstance; port: number; parsed: string[] }> {
  const app = Fastify()
  const parsed: string[] = []
  registerAdminAuthHook(app, auth)
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, text, done) => {
    parsed.push(req.url)
    done(null, text)
  })
  app.get('/health', async (_req, reply) => reply.type('text/plain; charset=utf-8').send('OK'))
  app.get('/ok', async () => 'ok')
  app.post('/prpc/:method', async () => 'null')
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, port: (app.server.address() as AddressInfo).port, parsed }
}

describe('admin listener header authentication (real server)', () => {
  let server: Awaited<ReturnType<typeof startServer>>
  let port: number
  const UTF8_TOKEN = 'pässwörd'

  before(async () => {
    const auth = createAdminAuthenticator(
      adminConfig({ authToken: 'secret', htpasswdFile: writeTemp(`alice:${ALICE_HASH}\r\n`) }),
      {},
    )
    server = await startServer(auth)
    port = server.port
  })
  after(() => server.app.close())

  async function status(headers: OutgoingHttpHeaders, path = '/ok'): Promise<number> {
    return (await send(port, 'GET', path, headers)).status
  }

  test('no credentials → 401 with the Basic challenge and an empty body', async () => {
    const res = await send(port, 'GET', '/ok')
    assert.equal(res.status, 401)
    assert.equal(res.headers['www-authenticate'], 'Basic realm="dstack-kms admin"')
    assert.equal(res.body, '')
  })

  test('upstream cases: Bearer, X-Admin-Token and Basic with the token; Bearer wrong', async () => {
    assert.equal(await status({ Authorization: 'Bearer secret' }), 200)
    assert.equal(await status({ 'X-Admin-Token': 'secret' }), 200)
    assert.equal(await status({ Authorization: `Basic ${b64('admin:secret')}` }), 200)
    assert.equal(await status({ Authorization: 'Bearer wrong' }), 401)
    const put = await send(port, 'PUT', '/ok', { Authorization: 'Bearer wrong' })
    assert.equal(put.status, 401)
    assert.equal(put.headers['www-authenticate'], 'Basic realm="dstack-kms admin"')
  })

  test('Bearer is final, trimmed, case-sensitive', async () => {
    assert.equal(await status({ Authorization: 'Bearer   secret  ' }), 200)
    assert.equal(await status({ Authorization: 'bearer secret' }), 401)
    assert.equal(await status({ Authorization: 'Bearer\tsecret' }), 401)
    assert.equal(await status({ Authorization: 'Token secret' }), 401)
    // a wrong X-Admin-Token falls through to Authorization; a right one decides first
    assert.equal(await status({ 'X-Admin-Token': 'wrong', Authorization: 'Bearer secret' }), 200)
    assert.equal(await status({ 'X-Admin-Token': 'secret', Authorization: 'Bearer wrong' }), 200)
    // X-Admin-Token is not trimmed by us (Node strips only the header's own OWS)
    assert.equal(await status({ 'X-Admin-Token': 'sec ret' }), 401)
  })

  test('only the first X-Admin-Token counts, as upstream reads it', async () => {
    assert.equal(await status({ 'X-Admin-Token': ['secret', 'wrong'] }), 200)
    assert.equal(await status({ 'X-Admin-Token': ['wrong', 'secret'] }), 401)
  })

  test('Basic needs strict canonical base64', async () => {
    const canonical = b64('x:secret')
    assert.equal(canonical, 'eDpzZWNyZXQ=')
    assert.equal(await status({ Authorization: `Basic ${canonical}` }), 200)
    const nonCanonical = [
      'eDpzZWNyZXQ', // padding missing
      'eDpzZWNyZXR=', // non-zero trailing bits (Node decodes it to the same bytes)
      'eDpz ZWNyZXQ=', // inner space
      'eDpzZWNyZXQ==', // extra padding
      b64('x:secret?>').replace(/\+/g, '-').replace(/\//g, '_'), // URL-safe alphabet
    ]
    assert.equal(Buffer.from('eDpzZWNyZXR=', 'base64').toString(), 'x:secret')
    for (const value of nonCanonical) {
      assert.equal(await status({ Authorization: `Basic ${value}` }), 401, value)
    }
    assert.equal(await status({ Authorization: `Basic   ${canonical}  ` }), 200)
  })

  test('Basic aliases: token as password, token as user with an empty password', async () => {
    assert.equal(await status({ Authorization: `Basic ${b64('anyone:secret')}` }), 200)
    assert.equal(await status({ Authorization: `Basic ${b64('secret:')}` }), 200)
    assert.equal(await status({ Authorization: `Basic ${b64('secret')}` }), 200) // no colon
    assert.equal(await status({ Authorization: `Basic ${b64('secret:x')}` }), 401)
    assert.equal(await status({ Authorization: `Basic ${b64(':secret:')}` }), 401)
    assert.equal(await status({ Authorization: `Basic ${b64('')}` }), 401)
  })

  test('Basic with an htpasswd user (bcrypt $2y$, CRLF file)', async () => {
    assert.equal(await status({ Authorization: `Basic ${b64(`alice:${ALICE_PASSWORD}`)}` }), 200)
    assert.equal(await status({ Authorization: `Basic ${b64(`alice:${ALICE_PASSWORD}x`)}` }), 401)
    assert.equal(await status({ Authorization: `Basic ${b64(`bob:${ALICE_PASSWORD}`)}` }), 401)
  })

  test('header bytes are UTF-8; a latin1 token does not match', async () => {
    const utf8Server = await startServer(
      createAdminAuthenticator(adminConfig({ authToken: UTF8_TOKEN }), {}),
    )
    try {
      const asWire = Buffer.from(UTF8_TOKEN, 'utf8').toString('latin1')
      const p = utf8Server.port
      assert.equal((await send(p, 'GET', '/ok', { 'X-Admin-Token': asWire })).status, 200)
      assert.equal((await send(p, 'GET', '/ok', { Authorization: `Bearer ${asWire}` })).status, 200)
      assert.equal((await send(p, 'GET', '/ok', { 'X-Admin-Token': UTF8_TOKEN })).status, 401)
      const basic = `Basic ${b64(Buffer.from(`u:${UTF8_TOKEN}`, 'utf8'))}`
      assert.equal((await send(p, 'GET', '/ok', { Authorization: basic })).status, 200)
      const latin1Basic = `Basic ${b64(Buffer.from(`u:${UTF8_TOKEN}`, 'latin1'))}`
      assert.equal((await send(p, 'GET', '/ok', { Authorization: latin1Basic })).status, 401)
    } finally {
      await utf8Server.app.close()
    }
  })

  test('401 comes before the body is parsed; an authorised request is parsed', async () => {
    const body = JSON.stringify({ image_hash: 'all', config_hash: 'all' })
    const headers = { 'Content-Type': 'application/json' }
    const denied = await send(port, 'POST', '/prpc/Admin.ClearImageCache?json', headers, body)
    assert.equal(denied.status, 401)
    assert.equal(denied.body, '')
    assert.deepEqual(server.parsed, [])
    const allowed = await send(
      port,
      'POST',
      '/prpc/Admin.ClearImageCache?json',
      { ...headers, Authorization: 'Bearer secret' },
      body,
    )
    assert.equal(allowed.status, 200)
    assert.deepEqual(server.parsed, ['/prpc/Admin.ClearImageCache?json'])
  })

  test('GET /health stays open; everything else is guarded, even unknown routes', async () => {
    const health = await send(port, 'GET', '/health')
    assert.equal(health.status, 200)
    assert.equal(health.body, 'OK')
    assert.equal((await send(port, 'GET', '/health?x=1')).status, 200)
    assert.equal((await send(port, 'POST', '/health')).status, 401)
    assert.equal((await send(port, 'GET', '/nope')).status, 401)
    assert.equal((await send(port, 'GET', '/nope', { Authorization: 'Bearer secret' })).status, 404)
  })

  test('insecure_no_auth server lets requests through', async () => {
    const open = await startServer(
      createAdminAuthenticator(adminConfig({ insecureNoAuth: true }), {}),
    )
    try {
      assert.equal((await send(open.port, 'GET', '/ok')).status, 200)
    } finally {
      await open.app.close()
    }
  })
})
