import assert from 'node:assert/strict'
import { X509Certificate, verify } from 'node:crypto'
import { describe, it } from 'node:test'
import { P256Key, P256PublicKey } from '../src/crypto/p256.js'
import { KmsError } from '../src/errors.js'
import {
  DEFAULT_NOT_BEFORE,
  type IssuedCertificate,
  type Issuer,
  buildTbsCertificate,
  certificateSerial,
  issueCertificate,
  subjectKeyIdentifier,
} from '../src/x509/certificate.js'
import {
  derBitString,
  derOctetString,
  derOid,
  derSequence,
  derExplicit,
  parseDer,
  derChildren,
  decodeOidContent,
  encodeOidContent,
} from '../src/asn1/der.js'
import { CERT_USAGE, OID, RATLS_OID } from '../src/asn1/oids.js'
import {
  type ParsedCertificate,
  parseCertificate,
  readCertUsage,
  readRaTlsExtension,
} from '../src/x509/parse.js'
import { pemDecode, pemDecodeAll, pemEncode } from '../src/asn1/pem.js'
import {
  issueAppCaCert,
  issueRaTlsClientCert,
  issueRootCaCert,
  issueRpcCert,
  issueSignCertLeaf,
  issueTempCaCert,
} from '../src/x509/templates.js'
import { type AppKeysFixture, hexBytes, readVectorJson } from './helpers/crypto-vectors.js'

const appkeys = readVectorJson<AppKeysFixture>('appkeys.json')
const { misc } = readVectorJson<{
  misc: {
    ratls_kms_rpc_usage_extension_der: string
    appkeys_ca_serial: string
    appkeys_ca_ski: string
  }
}>('vectors.json')

const caKey = P256Key.fromPem(appkeys.key_provider.None.key)
const caDer = pemDecode(appkeys.ca_cert, 'CERTIFICATE')
const caParsed = parseCertificate(caDer)
const APP_ID = hexBytes('5bb4ff9a3837357f19dc176407a5709c62eb6c56')

const rootKey = P256Key.fromScalar(Buffer.alloc(32, 0x11))
const tempKey = P256Key.fromScalar(Buffer.alloc(32, 0x22))
const rpcKey = P256Key.fromScalar(Buffer.alloc(32, 0x33))
const rootCert = issueRootCaCert(rootKey)
const rootIssuer: Issuer = { key: rootKey, subjectDer: rootCert.subjectDer }
const tempCert = issueTempCaCert(tempKey)
const tempIssuer: Issuer = { key: tempKey, subjectDer: tempCert.subjectDer }

const extOids = (cert: ParsedCertificate): string[] => [...cert.extensions.keys()]

/** Checks the signature and issuer linkage with node:crypto independently of our parser. */
function assertIssuedBy(cert: IssuedCertificate, issuerPem: string, issuerKey: P256Key): void {
  const x = new X509Certificate(cert.pem)
  assert.ok(x.verify(issuerKey.publicKeyObject()), 'signature does not verify')
  assert.ok(x.checkIssued(new X509Certificate(issuerPem)), 'checkIssued failed')
  assert.deepEqual(Buffer.from(x.raw), cert.der)
  const parsed = parseCertificate(cert.der)
  assert.deepEqual(
    parsed.issuerDer,
    parseCertificate(pemDecode(issuerPem, 'CERTIFICATE')).subjectDer,
  )
  assert.ok(verify('sha256', parsed.tbsDer, issuerKey.publicKeyObject(), parsed.signatureValue))
}

