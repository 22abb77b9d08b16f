// The auth-simple sidecar cannot be impersonated (docs/design.md#auth-simple-on-a-private-unix-socket):
// real `dstack-kms serve` processes whose sidecar listens on a unix socket in a private directory.
// A stranger who binds the old TCP port or tries to take the socket's place while the sidecar is
// down gets no request and releases no key; a wrong bearer secret is a 401 that never reaches the
// policy; unsafe socket directories and token files stop the start with the reason.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { WebhookAuthApi } from '../src/auth/auth-api.js'
import { buildAuthSimpleServer, UNAUTHORIZED_MESSAGE } from '../src/auth-simple/server.js'
import { defaultLimits } from '../src/config/load.js'
import { claimSocketPath } from '../src/fs/private-socket.js'
import { createEphemeralTls } from '../src/onboard/ephemeral-tls.js'
import {
  DEMO_APP_ID,
  DEMO_COMPOSE_HASH,
  demoAppGuest,
  requestSimulatedGuestKeys,
} from '../src/quickstart/demo.js'
import { defaultOsImageHash } from '../src/tee/simulator/cvm.js'
import { prpc } from './helpers/https-client.js'
import { testConfigToml } from './helpers/kms-config.js'
import { freePort, startKms, tempDir, type KmsProcess } from './helpers/kms-process.js'
import {
  bootstrapQuickstart,
  quickstartSeed,
  startQuickstartKms,
} from './helpers/quickstart-kms.js'
import { captureLogger } from './helpers/capture-logger.js'
import { sampleBootInfo } from './helpers/boot-info.js'

/** A user that is not the KMS's (the tests run as root, so they can act as one). */
const STRANGER = { uid: 65534, gid: 65534 }

/** What a stranger manages at the sidecar's socket: take its place, or reach into its directory. */
function strangerAttempts(socketPath: string): Promise<{ listen: string; unlink: string }> {
  const script = `
const net = require('node:net'), fs = require('node:fs')
let unlink = 'ok'
try { fs.unlinkSync(process.argv[1]) } catch (e) { unlink = e.code }
const s = net.createServer()
s.once('error', (e) => { console.log(JSON.stringify({ listen: e.code, unlink })); process.exit(0) })
s.listen(process.argv[1], () => { console.log(JSON.stringify({ listen: 'ok', unlink })); s.close() })
`
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script, socketPath], {
      ...STRANGER,
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (c: Buffer) => (out += c.toString()))
    child.on('error', reject)
    child.on('exit', () => {
      try {
        resolve(JSON.parse(out) as { listen: string; unlink: string })
      } catch (err) {
        reject(new Error(`stranger printed ${JSON.stringify(out)}`, { cause: err }))
      }
    })
  })
}

/** An HTTP server answering every boot check "allowed": what the stranger would run. */
async function allowEverything(
  port: number,
): Promise<{ server: ReturnType<typeof createServer>; hits: () => number }> {
  let hits = 0
  const server = createServer((_req, res) => {
    hits++
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ isAllowed: true, gatewayAppId: '', reason: '' }))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', resolve)
  })
  return { server, hits: () => hits }
}

/** Binds `port` as soon as the killed sidecar has let go of it (if it ever held it); any free
 * port when something else keeps it. */
