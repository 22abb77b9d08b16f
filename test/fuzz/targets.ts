// The decoders under fuzz, each with real seed inputs (test vectors and freshly simulated
// attestations, CSRs, certificates and CRLs) and, where a decoder takes text, structure-aware
// generators. A target's `decode` may return or throw a typed error; anything else is a crash.
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import fc from 'fast-check'
import { ZodError } from 'zod'
import { parseCollateralJson } from '../../src/attestation/collateral.js'
import {
  encodeTdxEventLogJson,
  parseCcel,
  parseRuntimeEventLog,
  parseTdxEventLogJson,
} from '../../src/attestation/event-log.js'
import { parseQuote, tdReportOf } from '../../src/attestation/quote.js'
import { checkQuoteStructure } from '../../src/attestation/quote-structure.js'
import { toReportData } from '../../src/attestation/report-data.js'
import {
  decodeVersionedAttestation,
  encodeVersionedAttestation,
} from '../../src/attestation/versioned.js'
import { decodeVmConfig } from '../../src/attestation/vm-config.js'
import { checkBoot } from '../../src/auth-simple/check.js'
import { authSimpleConfigSchema } from '../../src/auth-simple/config.js'
import { QUICKSTART_TOML, loadConfig } from '../../src/config/load.js'
import { P256Key } from '../../src/crypto/p256.js'
import { KmsError } from '../../src/errors.js'
import { Http1ResponseParser } from '../../src/http/http1-response.js'
import { HexError } from '../../src/util/hex.js'
import { decodeJson, encodeJson } from '../../src/prpc/json.js'
import { decodeQuery } from '../../src/prpc/query.js'
import {
  BootstrapRequestType,
  GetAppKeyRequestType,
  KmsKeyResponseType,
  SignCertRequestType,
} from '../../src/prpc/messages.js'
import { decodeMessage, encodeMessage, type MessageType } from '../../src/prpc/schema.js'
import { attestationFromCertificate } from '../../src/ratls/cert-attestation.js'
import {
  CSR_CONFIRM,
  decodeCsrV1,
  decodeCsrV2,
  encodeCsrV1,
  encodeCsrV2,
} from '../../src/ratls/csr.js'
import { mockCollateral } from '../../src/tee/simulator/collateral.js'
import { simulateGuestAttestation } from '../../src/tee/simulator/guest.js'
import { mockIntelPki } from '../../src/tee/simulator/mock-pki.js'
import { RATLS_OID } from '../../src/asn1/oids.js'
import { parseCrl } from '../../src/x509/crl-parse.js'
import { parseCertificate, readRaTlsExtension } from '../../src/x509/parse.js'
import { issueRaTlsClientCert, issueTempCaCert } from '../../src/x509/templates.js'
import { bytesFrom, mutatedFrom } from './mutate.js'
import { MEASUREMENT_TARGETS } from './measurement-targets.js'

export interface FuzzTarget {
  name: string
  /** what the generated inputs look like: seeds mutated, structured text, random bytes */
  arbitrary: fc.Arbitrary<Uint8Array>
  decode(input: Uint8Array): void
  /** errors other than KmsError that are this decoder's documented contract */
  allowed?: (err: unknown) => boolean
}

const ROOT = resolve(import.meta.dirname, '../..')
const VECTORS = join(ROOT, 'test/fixtures/vectors')
const vector = (name: string): Buffer => readFileSync(join(VECTORS, name))

/** Fixed material, so a seed reproduces the same inputs on every run. */
const SEED = Buffer.alloc(32, 7)
const pki = mockIntelPki(SEED)
const ratlsKey = P256Key.fromScalar(Buffer.alloc(32, 9))
const v0Attestation = simulateGuestAttestation({
  seed: SEED,
  reportData: toReportData('ratls-cert', ratlsKey.spkiDer()),
})
const decodedV0 = decodeVersionedAttestation(v0Attestation)
const v1Attestation = encodeVersionedAttestation({ version: 1, attestation: decodedV0.attestation })
const tdxQuote =
  decodedV0.attestation.quote.kind === 'dstack-tdx' ? decodedV0.attestation.quote : null
if (tdxQuote === null) throw new Error('the simulator produced a non-TDX attestation')