describe('rcgen-compatible issuance: the appkeys.json KMS CA', () => {
  it('parses the rcgen certificate', () => {
    assert.equal(caDer.length, 415)
    assert.equal(caParsed.subjectCommonName, 'Dstack KMS CA')
    assert.deepEqual(caParsed.issuerDer, caParsed.subjectDer)
    assert.equal(caParsed.notBefore.toISOString(), '1975-01-01T00:00:00.000Z')
    assert.equal(caParsed.notAfter.toISOString(), '2035-12-19T02:51:39.000Z')
    assert.deepEqual(caParsed.spkiDer, caKey.spkiDer())
    assert.deepEqual(caParsed.publicPoint, caKey.publicPoint)
    assert.equal(caParsed.publicKeyAlgorithm, OID.ecPublicKey)
    assert.equal(caParsed.publicKeyCurve, OID.prime256v1)
    assert.equal(caParsed.signatureAlgorithm, OID.ecdsaWithSha256)
    assert.deepEqual(extOids(caParsed), [
      OID.keyUsage,
      OID.subjectKeyIdentifier,
      OID.basicConstraints,
    ])
  })

  it('rebuilds its TBSCertificate byte for byte with issueCertificate', () => {
    const issued = issueCertificate(caKey, {
      subject: { organization: 'Dstack', commonName: 'Dstack KMS CA' },
      ca: { pathLen: 1 },
      notAfter: caParsed.notAfter,
    })
    const ours = parseCertificate(issued.der)
    assert.equal(ours.tbsDer.toString('hex'), caParsed.tbsDer.toString('hex'))
    assert.deepEqual(issued.subjectDer, caParsed.subjectDer)
    // the template gives the same bytes
    const templ = parseCertificate(issueRootCaCert(caKey, caParsed.notAfter).der)
    assert.deepEqual(templ.tbsDer, caParsed.tbsDer)
    // and the original verifies against our key, so rebuilt and original are interchangeable
    assert.ok(new X509Certificate(appkeys.ca_cert).verify(caKey.publicKeyObject()))
    assert.ok(new X509Certificate(issued.pem).verify(caKey.publicKeyObject()))
  })

  it('derives serial and SKI as rcgen does', () => {
    assert.equal(certificateSerial(caKey.publicPoint).toString('hex'), misc.appkeys_ca_serial)
    assert.equal(caParsed.serial.toString('hex'), misc.appkeys_ca_serial)
    assert.equal(subjectKeyIdentifier(caKey.spkiDer()).toString('hex'), misc.appkeys_ca_ski)
    const ski = caParsed.extensions.get(OID.subjectKeyIdentifier)
    assert.equal(ski?.value.toString('hex'), '0414' + misc.appkeys_ca_ski)
    assert.equal(ski?.critical, false)
    assert.equal(caParsed.extensions.get(OID.keyUsage)?.value.toString('hex'), '0303078600')
    assert.equal(caParsed.extensions.get(OID.keyUsage)?.critical, true)
    assert.equal(
      caParsed.extensions.get(OID.basicConstraints)?.value.toString('hex'),
      '30060101ff020101',
    )
  })

  it('encodes serials as minimal positive INTEGERs', () => {
    // find a key whose serial starts with a zero byte so that yasna's leading-zero strip shows
    let found: Buffer | undefined
    for (let i = 1; found === undefined; i++) {
      const key = P256Key.fromScalar(Buffer.from(i.toString(16).padStart(64, '0'), 'hex'))
      if (certificateSerial(key.publicPoint)[0] === 0) {
        const tbs = buildTbsCertificate(key, { subject: { commonName: 'x' } }, Buffer.alloc(2))
        found = tbs
        const serialTlv = derChildren(parseDer(tbs))[1]
        const serial = certificateSerial(key.publicPoint)
        let start = 0
        while (serial[start] === 0) start++
        const expected =
          (serial[start] as number) & 0x80 ? serial.subarray(start - 1) : serial.subarray(start)
        assert.deepEqual(serialTlv?.content, expected)
      }
    }
  })
})