async function takePort(port: number): Promise<Awaited<ReturnType<typeof allowEverything>>> {
  for (let i = 0; i < 20; i++) {
    try {
      return await allowEverything(port)
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  return allowEverything(await freePort())
}

function sidecarPid(kms: KmsProcess, nth: number): number {
  const ready = kms.logs.filter((l) => l.msg === 'auth-simple policy server ready')
  const pid = Number(ready[nth]?.childPid)
  assert.ok(Number.isInteger(pid) && pid > 0, `no auth-simple ready line #${nth}`)
  return pid
}

async function sidecarReadyAgain(kms: KmsProcess, count: number): Promise<void> {
  const deadline = Date.now() + 30_000
  while (kms.logs.filter((l) => l.msg === 'auth-simple policy server ready').length < count) {
    if (Date.now() > deadline) throw new Error('the sidecar was not restarted')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe('the default sidecar: a private unix socket nobody else can take over', () => {
  let dir: string
  let kms: KmsProcess
  let base: string

  before(async () => {
    ;({ kms, dir, base } = await startQuickstartKms())
    await bootstrapQuickstart({ kms, dir, base })
    // Open the way down to the socket directory, so that its own mode is the only barrier the
    // stranger meets (mkdtemp makes the test directory 0700).
    chmodSync(dir, 0o755)
    chmodSync(join(dir, 'data'), 0o755)
  })

  after(async () => {
    kms.kill('SIGTERM')
    await kms.waitForExit()
  })

  const socketPath = () => join(dir, 'data', 'run', 'auth-simple.sock')
  const guest = (appId: Buffer) => {
    const seed = quickstartSeed(dir)
    return {
      kmsUrl: base,
      guest: {
        seed,
        appId,
        composeHash: DEMO_COMPOSE_HASH,
        instanceId: randomBytes(20),
        osImageHash: defaultOsImageHash(seed),
      },
    }
  }

  it('listens on a socket in a 0700 directory and the KMS asks it there', async () => {
    const runDir = join(dir, 'data', 'run')
    assert.equal(lstatSync(runDir).mode & 0o777, 0o700)
    assert.ok(lstatSync(socketPath()).isSocket())
    assert.equal(lstatSync(socketPath()).mode & 0o777, 0o600)
    assert.equal(
      kms.logs.find((l) => l.msg === 'auth-simple policy server ready')?.url,
      `unix:${socketPath()}`,
    )
    const { keys } = await requestSimulatedGuestKeys(guest(DEMO_APP_ID))
    assert.equal(keys.diskCryptKey.length > 0, true)
  })

  it('with the sidecar killed, a stranger on port 8001 or at the socket path releases nothing', async () => {
    const unregistered = randomBytes(20)
    const killed = sidecarPid(kms, 0)
    process.kill(killed, 'SIGKILL')
    // the stranger takes the sidecar's old TCP port at once (or any free one if this machine
    // already uses 8001: the KMS must not dial TCP at all)
    const fake = await takePort(8001)
    after(() => fake.server.close())

    // while it is down the KMS's checks fail closed, dialling only the socket (the supervisor may
    // have restarted it by now, and then the policy refuses)
    await assert.rejects(requestSimulatedGuestKeys(guest(unregistered)), (err: Error) => {
      assert.ok(
        err.message.includes(`auth api unix:${socketPath()}/bootAuth/`) ||
          /App not allowed: Boot denied: app not registered/.test(err.message),
        err.message,
      )
      return true
    })
    assert.equal(fake.hits(), 0, 'the KMS never asked the stranger')
    // and as another user the stranger can neither remove the socket nor listen in its place
    const attempt = await strangerAttempts(socketPath())
    assert.deepEqual(attempt, { listen: 'EACCES', unlink: 'EACCES' })

    // the supervisor restarts it; the restarted sidecar replaces the dead one's socket file
    await sidecarReadyAgain(kms, 2)
    assert.notEqual(sidecarPid(kms, 1), killed)
    await assert.rejects(requestSimulatedGuestKeys(guest(unregistered)), (err: Error) => {
      assert.match(err.message, /App not allowed: Boot denied: app not registered/)
      return true
    })
    assert.equal(fake.hits(), 0, 'the KMS never asked the stranger')
    const { keys } = await requestSimulatedGuestKeys(guest(DEMO_APP_ID))
    assert.equal(keys.diskCryptKey.length > 0, true)
    assert.deepEqual(
      readdirSync(join(dir, 'data', 'run')),
      ['auth-simple.sock'],
      'nothing but the socket in the directory',
    )
  })
})

describe('bearer secret between the KMS and its sidecar', () => {
  let dir: string
  let kms: KmsProcess
  let base: string
  let sidecarToken: string

  before(async () => {
    const secrets = tempDir()
    const kmsToken = join(secrets, 'kms.token')
    sidecarToken = join(secrets, 'sidecar.token')
    const secret = randomBytes(32).toString('hex')
    writeFileSync(kmsToken, `${secret}\n`, { mode: 0o600 })
    writeFileSync(sidecarToken, `${secret}\n`, { mode: 0o600 })
    ;({ kms, dir, base } = await startQuickstartKms({
      extraToml: `[core.auth_api.webhook]\ntoken_file = "${kmsToken}"\n[auth_simple]\ntoken_file = "${sidecarToken}"\n`,
    }))
    kms.addSecrets({ name: 'bearer secret', needles: [secret] })
  })

  after(async () => {
    kms.kill('SIGTERM')
    await kms.waitForExit()
  })

  it('the right secret: bootstrap self-authorizes and the demo app gets its keys', async () => {
    await bootstrapQuickstart({ kms, dir, base })
    const seed = quickstartSeed(dir)
    const { keys } = await requestSimulatedGuestKeys({
      kmsUrl: base,
      guest: demoAppGuest(seed),
    })
    assert.equal(keys.diskCryptKey.length > 0, true)
  })

  it('a sidecar expecting another secret answers 401 and the registered app is refused', async () => {
    writeFileSync(sidecarToken, randomBytes(32).toString('hex'), { mode: 0o600 })
    process.kill(sidecarPid(kms, 0), 'SIGKILL')
    await sidecarReadyAgain(kms, 2)
    const seed = quickstartSeed(dir)
    const policyChecks = () =>
      kms.logs.filter((l) => String(l.msg).endsWith(' boot auth request:')).length
    const before = policyChecks()
    await assert.rejects(
      requestSimulatedGuestKeys({
        kmsUrl: base,
        guest: demoAppGuest(seed),
      }),
      (err: Error) => {
        assert.match(
          err.message,
          new RegExp(
            // the KMS checks itself first (GetTempCaCert), through the same client
            `auth api unix:${join(dir, 'data', 'run', 'auth-simple.sock')}/bootAuth/kms returned 401 Unauthorized: \\{"error":"${UNAUTHORIZED_MESSAGE}"\\}`,
          ),
        )
        return true
      },
    )
    assert.equal(policyChecks(), before, 'the policy was never consulted')
    assert.ok(kms.logs.some((l) => l.msg === 'refused a request without the bearer token'))
  })
})

describe('auth-simple with a bearer secret, driven by the webhook client over its socket', () => {
  const dir = tempDir()
  const socketPath = join(dir, 'a.sock')
  const policy = join(dir, 'policy.json')
  const { logger, lines } = captureLogger()
  const app = buildAuthSimpleServer({
    configPath: policy,
    logger,
    limits: defaultLimits(),
    token: 'right-secret',
  })
  const seen: IncomingHttpHeaders[] = []
  app.addHook('onRequest', async (req) => {
    seen.push(req.headers)
  })

  before(async () => {
    writeFileSync(policy, JSON.stringify({ gatewayAppId: '0xgw', chainId: 5 }))
    await app.listen({ path: socketPath })
  })
  after(() => app.close())

  const client = (token?: string) =>
    new WebhookAuthApi({
      url: `unix:${socketPath}`,
      timeoutMs: 10_000,
      userAgent: 'dstack-kms/test',
      ...(token === undefined ? {} : { token }),
    })
  const bootInfo = sampleBootInfo()

  it('the right secret reaches the policy: info on /, boot checks on /bootAuth/*, Host localhost', async () => {
    assert.equal((await client('right-secret').info()).chainId, 5n)
    assert.equal(
      (await client('right-secret').bootAuth(bootInfo, false)).reason,
      'OS image is not allowed',
    )
    assert.deepEqual(
      seen.slice(-2).map((h) => [h.host, h.authorization]),
      [
        ['localhost', 'Bearer right-secret'],
        ['localhost', 'Bearer right-secret'],
      ],
    )
    assert.ok(lines.some((l) => l.msg === 'app boot auth request:'))
  })

  it('a missing or wrong secret is 401 and never reaches the policy', async () => {
    const checks = () => lines.filter((l) => String(l.msg).includes('boot auth request')).length
    const before = checks()
    for (const c of [client(), client('wrong-secret'), client('right-secret-but-longer')]) {
      await assert.rejects(c.bootAuth(bootInfo, true), (err: Error) => {
        assert.equal(
          err.message,
          `auth api unix:${socketPath}/bootAuth/kms returned 401 Unauthorized: {"error":"${UNAUTHORIZED_MESSAGE}"}`,
        )
        return true
      })
      await assert.rejects(c.info(), /returned 401 Unauthorized/)
    }
    assert.equal(checks(), before)
  })
})

describe('bearer secret to an HTTPS webhook (a real KMS process)', () => {
  const tls = createEphemeralTls()
  const headers: IncomingHttpHeaders[] = []
  const webhook = createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    headers.push(req.headers)
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(
      JSON.stringify({
        status: 'ok',
        kmsContractAddr: '0xkms',
        gatewayAppId: '0xgw',
        chainId: 7,
        appImplementation: '0ximpl',
      }),
    )
  })
  let kms: KmsProcess
  let base: string
  const secret = randomBytes(24).toString('base64url')

  before(async () => {
    await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve))
    const dir = tempDir()
    const caFile = join(dir, 'webhook-ca.pem')
    writeFileSync(caFile, tls.cert)
    const tokenFile = join(dir, 'webhook.token')
    writeFileSync(tokenFile, secret, { mode: 0o600 })
    const port = await freePort()
    base = `https://127.0.0.1:${port}`
    const url = `https://localhost:${(webhook.address() as AddressInfo).port}`
    kms = startKms({
      dir,
      configToml: testConfigToml({
        dir,
        port,
        onboard: 'auto_bootstrap_domain = "localhost"',
        authApi: `[core.auth_api]\ntype = "webhook"\n[core.auth_api.webhook]\nurl = "${url}"\ntoken_file = "${tokenFile}"\ntimeout = "5s"`,
      }),
      // how an operator trusts a private CA for the webhook: Node's own variable
      env: { NODE_EXTRA_CA_CERTS: caFile },
    })
    kms.addSecrets({ name: 'webhook bearer secret', needles: [secret] })
    await kms.waitForLog((l) => l.msg === 'KMS worker ready', 60_000)
  })

  after(async () => {
    kms.kill('SIGTERM')
    await kms.waitForExit()
    webhook.close()
  })

  it('every webhook request carries Authorization: Bearer <secret>', async () => {
    const res = await prpc(base, 'GetMeta', '{}')
    assert.equal(res.status, 200, res.text)
    assert.equal((JSON.parse(res.text) as { chain_id: number }).chain_id, 7)
    assert.ok(headers.length > 0)
    for (const h of headers) assert.equal(h.authorization, `Bearer ${secret}`)
  })
})

