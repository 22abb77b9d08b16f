// Protobuf and JSON codecs of the pRPC layer against the upstream vectors and
// upstream's (prost / serde_json / hex crate) error texts.
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { describe, it } from 'node:test'
import { KmsError } from '../src/errors.js'
import { EMPTY_JSON, decodeJson, encodeJson } from '../src/prpc/json.js'
import { decodeQuery } from '../src/prpc/query.js'
import * as messages from '../src/prpc/messages.js'
import {
  AdminClearImageCacheRequestType,
  AppIdType,
  AppKeyResponseType,
  AttestationInfoResponseType,
  BootstrapRequestType,
  BootstrapResponseType,
  ClearImageCacheRequestType,
  GetAppKeyRequestType,
  GetKmsKeyRequestType,
  GetMetaResponseType,
  GetTempCaCertResponseType,
  KmsKeyResponseType,
  KmsKeysType,
  InspectSourceRequestType,
  InspectSourceResponseType,
  OnboardRequestType,
  OnboardResponseType,
  ProtoErrorType,
  PublicKeyResponseType,
  SignCertRequestType,
  SignCertResponseType,
  type GetMetaResponse,
} from '../src/prpc/messages.js'
import { contentTypeEssence, jsonQueryFlag, wantsJson } from '../src/prpc/negotiate.js'
import {
  decodeMessage,
  encodeMessage,
  type FieldDescriptor,
  type MessageType,
} from '../src/prpc/schema.js'
import { readVectorJson } from './helpers/crypto-vectors.js'

const hex = (h: string): Buffer => Buffer.from(h, 'hex')
const fill = (byte: number, n: number): Buffer => Buffer.alloc(n, byte)
const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8')

function kmsErrorMessage(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof KmsError, `expected a KmsError, got ${String(err)}`)
    assert.equal(err.code, 'KMS_ERR_BAD_REQUEST')
    return err.message
  }
  assert.fail('expected an error')
}

// ---- vector values → messages

function vectorValue(f: FieldDescriptor, v: unknown): unknown {
  if (v === null) return null
  if (f.label === 'repeated') {
    assert.ok(Array.isArray(v))
    return v.map((el: unknown) => vectorValue({ ...f, label: 'implicit' }, el))
  }
  switch (f.type) {
    case 'bytes':
      assert.equal(typeof v, 'string')
      return hex(String(v))
    case 'uint64':
      return BigInt(Number(v))
    case 'message':
      assert.ok(f.message !== null && typeof v === 'object')
      return fromVector(f.message, v)
    default:
      return v
  }
}

function fromVector<T>(type: MessageType<T>, value: object): T {
  const out = type.create()
  for (const [key, v] of Object.entries(value)) {
    const f = type.fields.find((x) => x.name === key)
    assert.ok(f !== undefined, `${type.name} has no field ${key}`)
    Reflect.set(out as object, key, vectorValue(f, v))
  }
  return out
}

const TYPES_BY_EXPORT_NAME = new Map<string, MessageType<unknown>>([
  ['GetAppKeyRequest', GetAppKeyRequestType],
  ['AppId', AppIdType],
  ['PublicKeyResponse', PublicKeyResponseType],
  ['AppKeyResponse', AppKeyResponseType],
  ['BootstrapResponse', BootstrapResponseType],
  ['GetMetaResponse', GetMetaResponseType],
  ['GetKmsKeyRequest', GetKmsKeyRequestType],
  ['KmsKeys', KmsKeysType],
  ['KmsKeyResponse', KmsKeyResponseType],
  ['GetTempCaCertResponse', GetTempCaCertResponseType],
  ['SignCertRequest', SignCertRequestType],
  ['SignCertResponse', SignCertResponseType],
  ['ClearImageCacheRequest', ClearImageCacheRequestType],
  ['AdminClearImageCacheRequest', AdminClearImageCacheRequestType],
  ['BootstrapRequest', BootstrapRequestType],
  ['OnboardRequest', OnboardRequestType],
  ['OnboardResponse', OnboardResponseType],
  ['InspectSourceRequest', InspectSourceRequestType],
  ['InspectSourceResponse', InspectSourceResponseType],
  ['AttestationInfoResponse', AttestationInfoResponseType],
  ['ProtoError', ProtoErrorType],
])

/** "ClearImageCacheRequest (KMS service, …)" → the descriptor exported for that name */
function typeForVector(label: string): MessageType<unknown> {
  const type = TYPES_BY_EXPORT_NAME.get(label.split(' ')[0] ?? '')
  assert.ok(type !== undefined, label)
  return type
}

interface ProtobufCase {
  message: string
  value: object
  hex: string
}

function loadProtobufCases(): ProtobufCase[] {
  const all: unknown = readVectorJson<unknown>('vectors.json')
  assert.ok(typeof all === 'object' && all !== null && 'protobuf' in all)
  const pb: unknown = all.protobuf
  assert.ok(typeof pb === 'object' && pb !== null && 'cases' in pb && Array.isArray(pb.cases))
  return pb.cases.map((c: unknown): ProtobufCase => {
    assert.ok(typeof c === 'object' && c !== null)
    const message: unknown = Reflect.get(c, 'message')
    const value: unknown = Reflect.get(c, 'value')
    const h: unknown = Reflect.get(c, 'hex')
    assert.ok(typeof message === 'string' && typeof h === 'string')
    assert.ok(typeof value === 'object' && value !== null)
    return { message, value, hex: h }
  })
}

