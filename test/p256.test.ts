import assert from 'node:assert/strict'
import { createPrivateKey, createPublicKey, generateKeyPairSync, verify } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import { P256Key, P256PublicKey, P256_ORDER, isValidP256Scalar } from '../src/crypto/p256.js'
import { KmsError } from '../src/errors.js'
import { pemEncode } from '../src/asn1/pem.js'
import { type AppKeysFixture, hexBytes, readVectorJson } from './helpers/crypto-vectors.js'

const P256_MODULE = fileURLToPath(new URL('../src/crypto/p256.ts', import.meta.url))

const vectors = readVectorJson<{ derive_dh_secret: { root_pkcs8_der: string } }>('vectors.json')
const appkeys = readVectorJson<AppKeysFixture>('appkeys.json')
const ROOT_DER = hexBytes(vectors.derive_dh_secret.root_pkcs8_der)
// the SPKI of the KMS CA key in appkeys.json
const APPKEYS_SPKI =
  '3059301306072a8648ce3d020106082a8648ce3d0301070342000419b2457dd9b8aa6446d980f136fff7812ecd6c77740eeb0e28b10d56c0c00028a5b6e59dcea307d583bd1f70769e9c116df2bcfb1758a95d8613e7de1c8482c0'

const scalarBytes = (v: bigint): Buffer => Buffer.from(v.toString(16).padStart(64, '0'), 'hex')

function assertKeyError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof KmsError)
    assert.equal(err.code, 'KMS_ERR_KEYS')
    assert.match(err.message, pattern)
    return true
  })
}

describe('P256Key encodings', () => {
  it('round-trips the vector root key PKCS#8 DER byte for byte (138 bytes)', () => {
    const key = P256Key.fromPkcs8Der(ROOT_DER)
    assert.equal(ROOT_DER.length, 138)
    assert.deepEqual(key.pkcs8Der(), ROOT_DER)
    assert.equal(key.scalar.toString('hex'), ROOT_DER.subarray(36, 68).toString('hex'))
    assert.deepEqual(key.publicPoint, ROOT_DER.subarray(73))
    assert.equal(key.publicPoint.length, 65)
    // the PEM form decodes to the same bytes, and OpenSSL agrees on the layout
    assert.deepEqual(P256Key.fromPem(key.pkcs8Pem()).pkcs8Der(), ROOT_DER)
    assert.deepEqual(key.keyObject().export({ format: 'der', type: 'pkcs8' }), ROOT_DER)
  })

  it('loads the appkeys.json key and reproduces its PEM and the spec SPKI', () => {
    const pem = appkeys.key_provider.None.key
    const key = P256Key.fromPem(pem)
    assert.equal(key.spkiDer().toString('hex'), APPKEYS_SPKI)
    assert.equal(key.spkiDer().length, 91)
    assert.equal(key.pkcs8Pem(), pem)
    assert.deepEqual(
      createPublicKey(key.keyObject()).export({ format: 'der', type: 'spki' }),
      key.spkiDer(),
    )
  })

  it('writes PEM with 64-character lines, LF and a trailing newline', () => {
    const pem = P256Key.fromPkcs8Der(ROOT_DER).pkcs8Pem()
    const lines = pem.split('\n')
    assert.equal(lines[0], '-----BEGIN PRIVATE KEY-----')
    assert.equal(lines[1]?.length, 64)
    assert.equal(lines[2]?.length, 64)
    assert.equal(lines[4], '-----END PRIVATE KEY-----')
    assert.equal(lines[5], '')
    assert.ok(!pem.includes('\r'))
    assert.equal(
      pem,
      createPrivateKey({ key: ROOT_DER, format: 'der', type: 'pkcs8' }).export({
        format: 'pem',
        type: 'pkcs8',
      }),
    )
  })

  it('accepts SEC1 EC PRIVATE KEY and CRLF PEMs', () => {
    const key = P256Key.fromPkcs8Der(ROOT_DER)
    const sec1 = key.keyObject().export({ format: 'pem', type: 'sec1' }).toString()
    assert.match(sec1, /BEGIN EC PRIVATE KEY/)
    assert.deepEqual(P256Key.fromPem(sec1).scalar, key.scalar)
    assert.deepEqual(P256Key.fromPem(key.pkcs8Pem().replaceAll('\n', '\r\n')).scalar, key.scalar)
    // text around the block is allowed (RFC 7468 explanatory text)
    assert.deepEqual(P256Key.fromPem('key:\n' + key.pkcs8Pem() + 'end\n').scalar, key.scalar)
  })

  it('rejects PEMs that are not P-256 private keys, with clear errors', () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' })
      .privateKey.export({
        format: 'pem',
        type: 'pkcs8',
      })
      .toString()
    assertKeyError(() => P256Key.fromPem(p384), /not a P-256 key/)
    const ed = generateKeyPairSync('ed25519')
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString()
    assertKeyError(() => P256Key.fromPem(ed), /not an EC key/)
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
      .privateKey.export({
        format: 'pem',
        type: 'pkcs1',
      })
      .toString()
    assertKeyError(() => P256Key.fromPem(rsa), /found PEM labels RSA PRIVATE KEY/)
    const spki = P256Key.fromPkcs8Der(ROOT_DER)
      .publicKeyObject()
      .export({ format: 'pem', type: 'spki' })
      .toString()
    assertKeyError(() => P256Key.fromPem(spki), /PUBLIC KEY/)
    assertKeyError(() => P256Key.fromPem(''), /no PEM block/)
    assertKeyError(() => P256Key.fromPem('garbage'), /no PEM block/)
    assertKeyError(
      () =>
        P256Key.fromPem('-----BEGIN PRIVATE KEY-----\nMIGHAgEA$$$\n-----END PRIVATE KEY-----\n'),
      /invalid base64/,
    )
    assertKeyError(
      () => P256Key.fromPem('-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n'),
      /missing END line/,
    )
    // truncated DER inside a well-formed PEM
    assertKeyError(
      () => P256Key.fromPem(pemEncode('PRIVATE KEY', ROOT_DER.subarray(0, 100))),
      /truncated/,
    )
    // trailing data after the DER
    const trailing = Buffer.concat([ROOT_DER, Buffer.from([0])])
    assertKeyError(() => P256Key.fromPem(pemEncode('PRIVATE KEY', trailing)), /trailing/)
  })

  it('rejects a PKCS#8 whose embedded public key does not match the scalar', () => {
    const other = P256Key.fromScalar(scalarBytes(12345n))
    const forged = Buffer.concat([ROOT_DER.subarray(0, 73), other.publicPoint])
    assertKeyError(() => P256Key.fromPkcs8Der(forged), /does not match/)
  })

  it('rejects a zero or out-of-range scalar inside PKCS#8', () => {
    const zero = Buffer.from(ROOT_DER)
    zero.fill(0, 36, 68)
    assertKeyError(() => P256Key.fromPkcs8Der(zero), /invalid P-256 private scalar/)
  })
})

