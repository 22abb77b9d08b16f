// docs/design.md#secp256k1-through-libsecp256k1-or-noble-curves: the libsecp256k1 backend against
// the same contract as @noble/curves, byte-for-byte over thousands of random keys, the same
// refusals, and the `[crypto] backend` selection rules against real builds of the addon: the one in
// build/Release and one built here without libsecp256k1 (the configure probe forced off), as on a
// machine without libsecp256k1-dev.
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, rmSync, symlinkSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createNativeSecp256k1Backend } from '../src/crypto/secp256k1-native.js'
import { selectSecp256k1Backend } from '../src/crypto/secp256k1-select.js'
import {
  SECP256K1_ORDER,
  generateSecp256k1Key,
  keccak256,
  nobleSecp256k1,
  type Secp256k1Backend,
} from '../src/crypto/secp256k1.js'
import { KmsError } from '../src/errors.js'
import { BINDING_PATH_ENV, DEFAULT_BINDING_PATH, loadNativeBinding } from '../src/native/binding.js'
import {
  SECP256K1_STATUS,
  loadNativeSecp256k1,
  probeNativeSecp256k1,
} from '../src/native/secp256k1.js'
import { runSecp256k1Contract } from './helpers/secp256k1-contract.js'
import { tempDir } from './helpers/temp-dir.js'
import { captureLogger } from './helpers/capture-logger.js'

const ROOT = resolve(import.meta.dirname, '..')
const DETECT = join(ROOT, 'scripts', 'detect-secp256k1.mjs')
// The tests run against build/Release, whatever DSTACK_KMS_NATIVE_BINDING says outside.
const BUILT_ENV: NodeJS.ProcessEnv = {}

const nativeBinding = loadNativeSecp256k1(BUILT_ENV)
const native = createNativeSecp256k1Backend(nativeBinding)

runSecp256k1Contract(native)
runSecp256k1Contract(nobleSecp256k1)

const scalar = (v: bigint): Buffer => Buffer.from(v.toString(16).padStart(64, '0'), 'hex')

/** Same outcome from both backends: the same bytes, or the same error code and text. */
function outcome(fn: () => Buffer): string {
  try {
    return `ok ${fn().toString('hex')}`
  } catch (err) {
    assert.ok(err instanceof KmsError, `not a KmsError: ${String(err)}`)
    return `${err.code} ${err.message}`
  }
}

describe('libsecp256k1 and @noble/curves agree', () => {
  it('on 4096 random keys and digests: public keys and signatures byte-identical', () => {
    const recids = new Set<number>()
    for (let i = 0; i < 4096; i++) {
      const sk = generateSecp256k1Key()
      const digest = keccak256(sk, Buffer.from([i & 0xff, i >> 8]))
      assert.deepEqual(native.publicKeyCompressed(sk), nobleSecp256k1.publicKeyCompressed(sk))
      const sig = native.signRecoverable(digest, sk)
      assert.deepEqual(sig, nobleSecp256k1.signRecoverable(digest, sk), `key ${i}`)
      recids.add(sig[64] as number)
    }
    assert.deepEqual([...recids].sort(), [0, 1])
  })

  it('at the edges of the scalar range', () => {
    const digest = keccak256(Buffer.from('edge'))
    for (const v of [1n, 2n, 3n, 1n << 128n, SECP256K1_ORDER >> 1n, SECP256K1_ORDER - 2n]) {
      const sk = scalar(v)
      assert.deepEqual(native.publicKeyCompressed(sk), nobleSecp256k1.publicKeyCompressed(sk))
      assert.deepEqual(
        native.signRecoverable(digest, sk),
        nobleSecp256k1.signRecoverable(digest, sk),
      )
    }
    // digests at and above the order are reduced the same way (no re-hashing)
    const sk = scalar(0x1234n)
    for (const d of [Buffer.alloc(32), Buffer.alloc(32, 0xff), scalar(SECP256K1_ORDER)]) {
      assert.deepEqual(native.signRecoverable(d, sk), nobleSecp256k1.signRecoverable(d, sk))
    }
  })

  it('refuse invalid secrets and digests with the same code and text', () => {
    const digest = keccak256(Buffer.from('refuse'))
    const badKeys = [
      Buffer.alloc(32),
      scalar(SECP256K1_ORDER),
      scalar(SECP256K1_ORDER + 1n),
      Buffer.alloc(32, 0xff),
      Buffer.alloc(31, 1),
      Buffer.alloc(33, 1),
      Buffer.alloc(0),
    ]
    for (const sk of badKeys) {
      const expected = 'KMS_ERR_CRYPTO invalid secp256k1 key'
      assert.equal(
        outcome(() => native.signRecoverable(digest, sk)),
        expected,
      )
      assert.equal(
        outcome(() => nobleSecp256k1.signRecoverable(digest, sk)),
        expected,
      )
      assert.equal(
        outcome(() => native.publicKeyCompressed(sk)),
        expected,
      )
      assert.equal(
        outcome(() => nobleSecp256k1.publicKeyCompressed(sk)),
        expected,
      )
    }
    const sk = scalar(7n)
    for (const d of [Buffer.alloc(31), Buffer.alloc(33), Buffer.alloc(0)]) {
      assert.equal(
        outcome(() => native.signRecoverable(d, sk)),
        outcome(() => nobleSecp256k1.signRecoverable(d, sk)),
      )
    }
  })

  it('accept any Uint8Array view, not only Buffers', () => {
    const backing = new Uint8Array(100)
    backing.set(scalar(0xabcdefn), 10)
    backing.set(keccak256(Buffer.from('view')), 50)
    const sk = backing.subarray(10, 42)
    const digest = backing.subarray(50, 82)
    assert.deepEqual(native.signRecoverable(digest, sk), nobleSecp256k1.signRecoverable(digest, sk))
    assert.deepEqual(native.publicKeyCompressed(sk), nobleSecp256k1.publicKeyCompressed(sk))
  })
})