describe('protobuf vectors (vectors.json)', () => {
  const cases = loadProtobufCases()

  it('has the expected cases', () => {
    assert.equal(cases.length, 10)
  })

  for (const c of cases) {
    it(`encodes and decodes ${c.message}`, () => {
      const type = typeForVector(c.message)
      const value = fromVector(type, c.value)
      assert.equal(encodeMessage(type, value).toString('hex'), c.hex)
      assert.deepStrictEqual(decodeMessage(type, hex(c.hex)), value)
    })
  }
})

describe('protobuf vectors', () => {
  const table: Array<[string, MessageType<unknown>, unknown, string]> = [
    ['GetAppKeyRequest', GetAppKeyRequestType, { api_version: 1, vm_config: '{}' }, '080112027b7d'],
    ['AppId', AppIdType, { app_id: fill(0, 20) }, '0a14' + '00'.repeat(20)],
    [
      'PublicKeyResponse',
      PublicKeyResponseType,
      {
        public_key: fill(0x11, 32),
        signature: fill(0x22, 65),
        timestamp: 1739290000n,
        signature_v1: fill(0x33, 65),
      },
      '0a20' +
        '11'.repeat(32) +
        '1241' +
        '22'.repeat(65) +
        '1890ebadbd06' +
        '2241' +
        '33'.repeat(65),
    ],
    [
      'GetMetaResponse',
      GetMetaResponseType,
      {
        ...GetMetaResponseType.create(),
        ca_cert: 'X',
        allow_any_upgrade: true,
        k256_pubkey: Buffer.concat([hex('02'), fill(0, 32)]),
        is_dev: true,
        gateway_app_id: 'any',
      },
      '0a0158' + '1001' + '1a21' + '02' + '00'.repeat(32) + '2801' + '3203616e79',
    ],
    [
      'ClearImageCacheRequest t/all',
      ClearImageCacheRequestType,
      { token: 't', image_hash: 'all', config_hash: '' },
      '0a0174' + '1203616c6c',
    ],
    [
      'ClearImageCacheRequest full',
      ClearImageCacheRequestType,
      { token: 'my-secret-admin-token', image_hash: 'all', config_hash: 'all' },
      '0a156d792d7365637265742d61646d696e2d746f6b656e' + '1203616c6c' + '1a03616c6c',
    ],
    [
      'AdminClearImageCacheRequest',
      AdminClearImageCacheRequestType,
      { image_hash: 'all', config_hash: '' },
      '0a03616c6c',
    ],
    [
      'ProtoError',
      ProtoErrorType,
      { message: 'Service not found: Foo' },
      '0a1653657276696365206e6f7420666f756e643a20466f6f',
    ],
    [
      'GetMetaResponse chain_id = Some(0)',
      GetMetaResponseType,
      { ...GetMetaResponseType.create(), chain_id: 0n },
      '4000',
    ],
    [
      'GetMetaResponse bootstrap_info = Some(empty)',
      GetMetaResponseType,
      { ...GetMetaResponseType.create(), bootstrap_info: BootstrapResponseType.create() },
      '2200',
    ],
  ]
  for (const [label, type, value, h] of table) {
    it(label, () => {
      assert.equal(encodeMessage(type, value).toString('hex'), h)
      assert.deepStrictEqual(decodeMessage(type, hex(h)), value)
    })
  }

  it('PublicKeyResponse encodes to 174 bytes', () => {
    const v = {
      public_key: fill(0x11, 32),
      signature: fill(0x22, 65),
      timestamp: 1739290000n,
      signature_v1: fill(0x33, 65),
    }
    assert.equal(encodeMessage(PublicKeyResponseType, v).length, 174)
  })

  it('the two ClearImageCache layouts are wire-incompatible', () => {
    // an upstream-HEAD admin body read with the KMS layout puts image_hash into token
    const v = decodeMessage(ClearImageCacheRequestType, hex('0a03616c6c'))
    assert.deepStrictEqual(v, { token: 'all', image_hash: '', config_hash: '' })
  })
})

describe('protobuf encoding rules', () => {
  it('omits implicit defaults and encodes all-default messages as empty', () => {
    assert.equal(encodeMessage(GetAppKeyRequestType, { api_version: 0, vm_config: '' }).length, 0)
    assert.equal(encodeMessage(GetMetaResponseType, GetMetaResponseType.create()).length, 0)
    assert.equal(
      encodeMessage(PublicKeyResponseType, PublicKeyResponseType.create()).toString('hex'),
      '',
    )
  })

  it('emits optional fields when set even to the default', () => {
    const v: GetMetaResponse = {
      ...GetMetaResponseType.create(),
      gateway_app_id: '',
      kms_contract_address: '',
      chain_id: 0n,
      app_auth_implementation: '',
    }
    assert.equal(encodeMessage(GetMetaResponseType, v).toString('hex'), '32003a0040004a00')
  })

  it('writes fields in ascending tag order and repeated elements in order', () => {
    const v = { certificate_chain: ['a', '', 'b'] }
    assert.equal(encodeMessage(SignCertResponseType, v).toString('hex'), '0a01610a000a0162')
    const keys = {
      temp_ca_key: 'k',
      keys: [
        { ca_key: 'c', k256_key: hex('01') },
        { ca_key: '', k256_key: Buffer.alloc(0) },
      ],
    }
    assert.equal(
      encodeMessage(KmsKeyResponseType, keys).toString('hex'),
      '0a016b' + '1206' + '0a0163120101' + '1200',
    )
  })

  it('encodes multi-byte varints and u64 maximum', () => {
    const max = { ...GetMetaResponseType.create(), chain_id: 0xffffffffffffffffn }
    assert.equal(encodeMessage(GetMetaResponseType, max).toString('hex'), '40ffffffffffffffffff01')
    const big = { api_version: 0xffffffff, vm_config: '' }
    assert.equal(encodeMessage(GetAppKeyRequestType, big).toString('hex'), '08ffffffff0f')
  })

  it('refuses values outside the value model', () => {
    const bad = { api_version: -1, vm_config: '' }
    assert.throws(
      () => encodeMessage(GetAppKeyRequestType, bad),
      /cannot encode GetAppKeyRequest\.api_version/,
    )
    const wrong: unknown = {
      public_key: 'aa',
      signature: Buffer.alloc(0),
      timestamp: 0n,
      signature_v1: Buffer.alloc(0),
    }
    assert.throws(
      () => encodeMessage(PublicKeyResponseType, wrong as messages.PublicKeyResponse),
      /cannot encode PublicKeyResponse\.public_key: expected a Buffer/,
    )
  })
})

