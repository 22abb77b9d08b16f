import assert from 'node:assert/strict'
import { generateKeyPairSync, sign } from 'node:crypto'
import { describe, it } from 'node:test'
import { P256Key, P256_ORDER } from '../src/crypto/p256.js'
import { KmsError } from '../src/errors.js'
import {
  CSR_CONFIRM,
  type CertSigningRequestV1,
  type CertSigningRequestV2,
  attestationFromTdxQuote,
  decodeCsrV1,
  decodeCsrV2,
  decodeVerifiedCsr,
  encodeCsrV1,
  encodeCsrV2,
  upgradeCsrV1,
  verifyCsrSignature,
} from '../src/ratls/csr.js'
import { ScaleError, ScaleReader, encodeCompact } from '../src/codec/scale.js'
import { derChildren, derSequence, derTlv, parseDer } from '../src/asn1/der.js'
import { readVectorFile, readVectorJson } from './helpers/crypto-vectors.js'

interface CsrVector {
  ext_quote: boolean
  quote_hex: string
  length: number
  hex: string
}
const vectors = readVectorJson<{
  csr_v2_scale: { cases: CsrVector[] }
  dcap_qvl_samples: { cases: Array<{ quote: string; report_data?: string }> }
}>('vectors.json')
const getQuote = readVectorJson<{ quote: string; event_log: string; report_data: string }>(
  'tdx-lite-getquote.json',
)

/** V0 DstackTdx, given quote, empty event log, no runtime events, zero report_data,
 * empty config; written out by hand from the layout. */
function vectorAttestation(quoteHex: string): Buffer {
  const quote = Buffer.from(quoteHex, 'hex')
  return Buffer.concat([
    Buffer.from([0x00, 0x00, quote.length << 2]),
    quote,
    Buffer.from([0x00, 0x00]),
    Buffer.alloc(64),
    Buffer.from([0x00]),
  ])
}

function vectorCsr(v: CsrVector): CertSigningRequestV2 {
  return {
    confirm: CSR_CONFIRM,
    pubkey: Buffer.from('010203', 'hex'),
    config: {
      orgName: null,
      subject: 'test.example.com',
      subjectAltNames: [],
      usageServerAuth: true,
      usageClientAuth: false,
      extQuote: v.ext_quote,
      extAppInfo: false,
      notBefore: null,
      notAfter: null,
    },
    attestation: vectorAttestation(v.quote_hex),
  }
}

function sampleV2(key: P256Key, over: Partial<CertSigningRequestV2> = {}): CertSigningRequestV2 {
  return {
    confirm: CSR_CONFIRM,
    pubkey: key.spkiDer(),
    config: {
      orgName: 'Example Org',
      subject: 'app.example.com',
      subjectAltNames: ['app.example.com', '10.0.0.1'],
      usageServerAuth: true,
      usageClientAuth: true,
      extQuote: true,
      extAppInfo: true,
      notBefore: 1_700_000_000n,
      notAfter: 1_800_000_000n,
    },
    attestation: vectorAttestation(''),
    ...over,
  }
}

function sampleV1(key: P256Key, over: Partial<CertSigningRequestV1> = {}): CertSigningRequestV1 {
  return {
    confirm: CSR_CONFIRM,
    pubkey: key.spkiDer(),
    config: {
      orgName: null,
      subject: 'legacy.example.com',
      subjectAltNames: ['legacy.example.com'],
      usageServerAuth: true,
      usageClientAuth: false,
      extQuote: true,
    },
    quote: Buffer.from(getQuote.quote, 'hex'),
    eventLog: Buffer.from(getQuote.event_log, 'utf8'),
    ...over,
  }
}

function throwsMessage(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof KmsError, String(err))
    assert.equal(err.message, message)
    return true
  })
}

const NOT_ENOUGH = 'Not enough data to fill buffer'

