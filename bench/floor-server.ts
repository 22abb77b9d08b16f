// The HTTPS floor: the smallest Fastify route that answers a pRPC-shaped POST with JSON, over the
// same TLS key and certificate as the KMS, in its own process like the KMS worker. What the KMS
// can at best reach on this machine. Usage: tsx bench/floor-server.ts <key.pem> <cert.pem>
// [<client-ca.pem>]; prints `listening <port> <pid>` when ready, stops on SIGTERM.
//
// With a client CA the listener asks for client certificates with the KMS main listener's TLS
// settings (src/kms/app.ts) and each request reads the peer certificate's DER, the least any
// server that looks at client certificates does: the floor of the cold GetAppKey rows, where every
// request is a new connection presenting a new certificate.
import { readFileSync } from 'node:fs'
import { constants as cryptoConstants } from 'node:crypto'
import type { TLSSocket } from 'node:tls'
import { fastify } from 'fastify'

const [keyPath, certPath, clientCaPath] = process.argv.slice(2)
if (keyPath === undefined || certPath === undefined) {
  process.stderr.write('usage: floor-server.ts <key.pem> <cert.pem> [<client-ca.pem>]\n')
  process.exit(2)
}

// An answer of the same size and shape as GetAppEnvEncryptPubKey's.
const ANSWER = JSON.stringify({
  public_key: 'ab'.repeat(32),
  signature: 'cd'.repeat(65),
  timestamp: 1_750_000_000,
  signature_v1: 'ef'.repeat(65),
})

const clientCerts =
  clientCaPath === undefined
    ? {}
    : {
        ca: readFileSync(clientCaPath),
        requestCert: true,
        rejectUnauthorized: false,
        ALPNProtocols: ['http/1.1'],
        minVersion: 'TLSv1.2' as const,
        secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION | cryptoConstants.SSL_OP_NO_TICKET,
      }

const app = fastify({
  logger: false,
  https: { key: readFileSync(keyPath), cert: readFileSync(certPath), ...clientCerts },
  keepAliveTimeout: 10_000,
})
if (clientCaPath !== undefined) {
  // the cold rows' clients send GetAppKey as a guest does, without a Content-Type
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body))
}
let peerBytes = 0
app.post('/prpc/Floor', async (request, reply) => {
  if (clientCaPath !== undefined) {
    const peer = (request.raw.socket as TLSSocket).getPeerX509Certificate()
    if (peer === undefined) return reply.code(400).send('no client certificate')
    peerBytes += peer.raw.length
  }
  reply.type('application/json')
  return ANSWER
})

await app.listen({ host: '127.0.0.1', port: 0 })
const addr = app.server.address()
const port = typeof addr === 'object' && addr !== null ? addr.port : 0
process.stdout.write(`listening ${port} ${process.pid}\n`)
process.on('SIGTERM', () => {
  // read, so that the certificate reads cannot be optimised away
  if (peerBytes < 0) process.stderr.write('unreachable\n')
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  )
})