describe('protobuf decoding rules (prost)', () => {
  it('decodes an empty body to all defaults', () => {
    assert.deepStrictEqual(decodeMessage(GetAppKeyRequestType, Buffer.alloc(0)), {
      api_version: 0,
      vm_config: '',
    })
  })

  it('skips unknown fields of every wire type, including groups', () => {
    const body = hex(
      '2801' + // field 5 varint
        '31' +
        '0102030405060708' + // field 6 fixed64
        '3d' +
        '01020304' + // field 7 fixed32
        '4203616263' + // field 8 length-delimited
        '4b' +
        '0801' +
        '4c' + // field 9 group containing field 1 varint
        '0801' +
        '12027b7d',
    )
    assert.deepStrictEqual(decodeMessage(GetAppKeyRequestType, body), {
      api_version: 1,
      vm_config: '{}',
    })
  })

  it('takes the last occurrence of a scalar and merges repeated messages', () => {
    assert.deepStrictEqual(
      decodeMessage(GetAppKeyRequestType, hex('08011201610802120162' + '0808')),
      {
        api_version: 8,
        vm_config: 'b',
      },
    )
    const meta = decodeMessage(GetMetaResponseType, hex('22030a01ff'))
    assert.deepStrictEqual(meta.bootstrap_info?.ca_pubkey, hex('ff'))
    // a second occurrence of a singular message field merges into the first
    const merged = decodeMessage(GetMetaResponseType, hex('22030a01aa' + '22031201bb'))
    assert.deepStrictEqual(merged.bootstrap_info, {
      ca_pubkey: hex('aa'),
      k256_pubkey: hex('bb'),
      attestation: Buffer.alloc(0),
    })
  })

  it('truncates uint32 varints like `as u32` and reads bools as non-zero', () => {
    // 2^32 + 5
    assert.equal(decodeMessage(GetAppKeyRequestType, hex('088580808010')).api_version, 5)
    const meta = decodeMessage(GetMetaResponseType, hex('1002'))
    assert.equal(meta.allow_any_upgrade, true)
  })

  it('keeps a UTF-8 byte order mark in strings', () => {
    assert.equal(decodeMessage(GetKmsKeyRequestType, hex('0a03efbbbf')).vm_config, '\ufeff')
  })

  const errors: Array<[string, MessageType<unknown>, string, string]> = [
    [
      'invalid UTF-8',
      GetAppKeyRequestType,
      '1202c328',
      'GetAppKeyRequest.vm_config: invalid string value: data is not UTF-8 encoded',
    ],
    [
      'wrong wire type',
      GetAppKeyRequestType,
      '0a0101',
      'GetAppKeyRequest.api_version: invalid wire type: LengthDelimited (expected Varint)',
    ],
    ['length past the end', AppIdType, '0a05aabb', 'AppId.app_id: buffer underflow'],
    [
      'truncated varint',
      GetAppKeyRequestType,
      '0880',
      'GetAppKeyRequest.api_version: invalid varint',
    ],
    ['truncated key', GetAppKeyRequestType, '80', 'invalid varint'],
    [
      'varint overflowing u64',
      GetAppKeyRequestType,
      '08ffffffffffffffffff02',
      'GetAppKeyRequest.api_version: invalid varint',
    ],
    ['tag 0', GetAppKeyRequestType, '0001', 'invalid tag value: 0'],
    ['wire type 7', GetAppKeyRequestType, '0f', 'invalid wire type value: 7'],
    ['key over u32', GetAppKeyRequestType, '8080808010', 'invalid key value: 4294967296'],
    ['stray end group', GetAppKeyRequestType, '4c', 'unexpected end group tag'],
    [
      'end group on a known field',
      GetAppKeyRequestType,
      '0c',
      'GetAppKeyRequest.api_version: invalid wire type: EndGroup (expected Varint)',
    ],
    ['mismatched end group', GetAppKeyRequestType, '4b54', 'unexpected end group tag'],
    ['unknown fixed64 cut short', GetAppKeyRequestType, '310102', 'buffer underflow'],
    [
      'nested field error carries both frames',
      GetMetaResponseType,
      '22020a05',
      'BootstrapResponse.ca_pubkey: GetMetaResponse.bootstrap_info: buffer underflow',
    ],
    [
      'nested field running past its message',
      GetMetaResponseType,
      '22020a02aabb',
      'GetMetaResponse.bootstrap_info: delimited length exceeded',
    ],
    [
      'repeated message element error',
      KmsKeyResponseType,
      '12021201',
      'KmsKeys.k256_key: KmsKeyResponse.keys: buffer underflow',
    ],
    ['deeply nested groups', GetAppKeyRequestType, '4b'.repeat(101), 'recursion limit reached'],
  ]
  for (const [label, type, h, text] of errors) {
    it(`error: ${label}`, () => {
      const msg = kmsErrorMessage(() => decodeMessage(type, hex(h)))
      assert.equal(msg, `failed to decode Protobuf message: ${text}`)
    })
  }
})