describe('the native functions themselves', () => {
  it('refuse what TypeScript would have refused, as status codes', () => {
    const out = Buffer.alloc(65)
    const digest = keccak256(Buffer.from('x'))
    for (const sk of [Buffer.alloc(32), scalar(SECP256K1_ORDER), Buffer.alloc(32, 0xff)]) {
      assert.equal(nativeBinding.secp256k1Sign(out, digest, sk), SECP256K1_STATUS.secretRejected)
      assert.equal(
        nativeBinding.secp256k1PublicKey(Buffer.alloc(33), sk),
        SECP256K1_STATUS.secretRejected,
      )
    }
    assert.equal(nativeBinding.secp256k1Sign(out, digest, scalar(5n)), SECP256K1_STATUS.ok)
    assert.deepEqual(out, nobleSecp256k1.signRecoverable(digest, scalar(5n)))
  })

  it('throw TypeError for wrong lengths, types and arity (memory safety)', () => {
    const b = nativeBinding
    const sk = scalar(5n)
    const digest = Buffer.alloc(32, 1)
    assert.throws(() => b.secp256k1Sign(Buffer.alloc(64), digest, sk), {
      name: 'TypeError',
      message: 'out65 must be a Uint8Array of 65 bytes',
    })
    assert.throws(() => b.secp256k1Sign(Buffer.alloc(65), Buffer.alloc(31), sk), {
      name: 'TypeError',
      message: 'digest32 must be a Uint8Array of 32 bytes',
    })
    assert.throws(() => b.secp256k1Sign(Buffer.alloc(65), digest, Buffer.alloc(33)), {
      name: 'TypeError',
      message: 'secret32 must be a Uint8Array of 32 bytes',
    })
    assert.throws(() => b.secp256k1PublicKey(Buffer.alloc(32), sk), {
      name: 'TypeError',
      message: 'out33 must be a Uint8Array of 33 bytes',
    })
    assert.throws(
      () => Reflect.apply(b.secp256k1PublicKey, b, [Buffer.alloc(33), new Uint16Array(16)]),
      { name: 'TypeError', message: 'secret32 must be a Uint8Array of 32 bytes' },
    )
    assert.throws(() => Reflect.apply(b.secp256k1Sign, b, [Buffer.alloc(65), digest]), {
      name: 'TypeError',
      message: 'secp256k1Sign(out65, digest32, secret32) takes 3 arguments',
    })
    assert.throws(() => Reflect.apply(b.secp256k1PublicKey, b, [Buffer.alloc(33), 'key']), {
      name: 'TypeError',
      message: 'secret32 must be a Uint8Array of 32 bytes',
    })
  })
})

