// A small HTTP(S) client for the services the KMS calls on every trusted request (the auth
// webhook): persistent keep-alive connections (the global fetch showed up as ~45% of a worker's
// CPU on GetAppKey), one deadline over the whole exchange so a server trickling bytes cannot
// stall a boot, and a cap on the reply size so a hostile server cannot make us buffer gigabytes.
import { Agent as HttpAgent, STATUS_CODES, request as httpRequest } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { KmsError } from '../errors.js'

export interface HttpReply {
  status: number
  /** `<code> <reason phrase>` as Rust's reqwest renders a status (e.g. `500 Internal Server Error`) */
  statusText: string
  body: Buffer
}

export interface HttpClientOptions {
  timeoutMs: number
  maxResponseBytes: number
}

export interface HttpRequest {
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
}

/** Raised when the deadline passes. Named like the platform's own timeout errors, so callers
 * that also see those can tell all of them by `name`. */
export class HttpTimeoutError extends KmsError {
  constructor(ms: number) {
    super('KMS_ERR_TIMEOUT', `timed out after ${ms} ms`)
    this.name = 'TimeoutError'
  }
}

export class HttpClient {
  readonly #opts: HttpClientOptions
  readonly #http = new HttpAgent({ keepAlive: true, maxFreeSockets: 16 })
  readonly #https = new HttpsAgent({ keepAlive: true, maxFreeSockets: 16 })

  constructor(opts: HttpClientOptions) {
    this.#opts = opts
  }

  request(url: string, req: HttpRequest): Promise<HttpReply> {
    const target = new URL(url)
    const isHttps = target.protocol === 'https:'
    if (!isHttps && target.protocol !== 'http:') {
      return Promise.reject(new Error(`unsupported URL scheme ${target.protocol}`))
    }
    const body = req.body === undefined ? undefined : Buffer.from(req.body, 'utf8')
    const headers: Record<string, string> = { ...req.headers }
    if (body !== undefined) headers['content-length'] = String(body.length)
    const { timeoutMs, maxResponseBytes } = this.#opts
    return new Promise<HttpReply>((resolve, reject) => {
      const send = isHttps ? httpsRequest : httpRequest
      const r = send(
        target,
        { method: req.method, headers, agent: isHttps ? this.#https : this.#http },
        (res) => {
          const chunks: Buffer[] = []
          let size = 0
          res.on('data', (chunk: Buffer) => {
            size += chunk.length
            if (size > maxResponseBytes) {
              r.destroy(new Error(`response larger than ${maxResponseBytes} bytes`))
              return
            }
            chunks.push(chunk)
          })
          res.on('end', () => {
            clearTimeout(timer)
            const status = res.statusCode ?? 0
            const phrase = res.statusMessage ?? STATUS_CODES[status] ?? ''
            resolve({
              status,
              statusText: phrase === '' ? String(status) : `${status} ${phrase}`,
              body: Buffer.concat(chunks),
            })
          })
          res.on('error', (err) => {
            clearTimeout(timer)
            reject(err)
          })
        },
      )
      const timer = setTimeout(() => r.destroy(new HttpTimeoutError(timeoutMs)), timeoutMs)
      r.on('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      r.end(body)
    })
  }

  close(): void {
    this.#http.destroy()
    this.#https.destroy()
  }
}