// ---- round trips of every message

const samples: Array<[MessageType<unknown>, unknown]> = [
  [GetAppKeyRequestType, { api_version: 1, vm_config: '{"os_image_hash":"00"}' }],
  [AppIdType, { app_id: fill(0xab, 20) }],
  [
    PublicKeyResponseType,
    {
      public_key: fill(1, 32),
      signature: fill(2, 65),
      timestamp: 0xfedcba9876543210n,
      signature_v1: fill(3, 65),
    },
  ],
  [
    AppKeyResponseType,
    {
      ca_cert: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
      disk_crypt_key: fill(4, 32),
      env_crypt_key: fill(5, 32),
      k256_key: fill(6, 32),
      k256_signature: fill(7, 65),
      tproxy_app_id: 'gw',
      gateway_app_id: 'gw',
      os_image_hash: fill(8, 32),
    },
  ],
  [
    GetMetaResponseType,
    {
      ca_cert: 'CA',
      allow_any_upgrade: true,
      k256_pubkey: fill(2, 33),
      bootstrap_info: {
        ca_pubkey: fill(9, 91),
        k256_pubkey: fill(3, 33),
        attestation: fill(10, 5),
      },
      is_dev: true,
      gateway_app_id: 'g',
      kms_contract_address: '0xabc',
      chain_id: 9007199254740993n,
      app_auth_implementation: '0xdef',
    },
  ],
  [GetKmsKeyRequestType, { vm_config: 'vm' }],
  [KmsKeysType, { ca_key: 'key', k256_key: fill(11, 32) }],
  [
    KmsKeyResponseType,
    {
      temp_ca_key: 'tmp',
      keys: [
        { ca_key: 'a', k256_key: fill(12, 32) },
        { ca_key: 'b', k256_key: fill(13, 32) },
      ],
    },
  ],
  [GetTempCaCertResponseType, { temp_ca_cert: 'c', temp_ca_key: 'k', ca_cert: 'r' }],
  [
    SignCertRequestType,
    { api_version: 2, csr: fill(14, 40), signature: fill(15, 70), vm_config: '{}' },
  ],
  [SignCertResponseType, { certificate_chain: ['leaf', 'app ca', 'root ca'] }],
  [ClearImageCacheRequestType, { token: 'secret', image_hash: 'all', config_hash: 'abc' }],
  [AdminClearImageCacheRequestType, { image_hash: 'img', config_hash: 'all' }],
  [BootstrapRequestType, { domain: 'kms.example.com' }],
  [
    BootstrapResponseType,
    { ca_pubkey: fill(16, 91), k256_pubkey: fill(17, 33), attestation: fill(18, 100) },
  ],
  [OnboardRequestType, { source_url: 'https://src:8000/prpc', domain: 'kms.example.com' }],
  [OnboardResponseType, { k256_pubkey: fill(19, 33) }],
  [InspectSourceRequestType, { source_url: 'https://src:8000' }],
  [
    InspectSourceResponseType,
    {
      source_url: 'https://src:8000/prpc',
      mr_aggregated: fill(24, 32),
      device_id: fill(25, 32),
      os_image_hash: fill(26, 32),
      tcb_status: 'UpToDate',
      advisory_ids: ['INTEL-SA-00001', 'INTEL-SA-00002'],
      tee_variant: 'dstack-tdx',
      ca_cert_fingerprint: 'ab'.repeat(32),
      k256_pubkey: fill(27, 33),
      allowed: true,
      reason: 'why not',
    },
  ],
  [
    AttestationInfoResponseType,
    {
      device_id: fill(20, 32),
      mr_aggregated: fill(21, 32),
      os_image_hash: fill(22, 32),
      attestation_mode: 'dstack-tdx',
      site_name: 'site',
      eth_rpc_url: 'https://rpc',
      kms_contract_address: '0x1',
      ppid: fill(23, 16),
      onboard_cert_fingerprint: 'AB:CD',
    },
  ],
  [ProtoErrorType, { message: 'Service not found: Foo ✓ "quoted"\n' }],
]

function nonDefaultEverywhere(type: MessageType<unknown>, value: unknown): void {
  for (const f of type.fields) {
    const v: unknown = Reflect.get(value as object, f.name)
    const isDefault =
      v === null ||
      v === '' ||
      v === 0 ||
      v === 0n ||
      v === false ||
      (v instanceof Uint8Array && v.length === 0) ||
      (Array.isArray(v) && v.length === 0)
    assert.ok(!isDefault, `${type.name}.${f.name} sample must not be default`)
  }
}

