// Faults on disk: a full cert_dir or cache dir (a small real tmpfs), a read-only cert_dir, and
// damaged files at start. Each must end in a clear refusal or a recovery: never a half key set,
// never a regenerated key, never a crash loop without a reason in the log.
//
// Inventory: scenario → expected outcome → where it is tested ("here" = this file; the real
// `dstack-kms serve` runs need `npm run build` first).
//
// Full disk
// - Bootstrap, ENOSPC while staging → "Failed to write the key set to …/.staging: …ENOSPC",
//   KMS_ERR_KEYS, no .staging, no keys → here, "ENOSPC while staging" (in-process) and
//   "a full cert_dir" › "auto-bootstrap" (real serve: exit 1 with the reason; the same start
//   succeeds once there is room).
// - Onboard.Onboard as the receiver, ENOSPC while staging → 400 "Failed to store keys: Failed to
//   write the key set to …/.staging: …ENOSPC", no key file, no .staging; the retry after space
//   returns onboards, and the replica serves the source's root → here, "Onboard.Onboard as the
//   receiver on a full cert_dir" (real source and receiver on the TEE simulator).
// - Audit log on a full disk → releases refused until space returns → audit-log.test.ts "a full
//   disk (tmpfs) refuses the release". Already full when the main worker opens it → the worker
//   logs why and is restarted with backoff (a full disk is not a damaged file), and serves once
//   space returns → here, "a full audit log disk at start".
// - Certificate renewal (rpc.crt re-minted at start) on a full cert_dir → backend none: the
//   failure is logged and the existing certificates serve, byte for byte; a backend that can
//   attest: the start stops with "Failed to update certs: …ENOSPC" (upstream HEAD's rule,
//   docs/design.md#certificate-renewal-follows-upstream-head). No temp file is left either way
//   → here, "a full cert_dir" › "certificate renewal, …".
// - Cache writes on a full cache_dir → never fail the request: the value in hand (checked
//   collateral, a computed measurement) is used uncached, a warning says so, the SQLite file
//   stays consistent, and the next write after space returns stores it → here, "a full cache
//   dir" (quote collateral) and image-lite.test.ts "a full cache disk" (measurements). A
//   cache database that cannot even be created at start → exit 1 naming it, before any worker
//   → here, "a full cache dir" › "full before the start".
// - A legacy OS image download onto a full cache_dir → the verification is refused with
//   "Failed to download image <hash>: ENOSPC…", nothing half-installed, the staging area
//   emptied, and a later try after space returns installs it → legacy-image.test.ts "a full
//   cache disk fails the download".
//
// Read-only cert_dir
// - keys present → the KMS starts and serves its existing certificates (renewal fails, logged,
//   backend none); the lock is taken on the existing lock file → here, "a read-only cert_dir"
//   › "keys present".
// - no keys, auto-bootstrap → exit 1 "Failed to bootstrap: Failed to write the key set to
//   …/.staging: …EROFS", nothing written → here, "a read-only cert_dir" › "no keys" (real
//   serve) and "a read-only cert_dir: a clear error" (in-process).
// - a leftover .staging that start-up must finish or discard → the start stops naming the
//   directory ("Failed to finish or discard the interrupted key commit in …/.staging: …EROFS"),
//   nothing changes → here, "a read-only cert_dir holding a leftover .staging".
//
// Damaged at start
// - any key file (root-ca.key, root-k256.key, tmp-ca.key, rpc.key) truncated or garbage → the
//   supervisor exits non-zero within seconds, naming the file; no worker is forked, the damaged
//   bytes stay as they were and no key is generated → here, "damaged key files at start". A key
//   file missing beside others → supervisor.test.ts "a partial key set is fatal".
// - a root key replaced by bytes that still parse → refused like a damaged one when
//   bootstrap-info.json records other public keys → here, "another valid key" and "the record of
//   another KMS". A bootstrap-info.json that is there but unreadable, truncated, empty, garbage or
//   JSON without two public keys → exit 78 naming the file and what is wrong: the keys it should
//   vouch for cannot be checked. A missing one (auto-bootstrapped, onboarded or upstream cert
//   dirs) checks nothing and GetMeta reports null, as upstream → here, "a damaged
//   bootstrap-info.json at start".
// - a staging directory left by a crash → rolled forward or discarded → keys.test.ts "staged
//   commits" (a SIGKILL at each commit step).
// - root-ca.crt or tmp-ca.crt there but unreadable, empty, truncated or garbage → exit 78 naming
//   the file, nothing re-minted (a new CA certificate would differ from the other replicas'); a
//   missing one is minted from its key with a warning, and an unreadable rpc.crt re-minted (it is
//   on every start) → here, "damaged certificates at start". A CA certificate of another key →
//   keys.test.ts "re-mints CA certificates that do not belong to their keys"; rpc-domain not a
//   DNS name → keys.test.ts.
// - the cache database → moved aside (kept for inspection), rebuilt empty, logged; the KMS
//   serves → here, "a damaged cache database"; every kind of damage → cache.test.ts "a damaged
//   cache database at open".
// - the audit database (header overwritten, truncated) → the audit log is evidence and is never
//   replaced: the main worker refuses to start, and since no restart can repair the file the
//   supervisor exits 78 with the reason instead of restarting it → here, "a damaged audit
//   database".
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import Database from 'better-sqlite3'
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test, type TestContext } from 'node:test'
import pino from 'pino'
import type { BootInfo } from '../src/attestation/boot-info.js'
import { PccsCollateralSource } from '../src/attestation/pccs-source.js'
import { INTEL_SGX_ROOT_CA_DER } from '../src/attestation/trust.js'
import { AttestationVerifier } from '../src/attestation/verify.js'
import { AuditLog } from '../src/audit/audit-log.js'
import { CACHE_DB_FILE, CacheDb } from '../src/cache/cache-db.js'
import { P256Key } from '../src/crypto/p256.js'
import { demoPolicy, simulatedDemoAppMrSystem } from '../src/quickstart/demo.js'
import { EXIT_CANNOT_START } from '../src/supervisor/worker-ipc.js'
import { loadCollateralFixture } from './helpers/collateral-fixtures.js'
import { readVectorFile } from './helpers/crypto-vectors.js'
import { attestedConfigToml, testConfigToml } from './helpers/kms-config.js'
import { PccsStub } from './helpers/pccs-stub.js'
import {
  freePort,
  startKms,
  tempDir,
  type KmsProcess,
  type LogLine,
} from './helpers/kms-process.js'
import { prpc, rawRequest } from './helpers/https-client.js'
import { mountTmpfs, runOnSmallTmpfs, type HostTmpfs } from './helpers/small-tmpfs.js'
import { bootstrapKeySet } from './helpers/kms-service.js'
import { simulatedKmsInstance } from './helpers/simulated-kms.js'

