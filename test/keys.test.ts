import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import pino from 'pino'
import { P256Key } from '../src/crypto/p256.js'
import { nobleSecp256k1, keccak256 } from '../src/crypto/secp256k1.js'
import { KmsError } from '../src/errors.js'
import { writeFileAtomic } from '../src/fs/atomic-write.js'
import { autoBootstrap, bootstrap, type BootstrapDeps } from '../src/keys/bootstrap.js'
import { bootstrapInfoJson, parseBootstrapInfoJson } from '../src/keys/bootstrap-info.js'
import { CERT_DIR_FILES, keysExist, REQUIRED_KEY_FILES } from '../src/keys/cert-dir.js'
import { commitFiles, recoverStaging, STAGING_DIR } from '../src/keys/commit.js'
import { loadStartupKeySet } from '../src/keys/key-set.js'
import { bootstrapKeysReportData, ratlsCertReportData } from '../src/keys/report-data.js'
import { needsRenewal, updateCerts, CA_RENEWAL_WINDOW_MS } from '../src/keys/update-certs.js'
import { NoneBackend } from '../src/tee/backend.js'
import { parseCertificate, readCertUsage } from '../src/x509/parse.js'
import { pemDecode } from '../src/asn1/pem.js'
import { issueRootCaCert, issueTempCaCert } from '../src/x509/templates.js'
import { tempDir } from './helpers/kms-process.js'
import { readVectorJson } from './helpers/crypto-vectors.js'

const silent = pino({ level: 'silent' })

function deps(certDir: string): BootstrapDeps {
  return {
    certDir,
    tee: new NoneBackend(),
    secp256k1: nobleSecp256k1,
    ensureSelfKmsAllowed: async () => {},
  }
}

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const f of readdirSync(dir)) {
    const p = join(dir, f)
    out[f] = statSync(p).isDirectory() ? '<dir>' : readFileSync(p).toString('hex')
  }
  return out
}

describe('atomic writes', () => {
  it('replaces content and applies the mode', () => {
    const dir = tempDir()
    const p = join(dir, 'root-ca.key')
    writeFileAtomic(p, 'one', { mode: 0o600 })
    writeFileAtomic(p, 'two', { mode: 0o600 })
    assert.equal(readFileSync(p, 'utf8'), 'two')
    assert.equal(statSync(p).mode & 0o777, 0o600)
    assert.deepEqual(readdirSync(dir), ['root-ca.key'], 'no temp files left behind')
  })
})

