// P-256 key pairs in the exact encodings upstream writes (docs/design.md#cert-dir-files). The
// scalar and public point are kept as bytes so that the canonical PKCS#8/SPKI layouts can be
// rebuilt without OpenSSL (derive_dh_secret hashes the PKCS#8 bytes, so their layout is part of
// the protocol).
import { createECDH, createPrivateKey, createPublicKey, randomBytes, sign } from 'node:crypto'
import type { ECDH, KeyObject } from 'node:crypto'
import { KmsError, errorMessage } from '../errors.js'
import {
  type DerNode,
  TAG,
  derChildren,
  expectTag,
  parseDer,
  readOctetAlignedBitString,
  readOctetString,
  readOid,
  readSmallInteger,
  sequenceOf,
} from '../asn1/der.js'
import { OID } from '../asn1/oids.js'
import { isScalarInRange, orderBytes } from './scalar.js'
import { pemDecodeAll, pemEncode, pemLabels } from '../asn1/pem.js'

/** The P-256 group order n. */
export const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n

const PKCS8_PREFIX = Buffer.from(
  '308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420',
  'hex',
)
const PKCS8_MIDDLE = Buffer.from('a14403420004', 'hex')
const SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex')

const ORDER_BYTES = orderBytes(P256_ORDER)

/** True when `d` is a 32-byte big-endian scalar in [1, n−1]. */
export function isValidP256Scalar(d: Uint8Array): boolean {
  return isScalarInRange(d, ORDER_BYTES)
}

// One ECDH context for deriving public points: creating a context costs as much as the point
// multiplication itself. Calls are synchronous, so no two users can interleave.
let sharedEcdh: ECDH | undefined

function publicPointOf(scalar: Buffer): Buffer {
  sharedEcdh ??= createECDH('prime256v1')
  sharedEcdh.setPrivateKey(scalar)
  return sharedEcdh.getPublicKey()
}

/** A public point alone (e.g. a CSR's key): enough to be the subject of a certificate. */
export class P256PublicKey {
  /** 65 bytes 04‖X‖Y */
  readonly publicPoint: Buffer
  #keyObject: KeyObject | undefined

  private constructor(point: Buffer) {
    this.publicPoint = point
  }

  /** Validates that the point lies on the curve. */
  static fromPoint(point: Uint8Array): P256PublicKey {
    if (point.length !== 65 || point[0] !== 0x04) {
      throw new KmsError('KMS_ERR_CRYPTO', 'P-256 public key must be 65 bytes, uncompressed')
    }
    const copy = Buffer.from(point)
    const key = new P256PublicKey(copy)
    try {
      key.keyObject()
    } catch (err) {
      throw new KmsError('KMS_ERR_CRYPTO', `invalid P-256 public key: ${errorMessage(err)}`)
    }
    return key
  }

  /** Accepts only the canonical 91-byte P-256 SubjectPublicKeyInfo. */
  static fromSpkiDer(spki: Uint8Array): P256PublicKey {
    const buf = Buffer.from(spki)
    if (buf.length !== 91 || !buf.subarray(0, SPKI_PREFIX.length).equals(SPKI_PREFIX)) {
      throw new KmsError('KMS_ERR_CRYPTO', 'not a P-256 SubjectPublicKeyInfo')
    }
    return P256PublicKey.fromPoint(buf.subarray(SPKI_PREFIX.length))
  }

  spkiDer(): Buffer {
    return Buffer.concat([SPKI_PREFIX, this.publicPoint])
  }

  keyObject(): KeyObject {
    this.#keyObject ??= createPublicKey({ key: this.spkiDer(), format: 'der', type: 'spki' })
    return this.#keyObject
  }
}

export class P256Key {
  /** 32 bytes, big-endian */
  readonly scalar: Buffer
  /** 65 bytes 04‖X‖Y */
  readonly publicPoint: Buffer
  #keyObject: KeyObject | undefined
  #publicKeyObject: KeyObject | undefined

  private constructor(scalar: Buffer, publicPoint: Buffer) {
    this.scalar = scalar
    this.publicPoint = publicPoint
  }

  /** A new key from the CSRNG: 32 random bytes, drawn again until they are a scalar in
   * [1, n−1] (a retry has a chance of about 2⁻³², so the result is uniform). Not
   * `generateKeyPairSync` + a JWK export: on Node 20 that pair can deadlock the thread for good
   * when a garbage collection inside the export frees the job that generated the key, whose
   * destructor waits for the lock the export holds (seen in the bench; reproduced in
   * test/p256.test.ts). */
  static generate(): P256Key {
    for (;;) {
      const d = randomBytes(32)
      if (isValidP256Scalar(d)) return new P256Key(d, publicPointOf(d))
    }
  }

  static fromScalar(d: Uint8Array): P256Key {
    if (!isValidP256Scalar(d)) {
      throw new KmsError('KMS_ERR_CRYPTO', 'invalid P-256 private scalar')
    }
    const scalar = Buffer.from(d)
    return new P256Key(scalar, publicPointOf(scalar))
  }