interface Outcome {
  error: string | null
  code: string | null
  entries: string[]
  keysExist: boolean | string
}

const BOOTSTRAP_IMPORTS = {
  '{ bootstrap }': 'src/keys/bootstrap.ts',
  '{ keysExist }': 'src/keys/cert-dir.ts',
  '{ NoneBackend }': 'src/tee/backend.ts',
  '{ nobleSecp256k1 }': 'src/crypto/secp256k1.ts',
  '{ readdirSync }': 'node:fs',
}

const BOOTSTRAP_BODY = `
  const deps = { certDir: dir, tee: new NoneBackend(), secp256k1: nobleSecp256k1,
    ensureSelfKmsAllowed: async () => {} }
  let error = null, code = null
  try { await bootstrap(deps, 'kms.example.com') } catch (e) { error = e.message; code = e.code }
  let exists
  try { exists = keysExist(dir) } catch (e) { exists = e.message }
  return { error, code, entries: readdirSync(dir).sort(), keysExist: exists }
`

describe('Bootstrap on a full cert_dir', () => {
  test('ENOSPC while staging: a clear error with context, no .staging left, no keys', () => {
    // tmpfs hands out whole pages: 16 KiB holds four of the nine files
    const { result } = runOnSmallTmpfs<Outcome>(16, BOOTSTRAP_IMPORTS, BOOTSTRAP_BODY)
    assert.match(result.error ?? '', /^Failed to write the key set to .*\.staging: .*ENOSPC/)
    assert.equal(result.code, 'KMS_ERR_KEYS')
    assert.deepEqual(result.entries, [], 'no staging directory with private keys left behind')
    assert.equal(result.keysExist, false)
  })

  test('with room to spare the same Bootstrap commits a whole key set', () => {
    const { result } = runOnSmallTmpfs<Outcome>(1024, BOOTSTRAP_IMPORTS, BOOTSTRAP_BODY)
    assert.equal(result.error, null)
    assert.equal(result.keysExist, true)
    assert.equal(result.entries.includes('.staging'), false)
  })

  test('a read-only cert_dir: a clear error, nothing written', () => {
    const { result } = runOnSmallTmpfs<Outcome>(
      1024,
      BOOTSTRAP_IMPORTS,
      BOOTSTRAP_BODY,
      'mount -o remount,ro "$1" &&',
    )
    assert.match(result.error ?? '', /EROFS|read-only/)
    assert.deepEqual(result.entries, [])
    assert.equal(result.keysExist, false)
  })
})

const KEY_FILES = ['root-ca.key', 'root-k256.key', 'tmp-ca.key', 'rpc.key'] as const