describe('SCALE codec', () => {
  it('compact integers: boundaries and upstream vectors', () => {
    const cases: Array<[number | bigint, string]> = [
      [0, '00'],
      [1, '04'],
      [63, 'fc'],
      [64, '0101'],
      [16383, 'fdff'],
      [16384, '02000100'],
      [1073741823, 'feffffff'],
      [1073741824, '0300000040'],
      [0xffffffff, '03ffffffff'],
      [2n ** 32n, '070000000001'],
    ]
    for (const [value, hex] of cases) {
      assert.equal(encodeCompact(value).toString('hex'), hex, String(value))
      if (BigInt(value) <= 0xffffffffn) {
        const r = new ScaleReader(Buffer.from(hex, 'hex'))
        assert.equal(r.compactU32(), Number(value))
        assert.equal(r.remaining, 0)
      }
    }
  })

  it('refuses non-minimal and over-wide compacts like parity-scale-codec', () => {
    for (const hex of ['0100', 'fd00', '02000000', 'feff0000', '03ffffff3f', '07000000000100']) {
      throwsMessage(
        () => new ScaleReader(Buffer.from(hex, 'hex')).compactU32(),
        'out of range decoding Compact<u32>',
      )
    }
    throwsMessage(() => new ScaleReader(Buffer.from('01', 'hex')).compactU32(), NOT_ENOUGH)
  })

  it('renders a chained codec error like anyhow {:#} over parity-scale-codec Error', () => {
    // parity-scale-codec's own test: Error::from("root cause").chain("wrap cause").chain("final type")
    const err = new ScaleError('root cause').chain('wrap cause').chain('final type')
    assert.equal(
      err.message,
      'final type:\n\twrap cause:\n\t\troot cause\n: wrap cause:\n\troot cause\n: root cause',
    )
    assert.equal(new ScaleError('plain').message, 'plain')
  })
})

describe('CSR V2 SCALE layout (upstream vectors)', () => {
  for (const v of vectors.csr_v2_scale.cases) {
    it(`encodes and decodes byte-exactly (ext_quote ${String(v.ext_quote)}, ${v.length} bytes)`, () => {
      const bytes = Buffer.from(v.hex, 'hex')
      assert.equal(bytes.length, v.length)
      const expected = vectorCsr(v)
      assert.equal(encodeCsrV2(expected).toString('hex'), v.hex)
      const decoded = decodeCsrV2(bytes)
      assert.deepEqual(decoded, expected)
      assert.equal(encodeCsrV2(decoded).toString('hex'), v.hex)
    })
  }

  it('round-trips every optional field', () => {
    const csr = sampleV2(P256Key.generate())
    const bytes = encodeCsrV2(csr)
    assert.deepEqual(decodeCsrV2(bytes), csr)
  })

  it('V1 layout: round trip, trailing bytes ignored', () => {
    const csr = sampleV1(P256Key.generate(), { quote: Buffer.from('09', 'hex') })
    const bytes = encodeCsrV1(csr)
    assert.deepEqual(decodeCsrV1(bytes), csr)
    assert.deepEqual(decodeCsrV1(Buffer.concat([bytes, Buffer.from('ffff', 'hex')])), csr)
  })
})