const tempCa = issueTempCaCert(P256Key.fromScalar(Buffer.alloc(32, 3)))
const raTlsCert = issueRaTlsClientCert(
  ratlsKey,
  { key: P256Key.fromScalar(Buffer.alloc(32, 3)), subjectDer: tempCa.subjectDer },
  v0Attestation,
)

const csrConfig = {
  orgName: 'org',
  subject: 'app.example.com',
  subjectAltNames: ['app.example.com', 'x.example.com'],
  usageServerAuth: true,
  usageClientAuth: false,
  extQuote: true,
}
const csrV1 = encodeCsrV1({
  confirm: CSR_CONFIRM,
  pubkey: ratlsKey.spkiDer(),
  config: csrConfig,
  quote: tdxQuote.quote,
  eventLog: Buffer.from(encodeTdxEventLogJson(tdxQuote.eventLog)),
})
const csrV2 = encodeCsrV2({
  confirm: CSR_CONFIRM,
  pubkey: ratlsKey.spkiDer(),
  config: { ...csrConfig, extAppInfo: true, notBefore: 1n, notAfter: 4_000_000_000n },
  attestation: v0Attestation,
})

const isKmsError = (err: unknown): boolean => err instanceof KmsError
/** exactly `Error`: a TypeError or RangeError from a decoder is still a crash */
const isPlainError = (err: unknown): boolean =>
  err instanceof Error && Object.getPrototypeOf(err) === Error.prototype

// ---------------------------------------------------------------------------------------------
// text generators

/** Strings that stress JSON readers: every escape form, surrogates, long runs. */
const jsonishString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc
    .array(
      fc.constantFrom(
        '\\n',
        '\\u0000',
        '\\ud800',
        '\\udc00\\ud800',
        '\\"',
        '\\\\',
        '\\/',
        '\\x',
        'é',
      ),
      { maxLength: 64 },
    )
    .map((parts) => parts.join('')),
  fc.constantFrom('0x', 'ff'.repeat(20), 'ZZ', '18446744073709551616', '-1', '1e400'),
)

const jsonValue = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 2, arbitrary: jsonishString },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 53, -0, 1.5, '1', true, null) },
)

function jsonObjectOf(keys: readonly string[]): fc.Arbitrary<Uint8Array> {
  return fc
    .dictionary(fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 8 })), jsonValue, {
      maxKeys: keys.length + 2,
    })
    .map((o) => Buffer.from(JSON.stringify(o)))
}

/** A raw JSON text mutated at the character level (unbalanced brackets, cut escapes). */
const rawJsonEdits = (seeds: readonly string[]): fc.Arbitrary<Uint8Array> =>
  mutatedFrom(seeds.map((s) => Buffer.from(s)))

// ---------------------------------------------------------------------------------------------
// targets

const PRPC_TYPES: readonly MessageType<unknown>[] = [
  GetAppKeyRequestType as MessageType<unknown>,
  SignCertRequestType as MessageType<unknown>,
  KmsKeyResponseType as MessageType<unknown>,
  BootstrapRequestType as MessageType<unknown>,
]

const prpcSamples = {
  getAppKey: { api_version: 1, vm_config: '{"os_image_hash":"aa"}' },
  signCert: { api_version: 2, csr: csrV2, signature: Buffer.alloc(64, 1), vm_config: '' },
  kmsKey: { temp_ca_key: 'pem', keys: [{ ca_key: 'pem', k256_key: Buffer.alloc(32, 2) }] },
  bootstrap: { domain: 'kms.example.com' },
}
const prpcJsonSeeds = [
  encodeJson(GetAppKeyRequestType, prpcSamples.getAppKey as never),
  encodeJson(SignCertRequestType, prpcSamples.signCert as never),
  encodeJson(KmsKeyResponseType, prpcSamples.kmsKey as never),
  encodeJson(BootstrapRequestType, prpcSamples.bootstrap as never),
]
const prpcProtoSeeds = [
  encodeMessage(GetAppKeyRequestType, prpcSamples.getAppKey as never),
  encodeMessage(SignCertRequestType, prpcSamples.signCert as never),
  encodeMessage(KmsKeyResponseType, prpcSamples.kmsKey as never),
  encodeMessage(BootstrapRequestType, prpcSamples.bootstrap as never),
]

function eachType(decode: (t: MessageType<unknown>) => void): void {
  let failure: unknown = null
  for (const t of PRPC_TYPES) {
    try {
      decode(t)
    } catch (err) {
      if (!isKmsError(err)) throw err
      failure = err
    }
  }
  if (failure !== null) throw failure
}

