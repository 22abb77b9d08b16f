// A PCCS on loopback serving fixture collateral in the PCCS v4 wire format (issuer chains in
// URL-encoded headers, DER PCK CRL, hex root CA CRL, `{tcbInfo|enclaveIdentity, signature}`
// JSON), counting requests per path so that tests can prove what was (not) fetched.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Collateral } from '../../src/attestation/collateral.js'

export interface PccsFixture {
  tee: 'sgx' | 'tdx'
  /** `processor` or `platform`: the PCK CRL this collateral's chain uses */
  ca: string
  collateral: Collateral
}

const hex = (v: number[] | string): string =>
  typeof v === 'string' ? v : Buffer.from(v).toString('hex')

export class PccsStub {
  readonly requests = new Map<string, number>()
  /** when set, every request is answered with this HTTP status */
  failWith: number | undefined
  /** when true, signed JSON is served with extra whitespace and the members swapped */
  looseJson = false
  /** when set, sees every request first (after counting); returning true means it answered */
  intercept: ((path: string, res: ServerResponse) => boolean) | undefined
  private server: Server | undefined
  private readonly fixtures: PccsFixture[]

  constructor(fixtures: PccsFixture[]) {
    this.fixtures = fixtures
  }

  get url(): string {
    const addr = this.server?.address() as AddressInfo | null
    if (addr === null || addr === undefined) throw new Error('PCCS stub not listening')
    return `http://127.0.0.1:${addr.port}`
  }

  count(pathPrefix: string): number {
    let n = 0
    for (const [path, c] of this.requests) if (path.startsWith(pathPrefix)) n += c
    return n
  }

  total(): number {
    let n = 0
    for (const c of this.requests.values()) n += c
    return n
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res))
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve))
  }

  async stop(): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  private signed(member: string, body: string, signature: string): string {
    if (this.looseJson) return `{\n  "signature" : "${signature}",\n  "${member}" :  ${body}\n}\n`
    return `{"${member}":${body},"signature":"${signature}"}`
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://stub')
    const key = `${url.pathname}${url.search}`
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1)
    if (this.intercept?.(key, res) === true) return
    if (this.failWith !== undefined) {
      res.writeHead(this.failWith).end('unavailable')
      return
    }
    const m = /^\/(sgx|tdx)\/certification\/v4\/(.+)$/.exec(url.pathname)
    const tee = m?.[1]
    const what = m?.[2]
    const notFound = (): void => {
      res.writeHead(404).end('not found')
    }
    if (what === 'pckcrl') {
      const f = this.fixtures.find((x) => x.ca === url.searchParams.get('ca'))
      if (f === undefined || url.searchParams.get('encoding') !== 'der') return notFound()
      res.writeHead(200, {
        'SGX-PCK-CRL-Issuer-Chain': encodeURIComponent(f.collateral.pck_crl_issuer_chain),
        'Content-Type': 'application/pkix-crl',
      })
      res.end(Buffer.from(hex(f.collateral.pck_crl), 'hex'))
      return
    }
    if (what === 'rootcacrl') {
      const f = this.fixtures[0]
      if (f === undefined) return notFound()
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end(hex(f.collateral.root_ca_crl))
      return
    }
    if (what === 'tcb') {
      const fmspc = url.searchParams.get('fmspc') ?? ''
      const f = this.fixtures.find(
        (x) =>
          x.tee === tee && (JSON.parse(x.collateral.tcb_info) as { fmspc: string }).fmspc === fmspc,
      )
      if (f === undefined) return notFound()
      res.writeHead(200, {
        'TCB-Info-Issuer-Chain': encodeURIComponent(f.collateral.tcb_info_issuer_chain),
        'Content-Type': 'application/json',
      })
      res.end(this.signed('tcbInfo', f.collateral.tcb_info, hex(f.collateral.tcb_info_signature)))
      return
    }
    if (what === 'qe/identity' && url.searchParams.get('update') === 'standard') {
      const f = this.fixtures.find((x) => x.tee === tee)
      if (f === undefined) return notFound()
      res.writeHead(200, {
        'SGX-Enclave-Identity-Issuer-Chain': encodeURIComponent(
          f.collateral.qe_identity_issuer_chain,
        ),
        'Content-Type': 'application/json',
      })
      res.end(
        this.signed(
          'enclaveIdentity',
          f.collateral.qe_identity,
          hex(f.collateral.qe_identity_signature),
        ),
      )
      return
    }
    notFound()
  }
}