describe('Failed to parse csr', () => {
  const base = Buffer.from(vectors.csr_v2_scale.cases[0]?.hex ?? '', 'hex')
  const parse =
    (bytes: Buffer, version = 2) =>
    () =>
      decodeVerifiedCsr(version, bytes, Buffer.alloc(0))
  const field2 = (field: string, inner: string): string =>
    `Failed to parse csr: Could not decode \`CertSigningRequestV2::${field}\`:\n\t${inner}\n: ${inner}`
  const config2 = (field: string, inner: string): string =>
    'Failed to parse csr: Could not decode `CertSigningRequestV2::config`:\n' +
    `\tCould not decode \`CertConfigV2::${field}\`:\n\t\t${inner}\n` +
    `: Could not decode \`CertConfigV2::${field}\`:\n\t${inner}\n: ${inner}`
  const patched = (offset: number, hex: string): Buffer => {
    const b = Buffer.from(base)
    Buffer.from(hex, 'hex').copy(b, offset)
    return b
  }
  // offsets in the 117-byte vector: confirm 0..18, pubkey 18..22, org_name 22, subject 23..40,
  // sans 40, server 41, client 42, ext_quote 43, ext_app_info 44, not_before 45, not_after 46,
  // attestation 47..
  it('empty and truncated inputs', () => {
    throwsMessage(parse(Buffer.alloc(0)), field2('confirm', NOT_ENOUGH))
    throwsMessage(parse(base.subarray(0, 4)), field2('confirm', 'Not enough data to decode vector'))
    throwsMessage(parse(Buffer.from('00', 'hex')), field2('pubkey', NOT_ENOUGH))
    throwsMessage(parse(base.subarray(0, 20)), field2('pubkey', 'Not enough data to decode vector'))
    throwsMessage(
      parse(base.subarray(0, 22)),
      'Failed to parse csr: Could not decode `CertSigningRequestV2::config`:\n' +
        '\tCould not decode `CertConfigV2::org_name`:\n' +
        '\t\tCould not decode variant byte for `Option`:\n' +
        `\t\t\t${NOT_ENOUGH}\n` +
        ': Could not decode `CertConfigV2::org_name`:\n' +
        '\tCould not decode variant byte for `Option`:\n' +
        `\t\t${NOT_ENOUGH}\n` +
        `: Could not decode variant byte for \`Option\`:\n\t${NOT_ENOUGH}\n` +
        `: ${NOT_ENOUGH}`,
    )
    throwsMessage(
      parse(base.subarray(0, 30)),
      config2('subject', 'Not enough data to decode vector'),
    )
    throwsMessage(parse(base.subarray(0, 43)), config2('ext_quote', NOT_ENOUGH))
    throwsMessage(parse(base.subarray(0, 47)), field2('attestation', 'io error: InvalidData'))
  })

  it('invalid values', () => {
    throwsMessage(
      parse(patched(0, '4500')),
      field2('confirm', 'out of range decoding Compact<u32>'),
    )
    throwsMessage(
      parse(Buffer.alloc(10, 0xff)),
      field2('confirm', 'out of range decoding Compact<u32>'),
    )
    throwsMessage(
      parse(patched(41, '02')),
      config2('usage_server_auth', 'Invalid boolean representation'),
    )
    throwsMessage(
      parse(patched(22, '02')),
      config2('org_name', 'unexpected first byte decoding Option'),
    )
    throwsMessage(parse(patched(24, 'ff')), config2('subject', 'Invalid utf8 sequence'))
    throwsMessage(parse(patched(47, '01')), field2('attestation', 'io error: InvalidData'))
    // not_before = Some(<7 bytes>)
    throwsMessage(
      parse(Buffer.concat([base.subarray(0, 45), Buffer.from('01', 'hex'), Buffer.alloc(7)])),
      'Failed to parse csr: Could not decode `CertSigningRequestV2::config`:\n' +
        '\tCould not decode `CertConfigV2::not_before`:\n' +
        '\t\tCould not decode `Option::Some(T)`:\n' +
        `\t\t\t${NOT_ENOUGH}\n` +
        ': Could not decode `CertConfigV2::not_before`:\n' +
        '\tCould not decode `Option::Some(T)`:\n' +
        `\t\t${NOT_ENOUGH}\n` +
        `: Could not decode \`Option::Some(T)\`:\n\t${NOT_ENOUGH}\n` +
        `: ${NOT_ENOUGH}`,
    )
  })

  it('attestation framing: V0 (0x00) and V1 msgpack-map prefixes are accepted', () => {
    for (const first of ['00', '80', '8f', 'de', 'df']) {
      const csr = decodeCsrV2(Buffer.concat([base.subarray(0, 47), Buffer.from(first, 'hex')]))
      assert.equal(csr.attestation.toString('hex'), first)
    }
    for (const first of ['01', '7f', '90', 'dc', 'e0']) {
      assert.throws(
        () => decodeCsrV2(Buffer.concat([base.subarray(0, 47), Buffer.from(first, 'hex')])),
        ScaleError,
      )
    }
  })

  it('V1 names its own fields', () => {
    throwsMessage(
      parse(Buffer.from('00', 'hex'), 1),
      `Failed to parse csr: Could not decode \`CertSigningRequestV1::pubkey\`:\n\t${NOT_ENOUGH}\n: ${NOT_ENOUGH}`,
    )
    const v1 = encodeCsrV1(sampleV1(P256Key.generate(), { quote: Buffer.alloc(0) }))
    throwsMessage(
      parse(v1.subarray(0, v1.length - 1), 1),
      'Failed to parse csr: Could not decode `CertSigningRequestV1::event_log`:\n' +
        '\tNot enough data to decode vector\n: Not enough data to decode vector',
    )
  })

  it('unsupported api versions are refused before anything else', () => {
    throwsMessage(parse(Buffer.alloc(0), 3), 'Unsupported API version: 3')
    throwsMessage(parse(Buffer.alloc(0), 0), 'Unsupported API version: 0')
  })
})

