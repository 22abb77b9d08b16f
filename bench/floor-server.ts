// The HTTPS floor: the smallest Fastify route that answers a pRPC-shaped POST with JSON, over the
// same TLS key and certificate as the KMS, in its own process like the KMS worker. What the KMS
// can at best reach on this machine. Usage: tsx bench/floor-server.ts <key.pem> <cert.pem>;
// prints `listening <port> <pid>` when ready, stops on SIGTERM.
import { readFileSync } from 'node:fs'
import { fastify } from 'fastify'

const [keyPath, certPath] = process.argv.slice(2)
if (keyPath === undefined || certPath === undefined) {
  process.stderr.write('usage: floor-server.ts <key.pem> <cert.pem>\n')
  process.exit(2)
}

// An answer of the same size and shape as GetAppEnvEncryptPubKey's.
const ANSWER = JSON.stringify({
  public_key: 'ab'.repeat(32),
  signature: 'cd'.repeat(65),
  timestamp: 1_750_000_000,
  signature_v1: 'ef'.repeat(65),
})

const app = fastify({
  logger: false,
  https: { key: readFileSync(keyPath), cert: readFileSync(certPath) },
  keepAliveTimeout: 10_000,
})
app.post('/prpc/Floor', async (_req, reply) => {
  reply.type('application/json')
  return ANSWER
})

await app.listen({ host: '127.0.0.1', port: 0 })
const addr = app.server.address()
const port = typeof addr === 'object' && addr !== null ? addr.port : 0
process.stdout.write(`listening ${port} ${process.pid}\n`)
process.on('SIGTERM', () => {
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  )
})
