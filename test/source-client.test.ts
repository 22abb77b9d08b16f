// The receiver's client for a source KMS against real HTTPS servers on loopback: upstream's URL
// normalisation and error texts, the reply cap, and that a connection whose certificate fails
// the check carries no request at all.
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:https'
import { after, describe, it } from 'node:test'
import { P256Key } from '../src/crypto/p256.js'
import { KmsError, withContext } from '../src/errors.js'
import {
  SourceClient,
  SourceUnreachableError,
  isUnreachableCause,
  normalizeSourceUrl,
} from '../src/onboard/source-client.js'
import { issueCertificate } from '../src/x509/certificate.js'
import { parseCertificate } from '../src/x509/parse.js'
import { freePort } from './helpers/kms-process.js'

const key = P256Key.generate()
const cert = issueCertificate(key, {
  subject: { commonName: 'localhost' },
  subjectAltNames: ['localhost'],
  extendedKeyUsage: { serverAuth: true, clientAuth: false },
})

async function serve(handler: Parameters<typeof createServer>[1]): Promise<{
  server: Server
  url: string
  requests: string[]
}> {
  const requests: string[] = []
  const server = createServer({ key: key.pkcs8Pem(), cert: cert.pem }, (req, res) => {
    requests.push(`${req.method} ${req.url} ${req.headers['content-type'] ?? '-'}`)
    handler?.(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  return { server, url: `https://localhost:${port}/prpc`, requests }
}

describe('source KMS client', () => {
  const servers: Server[] = []
  after(() => servers.forEach((s) => s.close()))

  it('normalises the source URL as upstream does', () => {
    assert.equal(normalizeSourceUrl('https://kms:8000'), 'https://kms:8000/prpc')
    assert.equal(normalizeSourceUrl('https://kms:8000///'), 'https://kms:8000/prpc')
    assert.equal(normalizeSourceUrl('https://kms:8000/prpc/'), 'https://kms:8000/prpc')
    assert.equal(normalizeSourceUrl('https://kms:8000/prpc'), 'https://kms:8000/prpc')
  })

  it('POSTs <base>/<Method>?json without a Content-Type and parses the JSON reply', async () => {
    const s = await serve((_req, res) => res.end('{"ok":true}'))
    servers.push(s.server)
    let seen: Buffer | null = null
    const reply = await new SourceClient(s.url).call('GetMeta', null, (der) => {
      seen = der
    })
    assert.deepEqual(reply, { ok: true })
    assert.deepEqual(s.requests, ['POST /prpc/GetMeta?json -'])
    assert.ok(seen !== null)
    assert.deepEqual(parseCertificate(seen).spkiDer, key.spkiDer())
  })

  it('a failed certificate check sends nothing on that connection', async () => {
    const s = await serve((_req, res) => res.end('null'))
    servers.push(s.server)
    await assert.rejects(
      new SourceClient(s.url).call('GetKmsKey', { vm_config: '' }, () => {
        throw new KmsError('KMS_ERR_CERT', 'not the pinned key')
      }),
      /^KmsError: not the pinned key$/,
    )
    assert.deepEqual(s.requests, [])
  })

  it('a non-200 reply embeds the source body as upstream`s client does', async () => {
    const body = JSON.stringify({ error: 'Boot denied: aggregated MR not allowed' }, null, 2)
    const s = await serve((_req, res) => {
      res.statusCode = 400
      res.end(body)
    })
    servers.push(s.server)
    await assert.rejects(
      new SourceClient(s.url).call('GetKmsKey', {}, () => {}),
      {
        message: `Request failed with status=400 Bad Request, error=${body}`,
      },
    )
  })

  it('caps the reply size', async () => {
    const s = await serve((_req, res) => res.end(Buffer.alloc(2 * 1024 * 1024, 0x20)))
    servers.push(s.server)
    await assert.rejects(
      new SourceClient(s.url).call('GetTempCaCert', null, () => {}),
      {
        message: 'source KMS reply is larger than 1048576 bytes',
      },
    )
  })

  it('refused connections are "unreachable" (auto-onboard retries those only)', async () => {
    const port = await freePort()
    const url = `https://127.0.0.1:${port}/prpc`
    const err = await new SourceClient(url)
      .call('GetTempCaCert', null, () => {})
      .then(
        () => assert.fail('connected to a closed port'),
        (e: unknown) => e,
      )
    assert.ok(err instanceof SourceUnreachableError)
    assert.match(
      (err as Error).message,
      new RegExp(
        `^error sending request for url \\(${url}/GetTempCaCert\\?json\\): .*ECONNREFUSED`,
      ),
    )
    assert.equal(isUnreachableCause(withContext('Failed to onboard', err)), true)
    assert.equal(isUnreachableCause(new KmsError('KMS_ERR_DENIED', 'boot denied')), false)
  })

  it('an http:// source presents no certificate', () => {
    assert.throws(() => new SourceClient('http://kms:8000/prpc'), {
      message: 'Source KMS did not present a TLS certificate',
    })
  })
})