/** Re-encodes a DER ECDSA signature with s replaced by n − s (the other valid form). */
function flipS(der: Buffer): Buffer {
  const [r, s] = derChildren(parseDer(der))
  assert.ok(r !== undefined && s !== undefined)
  const sv = BigInt('0x' + s.content.toString('hex'))
  let hex = (P256_ORDER - sv).toString(16)
  if (hex.length % 2) hex = '0' + hex
  let mag = Buffer.from(hex, 'hex')
  if ((mag[0] ?? 0) & 0x80) mag = Buffer.concat([Buffer.from([0]), mag])
  return derSequence(r.raw, derTlv(0x02, mag))
}

describe('CSR signature (Csr::verify)', () => {
  const key = P256Key.generate()
  const csr = sampleV2(key)
  const bytes = encodeCsrV2(csr)
  const sig = key.sign(bytes)
  const verifyErr = (c: CertSigningRequestV1 | CertSigningRequestV2, s: Buffer, msg: string) => {
    throwsMessage(() => verifyCsrSignature(c, s), msg)
  }

  it('accepts a CSR signed over its SCALE encoding with the CSR key (both S forms)', () => {
    verifyCsrSignature(csr, sig)
    verifyCsrSignature(csr, flipS(sig))
    assert.deepEqual(decodeVerifiedCsr(2, bytes, sig), csr)
  })

  it('a flipped byte anywhere, another key or a non-DER signature fails with Invalid signature', () => {
    const badSig = Buffer.from(sig)
    badSig[badSig.length - 1] = (badSig[badSig.length - 1] ?? 0) ^ 1
    verifyErr(csr, badSig, 'Invalid signature')
    const otherSig = P256Key.generate().sign(bytes)
    verifyErr(csr, otherSig, 'Invalid signature')
    const [r, s] = derChildren(parseDer(sig))
    const raw = Buffer.concat([r?.content ?? Buffer.alloc(0), s?.content ?? Buffer.alloc(0)])
    verifyErr(csr, raw, 'Invalid signature')
    verifyErr(csr, Buffer.alloc(0), 'Invalid signature')
    // a changed subject byte still decodes but no longer matches the signature
    const tampered = Buffer.from(bytes)
    const at = tampered.indexOf('app.example.com')
    tampered[at] = 'b'.charCodeAt(0)
    throwsMessage(
      () => decodeVerifiedCsr(2, tampered, sig),
      'Failed to verify csr signature: Invalid signature',
    )
  })

  it('pubkey checks come first, the confirm word last', () => {
    verifyErr({ ...csr, pubkey: Buffer.from('010203', 'hex') }, sig, 'Failed to parse pubkey')
    verifyErr({ ...csr, pubkey: Buffer.alloc(0) }, sig, 'Failed to parse pubkey')
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey
    const rsaSpki = rsa.export({ format: 'der', type: 'spki' })
    verifyErr({ ...csr, pubkey: rsaSpki }, sig, 'Unsupported algorithm')
    // a P-256 SPKI with bytes after it: x509-parser ignores the remainder
    const padded = { ...csr, pubkey: Buffer.concat([key.spkiDer(), Buffer.from('00', 'hex')]) }
    verifyCsrSignature(padded, key.sign(encodeCsrV2(padded)))
    // Ed25519 SPKI
    const ed = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' })
    verifyErr({ ...csr, pubkey: ed }, sig, 'Unsupported algorithm')

    const wrong = { ...csr, confirm: 'please sign cert' }
    const wrongSig = key.sign(encodeCsrV2(wrong))
    verifyErr(wrong, wrongSig, 'Invalid confirm word')
    verifyErr(wrong, sig, 'Invalid signature')
    throwsMessage(
      () => decodeVerifiedCsr(2, encodeCsrV2(wrong), wrongSig),
      'Failed to verify csr signature: Invalid confirm word',
    )
  })

  it('V1 is verified over its own re-encoding (trailing bytes are not signed)', () => {
    const v1 = sampleV1(key)
    const v1Bytes = encodeCsrV1(v1)
    const v1Sig = sign('sha256', v1Bytes, key.keyObject())
    verifyCsrSignature(v1, v1Sig)
    const upgraded = decodeVerifiedCsr(
      1,
      Buffer.concat([v1Bytes, Buffer.from('abcd', 'hex')]),
      v1Sig,
    )
    assert.equal(upgraded.config.subject, 'legacy.example.com')
    // signed as V2 bytes is not a valid V1 signature
    throwsMessage(
      () => decodeVerifiedCsr(1, v1Bytes, key.sign(bytes)),
      'Failed to verify csr signature: Invalid signature',
    )
  })
})