  /** PKCS#8 `PRIVATE KEY` (what upstream writes) or SEC1 `EC PRIVATE KEY`, P-256 only. An
   * embedded public key must match the scalar (ring refuses mismatches too). */
  static fromPem(pem: string): P256Key {
    let labels: string[]
    try {
      labels = pemLabels(pem)
    } catch (err) {
      throw new KmsError('KMS_ERR_KEYS', `invalid private key PEM: ${errorMessage(err)}`)
    }
    if (labels.includes('PRIVATE KEY')) {
      const der = pemDecodeAll(pem, 'PRIVATE KEY')[0] ?? Buffer.alloc(0)
      return P256Key.fromPkcs8Der(der)
    }
    if (labels.includes('EC PRIVATE KEY')) {
      const der = pemDecodeAll(pem, 'EC PRIVATE KEY')[0] ?? Buffer.alloc(0)
      return wrapKeyError(() => parseEcPrivateKey(parseDer(der), true))
    }
    const found = labels.length === 0 ? 'no PEM block' : `PEM labels ${labels.join(', ')}`
    throw new KmsError(
      'KMS_ERR_KEYS',
      `invalid private key PEM: expected PRIVATE KEY or EC PRIVATE KEY, found ${found}`,
    )
  }

  static fromPkcs8Der(der: Uint8Array): P256Key {
    return wrapKeyError(() => {
      const parts = sequenceOf(parseDer(der), 'PrivateKeyInfo', 3, 5)
      const version = readSmallInteger(parts[0], 'PrivateKeyInfo version')
      if (version !== 0 && version !== 1) throw new Error(`unsupported version ${version}`)
      checkEcAlgorithm(parts[1])
      const inner = readOctetString(parts[2], 'privateKey')
      for (const extra of parts.slice(3)) {
        // [0] attributes, [1] publicKey (PKCS#8 v2); both carry nothing we need
        if (extra.tag !== 0xa0 && extra.tag !== 0x81 && extra.tag !== 0xa1) {
          throw new Error('unexpected element in PrivateKeyInfo')
        }
      }
      return parseEcPrivateKey(parseDer(inner), false)
    })
  }

  /** The 138-byte PKCS#8 layout of upstream's P-256 keys (hashed by derive_dh_secret). */
  pkcs8Der(): Buffer {
    return Buffer.concat([PKCS8_PREFIX, this.scalar, PKCS8_MIDDLE, this.publicPoint.subarray(1)])
  }

  pkcs8Pem(): string {
    return pemEncode('PRIVATE KEY', this.pkcs8Der())
  }

  /** 91-byte SubjectPublicKeyInfo. */
  spkiDer(): Buffer {
    return Buffer.concat([SPKI_PREFIX, this.publicPoint])
  }

  keyObject(): KeyObject {
    this.#keyObject ??= createPrivateKey({ key: this.pkcs8Der(), format: 'der', type: 'pkcs8' })
    return this.#keyObject
  }

  publicKeyObject(): KeyObject {
    this.#publicKeyObject ??= createPublicKey(this.keyObject())
    return this.#publicKeyObject
  }

  publicKey(): P256PublicKey {
    return P256PublicKey.fromPoint(this.publicPoint)
  }

  /** ECDSA-SHA256 with a random nonce; DER `Ecdsa-Sig-Value`. */
  sign(data: Uint8Array): Buffer {
    return sign('sha256', data, this.keyObject())
  }
}

function wrapKeyError(fn: () => P256Key): P256Key {
  try {
    return fn()
  } catch (err) {
    throw new KmsError('KMS_ERR_KEYS', `invalid P-256 private key: ${errorMessage(err)}`, {
      cause: err,
    })
  }
}

function checkEcAlgorithm(node: DerNode | undefined): void {
  const alg = sequenceOf(node, 'privateKeyAlgorithm', 1, 2)
  const algOid = readOid(alg[0], 'algorithm')
  if (algOid !== OID.ecPublicKey) throw new Error(`not an EC key (algorithm ${algOid})`)
  const curve = alg[1] === undefined ? undefined : readOid(alg[1], 'namedCurve')
  if (curve !== OID.prime256v1) throw new Error(`not a P-256 key (curve ${curve ?? 'missing'})`)
}

/** RFC 5915 ECPrivateKey. `standalone` (SEC1 PEM) requires the curve parameters, which PKCS#8
 * carries in its AlgorithmIdentifier instead. */
function parseEcPrivateKey(node: DerNode, standalone: boolean): P256Key {
  const parts = sequenceOf(node, 'ECPrivateKey', 2, 4)
  if (readSmallInteger(parts[0], 'ECPrivateKey version') !== 1) {
    throw new Error('ECPrivateKey version must be 1')
  }
  const d = readOctetString(parts[1], 'privateKey')
  if (d.length !== 32) throw new Error(`private scalar must be 32 bytes, got ${d.length}`)
  let curve: string | undefined
  let embeddedPoint: Buffer | undefined
  let lastTag = 0
  for (const extra of parts.slice(2)) {
    if (extra.tag <= lastTag) throw new Error('ECPrivateKey fields out of order')
    lastTag = extra.tag
    if (extra.tag === 0xa0) {
      const inner = derChildren(extra)
      if (inner.length !== 1) throw new Error('invalid ECPrivateKey parameters')
      curve = readOid(expectTag(inner[0], TAG.OID, 'namedCurve'), 'namedCurve')
    } else if (extra.tag === 0xa1) {
      const inner = derChildren(extra)
      if (inner.length !== 1) throw new Error('invalid ECPrivateKey publicKey')
      embeddedPoint = readOctetAlignedBitString(inner[0], 'publicKey')
    } else {
      throw new Error('unexpected element in ECPrivateKey')
    }
  }
  if (curve !== undefined && curve !== OID.prime256v1) throw new Error(`not a P-256 key (${curve})`)
  if (standalone && curve === undefined) throw new Error('EC PRIVATE KEY without named curve')
  const key = P256Key.fromScalar(d)
  if (embeddedPoint !== undefined && !embeddedPoint.equals(key.publicPoint)) {
    throw new Error('embedded public key does not match the private scalar')
  }
  return key
}