describe('staged commits', () => {
  const files = [
    { name: 'a.key', data: 'A', mode: 0o600 },
    { name: 'b.crt', data: 'B', mode: 0o644 },
  ]

  it('commits all files with their modes', () => {
    const dir = tempDir()
    commitFiles(dir, files)
    assert.equal(readFileSync(join(dir, 'a.key'), 'utf8'), 'A')
    assert.equal(statSync(join(dir, 'a.key')).mode & 0o777, 0o600)
    assert.equal(statSync(join(dir, 'b.crt')).mode & 0o777, 0o644)
    assert.equal(existsSync(join(dir, STAGING_DIR)), false)
  })

  it('discards an unmarked staging directory (crash before the commit point)', () => {
    const dir = tempDir()
    mkdirSync(join(dir, STAGING_DIR))
    writeFileSync(join(dir, STAGING_DIR, 'a.key'), 'A')
    assert.deepEqual(recoverStaging(dir), { action: 'discarded', files: [] })
    assert.deepEqual(readdirSync(dir), [])
  })

  it('rolls a marked staging directory forward (crash after the commit point)', () => {
    const dir = tempDir()
    mkdirSync(join(dir, STAGING_DIR))
    // a.key was already moved before the crash; b.crt was not
    writeFileSync(join(dir, 'a.key'), 'A')
    writeFileSync(join(dir, STAGING_DIR, 'b.crt'), 'B')
    writeFileSync(join(dir, STAGING_DIR, 'COMPLETE'), JSON.stringify(['a.key', 'b.crt']))
    assert.deepEqual(recoverStaging(dir), { action: 'rolled-forward', files: ['b.crt'] })
    assert.deepEqual(readdirSync(dir).sort(), ['a.key', 'b.crt'])
  })

  it('refuses to roll a staged file over a different committed key, and changes nothing', () => {
    const dir = tempDir()
    mkdirSync(join(dir, STAGING_DIR))
    writeFileSync(join(dir, 'root-k256.key'), 'committed')
    writeFileSync(join(dir, STAGING_DIR, 'root-k256.key'), 'intruder')
    writeFileSync(join(dir, STAGING_DIR, 'b.crt'), 'B')
    writeFileSync(join(dir, STAGING_DIR, 'COMPLETE'), JSON.stringify(['root-k256.key', 'b.crt']))
    const before = snapshot(dir)
    const stagedBefore = snapshot(join(dir, STAGING_DIR))
    assert.throws(
      () => recoverStaging(dir),
      (err: unknown) =>
        err instanceof KmsError &&
        err.code === 'KMS_ERR_KEYS' &&
        /refusing to finish the interrupted key commit .*root-k256\.key would replace different committed files/.test(
          err.message,
        ),
    )
    assert.deepEqual(snapshot(dir), before)
    assert.deepEqual(snapshot(join(dir, STAGING_DIR)), stagedBefore)
    assert.equal(readFileSync(join(dir, 'root-k256.key'), 'utf8'), 'committed')
  })

  it('a staged copy identical to the committed file is not moved, and recovery completes', () => {
    const dir = tempDir()
    mkdirSync(join(dir, STAGING_DIR))
    writeFileSync(join(dir, 'a.key'), 'A')
    writeFileSync(join(dir, STAGING_DIR, 'a.key'), 'A')
    writeFileSync(join(dir, STAGING_DIR, 'b.crt'), 'B')
    writeFileSync(join(dir, STAGING_DIR, 'COMPLETE'), JSON.stringify(['a.key', 'b.crt']))
    assert.deepEqual(recoverStaging(dir), { action: 'rolled-forward', files: ['b.crt'] })
    assert.deepEqual(readdirSync(dir).sort(), ['a.key', 'b.crt'])
  })

  it('refuses to report a roll-forward when a committed file has vanished', () => {
    const dir = tempDir()
    mkdirSync(join(dir, STAGING_DIR))
    writeFileSync(join(dir, STAGING_DIR, 'b.crt'), 'B')
    writeFileSync(join(dir, STAGING_DIR, 'COMPLETE'), JSON.stringify(['a.key', 'b.crt']))
    assert.throws(() => recoverStaging(dir), /a\.key missing/)
    assert.equal(existsSync(join(dir, STAGING_DIR, 'COMPLETE')), true, 'evidence kept')
  })

  it('refuses to commit over a pending staging directory', () => {
    const dir = tempDir()
    mkdirSync(join(dir, STAGING_DIR))
    assert.throws(() => commitFiles(dir, files), /interrupted key commit is pending/)
  })

  it('refuses file names that could escape cert_dir', () => {
    const dir = tempDir()
    assert.throws(() => commitFiles(dir, [{ name: '../x', data: '', mode: 0o600 }]), KmsError)
    assert.throws(() => recoverStaging(writeMarker(dir, ['../../etc/passwd'])), KmsError)
  })

  function writeMarker(dir: string, names: string[]): string {
    mkdirSync(join(dir, STAGING_DIR), { recursive: true })
    writeFileSync(join(dir, STAGING_DIR, 'COMPLETE'), JSON.stringify(names))
    return dir
  }

  for (const point of ['commit:staged', 'commit:marked', 'commit:first-renamed']) {
    it(`a SIGKILL at ${point} never leaves a half key set`, () => {
      const dir = tempDir()
      const script = `
        import { commitFiles } from ${JSON.stringify(new URL('../src/keys/commit.ts', import.meta.url).pathname)}
        commitFiles(process.argv[1], ${JSON.stringify(REQUIRED_KEY_FILES.map((name) => ({ name, data: name, mode: 0o600 })))})
      `
      const r = spawnSync(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', script, dir],
        {
          env: { ...process.env, DSTACK_KMS_TEST_CRASH_POINT: point },
        },
      )
      assert.equal(r.signal, 'SIGKILL', `child must die at ${point}: ${r.stderr.toString()}`)
      const before = keysExist(dir)
      const result = recoverStaging(dir)
      if (point === 'commit:staged') {
        assert.equal(before, false)
        assert.equal(result.action, 'discarded')
        assert.equal(keysExist(dir), false)
        assert.deepEqual(readdirSync(dir), [])
      } else {
        assert.equal(before, false, 'before recovery the set is incomplete')
        assert.equal(result.action, 'rolled-forward')
        assert.equal(keysExist(dir), true)
        for (const f of REQUIRED_KEY_FILES) assert.equal(readFileSync(join(dir, f), 'utf8'), f)
      }
      assert.equal(existsSync(join(dir, STAGING_DIR)), false)
    })
  }
})

