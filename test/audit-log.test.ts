// The key-release audit log: KmsService with real collaborators (key set on disk, simulator
// quotes verified against their mock root, an auth webhook over loopback HTTP) records every
// release and refusal; the hash chain catches edited and removed rows; retention keeps the chain
// verifiable; a full disk (a real tmpfs) refuses releases; `dstack-kms audit` reads it all back.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash, createPublicKey, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, statSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import Database from 'better-sqlite3'
import pino from 'pino'
import { AuditLog, auditRowHash, type AuditEvent, type AuditRow } from '../src/audit/audit-log.js'
import { encodeTdxEventLogJson } from '../src/attestation/event-log.js'
import { toReportData } from '../src/attestation/report-data.js'
import type { VerifiedAttestation } from '../src/attestation/verify.js'
import { decodeVersionedAttestation } from '../src/attestation/versioned.js'
import { CacheDb } from '../src/cache/cache-db.js'
import { runAudit } from '../src/commands/audit.js'
import { deriveDhSecret } from '../src/crypto/kdf.js'
import { P256Key } from '../src/crypto/p256.js'
import { nobleSecp256k1 } from '../src/crypto/secp256k1.js'
import { x25519PublicKey } from '../src/crypto/x25519.js'
import { deriveAppK256Key, type KmsService } from '../src/kms/service.js'
import { CERT_DIR_FILES } from '../src/keys/cert-dir.js'
import { readRootK256 } from '../src/keys/key-set.js'
import { CSR_CONFIRM, encodeCsrV1 } from '../src/ratls/csr.js'
import { mockPlatformVerifier } from '../src/quickstart/demo.js'
import { simulateGuestAttestation } from '../src/tee/simulator/guest.js'
import { buildConfig } from './helpers/config-builder.js'
import { tempDir } from './helpers/kms-process.js'
import { bootstrapKeySet, testKmsService } from './helpers/kms-service.js'
import { csrConfigV1 } from './helpers/csr-config.js'
import { holdSqliteWriteLock } from './helpers/sqlite-write-lock.js'

function sha256Hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex')
}

function event(over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    rpc: 'GetAppKey',
    decision: 'release',
    reason: 'allowed',
    caller: { appId: randomBytes(20).toString('hex'), tcbStatus: 'UpToDate' },
    released: [{ name: 'k256_key', fingerprint: 'ab'.repeat(32) }],
    ...over,
  }
}

function capture(): {
  io: { stdout: Writable; stderr: Writable }
  out: () => string
  err: () => string
} {
  let out = ''
  let err = ''
  const sink = (f: (s: string) => void) =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        f(chunk.toString())
        cb()
      },
    })
  return {
    io: { stdout: sink((s) => (out += s)), stderr: sink((s) => (err += s)) },
    out: () => out,
    err: () => err,
  }
}