describe('certificate templates', () => {
  it('temp CA and root CA: self-signed, CA with pathLen 0 / 1, stable serial and SKI', () => {
    const temp = parseCertificate(tempCert.der)
    assert.equal(temp.subjectCommonName, 'Dstack Client Temp CA')
    assert.equal(
      temp.extensions.get(OID.basicConstraints)?.value.toString('hex'),
      '30060101ff020100',
    )
    const root = parseCertificate(rootCert.der)
    assert.equal(root.subjectCommonName, 'Dstack KMS CA')
    assert.equal(
      root.extensions.get(OID.basicConstraints)?.value.toString('hex'),
      '30060101ff020101',
    )
    for (const [cert, key] of [
      [tempCert, tempKey],
      [rootCert, rootKey],
    ] as const) {
      const x = new X509Certificate(cert.pem)
      assert.ok(x.ca)
      assert.ok(x.verify(key.publicKeyObject()))
      assert.ok(x.checkIssued(x))
      const p = parseCertificate(cert.der)
      assert.deepEqual(p.issuerDer, p.subjectDer)
      assert.deepEqual(p.serial, certificateSerial(key.publicPoint))
      assert.deepEqual(extOids(p), [OID.keyUsage, OID.subjectKeyIdentifier, OID.basicConstraints])
    }
    // re-issuing keeps DN, serial and SKI (guests with cached roots keep validating)
    const again = parseCertificate(issueRootCaCert(rootKey).der)
    const first = parseCertificate(rootCert.der)
    assert.deepEqual(again.serial, first.serial)
    assert.deepEqual(again.subjectDer, first.subjectDer)
    assert.deepEqual(
      again.extensions.get(OID.subjectKeyIdentifier),
      first.extensions.get(OID.subjectKeyIdentifier),
    )
  })

  it('RPC certificate: kms:rpc usage extension, DNS SAN, no EKU/SKI/BC, chains to the root', () => {
    const attestation = Buffer.from('stripped attestation bytes')
    const rpc = issueRpcCert('kms.example.com', rpcKey, rootIssuer, attestation)
    assert.ok(
      rpc.der.includes(hexBytes(misc.ratls_kms_rpc_usage_extension_der)),
      'usage extension DER not found',
    )
    const p = parseCertificate(rpc.der)
    assert.equal(p.subjectCommonName, 'kms.example.com')
    assert.deepEqual(p.subjectAltNames, ['kms.example.com'])
    assert.equal(
      p.extensions.get(OID.subjectAltName)?.value.toString('hex'),
      '3011820f' + Buffer.from('kms.example.com').toString('hex'),
    )
    assert.deepEqual(extOids(p), [
      OID.subjectAltName,
      OID.keyUsage,
      RATLS_OID.certUsage,
      RATLS_OID.attestation,
    ])
    assert.equal(p.extensions.get(OID.keyUsage)?.value.toString('hex'), '0303078000')
    assert.equal(readCertUsage(p), CERT_USAGE.kmsRpc)
    assert.deepEqual(readRaTlsExtension(p, RATLS_OID.attestation), attestation)
    assert.equal(readRaTlsExtension(p, RATLS_OID.appId), undefined)
    // chain checks without node:tls
    assertIssuedBy(rpc, rootCert.pem, rootKey)
    const x = new X509Certificate(rpc.pem)
    assert.ok(!x.ca)
    assert.equal(x.checkHost('kms.example.com'), 'kms.example.com')
    assert.ok(!x.verify(tempKey.publicKeyObject()))
    assert.ok(!x.checkIssued(new X509Certificate(tempCert.pem)))

    const unattested = parseCertificate(issueRpcCert('kms.example.com', rpcKey, rootIssuer).der)
    assert.deepEqual(extOids(unattested), [OID.subjectAltName, OID.keyUsage, RATLS_OID.certUsage])
  })

  it('RPC certificate for an IP literal gets an iPAddress SAN', () => {
    const v4 = issueRpcCert('10.1.2.3', rpcKey, rootIssuer)
    const p4 = parseCertificate(v4.der)
    assert.equal(p4.extensions.get(OID.subjectAltName)?.value.toString('hex'), '300687040a010203')
    assert.deepEqual(p4.subjectAltNames, ['10.1.2.3'])
    assert.equal(p4.subjectCommonName, '10.1.2.3')
    assert.equal(new X509Certificate(v4.pem).checkIP('10.1.2.3'), '10.1.2.3')

    const v6 = issueRpcCert('2001:db8::1', rpcKey, rootIssuer)
    const p6 = parseCertificate(v6.der)
    assert.equal(
      p6.extensions.get(OID.subjectAltName)?.value.toString('hex'),
      '30128710' + '20010db8000000000000000000000001',
    )
    assert.deepEqual(p6.subjectAltNames, ['2001:db8::1'])
    assertIssuedBy(v6, rootCert.pem, rootKey)

    const mapped = parseCertificate(issueRpcCert('::ffff:1.2.3.4', rpcKey, rootIssuer).der)
    assert.equal(
      mapped.extensions.get(OID.subjectAltName)?.value.toString('hex'),
      '30128710' + '00000000000000000000ffff01020304',
    )
    assert.deepEqual(mapped.subjectAltNames, ['::ffff:1.2.3.4'])
    // things Rust's IpAddr parser refuses are DNS names
    for (const name of ['01.2.3.4', '1.2.3', 'fe80::1%eth0', 'localhost']) {
      const p = parseCertificate(issueRpcCert(name, rpcKey, rootIssuer).der)
      assert.equal(p.extensions.get(OID.subjectAltName)?.value[2], 0x82, name)
    }
  })

  it('refuses non-ASCII DNS names', () => {
    assert.throws(
      () => issueRpcCert('kms.exämple.com', rpcKey, rootIssuer),
      (err: unknown) => {
        assert.ok(err instanceof KmsError)
        assert.equal(err.code, 'KMS_ERR_CERT')
        return true
      },
    )
  })

  it('App CA: CA pathLen 0, app_id and app:ca usage, signed by the root', () => {
    const appCaKey = P256Key.fromScalar(Buffer.alloc(32, 0x44))
    const appCa = issueAppCaCert(APP_ID, appCaKey, rootIssuer)
    const p = parseCertificate(appCa.der)
    assert.equal(p.subjectCommonName, 'Dstack App CA')
    assert.deepEqual(extOids(p), [
      OID.keyUsage,
      OID.subjectKeyIdentifier,
      OID.basicConstraints,
      RATLS_OID.appId,
      RATLS_OID.certUsage,
    ])
    assert.equal(p.extensions.get(OID.basicConstraints)?.value.toString('hex'), '30060101ff020100')
    assert.deepEqual(readRaTlsExtension(p, RATLS_OID.appId), APP_ID)
    assert.equal(readCertUsage(p), CERT_USAGE.appCa)
    assertIssuedBy(appCa, rootCert.pem, rootKey)
    assert.ok(new X509Certificate(appCa.pem).ca)
  })

  it('SignCert leaf: O/CN, SANs, EKU, custom extensions in push order, validity override', () => {
    const appCaKey = P256Key.fromScalar(Buffer.alloc(32, 0x44))
    const appCa = issueAppCaCert(APP_ID, appCaKey, rootIssuer)
    const leafKey = P256PublicKey.fromPoint(P256Key.fromScalar(Buffer.alloc(32, 0x55)).publicPoint)
    const leaf = issueSignCertLeaf(
      leafKey,
      {
        orgName: 'Org',
        subject: 'app.example.com',
        subjectAltNames: ['app.example.com', '127.0.0.1'],
        usageServerAuth: true,
        usageClientAuth: true,
        notBefore: new Date('2024-01-01T00:00:00Z'),
        notAfter: new Date('2060-01-01T00:00:00Z'),
      },
      { key: appCaKey, subjectDer: appCa.subjectDer },
      APP_ID,
      { appInfo: Buffer.from([0x93, 0x01, 0x02, 0x03]), attestation: Buffer.from('att') },
    )
    const p = parseCertificate(leaf.der)
    assert.deepEqual(extOids(p), [
      OID.subjectAltName,
      OID.keyUsage,
      OID.extKeyUsage,
      RATLS_OID.appId,
      RATLS_OID.appInfo,
      RATLS_OID.certUsage,
      RATLS_OID.attestation,
    ])
    assert.equal(
      p.extensions.get(OID.extKeyUsage)?.value.toString('hex'),
      '301406082b0601050507030106082b06010505070302',
    )
    assert.deepEqual(p.subjectAltNames, ['app.example.com', '127.0.0.1'])
    assert.equal(readCertUsage(p), CERT_USAGE.appCustom)
    assert.deepEqual(readRaTlsExtension(p, RATLS_OID.appInfo), Buffer.from([0x93, 1, 2, 3]))
    assert.equal(p.notBefore.toISOString(), '2024-01-01T00:00:00.000Z')
    assert.equal(p.notAfter.toISOString(), '2060-01-01T00:00:00.000Z')
    assert.ok(new X509Certificate(leaf.pem).subject.includes('O=Org'))
    assertIssuedBy(leaf, appCa.pem, appCaKey)

    const serverOnly = parseCertificate(
      issueSignCertLeaf(
        leafKey,
        { subject: 's', subjectAltNames: [], usageServerAuth: true, usageClientAuth: false },
        { key: appCaKey, subjectDer: appCa.subjectDer },
        APP_ID,
      ).der,
    )
    assert.equal(
      serverOnly.extensions.get(OID.extKeyUsage)?.value.toString('hex'),
      '300a06082b06010505070301',
    )
    assert.deepEqual(extOids(serverOnly), [
      OID.keyUsage,
      OID.extKeyUsage,
      RATLS_OID.appId,
      RATLS_OID.certUsage,
    ])
  })

  it('RA-TLS client certificate: CN RA-TLS TEMP Cert, attestation only, issued by the temp CA', () => {
    const clientKey = P256Key.fromScalar(Buffer.alloc(32, 0x66))
    const cert = issueRaTlsClientCert(clientKey, tempIssuer, Buffer.from('attestation'))
    const p = parseCertificate(cert.der)
    assert.equal(p.subjectCommonName, 'RA-TLS TEMP Cert')
    assert.deepEqual(
      p.subjectDer,
      hexBytes('301b3119301706035504030c1052412d544c532054454d502043657274'),
    )
    assert.deepEqual(extOids(p), [OID.keyUsage, RATLS_OID.attestation])
    assert.deepEqual(readRaTlsExtension(p, RATLS_OID.attestation), Buffer.from('attestation'))
    assertIssuedBy(cert, tempCert.pem, tempKey)
  })
})