describe('round trips of every message', () => {
  it('covers every message descriptor', () => {
    const exported: readonly unknown[] = Object.values(messages)
    assert.equal(exported.length, TYPES_BY_EXPORT_NAME.size)
    for (const [name, t] of TYPES_BY_EXPORT_NAME) {
      assert.equal(Reflect.get(messages, `${name}Type`), t)
      assert.ok(exported.includes(t))
      assert.ok(
        samples.some(([s]) => s === t),
        `no sample for ${t.name}`,
      )
    }
  })

  for (const [type, value] of samples) {
    it(`${type.name} (${type.fields.map((f) => f.name).join(',')})`, () => {
      nonDefaultEverywhere(type, value)
      const pb = encodeMessage(type, value)
      assert.deepStrictEqual(decodeMessage(type, pb), value)
      const json = encodeJson(type, value)
      assert.deepStrictEqual(decodeJson(type, utf8(json)), value)
      // all-default: empty protobuf body, every JSON key present
      const blank = type.create()
      assert.equal(encodeMessage(type, blank).length, 0)
      assert.deepStrictEqual(decodeMessage(type, Buffer.alloc(0)), blank)
      const blankJson = encodeJson(type, blank)
      const keys = Object.keys(JSON.parse(blankJson) as object)
      assert.deepStrictEqual(
        keys,
        type.fields.flatMap((f) => [f.name, ...f.jsonAliases]),
      )
      assert.deepStrictEqual(decodeJson(type, utf8(blankJson)), blank)
    })
  }
})

// ---- JSON output

describe('JSON output', () => {
  it('PublicKeyResponse: declaration order, lowercase hex, timestamp as a number', () => {
    const v = {
      public_key: fill(0xab, 32),
      signature: fill(0xcd, 65),
      timestamp: 1739290000n,
      signature_v1: fill(0xef, 65),
    }
    assert.equal(
      encodeJson(PublicKeyResponseType, v),
      `{"public_key":"${'ab'.repeat(32)}","signature":"${'cd'.repeat(65)}","timestamp":1739290000,"signature_v1":"${'ef'.repeat(65)}"}`,
    )
  })

  it('GetMetaResponse in dev mode has null optionals', () => {
    const v: GetMetaResponse = {
      ca_cert: '-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n',
      allow_any_upgrade: true,
      k256_pubkey: Buffer.concat([hex('02'), fill(0x11, 32)]),
      bootstrap_info: null,
      is_dev: true,
      gateway_app_id: 'any',
      kms_contract_address: null,
      chain_id: null,
      app_auth_implementation: null,
    }
    assert.equal(
      encodeJson(GetMetaResponseType, v),
      '{"ca_cert":"-----BEGIN CERTIFICATE-----\\nMII\\n-----END CERTIFICATE-----\\n","allow_any_upgrade":true,' +
        `"k256_pubkey":"02${'11'.repeat(32)}","bootstrap_info":null,"is_dev":true,"gateway_app_id":"any",` +
        '"kms_contract_address":null,"chain_id":null,"app_auth_implementation":null}',
    )
  })

  it('GetMetaResponse in webhook mode: nested message and chain_id number', () => {
    const v: GetMetaResponse = {
      ca_cert: 'C',
      allow_any_upgrade: false,
      k256_pubkey: hex('03'),
      bootstrap_info: {
        ca_pubkey: hex('3059'),
        k256_pubkey: hex('02aa'),
        attestation: Buffer.alloc(0),
      },
      is_dev: false,
      gateway_app_id: 'gw',
      kms_contract_address: '0xKms',
      chain_id: 1n,
      app_auth_implementation: '0xImpl',
    }
    assert.equal(
      encodeJson(GetMetaResponseType, v),
      '{"ca_cert":"C","allow_any_upgrade":false,"k256_pubkey":"03","bootstrap_info":{"ca_pubkey":"3059","k256_pubkey":"02aa","attestation":""},' +
        '"is_dev":false,"gateway_app_id":"gw","kms_contract_address":"0xKms","chain_id":1,"app_auth_implementation":"0xImpl"}',
    )
  })

  it('writes u64 digits exactly beyond 2^53', () => {
    const v = { ...GetMetaResponseType.create(), chain_id: 18446744073709551615n }
    assert.match(encodeJson(GetMetaResponseType, v), /"chain_id":18446744073709551615,/)
  })

  it('Empty is null; KmsKeyResponse and SignCertResponse shapes', () => {
    assert.equal(EMPTY_JSON, 'null')
    assert.equal(
      encodeJson(KmsKeyResponseType, {
        temp_ca_key: 'T',
        keys: [{ ca_key: 'K', k256_key: hex('0102') }],
      }),
      '{"temp_ca_key":"T","keys":[{"ca_key":"K","k256_key":"0102"}]}',
    )
    assert.equal(
      encodeJson(SignCertResponseType, { certificate_chain: ['a', 'b', 'c'] }),
      '{"certificate_chain":["a","b","c"]}',
    )
  })

  it('AttestationInfoResponse carries attestation_mode and tee_variant', () => {
    const v = {
      ...AttestationInfoResponseType.create(),
      attestation_mode: 'dstack-tdx',
      ppid: hex('aa'),
    }
    assert.equal(
      encodeJson(AttestationInfoResponseType, v),
      '{"device_id":"","mr_aggregated":"","os_image_hash":"","attestation_mode":"dstack-tdx","tee_variant":"dstack-tdx",' +
        '"site_name":"","eth_rpc_url":"","kms_contract_address":"","ppid":"aa","onboard_cert_fingerprint":""}',
    )
    // input: the alias fills the field only when the proto name is absent
    const alias = decodeJson(AttestationInfoResponseType, utf8('{"tee_variant":"x"}'))
    assert.equal(alias.attestation_mode, 'x')
    const both = decodeJson(
      AttestationInfoResponseType,
      utf8('{"tee_variant":"x","attestation_mode":"y"}'),
    )
    assert.equal(both.attestation_mode, 'y')
  })

  it('escapes strings like serde_json', () => {
    const v = { message: '\u001b"\\/é\n\t\u007f' }
    assert.equal(encodeJson(ProtoErrorType, v), '{"message":"\\u001b\\"\\\\/é\\n\\t\u007f"}')
  })

  it('all-default GetAppKeyRequest', () => {
    assert.equal(
      encodeJson(GetAppKeyRequestType, GetAppKeyRequestType.create()),
      '{"api_version":0,"vm_config":""}',
    )
  })
})