describe('[crypto] backend selection with the full build', () => {
  it('auto and native pick libsecp256k1 and log it', () => {
    for (const preference of ['auto', 'native'] as const) {
      const { logger, lines } = captureLogger()
      const backend = selectSecp256k1Backend(preference, logger, BUILT_ENV)
      assert.equal(backend.name, 'libsecp256k1')
      assert.equal(lines.length, 1)
      assert.equal(lines[0]?.msg, 'secp256k1 backend selected')
      assert.equal(lines[0]?.backend, 'native')
      assert.equal(lines[0]?.implementation, 'libsecp256k1')
      assert.equal(lines[0]?.preference, preference)
      assert.equal(lines[0]?.addon, DEFAULT_BINDING_PATH)
      const sk = generateSecp256k1Key()
      const digest = keccak256(sk)
      assert.deepEqual(backend.signRecoverable(digest, sk), native.signRecoverable(digest, sk))
    }
  })

  it('js picks @noble/curves even when the addon could sign', () => {
    const { logger, lines } = captureLogger()
    assert.equal(selectSecp256k1Backend('js', logger, BUILT_ENV), nobleSecp256k1)
    assert.equal(lines[0]?.backend, 'js')
    assert.equal(lines[0]?.implementation, '@noble/curves')
  })

  it('with no addon at all: native fails loudly, auto falls back and says why', () => {
    const dir = tempDir('dstack-kms-secp-none-')
    try {
      const missing = join(dir, 'missing.node')
      const env = { [BINDING_PATH_ENV]: missing }
      const reason = `native addon not found at ${missing} (set by ${BINDING_PATH_ENV})`
      assert.throws(
        () => selectSecp256k1Backend('native', captureLogger().logger, env),
        (err: unknown) =>
          err instanceof KmsError &&
          err.code === 'KMS_ERR_NATIVE' &&
          err.message ===
            `[crypto] backend = "native" but the native secp256k1 backend is unavailable: ${reason}`,
      )
      const { logger, lines } = captureLogger()
      assert.equal(selectSecp256k1Backend('auto', logger, env), nobleSecp256k1)
      assert.equal(lines[0]?.backend, 'js')
      assert.equal(lines[0]?.reason, reason)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('the configure probe', () => {
  it('agrees with the addon that was built, and obeys DSTACK_KMS_SECP256K1', () => {
    const run = (env: NodeJS.ProcessEnv) =>
      spawnSync(process.execPath, [DETECT], {
        env: { PATH: process.env.PATH, ...env },
        encoding: 'utf8',
      })
    const built = loadNativeBinding(BUILT_ENV) as object
    assert.ok('hasSecp256k1' in built && built.hasSecp256k1 === true)
    assert.equal(run({}).stdout, '1')
    const off = run({ DSTACK_KMS_SECP256K1: '0' })
    assert.equal(off.stdout, '0')
    assert.match(off.stderr, /DSTACK_KMS_SECP256K1=0/)
  })

  it('answers 0 with a note when nothing can be compiled against the library', () => {
    const r = spawnSync(process.execPath, [DETECT], {
      env: { PATH: process.env.PATH, CC: 'false' },
      encoding: 'utf8',
    })
    assert.equal(r.status, 0)
    assert.equal(r.stdout, '0')
    assert.match(r.stderr, /install libsecp256k1-dev/)
  })
})

// A real build of the addon with the probe forced off: what `npm ci` produces on a machine
// without libsecp256k1-dev. node-gyp reads the headers location from npm's config like npm does.
describe('an addon built without libsecp256k1', () => {
  let dir = ''
  let stubPath = ''

  before(() => {
    dir = tempDir('dstack-kms-secp-stub-')
    cpSync(join(ROOT, 'binding.gyp'), join(dir, 'binding.gyp'))
    cpSync(join(ROOT, 'native'), join(dir, 'native'), { recursive: true })
    cpSync(join(ROOT, 'scripts'), join(dir, 'scripts'), { recursive: true })
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
    const nodedir =
      process.env.npm_config_nodedir ??
      execFileSync('npm', ['config', 'get', 'nodedir'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const env: NodeJS.ProcessEnv = { ...process.env, DSTACK_KMS_SECP256K1: '0' }
    if (nodedir !== '' && nodedir !== 'undefined') env.npm_config_nodedir = nodedir
    const r = spawnSync(join(ROOT, 'node_modules', '.bin', 'node-gyp'), ['rebuild'], {
      cwd: dir,
      env,
      encoding: 'utf8',
    })
    assert.equal(r.status, 0, `node-gyp rebuild failed:\n${r.stdout}\n${r.stderr}`)
    stubPath = join(dir, 'build', 'Release', 'dstack_kms_native.node')
  })
  after(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true })
  })

  it('loads, keeps its other primitives, says hasSecp256k1 = false and does not link the library', () => {
    const binding = loadNativeBinding({ [BINDING_PATH_ENV]: stubPath }) as object
    assert.ok('flock' in binding && typeof binding.flock === 'function')
    assert.ok('hasSecp256k1' in binding && binding.hasSecp256k1 === false)
    assert.equal('secp256k1Sign' in binding, false)
    assert.doesNotMatch(execFileSync('ldd', [stubPath], { encoding: 'utf8' }), /libsecp256k1/)
    assert.match(execFileSync('ldd', [DEFAULT_BINDING_PATH], { encoding: 'utf8' }), /libsecp256k1/)
  })

  it('native refuses to start, naming the addon and the fix', () => {
    const env = { [BINDING_PATH_ENV]: stubPath }
    const probe = probeNativeSecp256k1(env)
    assert.equal(probe.available, false)
    const reason = `native addon ${stubPath} was built without libsecp256k1; install libsecp256k1-dev, then run \`npm run build:native\``
    assert.throws(() => loadNativeSecp256k1(env), { code: 'KMS_ERR_NATIVE', message: reason })
    assert.throws(() => selectSecp256k1Backend('native', captureLogger().logger, env), {
      code: 'KMS_ERR_NATIVE',
      message: `[crypto] backend = "native" but the native secp256k1 backend is unavailable: ${reason}`,
    })
  })

  it('auto falls back to @noble/curves and logs the reason', () => {
    const { logger, lines } = captureLogger()
    const backend: Secp256k1Backend = selectSecp256k1Backend('auto', logger, {
      [BINDING_PATH_ENV]: stubPath,
    })
    assert.equal(backend, nobleSecp256k1)
    assert.equal(lines.length, 1)
    assert.equal(lines[0]?.backend, 'js')
    assert.equal(lines[0]?.preference, 'auto')
    assert.match(String(lines[0]?.reason), /built without libsecp256k1/)
  })
})