describe('issueCertificate details', () => {
  it('omits [3] when only KeyUsage would be written (rcgen quirk)', () => {
    const key = P256Key.fromScalar(Buffer.alloc(32, 0x77))
    const cert = issueCertificate(key, { subject: { commonName: 'bare' } })
    const p = parseCertificate(cert.der)
    assert.equal(p.extensions.size, 0)
    const tbsFields = derChildren(parseDer(p.tbsDer))
    assert.equal(tbsFields.length, 7)
    assert.ok(new X509Certificate(cert.pem).verify(key.publicKeyObject()))
  })

  it('uses UTCTime before 2050 and GeneralizedTime from 2050, whole seconds', () => {
    const key = P256Key.fromScalar(Buffer.alloc(32, 0x77))
    const tbsTimes = (notBefore: Date, notAfter: Date): string[] => {
      const tbs = buildTbsCertificate(
        key,
        { subject: { commonName: 't' }, notBefore, notAfter },
        Buffer.alloc(2),
      )
      const validity = derChildren(parseDer(tbs))[4]
      return derChildren(validity as ReturnType<typeof parseDer>).map(
        (n) => n.tag.toString(16) + ':' + n.content.toString('latin1'),
      )
    }
    assert.deepEqual(
      tbsTimes(new Date('2049-12-31T23:59:59.999Z'), new Date('2050-01-01T00:00:00Z')),
      ['17:491231235959Z', '18:20500101000000Z'],
    )
    assert.deepEqual(tbsTimes(new Date('1949-12-31T23:59:59Z'), new Date('1950-01-01T00:00:00Z')), [
      '18:19491231235959Z',
      '17:500101000000Z',
    ])
    const far = issueCertificate(key, {
      subject: { commonName: 'far' },
      notAfter: new Date('2100-02-03T04:05:06.789Z'),
    })
    const p = parseCertificate(far.der)
    assert.equal(p.notAfter.toISOString(), '2100-02-03T04:05:06.000Z')
    assert.equal(p.notBefore.getTime(), DEFAULT_NOT_BEFORE.getTime())
    assert.equal(new X509Certificate(far.pem).validTo, 'Feb  3 04:05:06 2100 GMT')
  })

  it('defaults to notBefore 1975-01-01 and notAfter now + 3650 days', () => {
    const before = Math.floor(Date.now() / 1000) * 1000
    const p = parseCertificate(issueRootCaCert(rootKey).der)
    const after = Date.now()
    const span = 3650 * 86_400_000
    assert.equal(p.notBefore.toISOString(), '1975-01-01T00:00:00.000Z')
    assert.ok(p.notAfter.getTime() >= before + span && p.notAfter.getTime() <= after + span)
    assert.equal(p.notAfter.getUTCMilliseconds(), 0)
  })

  it('refuses bad parameters', () => {
    const key = P256Key.fromScalar(Buffer.alloc(32, 0x77))
    assert.throws(
      () => issueCertificate(key, { subject: { commonName: 'x' }, ca: { pathLen: 256 } }),
      {
        code: 'KMS_ERR_CERT',
      },
    )
    assert.throws(
      () => issueCertificate(key.publicKey(), { subject: { commonName: 'x' } }),
      /self-signed certificate needs the subject private key/,
    )
    assert.throws(
      () => issueCertificate(key, { subject: { commonName: 'x' }, notAfter: new Date(NaN) }),
      { code: 'KMS_ERR_CERT' },
    )
  })
})