/** A bootstrapped key set in `<dir>/certs` (backend none, domain localhost). */
async function keySet(dir: string): Promise<string> {
  const certDir = join(dir, 'certs')
  await bootstrapKeySet(certDir)
  return certDir
}

/** The regular files of `dir` and their bytes (hex); the lock file is left out. */
function files(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f)
    if (f === '.dstack-kms.lock' || !statSync(p).isFile()) continue
    out[f] = readFileSync(p).toString('hex')
  }
  return out
}

interface Serve {
  kms: KmsProcess
  url: string
}

async function serve(
  dir: string,
  opts: { core?: string; onboard?: string; extra?: string } = {},
): Promise<Serve> {
  const port = await freePort()
  const kms = startKms({ dir, configToml: testConfigToml({ dir, port, ...opts }) })
  return { kms, url: `https://127.0.0.1:${port}` }
}

const msg = (l: LogLine): string => String(l.msg)

/** Runs `fn` against a KMS serving from `dir` (its main worker ready), then stops it. */
async function whileServing(dir: string, fn: (s: Serve) => Promise<void>): Promise<void> {
  const served = await serve(dir)
  try {
    await served.kms.waitForLog((l) => msg(l) === 'KMS worker ready', 60_000)
    await fn(served)
  } finally {
    served.kms.kill()
    await served.kms.waitForExit()
  }
}
const started = (kms: KmsProcess, role: string): number =>
  kms.logs.filter((l) => msg(l) === `started ${role} worker`).length

describe('damaged key files at start (real dstack-kms serve)', () => {
  const truncated = (p: string) => truncateSync(p, Math.floor(statSync(p).size / 2))
  const empty = (p: string) => truncateSync(p, 0)
  const garbage = (p: string) => writeFileSync(p, Buffer.alloc(statSync(p).size, 0xff))
  const cases: Array<[string, string, (p: string) => void]> = [
    ...KEY_FILES.map((f): [string, string, (p: string) => void] => [f, 'garbage', garbage]),
    ['root-ca.key', 'truncated', truncated],
    ['root-ca.key', 'empty', empty],
    ['root-k256.key', 'truncated', truncated],
    ['root-k256.key', 'empty', empty],
    // bytes that still parse as a key: only Bootstrap's record of the public keys tells
    ['root-ca.key', 'another valid key', (p) => writeFileSync(p, P256Key.generate().pkcs8Pem())],
    ['root-k256.key', 'another valid key', (p) => writeFileSync(p, Buffer.alloc(32, 0x41))],
  ]
  for (const [file, how, damage] of cases) {
    test(`${file} ${how}: the supervisor exits non-zero naming the file; nothing regenerated`, async () => {
      const dir = tempDir('kms-damaged-key-')
      const certDir = await keySet(dir)
      damage(join(certDir, file))
      await assertRefusedAtStart(dir, new RegExp(escapeRegExp(join(certDir, file))))
    })
  }
})

/** Starts a KMS on `dir`, whose cert_dir has been damaged, and checks the refusal: exit 78 with
 * a "cannot start" line matching `reason`, no worker forked, every file as it was. */
async function assertRefusedAtStart(dir: string, reason: RegExp): Promise<void> {
  const certDir = join(dir, 'certs')
  const before = files(certDir)
  const { kms } = await serve(dir)
  try {
    const exit = await kms.waitForExit(60_000)
    assert.equal(exit.code, EXIT_CANNOT_START)
    const fatal = kms.logs.find((l) => /^cannot start: /.test(msg(l)))
    assert.ok(fatal, JSON.stringify(kms.logs.map(msg)))
    assert.match(msg(fatal), reason)
    assert.equal(started(kms, 'kms') + started(kms, 'onboard'), 0, 'no worker forked')
    assert.deepEqual(files(certDir), before, 'the damaged file and every other file unchanged')
  } finally {
    kms.kill('SIGKILL')
  }
}

const escapeRe = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

