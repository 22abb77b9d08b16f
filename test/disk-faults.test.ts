// Faults on disk: a full cert_dir (a small real tmpfs), a read-only one, and damaged files at
// start. Each must end in a clear refusal or a recovery: never a half key set, never a
// regenerated key.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { runOnSmallTmpfs } from './helpers/small-tmpfs.js'

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
