// `[crypto] backend` (docs/design.md#secp256k1-through-libsecp256k1-or-noble-curves): which
// implementation signs with the root k256 key.
//   auto   – libsecp256k1 through the addon when it was built with it, else @noble/curves;
//   native – libsecp256k1 or refuse to start (the addon or the library is missing);
//   js     – @noble/curves.
// Falling back is acceptable here, unlike for attestation
// (docs/design.md#tee-backend-chosen-explicitly-never-a-fallback), because both backends are proven
// byte-identical by the contract tests; a known-answer check at selection guards the running binary
// too, and a mismatch is fatal whatever the preference.
import type { Logger } from 'pino'
import type { CryptoBackendPreference } from '../config/types.js'
import { KmsError } from '../errors.js'
import { probeNativeSecp256k1 } from '../native/secp256k1.js'
import { createNativeSecp256k1Backend } from './secp256k1-native.js'
import { nobleSecp256k1, type Secp256k1Backend } from './secp256k1.js'

export type SelectLogger = Pick<Logger, 'info'>

// A fixed key and digest, the expected bytes computed by @noble/curves at selection time.
const KAT_KEY = Buffer.from(
  'c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721',
  'hex',
)
const KAT_DIGEST = Buffer.from(
  'af2bdbe1aa9b6ec1e2ade1d694f41fc71a831d0268e9891562113d8a62add1bf',
  'hex',
)

function knownAnswerCheck(backend: Secp256k1Backend): void {
  const pub = backend.publicKeyCompressed(KAT_KEY)
  const sig = backend.signRecoverable(KAT_DIGEST, KAT_KEY)
  if (
    !pub.equals(nobleSecp256k1.publicKeyCompressed(KAT_KEY)) ||
    !sig.equals(nobleSecp256k1.signRecoverable(KAT_DIGEST, KAT_KEY))
  ) {
    throw new KmsError(
      'KMS_ERR_NATIVE',
      `secp256k1 backend ${backend.name} disagrees with @noble/curves on the known-answer test`,
    )
  }
}

export function selectSecp256k1Backend(
  preference: CryptoBackendPreference,
  logger: SelectLogger,
  env: NodeJS.ProcessEnv = process.env,
): Secp256k1Backend {
  if (preference === 'js') {
    logger.info(
      { backend: 'js', implementation: '@noble/curves', preference },
      'secp256k1 backend selected',
    )
    return nobleSecp256k1
  }
  const probe = probeNativeSecp256k1(env)
  if (!probe.available) {
    if (preference === 'native') {
      throw new KmsError(
        'KMS_ERR_NATIVE',
        `[crypto] backend = "native" but the native secp256k1 backend is unavailable: ${probe.reason}`,
        { cause: probe.cause },
      )
    }
    logger.info(
      { backend: 'js', implementation: '@noble/curves', preference, reason: probe.reason },
      'secp256k1 backend selected',
    )
    return nobleSecp256k1
  }
  const backend = createNativeSecp256k1Backend(probe.binding)
  knownAnswerCheck(backend)
  logger.info(
    { backend: 'native', implementation: 'libsecp256k1', preference, addon: probe.path },
    'secp256k1 backend selected',
  )
  return backend
}