describe('audit log storage and hash chain', () => {
  it('rows chain from genesis; the file is 0600; verify passes', async () => {
    const dir = tempDir()
    const log = AuditLog.open(join(dir, 'a', 'audit.sqlite3'))
    const rows: AuditRow[] = []
    for (let i = 0; i < 5; i++) rows.push(await log.record(event()))
    assert.deepEqual(
      rows.map((r) => r.seq),
      [1, 2, 3, 4, 5],
    )
    assert.equal(rows[0]?.prevHash, '0'.repeat(64))
    for (let i = 1; i < rows.length; i++) assert.equal(rows[i]?.prevHash, rows[i - 1]?.rowHash)
    assert.deepEqual(log.verify(), { ok: true, rows: 5 })
    assert.equal(statSync(log.path).mode & 0o777, 0o600)
    log.close()
  })

  it('record() answers with the row as it reads back from the file, fields in canonical order', async () => {
    const log = AuditLog.open(join(tempDir(), 'audit.sqlite3'))
    // caller fields out of order and an extra key on a released entry: both dropped/reordered
    const recorded = await log.record(
      event({
        caller: {
          tcbStatus: 'UpToDate',
          appId: 'aa'.repeat(20),
          clientCertSha256: 'cc'.repeat(32),
        },
        released: [{ name: 'k256_key', fingerprint: 'ab'.repeat(32), extra: 1 } as never],
      }),
    )
    const [stored] = [...log.rows()]
    assert.deepEqual(recorded, stored)
    assert.equal(
      JSON.stringify(recorded.caller),
      JSON.stringify({
        appId: 'aa'.repeat(20),
        tcbStatus: 'UpToDate',
        clientCertSha256: 'cc'.repeat(32),
      }),
    )
    assert.deepEqual(recorded.released, [{ name: 'k256_key', fingerprint: 'ab'.repeat(32) }])
    log.close()
  })

  it('a row hash is SHA-256 over the length-prefixed UTF-8 columns (pinned)', () => {
    const row = {
      seq: 7,
      time: 1_750_000_000_123,
      rpc: 'GetAppKey',
      decision: 'release',
      reason: 'allowed – ünïcode',
      caller: '{"appId":"ab"}',
      released: '[]',
      prev_hash: '0'.repeat(64),
    }
    const expected = createHash('sha256')
    for (const part of [
      '7',
      '1750000000123',
      row.rpc,
      row.decision,
      row.reason,
      row.caller,
      row.released,
      row.prev_hash,
    ]) {
      const b = Buffer.from(part, 'utf8')
      const len = Buffer.alloc(4)
      len.writeUInt32BE(b.length)
      expected.update(len).update(b)
    }
    assert.equal(auditRowHash(row), expected.digest('hex'))
    // the value rows written by earlier releases were chained with
    assert.equal(
      auditRowHash(row),
      'a9e214ef6a4fcfb3abed009329ece63f33b72d0a92bbc65a7d42380e23ea310f',
    )
  })

  it('concurrent records share one transaction and one fsync and still chain exactly', async () => {
    const log = AuditLog.open(join(tempDir(), 'audit.sqlite3'))
    const before = log.syncs
    // all 20 are recorded before the event loop turns: one transaction, one fsync
    const rows = await Promise.all(Array.from({ length: 20 }, () => log.record(event())))
    assert.equal(log.syncs - before, 1)
    assert.deepEqual(
      rows.map((r) => r.seq),
      Array.from({ length: 20 }, (_, i) => i + 1),
    )
    for (let i = 1; i < rows.length; i++) assert.equal(rows[i]?.prevHash, rows[i - 1]?.rowHash)
    assert.deepEqual(log.verify(), { ok: true, rows: 20 })
    log.close()
    await assert.rejects(log.record(event()), { code: 'KMS_ERR_AUDIT' })
  })

  it('two processes opening a new log at once both get it (the WAL conversion is retried)', async () => {
    // Every main worker opens the log at start. While one converts the new file to WAL it holds
    // the file's write lock, and SQLite failed the other's conversion with SQLITE_BUSY at once,
    // busy timeout or not: that worker died at start and was restarted.
    const path = join(tempDir(), 'audit.sqlite3')
    const holder = await holdSqliteWriteLock(path, 300)
    try {
      const log = AuditLog.open(path)
      assert.equal((await log.record(event())).seq, 1)
      assert.deepEqual(log.verify(), { ok: true, rows: 1 })
      log.close()
      const check = new Database(path, { readonly: true })
      assert.equal(check.pragma('journal_mode', { simple: true }), 'wal')
      check.close()
    } finally {
      holder.stop()
    }
  })

  for (const [what, sql, seq, message] of [
    [
      'an edited reason',
      "UPDATE audit SET reason = 'ok' WHERE seq = 3",
      3,
      'row content was altered',
    ],
    [
      'an edited caller',
      `UPDATE audit SET caller = '{"appId":"00"}' WHERE seq = 2`,
      2,
      'row content was altered',
    ],
    ['a deleted middle row', 'DELETE FROM audit WHERE seq = 3', 4, 'expected row 3'],
    ['a deleted first row', 'DELETE FROM audit WHERE seq = 1', 2, 'expected row 1'],
    [
      'a row relinked to an earlier row',
      'UPDATE audit SET prev_hash = (SELECT prev_hash FROM audit WHERE seq = 2) WHERE seq = 4',
      4,
      'prev_hash does not match the previous row',
    ],
  ] as const) {
    it(`detects ${what}`, async () => {
      const dir = tempDir()
      const path = join(dir, 'audit.sqlite3')
      const log = AuditLog.open(path)
      for (let i = 0; i < 5; i++) await log.record(event())
      log.close()
      const raw = new Database(path)
      raw.exec(sql)
      raw.close()
      const ro = AuditLog.openReadOnly(path)
      const result = ro.verify()
      ro.close()
      assert.equal(result.ok, false)
      assert.deepEqual(result.problem, { seq, message })
      const c = capture()
      assert.equal(await runAudit(['verify', '--db', path], c.io), 1)
      assert.match(c.err(), new RegExp(`row ${seq}: ${message}`))
    })
  }

  it('retention by age drops old rows, keeps the newest, and the chain still verifies', async () => {
    const dir = tempDir()
    let now = 1_000_000
    const log = AuditLog.open(join(dir, 'audit.sqlite3'), {
      now: () => now,
      retention: { maxBytes: 0, maxAgeMs: 60_000 },
    })
    for (let i = 0; i < 10; i++) {
      await log.record(event())
      now += 10_000
    }
    // rows at 1_000_000 … 1_090_000; the last write at 1_090_000 dropped those before 1_030_000
    const seqs = [...log.rows()].map((r) => r.seq)
    assert.deepEqual(seqs, [4, 5, 6, 7, 8, 9, 10])
    assert.deepEqual(log.verify(), { ok: true, rows: 7 })
    now += 3_600_000
    await log.record(event())
    assert.deepEqual(
      [...log.rows()].map((r) => r.seq),
      [11],
    )
    assert.equal(log.verify().ok, true)
    log.close()
  })

  it('retention by size keeps the database under the limit and the chain verifiable', async () => {
    const dir = tempDir()
    const log = AuditLog.open(join(dir, 'audit.sqlite3'), {
      retention: { maxBytes: 64 * 1024, maxAgeMs: null },
    })
    for (let i = 0; i < 300; i++) await log.record(event({ reason: 'x'.repeat(600) }))
    const rows = [...log.rows()]
    assert.ok(rows.length < 200 && rows.length > 20, `kept ${rows.length} rows`)
    assert.equal(rows.at(-1)?.seq, 300)
    assert.equal(log.verify().ok, true)
    log.close()
  })

  it('audit tail filters by app id and time and prints JSON lines', async () => {
    const dir = tempDir()
    const path = join(dir, 'audit.sqlite3')
    let now = Date.parse('2026-01-01T00:00:00Z')
    const log = AuditLog.open(path, { now: () => now })
    const app = 'ab'.repeat(20)
    await log.record(event({ caller: { appId: app } }))
    now += 3_600_000
    await log.record(event())
    await log.record(
      event({ caller: { appId: app }, decision: 'refuse', reason: 'Boot denied: x' }),
    )
    log.close()
    let c = capture()
    assert.equal(
      await runAudit(['tail', '--db', path, '--app-id', `0x${app.toUpperCase()}`], c.io),
      0,
    )
    let lines = c
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.deepEqual(
      lines.map((l) => [l.seq, l.decision]),
      [
        [1, 'release'],
        [3, 'refuse'],
      ],
    )
    assert.equal(lines[0]?.time, '2026-01-01T00:00:00.000Z')
    c = capture()
    assert.equal(await runAudit(['tail', '--db', path, '--since', '2026-01-01T00:30:00Z'], c.io), 0)
    lines = c
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.deepEqual(
      lines.map((l) => l.seq),
      [2, 3],
    )
    c = capture()
    assert.equal(await runAudit(['verify', '--db', path], c.io), 0)
    assert.match(c.out(), /3 rows, chain intact/)
    c = capture()
    assert.equal(await runAudit(['tail', '--db', path, '--app-id', 'zz'], c.io), 2)
    c = capture()
    assert.equal(await runAudit(['tail', '--db', join(dir, 'missing.sqlite3')], c.io), 1)
    assert.match(c.err(), /Failed to open audit log/)
  })
})