describe('P256Key scalars, signatures and caching', () => {
  it('accepts [1, n-1] and refuses everything else with KMS_ERR_CRYPTO', () => {
    assert.ok(isValidP256Scalar(scalarBytes(1n)))
    assert.ok(isValidP256Scalar(scalarBytes(P256_ORDER - 1n)))
    const one = P256Key.fromScalar(scalarBytes(1n))
    assert.equal(
      one.publicPoint.toString('hex'),
      '046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296' +
        '4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5',
    )
    for (const bad of [
      scalarBytes(0n),
      scalarBytes(P256_ORDER),
      scalarBytes(P256_ORDER + 1n),
      Buffer.alloc(32, 0xff),
      Buffer.alloc(31, 1),
      Buffer.alloc(33, 1),
    ]) {
      assert.throws(() => P256Key.fromScalar(bad), { code: 'KMS_ERR_CRYPTO' })
    }
  })

  it('signs with ECDSA-SHA256 in DER form, verifiable by node:crypto', () => {
    const key = P256Key.fromPem(appkeys.key_provider.None.key)
    const data = Buffer.from('to be signed')
    const sig = key.sign(data)
    assert.equal(sig[0], 0x30)
    assert.ok(verify('sha256', data, key.publicKeyObject(), sig))
    const spkiKey = createPublicKey({ key: key.spkiDer(), format: 'der', type: 'spki' })
    assert.ok(verify('sha256', data, spkiKey, sig))
    assert.ok(!verify('sha256', Buffer.from('other'), spkiKey, sig))
  })

  it('caches the KeyObject and keeps the scalar out of reach of mutation', () => {
    const input = scalarBytes(42n)
    const key = P256Key.fromScalar(input)
    assert.equal(key.keyObject(), key.keyObject())
    assert.equal(key.publicKeyObject(), key.publicKeyObject())
    input.fill(0)
    assert.deepEqual(key.scalar, scalarBytes(42n))
  })

  it('generates fresh valid keys', () => {
    const a = P256Key.generate()
    const b = P256Key.generate()
    assert.ok(isValidP256Scalar(a.scalar))
    assert.notDeepEqual(a.scalar, b.scalar)
    assert.deepEqual(P256Key.fromPem(a.pkcs8Pem()).publicPoint, a.publicPoint)
  })

  it('generates keys without ever blocking the thread (GC during key generation)', () => {
    // generateKeyPairSync + a JWK export deadlocked Node 20 for good within ~20,000 keys when a
    // garbage collection ran inside the export; a 1 MiB young generation makes collections
    // frequent enough to hit it in a second or two
    const script = `
      import { P256Key, isValidP256Scalar } from ${JSON.stringify(P256_MODULE)}
      const seen = new Set()
      for (let i = 0; i < 40000; i++) {
        const k = P256Key.generate()
        if (!isValidP256Scalar(k.scalar)) throw new Error('invalid scalar')
        if (i < 1000) seen.add(k.scalar.toString('hex'))
      }
      if (seen.size !== 1000) throw new Error('repeated keys')
      process.stdout.write('ok')
    `
    const r = spawnSync(
      process.execPath,
      ['--max-semi-space-size=1', '--import', 'tsx', '--input-type=module', '-e', script],
      { encoding: 'utf8', timeout: 60_000 },
    )
    assert.equal(r.error, undefined, 'the key generation loop did not finish (deadlock?)')
    assert.equal(r.stdout, 'ok', r.stderr)
  })
})

describe('P256PublicKey', () => {
  it('parses the canonical SPKI and refuses off-curve or foreign keys', () => {
    const pub = P256PublicKey.fromSpkiDer(hexBytes(APPKEYS_SPKI))
    assert.equal(pub.spkiDer().toString('hex'), APPKEYS_SPKI)
    const offCurve = hexBytes(APPKEYS_SPKI)
    offCurve[90] = (offCurve[90] as number) ^ 1
    assert.throws(() => P256PublicKey.fromSpkiDer(offCurve), { code: 'KMS_ERR_CRYPTO' })
    const ed = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' })
    assert.throws(() => P256PublicKey.fromSpkiDer(ed), { code: 'KMS_ERR_CRYPTO' })
  })
})