describe('V1 → V2 upgrade (from_tdx_quote)', () => {
  const key = P256Key.generate()

  it('builds a V0 DstackTdx attestation from the quote and the JSON event log', () => {
    const v1 = sampleV1(key)
    const v2 = upgradeCsrV1(v1)
    assert.equal(v2.confirm, CSR_CONFIRM)
    assert.deepEqual(v2.pubkey, v1.pubkey)
    assert.deepEqual(v2.config, {
      ...v1.config,
      extAppInfo: false,
      notBefore: null,
      notAfter: null,
    })
    const quote = Buffer.from(getQuote.quote, 'hex')
    // V0, DstackTdx, compact(5006) = 39 4e, quote v4 key type 2
    assert.equal(v2.attestation.subarray(0, 8).toString('hex'), '0000394e04000200')
    const r = new ScaleReader(v2.attestation)
    assert.equal(r.u8(), 0)
    assert.equal(r.u8(), 0)
    assert.deepEqual(r.vecU8(), quote)
    const log = JSON.parse(getQuote.event_log) as Array<{
      imr: number
      event_type: number
      digest: string
      event: string
      event_payload: string
    }>
    const events = r.vec((x) => ({
      imr: x.u32(),
      event_type: x.u32(),
      digest: x.vecU8().toString('hex'),
      event: x.string(),
      event_payload: x.vecU8().toString('hex'),
    }))
    assert.equal(events.length, 29)
    assert.deepEqual(events, log)
    const runtime = r.vec((x) => ({ event: x.string(), payload: x.vecU8().toString('hex') }))
    assert.deepEqual(
      runtime,
      log
        .filter((e) => e.event_type === 0x08000001)
        .map((e) => ({ event: e.event, payload: e.event_payload })),
    )
    assert.equal(runtime.length, 9)
    assert.equal(r.bytes(64).toString('hex'), getQuote.report_data)
    assert.equal(r.string(), '')
    assert.equal(r.remaining, 0)
    // the upgraded CSR is a well-formed V2 CSR
    assert.deepEqual(decodeCsrV2(encodeCsrV2(v2)), v2)
  })

  it('reads REPORT_DATA from the dcap-qvl TDX sample and the padded ra-tls asset quote', () => {
    const sample = vectors.dcap_qvl_samples.cases.find((c) => c.quote === 'dcap-qvl-tdx_quote')
    const att = attestationFromTdxQuote(readVectorFile('dcap-qvl-tdx_quote'), Buffer.from('[]'))
    // 00 00 | compact(5006) | quote | 00 (no events) | 00 (no runtime events) | report_data | 00
    assert.equal(att.length, 2 + 2 + 5006 + 2 + 64 + 1)
    assert.equal(att.subarray(5012, 5076).toString('hex'), sample?.report_data)
    const asset = attestationFromTdxQuote(
      readVectorFile('ratls-assets-tdx_quote'),
      Buffer.from('[]'),
    )
    assert.equal(asset.subarray(5012, 5076).toString('latin1').slice(0, 20), '# ~/.bashrc: execute')
  })

  it('fails with upstream contexts', () => {
    const up = (quote: Buffer, eventLog: string) => () =>
      upgradeCsrV1(sampleV1(key, { quote, eventLog: Buffer.from(eventLog) }))
    // a V1 CSR carrying no attestation at all
    throwsMessage(
      up(Buffer.alloc(0), ''),
      'Failed to parse tdx_event_log: EOF while parsing a value at line 1 column 0',
    )
    throwsMessage(
      up(Buffer.alloc(0), '[]'),
      `Invalid TDX quote: Could not decode \`Header::version\`:\n\t${NOT_ENOUGH}\n: ${NOT_ENOUGH}`,
    )
    throwsMessage(
      up(readVectorFile('dcap-qvl-tdx_quote').subarray(0, 100), '[]'),
      `Invalid TDX quote: Could not decode \`TDReport10::mr_seam\`:\n\t${NOT_ENOUGH}\n: ${NOT_ENOUGH}`,
    )
    const badVersion = Buffer.from(readVectorFile('dcap-qvl-tdx_quote'))
    badVersion.writeUInt16LE(6, 0)
    throwsMessage(up(badVersion, '[]'), 'Invalid TDX quote: Unsupported quote version')
    throwsMessage(up(readVectorFile('dcap-qvl-sgx_quote'), '[]'), 'Invalid TDX report')
    throwsMessage(
      up(Buffer.alloc(0), '[{"imr":0,"event_type":1,"event_payload":""}]'),
      'Failed to parse tdx_event_log: missing field `event`',
    )
    throwsMessage(
      up(Buffer.alloc(0), '[{"imr":0,"event_type":1,"event":"x","event_payload":"abc"}]'),
      'Failed to parse tdx_event_log: Odd number of digits',
    )
  })

  it('SignCert V1 path: signature first, then the upgrade context', () => {
    const empty = sampleV1(key, { quote: Buffer.alloc(0), eventLog: Buffer.alloc(0) })
    const bytes = encodeCsrV1(empty)
    throwsMessage(
      () => decodeVerifiedCsr(1, bytes, key.sign(bytes)),
      'Failed to upgrade csr v1 to v2: Failed to parse tdx_event_log: EOF while parsing a value at line 1 column 0',
    )
    throwsMessage(
      () => decodeVerifiedCsr(1, bytes, Buffer.alloc(0)),
      'Failed to verify csr signature: Invalid signature',
    )
  })
})

