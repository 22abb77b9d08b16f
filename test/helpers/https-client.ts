// A small HTTPS/HTTP client for tests that need what fetch cannot give: client certificates,
// the server's certificate, raw bodies and exact headers.
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { TLSSocket } from 'node:tls'

export interface RawResponse {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  text: string
  /** DER of the server's leaf certificate (HTTPS only) */
  peerCertDer?: Buffer
}

export interface RawRequest {
  url: string
  method?: string
  headers?: Record<string, string>
  body?: Buffer | string
  /** client certificate and key (PEM) */
  cert?: string
  key?: string
  /** trust anchors; when omitted the server certificate is not verified */
  ca?: string
  servername?: string
  timeoutMs?: number
}

export function rawRequest(req: RawRequest): Promise<RawResponse> {
  const url = new URL(req.url)
  const isHttps = url.protocol === 'https:'
  const body = req.body === undefined ? undefined : Buffer.from(req.body)
  const headers: Record<string, string> = { ...req.headers }
  if (body !== undefined && headers['content-length'] === undefined) {
    headers['content-length'] = String(body.length)
  }
  return new Promise((resolve, reject) => {
    const options = {
      method: req.method ?? (body === undefined ? 'GET' : 'POST'),
      hostname: url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      headers,
      agent: false as const,
      timeout: req.timeoutMs ?? 30_000,
    }
    const onResponse = (res: import('node:http').IncomingMessage) => {
      const chunks: Buffer[] = []
      const socket = res.socket as TLSSocket
      const peerCertDer = isHttps ? socket.getPeerX509Certificate?.()?.raw : undefined
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const data = Buffer.concat(chunks)
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: data,
          text: data.toString('utf8'),
          ...(peerCertDer === undefined ? {} : { peerCertDer }),
        })
      })
      res.on('error', reject)
    }
    const r = isHttps
      ? httpsRequest(
          {
            ...options,
            rejectUnauthorized: req.ca !== undefined,
            ...(req.ca === undefined ? {} : { ca: req.ca }),
            ...(req.cert === undefined ? {} : { cert: req.cert, key: req.key }),
            ...(req.servername === undefined ? {} : { servername: req.servername }),
          },
          onResponse,
        )
      : httpRequest(options, onResponse)
    r.on('timeout', () => r.destroy(new Error(`request to ${req.url} timed out`)))
    r.on('error', reject)
    if (body !== undefined) r.write(body)
    r.end()
  })
}

/** POSTs JSON-ish text to a pRPC method and returns the response. */
export function prpc(
  base: string,
  method: string,
  body: string | Buffer = '{}',
  headers: Record<string, string> = { 'content-type': 'application/json' },
  extra: Partial<RawRequest> = {},
): Promise<RawResponse> {
  return rawRequest({ url: `${base}/prpc/${method}`, method: 'POST', body, headers, ...extra })
}
