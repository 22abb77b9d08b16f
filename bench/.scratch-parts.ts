import { createECDH, createHash, hkdfSync, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto'
import { deriveDhSecret, deriveKey, deriveP256Key } from '../src/crypto/kdf.js'
import { P256Key, isValidP256Scalar } from '../src/crypto/p256.js'
import { x25519PublicKey } from '../src/crypto/x25519.js'
import { keccak256 } from '../src/crypto/secp256k1.js'
import { EnvPubKeyProvider } from '../src/kms/env-pubkey.js'
import { nativeBackendOrReason } from './secp256k1.js'
import { measure } from './micro.js'
const o = { warmupMs: 300, roundMs: 200, rounds: 5 }
const root = P256Key.fromScalar(Buffer.alloc(32, 0x11))
const appId = randomBytes(20)
const ikm = root.scalar
const salt = Buffer.from('RATLS')
const info = Buffer.concat([appId, Buffer.from('env-encrypt-key')])
const okm = deriveKey(root.scalar, [appId, 'env-encrypt-key'])
const shared = createECDH('prime256v1')
const secret = deriveDhSecret(root, [appId, 'env-encrypt-key'])
const native = nativeBackendOrReason()
if (typeof native === 'string') throw new Error(native)
let n = 0
const prov = new EnvPubKeyProvider({ rootCaKey: root, rootK256Key: Buffer.alloc(32, 0x33), secp256k1: native })
const ids = Array.from({ length: 1 << 16 }, () => randomBytes(20))
const cases: [string, () => unknown][] = [
  ['hkdfSync', () => hkdfSync('sha256', ikm, salt, info, 32)],
  ['deriveKey', () => deriveKey(root.scalar, [appId, 'env-encrypt-key'])],
  ['isValidP256Scalar', () => isValidP256Scalar(okm)],
  ['createECDH+set+get', () => { const e = createECDH('prime256v1'); e.setPrivateKey(okm); return e.getPublicKey() }],
  ['shared ECDH set+get', () => { shared.setPrivateKey(okm); return shared.getPublicKey() }],
  ['P256Key.fromScalar', () => P256Key.fromScalar(okm)],
  ['deriveP256Key', () => deriveP256Key(root, [appId, 'env-encrypt-key'])],
  ['sha256(pkcs8)', () => createHash('sha256').update(root.pkcs8Der()).digest()],
  ['deriveDhSecret', () => deriveDhSecret(root, [appId, 'env-encrypt-key'])],
  ['x25519PublicKey', () => x25519PublicKey(secret)],
  ['x25519 jwk import only', () => createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: secret.toString('base64url'), x: '' }, format: 'jwk' })],
  ['x25519 der import', () => createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420','hex'), secret]), format: 'der', type: 'pkcs8' })],
  ['keccak256', () => keccak256(info, secret, secret)],
  ['native sign', () => native.signRecoverable(secret, Buffer.alloc(32, 0x33))],
  ['provider distinct', () => prov.get(ids[n++ & 0xffff]!)],
]
for (const [name, fn] of cases) { const r = measure(name, fn, o); console.log(name.padEnd(28), r.usPerOp.toFixed(2), 'µs', r.spreadPct.toFixed(0)+'%') }