// ---- JSON input

describe('JSON input', () => {
  const appKey = (s: string): unknown => decodeJson(GetAppKeyRequestType, utf8(s))
  const appId = (s: string): unknown => decodeJson(AppIdType, utf8(s))
  const err = (fn: () => unknown): string => kmsErrorMessage(fn)

  it('empty body → all defaults; missing fields → defaults; unknown fields ignored', () => {
    assert.deepStrictEqual(appKey(''), { api_version: 0, vm_config: '' })
    assert.deepStrictEqual(appKey('{}'), { api_version: 0, vm_config: '' })
    assert.deepStrictEqual(appKey(' {"vm_config" : "v"} \n'), { api_version: 0, vm_config: 'v' })
    assert.deepStrictEqual(
      appKey(
        '{"foo":{"a":[1,-2.5e3,{"b":null,"a":1,"a":2}],"c":"x\\u00e9"},"vm_config":"v","json":true}',
      ),
      { api_version: 0, vm_config: 'v' },
    )
  })

  it('real client bodies', () => {
    assert.deepStrictEqual(appKey('{"api_version":1,"vm_config":"{\\"a\\":1}"}'), {
      api_version: 1,
      vm_config: '{"a":1}',
    })
    // vmm-cli.py sends Python's default separators
    assert.deepStrictEqual(appId(`{"app_id": "${'00'.repeat(20)}"}`), { app_id: fill(0, 20) })
  })

  it('duplicate keys are an error', () => {
    assert.equal(
      err(() => appKey('{"api_version":1,"api_version":2}')),
      'duplicate field `api_version` at line 1 column 30',
    )
    assert.equal(
      err(() => appKey('{\n"api_version":1,\n"api_version" :2}')),
      'duplicate field `api_version` at line 3 column 14',
    )
    // duplicates of unknown keys are ignored, like serde
    assert.deepStrictEqual(appKey('{"x":1,"x":2}'), { api_version: 0, vm_config: '' })
  })

  it('bytes: all leading 0x stripped, 0X not', () => {
    assert.deepStrictEqual(appId('{"app_id":"0x0xAbCd"}'), { app_id: hex('abcd') })
    assert.deepStrictEqual(appId('{"app_id":"0xab"}'), { app_id: hex('ab') })
    assert.deepStrictEqual(appId('{"app_id":""}'), { app_id: Buffer.alloc(0) })
    assert.equal(
      err(() => appId('{"app_id":"0Xab"}')),
      "Invalid character 'X' at position 1 at line 1 column 17",
    )
  })

  it('hex errors: odd length, bad characters', () => {
    assert.equal(
      err(() => appId('{"app_id":"abc"}')),
      'Odd number of digits at line 1 column 16',
    )
    assert.equal(
      err(() => appId('{"app_id":"gg"}')),
      "Invalid character 'g' at position 0 at line 1 column 15",
    )
    assert.equal(
      err(() => appId('{"app_id":"0g"}')),
      "Invalid character 'g' at position 1 at line 1 column 15",
    )
    // error position after the string when another key follows
    assert.equal(
      err(() => appId('{"app_id":"zz" ,"x":1}')),
      "Invalid character 'z' at position 0 at line 1 column 15",
    )
    assert.equal(
      err(() => appId('{"app_id":"é"}')),
      "Invalid character 'Ã' at position 0 at line 1 column 15",
    )
    assert.equal(
      err(() => appId('{"app_id":"\\n0"}')),
      "Invalid character '\\n' at position 0 at line 1 column 16",
    )
  })

  it('wrong types', () => {
    assert.equal(
      err(() => appKey('{"vm_config":1}')),
      'invalid type: integer `1`, expected a string at line 1 column 14',
    )
    assert.equal(
      err(() => appKey('{"vm_config":[1]}')),
      'invalid type: sequence, expected a string at line 1 column 13',
    )
    assert.equal(
      err(() => appKey('{"vm_config":{}}')),
      'invalid type: map, expected a string at line 1 column 13',
    )
    assert.equal(
      err(() => appKey('{"vm_config":true}')),
      'invalid type: boolean `true`, expected a string at line 1 column 17',
    )
    assert.equal(
      err(() => appKey('{"api_version":true}')),
      'invalid type: boolean `true`, expected u32 at line 1 column 19',
    )
    assert.equal(
      err(() => appId('{"app_id":7}')),
      'invalid type: integer `7`, expected a string at line 1 column 11',
    )
    assert.equal(
      err(() => appKey('1')),
      'invalid type: integer `1`, expected struct GetAppKeyRequest at line 1 column 1',
    )
    assert.equal(
      err(() => appKey('"x"')),
      'invalid type: string "x", expected struct GetAppKeyRequest at line 1 column 3',
    )
    assert.equal(
      err(() => decodeJson(SignCertResponseType, utf8('{"certificate_chain":"a"}'))),
      'invalid type: string "a", expected a sequence at line 1 column 24',
    )
    assert.equal(
      err(() => decodeJson(GetMetaResponseType, utf8('{"allow_any_upgrade":1}'))),
      'invalid type: integer `1`, expected a boolean at line 1 column 22',
    )
  })

  it('null is only accepted for optional and message fields', () => {
    assert.equal(
      err(() => appKey('{"vm_config":null}')),
      'invalid type: null, expected a string at line 1 column 17',
    )
    assert.equal(
      err(() => appKey('{"api_version":null}')),
      'invalid type: null, expected u32 at line 1 column 19',
    )
    assert.equal(
      err(() => decodeJson(SignCertResponseType, utf8('{"certificate_chain":null}'))),
      'invalid type: null, expected a sequence at line 1 column 25',
    )
    const meta = decodeJson(
      GetMetaResponseType,
      utf8('{"chain_id":null,"bootstrap_info":null,"gateway_app_id":"g"}'),
    )
    assert.equal(meta.chain_id, null)
    assert.equal(meta.bootstrap_info, null)
    assert.equal(meta.gateway_app_id, 'g')
  })

  it('integers: JSON integers or decimal strings, range-checked', () => {
    assert.deepStrictEqual(appKey('{"api_version":"1"}'), { api_version: 1, vm_config: '' })
    assert.deepStrictEqual(appKey('{"api_version":"+2"}'), { api_version: 2, vm_config: '' })
    assert.deepStrictEqual(appKey('{"api_version":4294967295}'), {
      api_version: 4294967295,
      vm_config: '',
    })
    assert.equal(
      err(() => appKey('{"api_version":4294967296}')),
      'invalid value: integer `4294967296`, expected u32 at line 1 column 25',
    )
    assert.equal(
      err(() => appKey('{"api_version":"4294967296"}')),
      'invalid value: string "4294967296", expected u32 at line 1 column 27',
    )
    assert.equal(
      err(() => appKey('{"api_version":"1.0"}')),
      'invalid value: string "1.0", expected u32 at line 1 column 20',
    )
    assert.equal(
      err(() => appKey('{"api_version":-1}')),
      'invalid value: integer `-1`, expected u32 at line 1 column 17',
    )
    assert.equal(
      err(() => appKey('{"api_version":1.5}')),
      'invalid type: floating point `1.5`, expected u32 at line 1 column 18',
    )
    assert.equal(
      err(() => appKey('{"api_version":1e20}')),
      'invalid type: floating point `1e20`, expected u32 at line 1 column 19',
    )
    assert.equal(
      err(() => appKey('{"api_version":-0}')),
      'invalid type: floating point `-0.0`, expected u32 at line 1 column 17',
    )
    assert.equal(
      err(() => appKey('{"api_version":1.0}')),
      'invalid type: floating point `1.0`, expected u32 at line 1 column 18',
    )
    assert.equal(
      err(() => appKey('{"api_version":18446744073709551616}')),
      'invalid type: floating point `1.8446744073709552e19`, expected u32 at line 1 column 35',
    )
    assert.equal(
      err(() => appKey(`{"api_version":${'9'.repeat(100000)}}`)),
      `number out of range at line 1 column ${15 + 100000}`,
    )
    assert.deepStrictEqual(appKey(`{"api_version":"${'0'.repeat(50)}7"}`), {
      api_version: 7,
      vm_config: '',
    })
    // u64 fields keep every digit
    const meta = decodeJson(GetMetaResponseType, utf8('{"chain_id":18446744073709551615}'))
    assert.equal(meta.chain_id, 18446744073709551615n)
    assert.equal(
      decodeJson(GetMetaResponseType, utf8('{"chain_id":"9007199254740993"}')).chain_id,
      9007199254740993n,
    )
  })

  it('syntax errors with serde_json texts', () => {
    assert.equal(
      err(() => appKey(' ')),
      'EOF while parsing a value at line 1 column 1',
    )
    assert.equal(
      err(() => appKey('{} x')),
      'trailing characters at line 1 column 4',
    )
    assert.equal(
      err(() => appKey('{"vm_config":"x"')),
      'EOF while parsing an object at line 1 column 16',
    )
    assert.equal(
      err(() => appKey('{"vm_config":"x",}')),
      'trailing comma at line 1 column 18',
    )
    assert.equal(
      err(() => appKey('{1:2}')),
      'key must be a string at line 1 column 2',
    )
    assert.equal(
      err(() => appKey('{"vm_config" "x"}')),
      'expected `:` at line 1 column 14',
    )
    assert.equal(
      err(() => appKey('{"vm_config":"x" "y"}')),
      'expected `,` or `}` at line 1 column 18',
    )
    assert.equal(
      err(() => appKey('{"vm_config":"\\ud800"}')),
      'unexpected end of hex escape at line 1 column 21',
    )
    assert.equal(
      err(() => appKey('{"vm_config":"\\udc00"}')),
      'lone leading surrogate in hex escape at line 1 column 20',
    )
    assert.equal(
      err(() => appKey('{"vm_config":"\\q"}')),
      'invalid escape at line 1 column 16',
    )
    assert.equal(
      err(() => appKey('{"vm_config":"a\nb"}')),
      'control character (\\u0000-\\u001F) found while parsing a string at line 2 column 0',
    )
    assert.equal(
      err(() => appKey('{"x":[1,]}')),
      'expected value at line 1 column 9',
    )
    assert.equal(
      err(() => appKey('{"x":01}')),
      'invalid number at line 1 column 7',
    )
    assert.equal(
      err(() => appKey('{"x":tru}')),
      'expected ident at line 1 column 9',
    )
    assert.equal(
      err(() =>
        decodeJson(
          GetAppKeyRequestType,
          Buffer.from([0x7b, 0x22, 0x76, 0xff, 0x22, 0x3a, 0x31, 0x7d]),
        ),
      ),
      'invalid unicode code point at line 1 column 5',
    )
    assert.equal(
      err(() => appKey('null')),
      'invalid type: null, expected struct GetAppKeyRequest at line 1 column 4',
    )
  })

  it('decodes escapes and surrogate pairs', () => {
    assert.deepStrictEqual(
      appKey('{"vm_config":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"}'),
      {
        api_version: 0,
        vm_config: '"\\/\b\f\n\r\té😀',
      },
    )
  })
  it('reads unescaped strings, short or long, ASCII or not, as UTF-8', () => {
    for (const text of [
      '',
      'x',
      'abcdefghijklmnop',
      'abcdefghijklmnopq',
      'é',
      'ab😀',
      'é'.repeat(40),
    ]) {
      const decoded = decodeJson(GetAppKeyRequestType, utf8(JSON.stringify({ vm_config: text })))
      assert.equal(decoded.vm_config, text, text)
    }
  })
})

