// Fastify on an ephemeral loopback port, for tests that talk to a real server.
import type { FastifyInstance } from 'fastify'

/** Listens on 127.0.0.1 with a port the kernel picks; resolves with that port. */
export async function listenOnLoopback(app: FastifyInstance): Promise<number> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address !== 'object') {
    throw new Error(`expected a TCP address, got ${String(address)}`)
  }
  return address.port
}