describe('strict certificate parsing', () => {
  const rpc = issueRpcCert('kms.example.com', rpcKey, rootIssuer, Buffer.from('att'))

  function assertCertError(fn: () => unknown, pattern: RegExp): void {
    assert.throws(fn, (err: unknown) => {
      assert.ok(err instanceof KmsError)
      assert.equal(err.code, 'KMS_ERR_CERT')
      assert.match(err.message, pattern)
      return true
    })
  }

  /** Re-signs `tbs` with the root key into a full certificate. */
  function certFromTbs(tbs: Buffer): Buffer {
    const alg = derSequence(derOid(OID.ecdsaWithSha256))
    return derSequence(tbs, alg, derBitString(rootKey.sign(tbs)))
  }

  it('rejects duplicate extensions', () => {
    const p = parseCertificate(rpc.der)
    const fields = derChildren(parseDer(p.tbsDer))
    const extSeq = derChildren(fields[7] as ReturnType<typeof parseDer>)[0]
    const exts = derChildren(extSeq as ReturnType<typeof parseDer>)
    const usage = exts.find((e) => e.raw.includes(hexBytes('060a2b0601040183e73d0104')))
    assert.ok(usage)
    const dupExts = derExplicit(3, derSequence(...exts.map((e) => e.raw), usage.raw))
    const tbs = derSequence(...fields.slice(0, 7).map((f) => f.raw), dupExts)
    const der = certFromTbs(tbs)
    assert.doesNotThrow(() => new X509Certificate(der))
    assertCertError(
      () => parseCertificate(der),
      /duplicate extension 1\.3\.6\.1\.4\.1\.62397\.1\.4/,
    )
  })

  it('rejects every truncation and trailing data', () => {
    for (let len = 0; len < rpc.der.length; len++) {
      assertCertError(() => parseCertificate(rpc.der.subarray(0, len)), /invalid certificate/)
    }
    assertCertError(
      () => parseCertificate(Buffer.concat([rpc.der, Buffer.from([0])])),
      /trailing data/,
    )
  })

  it('rejects non-DER encodings', () => {
    // indefinite length on the outer SEQUENCE
    const indefinite = Buffer.concat([
      Buffer.from([0x30, 0x80]),
      rpc.der.subarray(4),
      Buffer.from([0, 0]),
    ])
    assertCertError(() => parseCertificate(indefinite), /indefinite/)
    // a long-form length where the short form would do
    const tbs = parseCertificate(rpc.der).tbsDer
    const version = Buffer.from([0xa0, 0x81, 0x03, 0x02, 0x01, 0x02])
    const nonMinimal = derSequence(
      version,
      ...derChildren(parseDer(tbs))
        .slice(1)
        .map((f) => f.raw),
    )
    assertCertError(() => parseCertificate(certFromTbs(nonMinimal)), /non-minimal length/)
    // a mismatched outer signature algorithm
    const fields = derChildren(parseDer(rpc.der))
    const sha384 = derSequence(derOid('1.2.840.10045.4.3.3'))
    const mismatched = derSequence(
      fields[0]?.raw ?? Buffer.alloc(0),
      sha384,
      fields[2]?.raw ?? Buffer.alloc(0),
    )
    assertCertError(() => parseCertificate(mismatched), /signature algorithm differs/)
    assertCertError(() => parseCertificate(Buffer.from('not a certificate')), /invalid certificate/)
  })

  it('reads usage strictly and unwraps exactly one inner OCTET STRING', () => {
    const key = P256Key.fromScalar(Buffer.alloc(32, 0x77))
    const unicode = issueCertificate(key, { subject: { commonName: 'u' }, usage: 'app:ünïcode' })
    assert.equal(readCertUsage(parseCertificate(unicode.der)), 'app:ünïcode')
    assert.equal(readCertUsage(parseCertificate(tempCert.der)), undefined)

    // invalid UTF-8 in the usage: build by hand since issueCertificate takes a string
    const base = parseCertificate(
      issueCertificate(key, { subject: { commonName: 'u' }, usage: 'x' }).der,
    )
    const fields = derChildren(parseDer(base.tbsDer))
    const badUsage = derSequence(
      derOid(RATLS_OID.certUsage),
      derOctetString(derOctetString(Buffer.from([0xc3, 0x28]))),
    )
    const ku = derSequence(
      derOid(OID.keyUsage),
      Buffer.from('0101ff', 'hex'),
      derOctetString(Buffer.from('0303078000', 'hex')),
    )
    const tbs = derSequence(
      ...fields.slice(0, 7).map((f) => f.raw),
      derExplicit(3, derSequence(ku, badUsage)),
    )
    const parsed = parseCertificate(certFromTbs(tbs))
    assert.throws(() => readCertUsage(parsed), { code: 'KMS_ERR_CERT', message: /invalid UTF-8/ })

    // single wrap (raw bytes directly in extnValue) is not the dstack format
    const singleWrap = derSequence(derOid(RATLS_OID.appId), derOctetString(APP_ID))
    const tbs2 = derSequence(
      ...fields.slice(0, 7).map((f) => f.raw),
      derExplicit(3, derSequence(ku, singleWrap)),
    )
    const parsed2 = parseCertificate(certFromTbs(tbs2))
    assert.throws(() => readRaTlsExtension(parsed2, RATLS_OID.appId), { code: 'KMS_ERR_CERT' })
  })
})