describe('damaged certificates at start (real dstack-kms serve)', () => {
  const caDamages: Array<[string, string, (p: string) => void, string]> = [
    [
      'root-ca.crt',
      'garbage',
      (p) => writeFileSync(p, 'not a certificate'),
      'is not a PEM certificate',
    ],
    ['tmp-ca.crt', 'truncated', (p) => truncateSync(p, 100), 'is not a PEM certificate'],
    ['root-ca.crt', 'empty', (p) => truncateSync(p, 0), 'is not a PEM certificate'],
    // what EACCES is for an unprivileged KMS; the tests may run as root, which reads anything
    [
      'tmp-ca.crt',
      'unreadable (a directory)',
      (p) => {
        rmSync(p)
        mkdirSync(p)
      },
      'cannot be read \\(EISDIR',
    ],
  ]
  for (const [file, how, damage, what] of caDamages) {
    test(`${file} ${how}: the supervisor exits 78 naming the file; nothing re-minted`, async () => {
      const dir = tempDir('kms-damaged-ca-')
      const certDir = await keySet(dir)
      damage(join(certDir, file))
      const key = file === 'root-ca.crt' ? 'root-ca.key' : 'tmp-ca.key'
      await assertRefusedAtStart(
        dir,
        new RegExp(
          `${escapeRe(join(certDir, file))} ${what}.*refusing to replace it.*minted from ${key}$`,
        ),
      )
    })
  }

  test('root-ca.crt and tmp-ca.crt missing: minted from their keys, warned; rpc.crt unreadable: re-minted; served', async () => {
    const dir = tempDir('kms-damaged-crt-')
    const certDir = await keySet(dir)
    const keysBefore = files(certDir)
    rmSync(join(certDir, 'root-ca.crt'))
    rmSync(join(certDir, 'tmp-ca.crt'))
    truncateSync(join(certDir, 'rpc.crt'), 0)
    await whileServing(dir, async ({ kms, url }) => {
      for (const f of ['root-ca.crt', 'tmp-ca.crt']) {
        assert.ok(
          kms.logs.some(
            (l) => msg(l) === `${f} is missing; minting it from its key` && l.level === 40,
          ),
          `a warning names ${f}`,
        )
      }
      const after = files(certDir)
      for (const f of [...KEY_FILES, 'rpc-domain', 'bootstrap-info.json']) {
        assert.equal(after[f], keysBefore[f], `${f} unchanged`)
      }
      const meta = JSON.parse((await prpc(url, 'GetMeta', '{}')).text) as { ca_cert: string }
      assert.equal(meta.ca_cert, readFileSync(join(certDir, 'root-ca.crt'), 'utf8'))
      const served = await rawRequest({ url: `${url}/health` })
      assert.equal(served.status, 200)
      const rpcPem = readFileSync(join(certDir, 'rpc.crt'), 'utf8')
      assert.equal(
        served.peerCertDer?.toString('base64'),
        rpcPem.replace(/-----[^-]+-----|\s/g, ''),
        'the listener serves the re-minted rpc.crt',
      )
    })
  })
})

describe('a damaged bootstrap-info.json at start (real dstack-kms serve)', () => {
  const INFO = 'bootstrap-info.json'
  const infoDamages: Array<[string, (p: string) => void, string]> = [
    [
      'truncated',
      (p) => truncateSync(p, Math.floor(statSync(p).size / 2)),
      'not a BootstrapResponse in JSON',
    ],
    ['empty', (p) => truncateSync(p, 0), 'it is empty'],
    [
      'garbage',
      (p) => writeFileSync(p, Buffer.alloc(statSync(p).size, 0xff)),
      'not a BootstrapResponse in JSON',
    ],
    [
      'valid JSON of another shape (an array)',
      (p) => writeFileSync(p, '[]'),
      'not a BootstrapResponse in JSON',
    ],
    // serde takes missing fields as empty: parsing alone would accept these
    [
      'valid JSON without the keys',
      (p) => writeFileSync(p, '{"attestation":""}'),
      'ca_pubkey is not a P-256 SubjectPublicKeyInfo \\(0 bytes\\)',
    ],
    [
      'a k256_pubkey of the wrong length',
      (p) => {
        const info = JSON.parse(readFileSync(p, 'utf8')) as Record<string, string>
        writeFileSync(p, JSON.stringify({ ...info, k256_pubkey: 'ab'.repeat(32) }))
      },
      'k256_pubkey is not a compressed secp256k1 public key \\(32 bytes\\)',
    ],
    [
      'unreadable (a directory)',
      (p) => {
        rmSync(p)
        mkdirSync(p)
      },
      'cannot be read \\(EISDIR',
    ],
  ]
  for (const [how, damage, what] of infoDamages) {
    test(`${how}: the supervisor exits 78 naming the file and what is wrong`, async () => {
      const dir = tempDir('kms-damaged-info-')
      const certDir = await keySet(dir)
      damage(join(certDir, INFO))
      await assertRefusedAtStart(
        dir,
        new RegExp(
          `${escapeRe(join(certDir, INFO))} is damaged: ${what}.*root keys cannot be checked`,
        ),
      )
    })
  }

  test('the record of another KMS: refused, naming the key that does not match it', async () => {
    const dir = tempDir('kms-damaged-info-')
    const certDir = await keySet(dir)
    const other = await keySet(tempDir('kms-other-'))
    writeFileSync(join(certDir, INFO), readFileSync(join(other, INFO)))
    await assertRefusedAtStart(
      dir,
      new RegExp(
        `${escapeRe(join(certDir, 'root-ca.key'))} is not the root CA key recorded in ${escapeRe(join(certDir, INFO))}`,
      ),
    )
  })

  test('missing (auto-bootstrapped, onboarded and upstream cert dirs have none): the KMS starts; GetMeta reports no bootstrap info', async () => {
    const dir = tempDir('kms-no-info-')
    const certDir = await keySet(dir)
    rmSync(join(certDir, INFO))
    await whileServing(dir, async ({ url }) => {
      const meta = JSON.parse((await prpc(url, 'GetMeta', '{}')).text) as Record<string, unknown>
      assert.equal(meta.bootstrap_info, null)
    })
  })
})