describe('GET query decoding', () => {
  it('decodes flat key=value pairs with per-field coercion', () => {
    assert.deepStrictEqual(decodeQuery(GetAppKeyRequestType, 'api_version=1&vm_config=x'), {
      api_version: 1,
      vm_config: 'x',
    })
    assert.deepStrictEqual(decodeQuery(GetAppKeyRequestType, 'json&vm_config=a+b%2Fc%7B%7D'), {
      api_version: 0,
      vm_config: 'a b/c{}',
    })
    assert.deepStrictEqual(decodeQuery(AppIdType, `app_id=0x${'01'.repeat(20)}`), {
      app_id: fill(1, 20),
    })
    assert.deepStrictEqual(decodeQuery(GetAppKeyRequestType, ''), { api_version: 0, vm_config: '' })
  })

  it('rejects bad values and duplicate keys', () => {
    assert.equal(
      kmsErrorMessage(() => decodeQuery(GetAppKeyRequestType, 'api_version=x')),
      'invalid value: string "x", expected u32',
    )
    assert.equal(
      kmsErrorMessage(() => decodeQuery(AppIdType, 'app_id=abc')),
      'Odd number of digits',
    )
    assert.equal(
      kmsErrorMessage(() => decodeQuery(GetAppKeyRequestType, 'vm_config=a&vm_config=b')),
      'duplicate field `vm_config`',
    )
  })
})