describe('key-release decisions are audited (KmsService with real collaborators)', () => {
  const seed = randomBytes(32)
  const verifier = mockPlatformVerifier(seed)
  const logger = pino({ level: 'silent' })
  let allow = true
  let server: Server
  let url: string
  let dir: string
  let cache: CacheDb
  const appId = randomBytes(20)
  const composeHash = randomBytes(32)
  const instanceId = randomBytes(20)
  const verified = async (): Promise<VerifiedAttestation> =>
    verifier.verify(
      decodeVersionedAttestation(
        simulateGuestAttestation({
          seed,
          appId,
          composeHash,
          instanceId,
          reportData: Buffer.alloc(64),
        }),
      ).attestation,
    )

  function service(audit: AuditLog | null): KmsService {
    const config = buildConfig(
      `[core]\ncert_dir = "${join(dir, 'certs')}"\nenforce_self_authorization = false\n[core.image]\ncache_dir = "${join(dir, 'cache')}"\n[core.auth_api]\ntype = "webhook"\n[core.auth_api.webhook]\nurl = "${url}"\ntimeout = "2s"\n[tee]\nbackend = "none"\n`,
      { cwd: dir, fileName: `kms-${randomBytes(4).toString('hex')}.toml` },
    )
    return testKmsService({ config, verifier, cache, logger, audit })
  }

  before(async () => {
    dir = tempDir()
    await bootstrapKeySet(join(dir, 'certs'))
    cache = CacheDb.open(join(dir, 'cache'))
    server = createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        res.setHeader('content-type', 'application/json')
        res.end(
          allow
            ? '{"isAllowed":true,"gatewayAppId":"gw-1","reason":""}'
            : '{"isAllowed":false,"gatewayAppId":"","reason":"not on the list"}',
        )
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const addr = server.address()
    url = `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}`
  })

  after(async () => {
    cache.close()
    await new Promise((resolve) => server.close(resolve))
  })

  it('GetAppKey release and refusal rows carry the verified identity, the cert hash and key fingerprints', async () => {
    const log = AuditLog.open(join(dir, `audit-${randomBytes(4).toString('hex')}.sqlite3`))
    const svc = service(log)
    const v = await verified()
    allow = true
    const vmConfig = `{"os_image_hash":"${'cd'.repeat(32)}"}`
    const keys = await svc.getAppKey(1, vmConfig, v, { clientCertSha256: 'ee'.repeat(32) })
    allow = false
    await assert.rejects(svc.getAppKey(1, vmConfig, v), {
      message: 'App not allowed: Boot denied: not on the list',
    })
    await assert.rejects(svc.getAppKey(1, '', null), {
      message: 'App not allowed: No attestation provided',
    })
    const rows = [...log.rows()]
    assert.equal(rows.length, 3)
    const [release, denied, noAtt] = rows
    assert.equal(release?.rpc, 'GetAppKey')
    assert.equal(release?.decision, 'release')
    assert.deepEqual(release?.caller, {
      appId: appId.toString('hex'),
      instanceId: instanceId.toString('hex'),
      deviceId: sha256Hex(v.report.ppid),
      mrAggregated: release?.caller.mrAggregated,
      composeHash: composeHash.toString('hex'),
      osImageHash: 'cd'.repeat(32),
      tcbStatus: 'UpToDate',
      clientCertSha256: 'ee'.repeat(32),
    })
    assert.match(release?.caller.mrAggregated ?? '', /^[0-9a-f]{64}$/)
    assert.deepEqual(
      release?.released.map((k) => k.name),
      ['disk_crypt_key', 'env_crypt_key', 'k256_key'],
    )
    const fp = Object.fromEntries(release?.released.map((k) => [k.name, k.fingerprint]) ?? [])
    assert.equal(fp.env_crypt_key, sha256Hex(x25519PublicKey(keys.envCryptKey)))
    assert.equal(fp.k256_key, sha256Hex(nobleSecp256k1.publicKeyCompressed(keys.k256Key)))
    // no key bytes anywhere in the row
    const text = JSON.stringify(rows)
    for (const k of [keys.diskCryptKey, keys.envCryptKey, keys.k256Key]) {
      assert.ok(!text.includes(k.toString('hex')))
      assert.ok(!text.includes(k.toString('base64')))
    }
    assert.equal(denied?.decision, 'refuse')
    assert.equal(denied?.reason, 'App not allowed: Boot denied: not on the list')
    assert.equal(denied?.caller.appId, appId.toString('hex'))
    assert.deepEqual(denied?.released, [])
    assert.equal(noAtt?.decision, 'refuse')
    assert.deepEqual(noAtt?.caller, {})
    // the next boot of the app gets its env key fingerprint from the per-app memo: the same
    allow = true
    await svc.getAppKey(1, vmConfig, v)
    const again = [...log.rows()].at(-1)
    assert.equal(again?.released[1]?.fingerprint, fp.env_crypt_key)
    assert.equal(log.verify().ok, true)
    log.close()
  })

  it('every GetAppKey of an app releases the app-wide keys a fresh derivation gives, as buffers of its own', async () => {
    const svc = service(null)
    const v = await verified()
    allow = true
    const vmConfig = `{"os_image_hash":"${'cd'.repeat(32)}"}`
    const certDir = join(dir, 'certs')
    const rootCaKey = P256Key.fromPem(readFileSync(join(certDir, CERT_DIR_FILES.rootCaKey), 'utf8'))
    const envKey = deriveDhSecret(rootCaKey, [appId, 'env-encrypt-key'])
    const k256 = deriveAppK256Key(nobleSecp256k1, readRootK256(certDir), appId)
    const first = await svc.getAppKey(1, vmConfig, v)
    // a caller that wipes what it got must not change what the next boot of the app gets
    first.envCryptKey.fill(0)
    first.k256Key.fill(0)
    first.k256Signature.fill(0)
    for (const keys of [await svc.getAppKey(1, vmConfig, v), await svc.getAppKey(1, vmConfig, v)]) {
      assert.deepEqual(keys.envCryptKey, envKey)
      assert.deepEqual(keys.k256Key, k256.key)
      assert.deepEqual(keys.k256Signature, k256.signature)
    }
  })

  it('GetKmsKey (onboarding source) and SignCert are audited with what they released', async () => {
    const log = AuditLog.open(join(dir, `audit-${randomBytes(4).toString('hex')}.sqlite3`))
    const svc = service(log)
    allow = true
    const kms = await svc.getKmsKey('', await verified())
    const key = P256Key.generate()
    const { attestation } = decodeVersionedAttestation(
      simulateGuestAttestation({
        seed,
        appId,
        composeHash,
        instanceId,
        reportData: toReportData('ratls-cert', key.spkiDer()),
      }),
    )
    assert.ok(attestation.quote.kind === 'dstack-tdx')
    const csr = encodeCsrV1({
      confirm: CSR_CONFIRM,
      pubkey: key.spkiDer(),
      config: csrConfigV1(),
      quote: attestation.quote.quote,
      eventLog: Buffer.from(encodeTdxEventLogJson(attestation.quote.eventLog)),
    })
    const chain = await svc.signCert(1, csr, key.sign(csr), '')
    await assert.rejects(svc.signCert(1, csr, Buffer.alloc(64), ''))
    const [kmsRow, signRow, badSig] = [...log.rows()]
    assert.equal(kmsRow?.rpc, 'GetKmsKey')
    assert.equal(kmsRow?.decision, 'release')
    assert.deepEqual(
      kmsRow?.released.map((k) => k.name),
      ['root-ca.key', 'root-k256.key', 'tmp-ca.key'],
    )
    assert.equal(
      kmsRow?.released[0]?.fingerprint,
      sha256Hex(createPublicKey(kms.caKey).export({ type: 'spki', format: 'der' })),
    )
    assert.ok(!JSON.stringify(kmsRow).includes(kms.k256Key.toString('hex')))
    assert.equal(signRow?.rpc, 'SignCert')
    assert.equal(signRow?.decision, 'release')
    assert.equal(signRow?.caller.appId, appId.toString('hex'))
    const leafDer = Buffer.from(
      (chain[0] ?? '').replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''),
      'base64',
    )
    assert.equal(signRow?.released[0]?.fingerprint, sha256Hex(leafDer))
    assert.equal(badSig?.rpc, 'SignCert')
    assert.equal(badSig?.decision, 'refuse')
    assert.equal(log.verify().ok, true)
    log.close()
  })

  it('a full disk (tmpfs) refuses the release; the KMS keeps refusing until space returns', async () => {
    assert.equal(process.getuid?.(), 0, 'this test mounts a tmpfs and must run as root')
    const mnt = join(dir, 'full')
    mkdirSync(mnt)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt])
    try {
      const log = AuditLog.open(join(mnt, 'audit.sqlite3'))
      const svc = service(log)
      const v = await verified()
      allow = true
      await svc.getAppKey(1, '', v)
      // fill the rest of the file system
      try {
        execFileSync('dd', ['if=/dev/zero', `of=${join(mnt, 'fill')}`, 'bs=64k'], {
          stdio: 'ignore',
        })
      } catch {
        // dd stops with ENOSPC, which is the point
      }
      let refused = 0
      for (let i = 0; i < 50; i++) {
        try {
          await svc.getAppKey(1, '', v)
        } catch (err) {
          assert.match(String((err as Error).message), /Failed to write the key-release audit log/)
          assert.equal((err as { code?: string }).code, 'KMS_ERR_AUDIT')
          refused++
        }
      }
      assert.ok(refused > 0, 'a full disk must refuse at least one release')
      // every row that did get written is a consistent chain
      assert.equal(log.verify().ok, true)
      const released = [...log.rows()].filter((r) => r.decision === 'release').length
      assert.equal(released, 1 + 50 - refused)
      execFileSync('rm', [join(mnt, 'fill')])
      await svc.getAppKey(1, '', v)
      assert.equal(log.verify().ok, true)
      log.close()
    } finally {
      execFileSync('umount', ['-l', mnt])
    }
  })
})