describe('damaged databases at start (real dstack-kms serve)', () => {
  test('a damaged cache database: moved aside with its bytes, rebuilt empty, logged; the KMS serves', async () => {
    const dir = tempDir('kms-damaged-cache-')
    await keySet(dir)
    mkdirSync(join(dir, 'cache'))
    const dbPath = join(dir, 'cache', 'kms-cache.sqlite3')
    const damaged = Buffer.alloc(8192, 0x5a)
    writeFileSync(dbPath, damaged)
    await whileServing(dir, async ({ kms, url }) => {
      const warned = kms.logs.find((l) => /^cache database .* was damaged/.test(msg(l)))
      assert.ok(warned, 'the move is logged')
      assert.equal(warned.level, 40)
      const movedTo = String(warned.movedTo)
      assert.ok(movedTo.startsWith(`${dbPath}.corrupt-`), movedTo)
      assert.deepEqual(readFileSync(movedTo), damaged, 'the damaged file is kept for inspection')
      const db = new Database(dbPath, { readonly: true })
      try {
        assert.equal(db.pragma('integrity_check', { simple: true }), 'ok')
        assert.equal(db.pragma('user_version', { simple: true }), 2)
      } finally {
        db.close()
      }
      assert.equal((await prpc(url, 'GetMeta', '{}')).status, 200)
    })
  })

  const auditDamages: Array<[string, (bytes: Buffer) => Buffer]> = [
    // what a torn write or a stray `dd` leaves
    ['header overwritten', (b) => b.fill(0x5a, 0, 100)],
    ['truncated to half', (b) => b.subarray(0, Math.floor(b.length / 2))],
  ]
  for (const [how, damage] of auditDamages) {
    test(`a damaged audit database (${how}): kept as it is, and the supervisor exits 78 with the reason instead of restarting`, async () => {
      const dir = tempDir('kms-damaged-audit-')
      await keySet(dir)
      const auditPath = join(dir, 'kms-audit.sqlite3')
      const log = AuditLog.open(auditPath)
      for (let i = 0; i < 500; i++) {
        await log.record({
          rpc: 'GetAppKey',
          decision: 'refuse',
          reason: `test ${i}`,
          caller: {},
          released: [],
        })
      }
      log.close()
      const bytes = damage(readFileSync(auditPath))
      writeFileSync(auditPath, bytes)
      const { kms } = await serve(dir)
      try {
        const exit = await kms.waitForExit(60_000)
        assert.equal(exit.code, EXIT_CANNOT_START)
        const fatal = kms.logs.find((l) =>
          msg(l).startsWith('kms worker cannot start and a restart would not change that: '),
        )
        assert.ok(fatal, JSON.stringify(kms.logs.map(msg)))
        assert.match(
          msg(fatal),
          /Failed to initialise audit log .*kms-audit\.sqlite3: .*it is kept as it is/,
        )
        assert.equal(started(kms, 'kms'), 1, 'no restart')
        assert.deepEqual(readFileSync(auditPath), bytes, 'the evidence is not touched')
        assert.deepEqual(
          readdirSync(dir).filter((f) => f.startsWith('kms-audit.sqlite3')),
          ['kms-audit.sqlite3'],
          'not moved aside or replaced',
        )
      } finally {
        kms.kill('SIGKILL')
      }
    })
  }
})

/** The cert_dir of `dir` as a small tmpfs of its own, unmounted after the test. */
function certTmpfs(t: TestContext, dir: string, sizeKiB: number): HostTmpfs {
  const fs = mountTmpfs(join(dir, 'certs'), sizeKiB)
  t.after(() => fs.unmount())
  return fs
}

/** What a served HTTPS listener presents, as PEM body (base64, no line breaks). */
async function servedCert(url: string): Promise<string> {
  const res = await rawRequest({ url: `${url}/health` })
  assert.equal(res.status, 200)
  return res.peerCertDer?.toString('base64') ?? ''
}

const pemBody = (pem: string): string => pem.replace(/-----[^-]+-----|\s/g, '')