const tomlKeys = ['rpc', 'core', 'tee', 'crypto', 'auth_simple', 'default']
const tomlValue = fc.oneof(
  fc.constantFrom('"1MiB"', '"never"', '"0s"', '-1', '1e9', 'true', '"x"', '[]', '{}', '"24d"'),
  fc.integer().map(String),
  fc.string({ maxLength: 16 }).map((s) => JSON.stringify(s)),
)
const tomlDoc = fc
  .array(
    fc.tuple(
      fc.constantFrom(...tomlKeys),
      fc.array(
        fc.tuple(
          fc.constantFrom(
            'port',
            'address',
            'workers',
            'cert_dir',
            'limits',
            'timeout',
            'log_level',
            'backend',
            'verify',
            'enabled',
            'max_size',
            'max_age',
            'seed',
          ),
          tomlValue,
        ),
        { maxLength: 6 },
      ),
    ),
    { maxLength: 6 },
  )
  .map((tables) =>
    Buffer.from(
      tables
        .map(([t, kvs]) => `[${t}]\n${kvs.map(([k, v]) => `${k} = ${v}`).join('\n')}`)
        .join('\n'),
    ),
  )

/** One temp file reused for every config input, so the fuzz loop does not fill /tmp. */
let tomlFile = ''
function tomlPath(): string {
  if (tomlFile === '') {
    tomlFile = join(
      process.env.FUZZ_TMPDIR ?? '/tmp',
      `dstack-kms-fuzz-${randomBytes(6).toString('hex')}.toml`,
    )
  }
  return tomlFile
}

const AUTH_POLICY_SEED = readFileSync(join(ROOT, 'auth-config.example.json'), 'utf8')
const bootInfoSample = {
  attestationMode: 'dstack-tdx',
  teeVariant: 'dstack-tdx',
  mrAggregated: 'aa'.repeat(32),
  osImageHash: 'bb'.repeat(32),
  mrSystem: 'cc'.repeat(32),
  appId: 'dd'.repeat(20),
  composeHash: 'ee'.repeat(32),
  instanceId: 'ff'.repeat(20),
  deviceId: '11'.repeat(32),
  tcbStatus: 'UpToDate',
  advisoryIds: ['INTEL-SA-00001'],
}

const mixed = (
  seeds: readonly Uint8Array[],
  structured?: fc.Arbitrary<Uint8Array>,
  maxRandom = 2048,
): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    { weight: 6, arbitrary: mutatedFrom(seeds) },
    {
      weight: structured === undefined ? 0 : 3,
      arbitrary: structured ?? fc.constant(new Uint8Array()),
    },
    { weight: 1, arbitrary: bytesFrom(maxRandom) },
  )

const HTTP1_SEEDS = [
  'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"ok":"true"}',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n',
  'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 201 Created\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok',
  'HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\nto the close',
  'HTTP/1.1 204 No Content\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\nHTTP/1.1 200 OK\r\n',
]

/** A status line, a few header lines and a body drawn from pieces that exercise every framing
 * rule (lengths, chunking, interim responses, connection tokens, malformed lines). */
const http1Responses: fc.Arbitrary<Uint8Array> = fc
  .tuple(
    fc.array(
      fc.constantFrom('HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 103 Hints\r\nLink: x\r\n\r\n'),
      {
        maxLength: 2,
      },
    ),
    fc.constantFrom(
      'HTTP/1.1 200 OK',
      'HTTP/1.0 200 OK',
      'HTTP/1.1 204',
      'HTTP/1.1 101 Up',
      'HTTP/1.1 304 X',
      'HTTP/1.1 2000',
    ),
    fc.array(
      fc.constantFrom(
        'Content-Length: 5',
        'Content-Length: 5, 5',
        'Content-Length: 6',
        'Content-Length: 0',
        'Content-Length: -1',
        'Transfer-Encoding: chunked',
        'Transfer-Encoding: gzip',
        'Connection: close',
        'Connection: keep-alive',
        'X-A: \x80\xff',
        ' folded',
        'No-Colon',
        'X:\t',
      ),
      { maxLength: 5 },
    ),
    fc.constantFrom(
      '',
      'hello',
      '5\r\nhello\r\n0\r\n\r\n',
      'ffffffffffffffff\r\n',
      '5\r\nhelloXX',
      'hello extra',
    ),
    fc.constantFrom('\r\n', '\n'),
  )
  .map(([interim, status, lines, body, eol]) =>
    Buffer.from(`${interim.join('')}${[status, ...lines].join(eol)}${eol}${eol}${body}`, 'latin1'),
  )

