// The import rules of src/, checked by `npm run lint:deps` (part of `npm test`): no circular
// imports, and no import from a layer to one above it. A layer may import any layer below it and
// the other folders of its own layer (without circles). README.md "Source map" describes the
// same layers folder by folder; change both together.

/** Bottom to top. Each entry: the folders (and top-level modules) of src/ in that layer. */
export const LAYERS = [
  // foundation: byte and text helpers, the SCALE codec, DER/PEM/OIDs, atomic files, the native
  // addon, the outbound HTTP client and server options, the error base, paths, version, logger
  [
    'util',
    'codec',
    'asn1',
    'fs',
    'native',
    'http',
    'errors.ts',
    'paths.ts',
    'version.ts',
    'log.ts',
  ],
  // building blocks that know no attestation: key derivation and curves, the configuration
  // (types, defaults, checks), the SQLite cache, the pRPC wire format and message descriptors
  ['crypto', 'config', 'cache', 'prpc'],
  // certificates and CRLs on top of asn1/ and crypto/; admin-listener authentication
  ['x509', 'admin'],
  // quotes, event logs, collateral and the verifier; OS image measurement and verification
  ['attestation', 'image'],
  // RA-TLS certificates carrying attestations; the TEE backends (TDX, simulator) producing them
  ['ratls', 'tee'],
  // what services are built from: the auth webhook and self-authorization, the auth-simple
  // sidecar, the key set on disk
  ['auth', 'auth-simple', 'keys', 'audit'],
  // the services: the KMS and onboarding apps, the guest-side client of the KMS (it shares the
  // service's result type), quick-start material, the shared runtime
  ['kms', 'onboard', 'guest', 'quickstart', 'runtime.ts'],
  // processes: the worker entry point, the supervisor, `serve`
  ['worker.ts', 'supervisor', 'serve.ts'],
  // the command line
  ['commands', 'cli.ts'],
]

const escape = (name) => name.replace(/[.]/g, '\\.')
const pathOf = (names) =>
  `^src/(${names.map((n) => (n.endsWith('.ts') ? escape(n) + '$' : escape(n) + '/')).join('|')})`

const layerRules = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `layer-${i}-imports-up`,
  comment: `${layer.join(', ')} may not import from a higher layer`,
  severity: 'error',
  from: { path: pathOf(layer) },
  to: { path: pathOf(LAYERS.slice(i + 1).flat()) },
}))

const everyModule = LAYERS.flat()

export default {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'import circles make the layers meaningless and the load order fragile',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'in-a-layer',
      comment: 'every folder and top-level module of src/ belongs to a layer in this file',
      severity: 'error',
      from: { path: '^src/', pathNot: pathOf(everyModule) },
      to: {},
    },
    ...layerRules,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
}