describe('OID decoding', () => {
  it('round-trips arcs on both sides of 2^53, and refuses empty, non-minimal and truncated OIDs', () => {
    const big = (2n ** 53n).toString()
    const oids = [
      OID.ecPublicKey,
      OID.commonName,
      RATLS_OID.appId,
      '0.39',
      '1.0.5',
      '2.999.3',
      `2.${Number.MAX_SAFE_INTEGER}`,
      `1.2.${Number.MAX_SAFE_INTEGER}.7`,
      `1.2.${big}`,
      `1.2.${big}1.4`,
      // a UUID OID: one 128-bit arc
      '2.25.329800735698586629295641978511506172918',
      `2.${2n ** 70n}.1`,
    ]
    for (const oid of oids) assert.equal(decodeOidContent(encodeOidContent(oid)), oid)
    const refusals: [string, string][] = [
      ['', 'OID: empty OID'],
      ['2a8086', 'OID: non-minimal OID'],
      ['2a0380', 'OID: non-minimal OID'],
      ['2a86', 'OID: truncated OID'],
      // the non-minimal byte after an arc too long for a Number
      ['2aff' + 'ff'.repeat(9) + '7f80', 'OID: non-minimal OID'],
      ['2aff' + 'ff'.repeat(9), 'OID: truncated OID'],
    ]
    for (const [hex, message] of refusals) {
      assert.throws(() => decodeOidContent(Buffer.from(hex, 'hex')), { message }, hex)
    }
  })
})