describe('a full cert_dir (real dstack-kms serve on a small tmpfs)', () => {
  test('auto-bootstrap: exit 1 with the reason, no .staging, no keys; the same start succeeds once there is room', async (t) => {
    const dir = tempDir('kms-full-bootstrap-')
    const fs = certTmpfs(t, dir, 16)
    const onboard = 'auto_bootstrap_domain = "localhost"'
    const first = await serve(dir, { onboard })
    try {
      const exit = await first.kms.waitForExit(60_000)
      assert.equal(exit.code, 1)
      const fatal = first.kms.logs.find((l) => msg(l).startsWith('Failed to bootstrap: '))
      assert.ok(fatal, JSON.stringify(first.kms.logs.map(msg)))
      assert.match(msg(fatal), /Failed to write the key set to .*\.staging: .*ENOSPC/)
      assert.deepEqual(readdirSync(fs.dir), ['.dstack-kms.lock'], 'no staged private keys left')
    } finally {
      first.kms.kill('SIGKILL')
    }
    fs.remount('size=1m')
    const second = await serve(dir, { onboard })
    try {
      await second.kms.waitForLog((l) => msg(l) === 'KMS worker ready', 60_000)
      assert.deepEqual(
        KEY_FILES.filter((f) => !existsSync(join(fs.dir, f))),
        [],
        'a whole key set',
      )
    } finally {
      second.kms.kill()
      await second.kms.waitForExit()
    }
  })

  test('certificate renewal, backend none: logged, and the existing certificates serve unchanged', async (t) => {
    const dir = tempDir('kms-full-renewal-')
    const fs = certTmpfs(t, dir, 1024)
    await keySet(dir)
    fs.fill()
    const before = files(fs.dir)
    await whileServing(dir, async ({ kms, url }) => {
      const logged = kms.logs.find((l) => msg(l).startsWith('Failed to update certs: '))
      assert.ok(logged, JSON.stringify(kms.logs.map(msg)))
      assert.match(
        msg(logged),
        /Failed to write .*rpc\.crt: ENOSPC.*; continuing with the existing certificates$/,
      )
      assert.deepEqual(files(fs.dir), before, 'every file as it was, no temp file left')
      assert.equal(
        await servedCert(url),
        pemBody(readFileSync(join(fs.dir, 'rpc.crt'), 'utf8')),
        'the old rpc.crt serves',
      )
    })
  })

  test('certificate renewal, a backend that attests: the start stops with the reason, files intact', async (t) => {
    const dir = tempDir('kms-full-renewal-tee-')
    const fs = certTmpfs(t, dir, 1024)
    await keySet(dir)
    fs.fill()
    const before = files(fs.dir)
    const port = await freePort()
    const toml = testConfigToml({ dir, port }).replace(
      'backend = "none"',
      `backend = "simulator"\n\n[tee.simulator]\nseed = "${'ab'.repeat(32)}"`,
    )
    const kms = startKms({ dir, configToml: toml })
    try {
      const exit = await kms.waitForExit(60_000)
      assert.equal(exit.code, 1)
      const fatal = kms.logs.find((l) => msg(l).startsWith('Failed to update certs: '))
      assert.ok(fatal, JSON.stringify(kms.logs.map(msg)))
      assert.match(msg(fatal), /Failed to write .*rpc\.crt: ENOSPC/)
      assert.equal(started(kms, 'kms'), 0)
      assert.deepEqual(files(fs.dir), before)
    } finally {
      kms.kill('SIGKILL')
    }
  })
})

describe('a full audit log disk at start (real dstack-kms serve)', () => {
  test('the worker says why it cannot start and is restarted with backoff; once space returns it serves', async (t) => {
    const dir = tempDir('kms-full-audit-')
    await keySet(dir)
    const fs = mountTmpfs(join(dir, 'audit'), 1024)
    t.after(() => fs.unmount())
    fs.fill()
    const extra = `[core.audit]\npath = "${join(fs.dir, 'kms-audit.sqlite3')}"`
    const { kms, url } = await serve(dir, { extra })
    try {
      const failed = await kms.waitForLog((l) => msg(l) === 'kms worker failed to start', 60_000)
      assert.match(JSON.stringify(failed.err), /Failed to (open|initialise) audit log .*full/)
      await kms.waitForLog((l) => /^restarting kms worker in \d+ ms$/.test(msg(l)), 60_000)
      fs.unfill()
      await kms.waitForLog((l) => msg(l) === 'KMS worker ready', 90_000)
      assert.ok(started(kms, 'kms') >= 2)
      assert.equal((await prpc(url, 'GetMeta', '{}')).status, 200)
    } finally {
      kms.kill()
      await kms.waitForExit()
    }
  })
})