describe('unsafe socket directories and token files stop the start with the reason', () => {
  async function failedStart(prepare: (dir: string) => string): Promise<string> {
    const dir = tempDir()
    const port = await freePort()
    const extra = prepare(dir)
    const kms = startKms({ dir, configToml: testConfigToml({ dir, port, extra }) })
    // a start that is retried instead of refused must not outlive the test
    const { code } = await kms.waitForExit(60_000).catch((err: unknown) => {
      kms.kill()
      throw err
    })
    assert.notEqual(code, 0)
    assert.ok(!kms.logs.some((l) => l.msg === 'auth-simple policy server ready'))
    const fatal = kms.logs.find((l) =>
      /cannot start and a restart would not change that/.test(String(l.msg)),
    )
    assert.ok(fatal !== undefined, kms.logs.map((l) => l.msg).join('\n'))
    return String(fatal.msg)
  }
  const sidecar = (dir: string) =>
    `\n[auth_simple]\nenabled = true\nconfig = "${join(dir, 'policy.json')}"\n`

  it('a world-writable socket directory', async () => {
    let runDir = ''
    const msg = await failedStart((dir) => {
      runDir = join(dir, 'run')
      mkdirSync(runDir)
      chmodSync(runDir, 0o777)
      return sidecar(dir)
    })
    assert.match(
      msg,
      new RegExp(
        `the socket directory ${runDir} has mode 0777; it must be 0700 so that no other user can reach or replace the socket`,
      ),
    )
    assert.equal(statSync(runDir).mode & 0o777, 0o777, 'left as it was')
  })

  it('a socket directory that is a symbolic link', async () => {
    let runDir = ''
    const msg = await failedStart((dir) => {
      runDir = join(dir, 'run')
      const real = join(dir, 'elsewhere')
      mkdirSync(real, { mode: 0o700 })
      symlinkSync(real, runDir)
      return sidecar(dir)
    })
    assert.match(
      msg,
      new RegExp(`the socket directory ${runDir} is a symbolic link; refusing to use it`),
    )
  })

  it('a file of another kind where the socket goes', async () => {
    let sock = ''
    const msg = await failedStart((dir) => {
      mkdirSync(join(dir, 'run'), { mode: 0o700 })
      sock = join(dir, 'run', 'auth-simple.sock')
      writeFileSync(sock, 'not a socket')
      return sidecar(dir)
    })
    assert.match(
      msg,
      new RegExp(`${sock} exists and is not a socket of this user; refusing to remove it`),
    )
  })

  it('a sidecar token file others may read', async () => {
    let file = ''
    const msg = await failedStart((dir) => {
      file = join(dir, 'sidecar.token')
      writeFileSync(file, 'secret-value\n', { mode: 0o644 })
      chmodSync(file, 0o644)
      return `${sidecar(dir)}token_file = "${file}"\n`
    })
    assert.match(
      msg,
      new RegExp(
        `auth_simple.token_file: ${file} has mode 0644, so other users may read the secret`,
      ),
    )
    assert.doesNotMatch(msg, /secret-value/)
  })

  it('a TCP port another process holds', async (t) => {
    const holder = createNetServer()
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
    t.after(() => holder.close())
    const held = (holder.address() as AddressInfo).port
    const msg = await failedStart((dir) => `${sidecar(dir)}listen = "tcp"\nport = ${held}\n`)
    assert.match(msg, /EADDRINUSE/)
  })

  it('a webhook token file others may read', async () => {
    const dir = tempDir()
    const port = await freePort()
    const file = join(dir, 'webhook.token')
    writeFileSync(file, 'secret-value\n', { mode: 0o640 })
    chmodSync(file, 0o640)
    const kms = startKms({
      dir,
      configToml: testConfigToml({
        dir,
        port,
        authApi: `[core.auth_api]\ntype = "webhook"\n[core.auth_api.webhook]\nurl = "http://127.0.0.1:1"\ntoken_file = "${file}"`,
      }),
    })
    const { code } = await kms.waitForExit(60_000)
    assert.notEqual(code, 0)
    const text = [...kms.logs.map((l) => String(l.msg)), ...kms.stderr].join('\n')
    assert.match(
      text,
      new RegExp(
        `core.auth_api.webhook.token_file: ${file} has mode 0640, so other users may read the secret`,
      ),
    )
    assert.doesNotMatch(text, /secret-value/)
    rmSync(dir, { recursive: true, force: true })
  })
})