describe('report data', () => {
  it('RaTlsCert(SPKI) matches the vector for the appkeys.json CA', () => {
    const v = readVectorJson<{
      report_data: Array<{ type?: string; content_hex?: string; report_data?: string }>
    }>('vectors.json')
    const rd = v.report_data.find((r) => r.type === 'ratls-cert')
    assert.ok(rd)
    assert.equal(
      ratlsCertReportData(Buffer.from(rd.content_hex ?? '', 'hex')).toString('hex'),
      rd.report_data,
    )
  })

  it('attest_keys hashes the typo-preserving statement and pads with 32 zero bytes', () => {
    const ca = Buffer.from('3059', 'hex')
    const k = Buffer.from('02ab', 'hex')
    const rd = bootstrapKeysReportData(ca, k)
    assert.equal(rd.length, 64)
    assert.deepEqual(rd.subarray(32), Buffer.alloc(32))
    assert.deepEqual(
      rd.subarray(0, 32),
      keccak256(Buffer.from('dstack-kms-genereted-keys-v1:3059;02ab;')),
    )
  })
})

describe('bootstrap', () => {
  it('writes the whole cert dir with the upstream formats and modes', async () => {
    const dir = tempDir()
    const info = await bootstrap(deps(dir), 'kms.example.com')
    assert.equal(keysExist(dir), true)
    const names = readdirSync(dir).sort()
    assert.deepEqual(names, [...Object.values(CERT_DIR_FILES)].sort())
    for (const f of ['tmp-ca.key', 'root-ca.key', 'rpc.key', 'root-k256.key']) {
      assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f)
    }
    for (const f of ['tmp-ca.key', 'root-ca.key', 'rpc.key']) {
      const pem = readFileSync(join(dir, f), 'utf8')
      assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/)
      assert.equal(pemDecode(pem, 'PRIVATE KEY').length, 138)
    }
    assert.equal(readFileSync(join(dir, 'root-k256.key')).length, 32)
    assert.equal(readFileSync(join(dir, 'rpc-domain'), 'utf8'), 'kms.example.com')
    assert.equal(readFileSync(join(dir, 'bootstrap-info.json'), 'utf8'), bootstrapInfoJson(info))
    assert.match(
      readFileSync(join(dir, 'bootstrap-info.json'), 'utf8'),
      /^\{"ca_pubkey":"3059301306072a8648ce3d020106082a8648ce3d03010703420004[0-9a-f]{128}","k256_pubkey":"0[23][0-9a-f]{64}","attestation":""\}$/,
    )
    const rootKey = P256Key.fromPem(readFileSync(join(dir, 'root-ca.key'), 'utf8'))
    assert.deepEqual(info.caPubkey, rootKey.spkiDer())
    assert.deepEqual(
      info.k256Pubkey,
      nobleSecp256k1.publicKeyCompressed(readFileSync(join(dir, 'root-k256.key'))),
    )
    const rpc = parseCertificate(
      pemDecode(readFileSync(join(dir, 'rpc.crt'), 'utf8'), 'CERTIFICATE'),
    )
    const root = parseCertificate(
      pemDecode(readFileSync(join(dir, 'root-ca.crt'), 'utf8'), 'CERTIFICATE'),
    )
    assert.equal(readCertUsage(rpc), 'kms:rpc')
    assert.deepEqual(rpc.subjectAltNames, ['kms.example.com'])
    assert.deepEqual(rpc.issuerDer, root.subjectDer)
    assert.equal(
      rpc.extensions.has('1.3.6.1.4.1.62397.1.8'),
      false,
      'no attestation with backend none',
    )
  })

  it('bootstrap-info.json round-trips through the BootstrapResponse JSON mapping', () => {
    const info = {
      caPubkey: Buffer.from('3059', 'hex'),
      k256Pubkey: Buffer.from('02ab', 'hex'),
      attestation: Buffer.alloc(0),
    }
    const text = bootstrapInfoJson(info)
    assert.equal(text, '{"ca_pubkey":"3059","k256_pubkey":"02ab","attestation":""}')
    assert.deepEqual(parseBootstrapInfoJson(text), info)
    // upstream would also accept 0x-prefixed hex; garbage is an error (GetMeta then says null)
    assert.deepEqual(
      parseBootstrapInfoJson('{"ca_pubkey":"0x3059","k256_pubkey":"02ab","attestation":""}'),
      info,
    )
    assert.throws(() => parseBootstrapInfoJson('{"ca_pubkey":"zz"}'))
    assert.throws(() => parseBootstrapInfoJson('not json'))
  })

  it('refuses a second bootstrap and leaves every file untouched', async () => {
    const dir = tempDir()
    await bootstrap(deps(dir), 'kms.example.com')
    const before = snapshot(dir)
    await assert.rejects(bootstrap(deps(dir), 'other.example.com'), {
      message: 'KMS has already been bootstrapped',
    })
    assert.deepEqual(snapshot(dir), before)
  })

  it('refuses when only bootstrap-info.json or root-k256.key is present', async () => {
    for (const f of ['bootstrap-info.json', 'root-k256.key', 'root-ca.key']) {
      const dir = tempDir()
      writeFileSync(join(dir, f), 'x')
      await assert.rejects(bootstrap(deps(dir), 'kms.example.com'), {
        message: 'KMS has already been bootstrapped',
      })
      assert.deepEqual(readdirSync(dir), [f])
    }
  })

  it('validates the domain before anything else', async () => {
    const dir = tempDir()
    await assert.rejects(bootstrap(deps(dir), ''), {
      message: 'domain must be a non-empty ASCII DNS name of at most 253 bytes',
    })
    await assert.rejects(bootstrap(deps(dir), 'bad_label.example'), {
      message: 'domain contains an invalid DNS label',
    })
    await assert.rejects(bootstrap(deps(dir), '-x.example'), {
      message: 'domain contains an invalid DNS label',
    })
    assert.deepEqual(readdirSync(dir), [])
  })

  it('reports a self-authorization failure with the upstream context', async () => {
    const dir = tempDir()
    const d = {
      ...deps(dir),
      ensureSelfKmsAllowed: async () => {
        throw new Error('boot denied: nope')
      },
    }
    await assert.rejects(bootstrap(d, 'kms.example.com'), {
      message: 'KMS is not allowed to bootstrap: boot denied: nope',
    })
    assert.deepEqual(readdirSync(dir), [])
  })

  it('auto-bootstrap writes keys but no bootstrap-info.json', async () => {
    const dir = tempDir()
    await autoBootstrap(deps(dir), '10.0.0.1')
    assert.equal(keysExist(dir), true)
    assert.equal(existsSync(join(dir, 'bootstrap-info.json')), false)
    const rpc = parseCertificate(
      pemDecode(readFileSync(join(dir, 'rpc.crt'), 'utf8'), 'CERTIFICATE'),
    )
    assert.deepEqual(rpc.subjectAltNames, ['10.0.0.1'])
  })
})