describe('a read-only cert_dir (real dstack-kms serve)', () => {
  test('keys present: the KMS starts on the existing lock file and serves its certificates', async (t) => {
    const dir = tempDir('kms-ro-keys-')
    const fs = certTmpfs(t, dir, 1024)
    await keySet(dir)
    // left by an earlier start: a read-only file system cannot create it
    writeFileSync(join(fs.dir, '.dstack-kms.lock'), '', { mode: 0o600 })
    fs.remount('ro')
    const before = files(fs.dir)
    await whileServing(dir, async ({ kms, url }) => {
      const logged = kms.logs.find((l) => msg(l).startsWith('Failed to update certs: '))
      assert.ok(logged, JSON.stringify(kms.logs.map(msg)))
      assert.match(msg(logged), /EROFS.*; continuing with the existing certificates$/)
      assert.equal(await servedCert(url), pemBody(readFileSync(join(fs.dir, 'rpc.crt'), 'utf8')))
      assert.equal((await prpc(url, 'GetMeta', '{}')).status, 200)
      assert.deepEqual(files(fs.dir), before)
    })
  })

  test('no keys, auto-bootstrap: exit 1 with the reason, nothing written', async (t) => {
    const dir = tempDir('kms-ro-bootstrap-')
    const fs = certTmpfs(t, dir, 1024)
    writeFileSync(join(fs.dir, '.dstack-kms.lock'), '', { mode: 0o600 })
    fs.remount('ro')
    const { kms } = await serve(dir, { onboard: 'auto_bootstrap_domain = "localhost"' })
    try {
      const exit = await kms.waitForExit(60_000)
      assert.equal(exit.code, 1)
      const fatal = kms.logs.find((l) => msg(l).startsWith('Failed to bootstrap: '))
      assert.ok(fatal, JSON.stringify(kms.logs.map(msg)))
      assert.match(msg(fatal), /Failed to write the key set to .*\.staging: EROFS/)
      assert.deepEqual(readdirSync(fs.dir), ['.dstack-kms.lock'])
    } finally {
      kms.kill('SIGKILL')
    }
  })
})

describe('a read-only cert_dir holding a leftover .staging (real dstack-kms serve)', () => {
  test('the start stops with the directory and the reason; nothing changes', async (t) => {
    const dir = tempDir('kms-ro-staging-')
    const fs = certTmpfs(t, dir, 1024)
    writeFileSync(join(fs.dir, '.dstack-kms.lock'), '', { mode: 0o600 })
    // an unmarked staging dir (a commit cut before its marker) is discarded at start
    mkdirSync(join(fs.dir, '.staging'))
    writeFileSync(join(fs.dir, '.staging', 'root-ca.key'), 'partly written', { mode: 0o600 })
    fs.remount('ro')
    const { kms } = await serve(dir)
    try {
      const exit = await kms.waitForExit(60_000)
      assert.notEqual(exit.code, 0)
      assert.match(
        kms.stderr.join('') + kms.logs.map(msg).join('\n'),
        /Failed to finish or discard the interrupted key commit in .*\.staging: .*EROFS/,
      )
      assert.deepEqual(readdirSync(join(fs.dir, '.staging')), ['root-ca.key'])
      assert.equal(started(kms, 'kms') + started(kms, 'onboard'), 0)
    } finally {
      kms.kill('SIGKILL')
    }
  })
})

describe('a full cache dir (a small tmpfs)', () => {
  const NOW = 1751328000 // inside the fixture collateral's validity
  const stub = new PccsStub([
    { tee: 'tdx', ca: 'platform', collateral: loadCollateralFixture('tdx') },
  ])
  before(() => stub.start())
  after(() => stub.stop())

  test('full before the start (real dstack-kms serve): exit 1 naming the database, before any worker', async (t) => {
    const dir = tempDir('kms-full-cache-start-')
    await keySet(dir)
    const fs = mountTmpfs(join(dir, 'cache'), 64)
    t.after(() => fs.unmount())
    fs.fill()
    const { kms } = await serve(dir)
    try {
      const exit = await kms.waitForExit(60_000)
      assert.equal(exit.code, 1)
      assert.match(
        kms.stderr.join(''),
        /Failed to initialise cache database .*kms-cache\.sqlite3: database or disk is full/,
      )
      assert.equal(started(kms, 'kms'), 0)
    } finally {
      kms.kill('SIGKILL')
    }
  })

  test('quote collateral that cannot be stored: the verification proceeds uncached, warned; stored once there is room', async (t) => {
    const fs = mountTmpfs(join(tempDir('kms-full-cache-'), 'cache'), 1024)
    t.after(() => fs.unmount())
    const db = CacheDb.open(fs.dir)
    t.after(() => db.close())
    const warnings: LogLine[] = []
    const logger = pino({ level: 'warn' }, { write: (s: string) => warnings.push(JSON.parse(s)) })
    const verify = () =>
      new AttestationVerifier({
        rootCaDer: INTEL_SGX_ROOT_CA_DER,
        collateral: new PccsCollateralSource({
          pccsUrl: stub.url,
          db,
          now: () => NOW,
          logger,
          timeoutMs: 10_000,
        }),
        now: () => NOW,
      }).verifyQuote(readVectorFile('dcap-qvl-tdx_quote'))

    fs.fill()
    assert.equal((await verify()).status, 'UpToDate')
    const warned = warnings.find((l) => msg(l).startsWith('failed to store quote collateral'))
    assert.ok(warned, JSON.stringify(warnings))
    assert.match(JSON.stringify(warned.err), /SQLITE_FULL|full/)
    assert.equal(stub.total(), 4)

    fs.unfill()
    assert.equal((await verify()).status, 'UpToDate')
    assert.equal(stub.total(), 8, 'nothing was cached, so the PCCS is asked again')
    assert.equal((await verify()).status, 'UpToDate')
    assert.equal(stub.total(), 8, 'now it is cached')
    const check = new Database(join(fs.dir, CACHE_DB_FILE), { readonly: true })
    try {
      assert.equal(check.pragma('integrity_check', { simple: true }), 'ok')
      assert.equal(check.prepare<[], number>('SELECT count(*) FROM collateral').pluck().get(), 1)
    } finally {
      check.close()
    }
  })
})