describe('JSON/protobuf negotiation', () => {
  const post = (rawQuery: string, contentType: string | undefined): boolean =>
    wantsJson({ method: 'POST', rawQuery, contentType })

  it('GET and HEAD are always JSON', () => {
    assert.equal(
      wantsJson({ method: 'GET', rawQuery: '', contentType: 'application/octet-stream' }),
      true,
    )
    assert.equal(
      wantsJson({ method: 'HEAD', rawQuery: 'json=false', contentType: 'application/x-protobuf' }),
      true,
    )
  })

  it('?json variants', () => {
    for (const q of [
      'json',
      'json=',
      'json=1',
      'json=true',
      'a=b&json',
      'js%6Fn=tru%65',
      'json&json=false',
    ]) {
      assert.equal(jsonQueryFlag(q), true, q)
      assert.equal(post(q, 'application/octet-stream'), true, q)
    }
    for (const q of ['', 'json=false', 'JSON', 'json=0', 'json=yes', 'json=false&json', 'xjson']) {
      assert.equal(jsonQueryFlag(q), false, q)
      assert.equal(post(q, 'application/octet-stream'), false, q)
    }
  })

  it('protobuf only for protobuf content types', () => {
    const table: Array<[string | undefined, boolean]> = [
      [undefined, true],
      ['', true],
      ['application/json', true],
      ['Application/JSON; charset=utf-8', true],
      ['text/json', true],
      ['text/plain', true],
      ['application/x-www-form-urlencoded', true],
      ['multipart/form-data; boundary=x', true],
      ['garbage', true],
      ['application/octet-stream', false],
      ['application/x-protobuf', false],
      ['application/x-protobuf; charset=x', false],
      ['APPLICATION/PROTOBUF', false],
      [' application/protobuf ;a=b', false],
    ]
    for (const [ct, json] of table) assert.equal(post('', ct), json, String(ct))
  })

  it('helpers', () => {
    assert.equal(contentTypeEssence('Text/Plain ; charset=x'), 'text/plain')
    assert.equal(contentTypeEssence('  '), null)
  })
})