describe('PEM', () => {
  it('encodes with 64-character lines and decodes strictly', () => {
    const der = Buffer.alloc(100, 0xab)
    const pem = pemEncode('CERTIFICATE', der)
    const lines = pem.split('\n')
    assert.equal(lines[0], '-----BEGIN CERTIFICATE-----')
    assert.deepEqual(
      lines.slice(1, -2).map((l) => l.length),
      [64, 64, 8],
    )
    assert.equal(lines.at(-2), '-----END CERTIFICATE-----')
    assert.equal(lines.at(-1), '')
    assert.deepEqual(pemDecode(pem, 'CERTIFICATE'), der)
    assert.equal(pemEncode('CERTIFICATE', caDer), appkeys.ca_cert)
  })

  it('decodes chains and selects by label', () => {
    const chain = rootCert.pem + appkeys.key_provider.None.key + tempCert.pem
    assert.deepEqual(pemDecodeAll(chain, 'CERTIFICATE'), [rootCert.der, tempCert.der])
    assert.deepEqual(pemDecode(chain, 'CERTIFICATE'), rootCert.der)
    assert.throws(() => pemDecode(chain, 'X509 CRL'), /no X509 CRL block/)
  })

  it('rejects malformed PEM', () => {
    const good = pemEncode('CERTIFICATE', Buffer.from([1, 2, 3, 4]))
    for (const bad of [
      good.replace('AQIDBA==', 'AQIDBA=='.slice(0, 6)),
      good.replace('AQIDBA==', 'AQIDBB=='),
      good.replace('AQIDBA==', 'AQ*DBA=='),
      good.replace('-----END CERTIFICATE-----', '-----END PRIVATE KEY-----'),
      good.replace('-----END CERTIFICATE-----\n', ''),
      good.replace('AQIDBA==', ''),
      '-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\nAQIDBA==\n-----END CERTIFICATE-----\n',
    ]) {
      assert.throws(() => pemDecode(bad, 'CERTIFICATE'), { code: 'KMS_ERR_CERT' }, bad)
    }
  })
})