describe('Onboard.Onboard as the receiver on a full cert_dir (real source and receiver on the TEE simulator)', () => {
  interface Node {
    dir: string
    port: number
    authPort: number
    url: string
    policyFile: string
    boot: BootInfo
  }

  /** A KMS directory with its own simulated CVM (its own instance id, so its own mr_aggregated). */
  async function node(name: string, seed: Buffer): Promise<Node> {
    const dir = tempDir(`kms-onboard-${name}-`)
    const stateDir = join(dir, 'tee-simulator')
    const boot = await simulatedKmsInstance(seed, stateDir)
    const port = await freePort()
    return {
      dir,
      port,
      authPort: await freePort(),
      url: `https://localhost:${port}`,
      policyFile: join(dir, 'auth-config.json'),
      boot,
    }
  }

  test('a clear error, no key file and no .staging; the retry after freeing space onboards', async (t) => {
    const seedHex = randomBytes(32).toString('hex')
    const seed = Buffer.from(seedHex, 'hex')
    const [source, receiver] = [await node('source', seed), await node('receiver', seed)]
    const base = demoPolicy(source.boot, await simulatedDemoAppMrSystem(seed))
    const policy = {
      ...base,
      kms: {
        ...base.kms,
        mrAggregated: [source, receiver].map((n) => n.boot.mrAggregated.toString('hex')),
      },
    }
    for (const n of [source, receiver]) writeFileSync(n.policyFile, JSON.stringify(policy))
    // 16 KiB: four pages, and a replica's key set is eight files
    const fs = certTmpfs(t, receiver.dir, 16)
    const start = (n: Node, autoBootstrapDomain?: string): KmsProcess =>
      startKms({
        dir: n.dir,
        configToml: attestedConfigToml({
          dir: n.dir,
          port: n.port,
          authPort: n.authPort,
          seed: seedHex,
          policyFile: n.policyFile,
          ...(autoBootstrapDomain === undefined ? {} : { autoBootstrapDomain }),
        }),
      })
    const src = start(source, 'localhost')
    const rcv = start(receiver)
    t.after(async () => {
      for (const p of [src, rcv]) p.kill()
      await Promise.all([src, rcv].map((p) => p.waitForExit().catch(() => undefined)))
    })
    await src.waitForLog((l) => msg(l) === 'KMS worker ready', 90_000)
    await rcv.waitForLog((l) => msg(l) === 'onboarding worker ready', 90_000)

    const body = JSON.stringify({ source_url: source.url, domain: 'localhost' })
    const failed = await prpc(receiver.url, 'Onboard', body)
    assert.equal(failed.status, 400, failed.text)
    assert.match(
      String((JSON.parse(failed.text) as { error: unknown }).error),
      /^Failed to store keys: Failed to write the key set to .*\.staging: .*ENOSPC/,
    )
    assert.deepEqual(readdirSync(fs.dir), ['.dstack-kms.lock'], 'no key file, no staged keys')

    fs.remount('size=1m')
    const ok = await prpc(receiver.url, 'Onboard', body)
    assert.equal(ok.status, 200, ok.text)
    assert.equal((await rawRequest({ url: `${receiver.url}/finish` })).text, 'OK')
    await rcv.waitForLog((l) => msg(l) === 'KMS worker ready', 90_000)
    const caOf = async (url: string) =>
      (JSON.parse((await prpc(url, 'GetMeta', '{}')).text) as { ca_cert: string }).ca_cert
    assert.equal(await caOf(receiver.url), await caOf(source.url), 'the same root as the source')
  })
})

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