describe('update_certs', () => {
  it('re-mints the RPC certificate and keeps CA certificates outside the renewal window', async () => {
    const dir = tempDir()
    await bootstrap(deps(dir), 'kms.example.com')
    const before = snapshot(dir)
    await updateCerts({
      certDir: dir,
      autoBootstrapDomain: '',
      tee: new NoneBackend(),
      logger: silent,
    })
    const after = snapshot(dir)
    assert.equal(after['root-ca.crt'], before['root-ca.crt'])
    assert.equal(after['tmp-ca.crt'], before['tmp-ca.crt'])
    assert.notEqual(after['rpc.crt'], before['rpc.crt'])
    for (const f of [
      'root-ca.key',
      'tmp-ca.key',
      'rpc.key',
      'root-k256.key',
      'rpc-domain',
      'bootstrap-info.json',
    ]) {
      assert.equal(after[f], before[f], f)
    }
    const rpc = parseCertificate(
      pemDecode(readFileSync(join(dir, 'rpc.crt'), 'utf8'), 'CERTIFICATE'),
    )
    assert.deepEqual(rpc.subjectAltNames, ['kms.example.com'])
  })

  it('renews CA certificates inside the 365-day window, keeping key, DN and serial', async () => {
    const dir = tempDir()
    await bootstrap(deps(dir), 'kms.example.com')
    const rootKey = P256Key.fromPem(readFileSync(join(dir, 'root-ca.key'), 'utf8'))
    const tmpKey = P256Key.fromPem(readFileSync(join(dir, 'tmp-ca.key'), 'utf8'))
    const soon = new Date(Date.now() + 100 * 24 * 3600 * 1000)
    writeFileSync(join(dir, 'root-ca.crt'), issueRootCaCert(rootKey, soon).pem)
    writeFileSync(join(dir, 'tmp-ca.crt'), issueTempCaCert(tmpKey, soon).pem)
    const old = parseCertificate(
      pemDecode(readFileSync(join(dir, 'root-ca.crt'), 'utf8'), 'CERTIFICATE'),
    )
    await updateCerts({
      certDir: dir,
      autoBootstrapDomain: '',
      tee: new NoneBackend(),
      logger: silent,
    })
    const renewed = parseCertificate(
      pemDecode(readFileSync(join(dir, 'root-ca.crt'), 'utf8'), 'CERTIFICATE'),
    )
    assert.ok(renewed.notAfter.getTime() > soon.getTime())
    assert.deepEqual(renewed.serial, old.serial)
    assert.deepEqual(renewed.subjectDer, old.subjectDer)
    assert.deepEqual(renewed.spkiDer, old.spkiDer)
    const tmp = parseCertificate(
      pemDecode(readFileSync(join(dir, 'tmp-ca.crt'), 'utf8'), 'CERTIFICATE'),
    )
    assert.ok(tmp.notAfter.getTime() > soon.getTime())
  })

  it('the renewal window boundary: 1 s inside renews, 1 s outside does not', () => {
    const now = new Date('2030-01-01T00:00:00Z')
    const at = (ms: number) => ({ notAfter: new Date(ms) }) as Parameters<typeof needsRenewal>[0]
    assert.equal(needsRenewal(at(now.getTime() + CA_RENEWAL_WINDOW_MS - 1000), now), true)
    assert.equal(needsRenewal(at(now.getTime() + CA_RENEWAL_WINDOW_MS + 1000), now), false)
  })

  for (const bad of [
    'evil.example.com\nX-Injected: 1',
    'a.example.com,b.example.com',
    '*.example.com',
    'a..b',
  ]) {
    it(`refuses an rpc-domain that is not a DNS name (${JSON.stringify(bad)}), leaving rpc.crt alone`, async () => {
      const dir = tempDir()
      await bootstrap(deps(dir), 'kms.example.com')
      writeFileSync(join(dir, 'rpc-domain'), bad)
      const before = readFileSync(join(dir, 'rpc.crt'))
      await assert.rejects(
        updateCerts({
          certDir: dir,
          autoBootstrapDomain: '',
          tee: new NoneBackend(),
          logger: silent,
        }),
        (err: unknown) =>
          err instanceof KmsError &&
          err.code === 'KMS_ERR_KEYS' &&
          /the KMS domain in .*rpc-domain is not a DNS name: domain contains an invalid DNS label/.test(
            err.message,
          ),
      )
      assert.deepEqual(readFileSync(join(dir, 'rpc.crt')), before)
    })
  }

  it('uses auto_bootstrap_domain instead of rpc-domain when set', async () => {
    const dir = tempDir()
    await bootstrap(deps(dir), 'kms.example.com')
    await updateCerts({
      certDir: dir,
      autoBootstrapDomain: 'auto.example.com',
      tee: new NoneBackend(),
      logger: silent,
    })
    const rpc = parseCertificate(
      pemDecode(readFileSync(join(dir, 'rpc.crt'), 'utf8'), 'CERTIFICATE'),
    )
    assert.deepEqual(rpc.subjectAltNames, ['auto.example.com'])
  })

  it('works from the key set start-up read, without reading the key files again', async () => {
    const dir = tempDir()
    await bootstrap(deps(dir), 'kms.example.com')
    const keySet = loadStartupKeySet(dir)
    // gone after the start-up check: update_certs must not need them
    for (const f of ['tmp-ca.key', 'root-ca.key', 'rpc.key', 'root-k256.key', 'root-ca.crt']) {
      rmSync(join(dir, f))
    }
    await updateCerts({
      certDir: dir,
      autoBootstrapDomain: '',
      tee: new NoneBackend(),
      logger: silent,
      keySet,
    })
    const rpc = parseCertificate(
      pemDecode(readFileSync(join(dir, 'rpc.crt'), 'utf8'), 'CERTIFICATE'),
    )
    assert.deepEqual(rpc.spkiDer, keySet.keys.rpcKey.spkiDer())
    assert.deepEqual(rpc.issuerDer, keySet.rootCaCert?.subjectDer)
    assert.equal(
      existsSync(join(dir, 'root-ca.crt')),
      false,
      'the certificate read at start is kept',
    )
  })

  it('re-mints CA certificates that do not belong to their keys', async () => {
    const dir = tempDir()
    await bootstrap(deps(dir), 'kms.example.com')
    const rootKey = P256Key.fromPem(readFileSync(join(dir, 'root-ca.key'), 'utf8'))
    const tmpKey = P256Key.fromPem(readFileSync(join(dir, 'tmp-ca.key'), 'utf8'))
    writeFileSync(join(dir, 'root-ca.crt'), issueRootCaCert(P256Key.generate()).pem)
    writeFileSync(join(dir, 'tmp-ca.crt'), issueTempCaCert(P256Key.generate()).pem)
    await updateCerts({
      certDir: dir,
      autoBootstrapDomain: '',
      tee: new NoneBackend(),
      logger: silent,
    })
    const cert = (f: string) =>
      parseCertificate(pemDecode(readFileSync(join(dir, f), 'utf8'), 'CERTIFICATE'))
    assert.deepEqual(cert('root-ca.crt').spkiDer, rootKey.spkiDer())
    assert.deepEqual(cert('tmp-ca.crt').spkiDer, tmpKey.spkiDer())
    assert.deepEqual(cert('rpc.crt').issuerDer, cert('root-ca.crt').subjectDer)
  })
})