describe('claiming the socket path: only a dead socket of ours is replaced', () => {
  const listenOn = async (path: string): Promise<ReturnType<typeof createNetServer>> => {
    const server = createNetServer()
    await new Promise<void>((resolve) => server.listen(path, resolve))
    return server
  }
  const privateDir = () => {
    const dir = join(tempDir(), 'run')
    mkdirSync(dir, { mode: 0o700 })
    return dir
  }

  it('a socket whose server is gone is removed; a live one is refused and kept', async () => {
    const dir = privateDir()
    const sock = join(dir, 's.sock')
    const live = await listenOn(sock)
    await assert.rejects(
      claimSocketPath(sock),
      new RegExp(`another process is already listening on ${sock}; refusing to start a second`),
    )
    assert.ok(lstatSync(sock).isSocket())
    live.close()
    // a server killed outright leaves its socket file behind (close() would have removed it)
    const stale = join(dir, 'stale.sock')
    const killed = spawn(process.execPath, [
      '-e',
      `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ])
    await new Promise((resolve) => killed.on('exit', resolve))
    assert.ok(lstatSync(stale).isSocket(), 'the killed server left its socket file')
    await claimSocketPath(stale)
    assert.throws(() => lstatSync(stale), /ENOENT/)
  })

  it("another user's socket or a link at the path is refused", async () => {
    const dir = privateDir()
    const theirs = join(dir, 'theirs.sock')
    const server = await listenOn(theirs)
    chownSync(theirs, STRANGER.uid, STRANGER.gid)
    await assert.rejects(claimSocketPath(theirs), /exists and is not a socket of this user/)
    server.close()
    const link = join(dir, 'link.sock')
    symlinkSync('/dev/null', link)
    await assert.rejects(claimSocketPath(link), /exists and is not a socket of this user/)
    assert.ok(lstatSync(link).isSymbolicLink(), 'the link was left alone')
  })
})