/** Feeds `pieces` and then the close: the parser's verdict, or its typed error. */
function http1Verdict(pieces: readonly Buffer[]): { verdict: unknown; refusal?: KmsError } {
  const p = new Http1ResponseParser({ maxBodyBytes: 64, maxHeaderBytes: 512 })
  try {
    for (const piece of pieces) p.push(piece)
    p.end()
  } catch (err) {
    if (err instanceof KmsError) return { verdict: 'refused', refusal: err }
    throw err
  }
  return { verdict: { head: p.head, body: p.body().toString('latin1'), reusable: p.reusable } }
}

export const TARGETS: readonly FuzzTarget[] = [
  {
    name: 'http1-response',
    arbitrary: mixed(
      HTTP1_SEEDS.map((s) => Buffer.from(s, 'latin1')),
      http1Responses,
      1024,
    ),
    decode: (input) => {
      // how the bytes arrive must never change the verdict: whole, byte by byte, in two halves
      const bytes = Buffer.from(input)
      const whole = http1Verdict([bytes])
      const split = [
        [...bytes].map((b) => Buffer.from([b])),
        [bytes.subarray(0, bytes.length >> 1), bytes.subarray(bytes.length >> 1)],
      ]
      for (const pieces of split) {
        if (!isDeepStrictEqual(http1Verdict(pieces).verdict, whole.verdict)) {
          throw new Error('the verdict depends on how the bytes are split')
        }
      }
      if (whole.refusal !== undefined) throw whole.refusal
    },
  },
  {
    name: 'prpc-json',
    arbitrary: mixed(
      prpcJsonSeeds.map((s) => Buffer.from(s)),
      fc.oneof(
        jsonObjectOf(['api_version', 'vm_config', 'csr', 'signature', 'keys', 'domain']),
        rawJsonEdits(['{"a":[1,{"b":"\\u00e9"}],"c":-0.0e-1}', '{"vm_config":"\\n\\n\\n"}']),
      ),
    ),
    decode: (input) => eachType((t) => decodeJson(t, input)),
  },
  {
    name: 'prpc-query',
    arbitrary: mixed(
      [Buffer.from('api_version=1&vm_config=%7B%7D'), Buffer.from('domain=a.example&json')],
      fc
        .array(fc.tuple(fc.string({ maxLength: 12 }), fc.string({ maxLength: 24 })), {
          maxLength: 6,
        })
        .map((kvs) => Buffer.from(kvs.map(([k, v]) => `${k}=${v}`).join('&'))),
    ),
    decode: (input) => eachType((t) => decodeQuery(t, Buffer.from(input).toString('latin1'))),
  },
  {
    name: 'prpc-protobuf',
    arbitrary: mixed(prpcProtoSeeds),
    decode: (input) => eachType((t) => decodeMessage(t, input)),
  },
  {
    name: 'attestation-scale',
    arbitrary: mixed([v0Attestation, vector('attestation.bin')]),
    decode: (input) => {
      decodeVersionedAttestation(input)
    },
  },
  {
    name: 'attestation-msgpack',
    arbitrary: mixed([v1Attestation]),
    decode: (input) => {
      decodeVersionedAttestation(input)
    },
  },
  {
    name: 'quote',
    arbitrary: mixed([
      tdxQuote.quote,
      vector('dcap-qvl-tdx_quote'),
      vector('ratls-assets-tdx_quote'),
      vector('dcap-qvl-sgx_quote'),
    ]),
    decode: (input) => {
      const q = parseQuote(input)
      tdReportOf(q)
      checkQuoteStructure(input, q)
    },
  },
  {
    name: 'ccel',
    arbitrary: mixed([vector('ccel.bin')]),
    decode: (input) => {
      parseCcel(input)
    },
  },
  {
    name: 'event-log-json',
    arbitrary: mixed(
      [Buffer.from(encodeTdxEventLogJson(tdxQuote.eventLog))],
      fc
        .array(
          fc.record({
            imr: fc.oneof(fc.nat(4), fc.constant(-1)),
            event_type: fc.nat(),
            digest: fc.oneof(fc.constant('00'.repeat(48)), fc.string({ maxLength: 100 })),
            event: fc.string({ maxLength: 20 }),
            event_payload: fc.oneof(fc.constant(''), fc.string({ maxLength: 40 })),
          }),
          { maxLength: 8 },
        )
        .map((events) => Buffer.from(JSON.stringify(events))),
    ),
    decode: (input) => {
      parseTdxEventLogJson(input)
    },
    // documented contract: plain Errors with serde_json's texts and HexErrors, which every
    // caller wraps in its context
    allowed: (err) => isPlainError(err) || err instanceof HexError,
  },
  {
    name: 'runtime-event-log',
    arbitrary: mixed([
      Buffer.from(
        '{"event_type":134217729,"event":"app-id","digest":"' +
          '00'.repeat(48) +
          '","payload":"' +
          'dd'.repeat(20) +
          '"}\n',
      ),
    ]),
    decode: (input) => {
      parseRuntimeEventLog(input)
    },
  },
  {
    name: 'csr-v1',
    arbitrary: mixed([csrV1]),
    decode: (input) => {
      decodeCsrV1(input)
    },
  },
  {
    name: 'csr-v2',
    arbitrary: mixed([csrV2]),
    decode: (input) => {
      decodeCsrV2(input)
    },
  },
  {
    name: 'x509-certificate',
    arbitrary: mixed([raTlsCert.der, pki.pck.der, pki.pckCa.der, pki.root.der, tempCa.der]),
    decode: (input) => {
      const cert = parseCertificate(input)
      readRaTlsExtension(cert, RATLS_OID.appId)
      readRaTlsExtension(cert, RATLS_OID.appInfo)
      attestationFromCertificate(cert)
    },
  },
  {
    name: 'x509-crl',
    arbitrary: mixed([pki.rootCrl, pki.pckCrl]),
    decode: (input) => {
      parseCrl(input)
    },
  },
  {
    name: 'pccs-collateral-json',
    arbitrary: mixed([
      Buffer.from(JSON.stringify(mockCollateral(pki))),
      readFileSync(join(VECTORS, 'dcap-qvl-tdx_quote_collateral.json')),
    ]),
    decode: (input) => {
      parseCollateralJson(Buffer.from(input).toString('utf8'))
    },
  },
  {
    name: 'toml-config',
    arbitrary: mixed(
      [Buffer.from(QUICKSTART_TOML), readFileSync(join(ROOT, 'kms.toml.example'))],
      tomlDoc,
    ),
    decode: (input) => {
      const file = tomlPath()
      writeFileSync(file, input)
      loadConfig({ configFile: file, cwd: '/', etcFile: '/nonexistent/kms.toml', env: {} })
    },
  },
  {
    name: 'auth-simple-policy',
    arbitrary: mixed(
      [Buffer.from(AUTH_POLICY_SEED)],
      jsonObjectOf([
        'gatewayAppId',
        'osImages',
        'allowedTcbStatuses',
        'allowedAdvisoryIds',
        'kms',
        'apps',
      ]),
    ),
    decode: (input) => {
      // the server logs a parse or schema failure and falls back to deny-all defaults; a parsed
      // policy must then decide on any BootInfo without throwing
      const cfg = authSimpleConfigSchema.parse(JSON.parse(Buffer.from(input).toString('utf8')))
      checkBoot(cfg, bootInfoSample, false)
      checkBoot(cfg, bootInfoSample, true)
    },
    allowed: (err) => err instanceof SyntaxError || err instanceof ZodError,
  },
  {
    name: 'vm-config',
    arbitrary: mixed(
      [
        Buffer.from(`{"os_image_hash":"${'ab'.repeat(32)}","cpu_count":2}`),
        Buffer.from(
          JSON.stringify({ vm_config: JSON.stringify({ os_image_hash: 'cd'.repeat(32) }) }),
        ),
      ],
      jsonObjectOf(['os_image_hash', 'vm_config', 'spec_version', 'cpu_count', 'memory_size']),
    ),
    decode: (input) => {
      const text = Buffer.from(input).toString('utf8')
      decodeVmConfig(text, false)
      decodeVmConfig(text, true)
    },
  },
  ...MEASUREMENT_TARGETS,
]

export function isAllowedError(target: FuzzTarget, err: unknown): boolean {
  return isKmsError(err) || (target.allowed?.(err) ?? false)
}