describe('SignCert bounds and leaf config checks', () => {
  const key = P256Key.generate()
  const signed = (csr: CertSigningRequestV2): [Buffer, Buffer] => {
    const bytes = encodeCsrV2(csr)
    return [bytes, key.sign(bytes)]
  }
  const withConfig = (over: Partial<CertSigningRequestV2['config']>): CertSigningRequestV2 => {
    const base = sampleV2(key)
    return { ...base, config: { ...base.config, ...over } }
  }

  it('millions of empty SANs are refused by their count, before any item is decoded', () => {
    const base = encodeCsrV2(withConfig({ subjectAltNames: [] }))
    // the SAN vector (compact 0) follows the option tag, the subject and its length prefix
    const subjectAt = base.indexOf('app.example.com')
    const sanAt = subjectAt + 'app.example.com'.length
    assert.equal(base[sanAt], 0)
    const count = 2_000_000
    const bytes = Buffer.concat([
      base.subarray(0, sanAt),
      encodeCompact(count),
      Buffer.alloc(count),
      base.subarray(sanAt + 1),
    ])
    assert.throws(
      () => decodeVerifiedCsr(2, bytes, key.sign(bytes)),
      (err: unknown) =>
        err instanceof KmsError &&
        err.message.startsWith('Failed to parse csr: ') &&
        err.message.includes('exceeds the limit of 1024'),
    )
  })

  it('the limit itself is accepted', () => {
    const sans = Array.from({ length: 1024 }, (_, i) => `h${i}.example.com`)
    const [bytes, sig] = signed(withConfig({ subjectAltNames: sans }))
    assert.equal(decodeVerifiedCsr(2, bytes, sig).config.subjectAltNames.length, 1024)
  })

  it('a V2 CSR is verified over the received bytes, which for a decodable CSR are its encoding', () => {
    const csr = sampleV2(key)
    const [bytes, sig] = signed(csr)
    verifyCsrSignature(csr, sig, bytes)
    assert.deepEqual(decodeVerifiedCsr(2, bytes, sig), csr)
  })

  const refusals: Array<[string, Partial<CertSigningRequestV2['config']>, RegExp]> = [
    ['notBefore after notAfter', { notBefore: 2n, notAfter: 1n }, /not_before \(2\) is after/],
    ['a newline in the CN', { subject: 'app.example.com\nCN=evil' }, /subject contains a control/],
    ['a NUL in the organization', { orgName: 'Org\u0000' }, /organization name contains/],
    ['a bare * SAN', { subjectAltNames: ['*'] }, /wildcard subject alternative name "\*"/],
    ['*.com', { subjectAltNames: ['*.com'] }, /"\*\.com" is too broad/],
    ['a wildcard below the leftmost label', { subjectAltNames: ['a.*.example.com'] }, /too broad/],
    ['*.*.example.com', { subjectAltNames: ['*.*.example.com'] }, /too broad/],
    ['a SAN with a newline', { subjectAltNames: ['a.example.com\n'] }, /control character/],
  ]
  for (const [what, over, message] of refusals) {
    it(`refuses ${what}`, () => {
      const [bytes, sig] = signed(withConfig(over))
      assert.throws(
        () => decodeVerifiedCsr(2, bytes, sig),
        (err: unknown) =>
          err instanceof KmsError &&
          err.code === 'KMS_ERR_BAD_REQUEST' &&
          err.message.startsWith('Invalid certificate config: ') &&
          message.test(err.message),
      )
    })
  }

  it('accepts an ordinary wildcard, equal validity bounds and an IP SAN', () => {
    const [bytes, sig] = signed(
      withConfig({
        subjectAltNames: ['*.app.example.com', '10.0.0.1'],
        notBefore: 5n,
        notAfter: 5n,
      }),
    )
    assert.equal(decodeVerifiedCsr(2, bytes, sig).config.notAfter, 5n)
  })

  it('a V1 CSR with a newline in its CN is refused before the upgrade', () => {
    const v1 = sampleV1(key, {
      config: { ...sampleV1(key).config, subject: 'legacy.example.com\r\nX: y' },
    })
    const bytes = encodeCsrV1(v1)
    assert.throws(
      () => decodeVerifiedCsr(1, bytes, key.sign(bytes)),
      /^KmsError: Invalid certificate config: the subject contains a control character$/,
    )
  })
})
