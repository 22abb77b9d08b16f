// A strict, incremental HTTP/1.1 response parser for the outbound client: bytes in, one framed
// response out, no I/O. The client decides key releases on what the auth webhook answers, so a
// reply must never be attributed to the wrong request: framing is strict (RFC 9112), anything
// ambiguous is an error rather than a guess, and the parser tells whether the connection may carry
// another request (the response was completely framed, nothing followed it, the server allowed
// keep-alive).
import type { IncomingHttpHeaders } from 'node:http'
import { KmsError } from '../errors.js'

/** Raised when a reply (declared or streamed) is larger than `maxResponseBytes`. */
export class HttpReplyTooLargeError extends KmsError {
  constructor(readonly limit: number) {
    super('KMS_ERR_PAYLOAD_TOO_LARGE', `response larger than ${limit} bytes`)
    this.name = 'HttpReplyTooLargeError'
  }
}

/** Raised when a reply breaks HTTP/1.1 framing, or the connection ends before it is complete. */
export class HttpProtocolError extends KmsError {
  constructor(message: string) {
    super('KMS_ERR_HTTP', message)
    this.name = 'HttpProtocolError'
  }
}

export interface ResponseHead {
  /** the minor version of `HTTP/1.x` */
  minor: 0 | 1
  status: number
  /** the reason phrase as sent ('' when the status line has none) */
  reason: string
  /** lower-case names, repeated headers combined as node:http does */
  headers: IncomingHttpHeaders
}

export interface ResponseLimits {
  /** the body's cap: a declared length or the bytes received beyond it are refused */
  maxBodyBytes: number
  /** the cap on one header block (status line and fields) and on the chunked trailers */
  maxHeaderBytes?: number
}

export const DEFAULT_MAX_HEADER_BYTES = 64 * 1024
/** a chunk-size line (hex size and extensions); longer ones are refused */
const MAX_CHUNK_LINE_BYTES = 4096

const enum State {
  Head,
  Length,
  ChunkSize,
  ChunkData,
  ChunkEnd,
  Trailers,
  UntilClose,
  Done,
}

const CRLF = Buffer.from('\r\n')
const CRLFCRLF = Buffer.from('\r\n\r\n')
const LF = 0x0a
const CR = 0x0d

const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
const CHUNK_SIZE_LINE = /^([0-9A-Fa-f]+)[\t ]*(?:;[\t\x20-\x7e\x80-\xff]*)?$/
const DECIMAL = /^\d+$/

// node:http keeps the first of these when repeated (lib/_http_incoming.js matchKnownFields)
const FIRST_WINS = new Set([
  'content-type',
  'content-length',
  'user-agent',
  'referer',
  'host',
  'authorization',
  'proxy-authorization',
  'if-modified-since',
  'if-unmodified-since',
  'from',
  'location',
  'max-forwards',
  'retry-after',
  'etag',
  'last-modified',
  'server',
  'age',
  'expires',
])

export class Http1ResponseParser {
  readonly #maxBody: number
  readonly #maxHeader: number
  #state = State.Head
  /** bytes of a head, chunk-size line or trailer block not parsed yet */
  #pending: Buffer | undefined
  /** where the search for the end of the head resumes in #pending */
  #scanFrom = 0
  #head: ResponseHead | undefined
  #chunks: Buffer[] = []
  #bodyBytes = 0
  /** bytes still expected in a Content-Length body or the current chunk */
  #left = 0
  #trailerBytes = 0
  #keepAlive = false
  #received = 0
  #extra = 0

  constructor(limits: ResponseLimits) {
    this.#maxBody = limits.maxBodyBytes
    this.#maxHeader = limits.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES
  }

  /** Feeds bytes as they arrive. Throws HttpProtocolError or HttpReplyTooLargeError; after a
   * throw the parser is unusable (the connection must be destroyed). */
  push(chunk: Buffer): void {
    this.#received += chunk.length
    if (this.#state === State.Done) {
      this.#extra += chunk.length
      return
    }
    let buf = chunk
    if (this.#pending !== undefined) {
      buf = Buffer.concat([this.#pending, chunk])
      this.#pending = undefined
    }
    let at = 0
    while (at < buf.length) {
      // a method called in the loop may change the state: no narrowing from the check above
      switch (this.#state as State) {
        case State.Head:
          at = this.#parseHead(buf, at)
          break
        case State.Length:
          at = this.#takeBody(buf, at, State.Done)
          break
        case State.ChunkSize:
          at = this.#parseChunkSize(buf, at)
          break
        case State.ChunkData:
          at = this.#takeBody(buf, at, State.ChunkEnd)
          break
        case State.ChunkEnd:
          if (buf.length - at < 2) {
            if (buf[at] !== CR) throw new HttpProtocolError('chunk data not followed by CRLF')
            this.#pending = buf.subarray(at)
            return
          }
          if (buf[at] !== CR || buf[at + 1] !== LF) {
            throw new HttpProtocolError('chunk data not followed by CRLF')
          }
          at += 2
          this.#state = State.ChunkSize
          break
        case State.Trailers:
          at = this.#parseTrailers(buf, at)
          break
        case State.UntilClose: {
          const n = buf.length - at
          this.#addBody(n)
          this.#chunks.push(at === 0 ? buf : buf.subarray(at))
          at = buf.length
          break
        }
        case State.Done:
          this.#extra += buf.length - at
          return
      }
    }
  }

  /** The connection ended (EOF). Completes a body that runs to the close; anything else
   * unfinished is an error. */
  end(): void {
    if (this.#state === State.UntilClose) {
      this.#state = State.Done
      return
    }
    if (this.#state === State.Done) return
    throw new HttpProtocolError(
      this.#received === 0 ? 'connection closed before a reply' : 'connection closed mid-reply',
    )
  }

  /** the final (non-1xx) response's head, once its header block is complete */
  get head(): ResponseHead | undefined {
    return this.#head
  }

  get done(): boolean {
    return this.#state === State.Done
  }

  /** every byte pushed so far, interim responses and extra bytes included */
  get received(): number {
    return this.#received
  }

  /** bytes received after the response was complete */
  get extra(): number {
    return this.#extra
  }

  /** Whether the connection may carry another request: the response was framed by its length
   * (not by the close), nothing followed it, and the server allowed keep-alive. */
  get reusable(): boolean {
    return this.#state === State.Done && this.#keepAlive && this.#extra === 0
  }

  body(): Buffer {
    return this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks)
  }

  #parseHead(buf: Buffer, at: number): number {
    const end = buf.indexOf(CRLFCRLF, Math.max(at, this.#scanFrom - 3))
    if (end < 0) {
      const size = buf.length - at
      if (size > this.#maxHeader) {
        throw new HttpProtocolError(`response header larger than ${this.#maxHeader} bytes`)
      }
      // a head ended by bare LFs never reaches CRLFCRLF: refuse it now rather than at the cap
      if (bareLf(buf, at, buf.length)) throw new HttpProtocolError('bare LF in response header')
      this.#pending = at === 0 ? buf : buf.subarray(at)
      this.#scanFrom = size
      return buf.length
    }
    this.#scanFrom = 0
    if (end + 4 - at > this.#maxHeader) {
      throw new HttpProtocolError(`response header larger than ${this.#maxHeader} bytes`)
    }
    const lines = buf.toString('latin1', at, end).split('\r\n')
    const m = STATUS_LINE.exec(lines[0]!)
    if (m === null) throw new HttpProtocolError('malformed status line')
    const minor = m[1] === '0' ? 0 : 1
    const status = Number(m[2])
    // no prototype: a header named `__proto__` or `constructor` is just a header
    const headers = Object.create(null) as IncomingHttpHeaders
    let contentLength: string[] | undefined
    let transferEncoding: string[] | undefined
    let connection = ''
    for (let i = 1; i < lines.length; i++) {
      const [name, value] = fieldLine(lines[i]!)
      if (name === 'content-length') (contentLength ??= []).push(value)
      else if (name === 'transfer-encoding') (transferEncoding ??= []).push(value)
      else if (name === 'connection') connection += `,${value}`
      addHeader(headers, name, value)
    }
    at = end + 4
    if (status < 200) {
      // interim responses carry no body; the final response follows on the same connection
      if (status === 101) throw new HttpProtocolError('unexpected 101 Switching Protocols')
      return at
    }
    this.#head = { minor, status, reason: m[3] ?? '', headers }
    const tokens = connection.toLowerCase().split(',')
    const close = tokens.some((t) => t.trim() === 'close')
    this.#keepAlive = !close && (minor === 1 || tokens.some((t) => t.trim() === 'keep-alive'))
    if (status === 204 || status === 304) {
      // no content whatever the headers say (RFC 9112 §6.3)
      this.#state = State.Done
    } else if (transferEncoding !== undefined) {
      if (contentLength !== undefined) {
        throw new HttpProtocolError('both Transfer-Encoding and Content-Length')
      }
      if (transferEncoding.join(',').trim().toLowerCase() !== 'chunked') {
        throw new HttpProtocolError('unsupported Transfer-Encoding')
      }
      this.#state = State.ChunkSize
    } else if (contentLength !== undefined) {
      const length = declaredLength(contentLength)
      if (length > this.#maxBody) throw new HttpReplyTooLargeError(this.#maxBody)
      this.#left = length
      this.#state = length === 0 ? State.Done : State.Length
    } else {
      this.#keepAlive = false
      this.#state = State.UntilClose
    }
    return at
  }

  /** Keeps up to #left body bytes from `at`; once they are all in, moves on to `then`. */
  #takeBody(buf: Buffer, at: number, then: State): number {
    const n = Math.min(this.#left, buf.length - at)
    this.#chunks.push(buf.subarray(at, at + n))
    this.#left -= n
    if (this.#left === 0) this.#state = then
    return at + n
  }

  #parseChunkSize(buf: Buffer, at: number): number {
    const end = buf.indexOf(CRLF, at)
    if (end < 0) {
      if (buf.length - at > MAX_CHUNK_LINE_BYTES) {
        throw new HttpProtocolError('chunk size line too long')
      }
      if (bareLf(buf, at, buf.length)) throw new HttpProtocolError('bare LF in chunk size line')
      this.#pending = buf.subarray(at)
      return buf.length
    }
    if (end - at > MAX_CHUNK_LINE_BYTES) throw new HttpProtocolError('chunk size line too long')
    const m = CHUNK_SIZE_LINE.exec(buf.toString('latin1', at, end))
    if (m === null) throw new HttpProtocolError('malformed chunk size line')
    const hex = m[1]!.replace(/^0+/, '')
    // 12 hex digits are 2^48: far beyond any cap, and still exact in a double
    if (hex.length > 12) throw new HttpReplyTooLargeError(this.#maxBody)
    const size = hex === '' ? 0 : parseInt(hex, 16)
    if (size === 0) {
      this.#state = State.Trailers
    } else {
      this.#addBody(size)
      this.#left = size
      this.#state = State.ChunkData
    }
    return end + 2
  }

  #parseTrailers(buf: Buffer, at: number): number {
    while (true) {
      const end = buf.indexOf(CRLF, at)
      if (end < 0) {
        this.#trailerBytes += buf.length - at
        if (this.#trailerBytes > this.#maxHeader) {
          throw new HttpProtocolError(`response trailers larger than ${this.#maxHeader} bytes`)
        }
        if (bareLf(buf, at, buf.length)) throw new HttpProtocolError('bare LF in trailers')
        // the partial line is counted again once complete
        this.#trailerBytes -= buf.length - at
        this.#pending = buf.subarray(at)
        return buf.length
      }
      this.#trailerBytes += end + 2 - at
      if (this.#trailerBytes > this.#maxHeader) {
        throw new HttpProtocolError(`response trailers larger than ${this.#maxHeader} bytes`)
      }
      if (end === at) {
        this.#state = State.Done
        return end + 2
      }
      // trailers are checked for well-formedness and dropped, as node:http keeps them apart
      fieldLine(buf.toString('latin1', at, end))
      at = end + 2
    }
  }

  #addBody(n: number): void {
    this.#bodyBytes += n
    if (this.#bodyBytes > this.#maxBody) throw new HttpReplyTooLargeError(this.#maxBody)
  }
}

function bareLf(buf: Buffer, from: number, to: number): boolean {
  for (let i = buf.indexOf(LF, from); i >= 0 && i < to; i = buf.indexOf(LF, i + 1)) {
    if (i === from || buf[i - 1] !== CR) return true
  }
  return false
}

/** `name: value` → [lower-case name, value without surrounding whitespace] */
function fieldLine(line: string): [string, string] {
  const colon = line.indexOf(':')
  if (colon <= 0) throw new HttpProtocolError('malformed header line')
  const name = line.slice(0, colon)
  // also refuses obs-fold (a line starting with whitespace) and whitespace before the colon
  if (!TOKEN.test(name)) throw new HttpProtocolError('malformed header name')
  let from = colon + 1
  let to = line.length
  while (from < to && isOws(line.charCodeAt(from))) from++
  while (to > from && isOws(line.charCodeAt(to - 1))) to--
  const value = line.slice(from, to)
  // a lone CR inside the head ends up here
  if (!FIELD_VALUE.test(value)) throw new HttpProtocolError('invalid character in header value')
  return [name.toLowerCase(), value]
}

/** optional whitespace: SP or HTAB */
function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09
}

function addHeader(headers: IncomingHttpHeaders, name: string, value: string): void {
  const prev = headers[name]
  if (prev === undefined) {
    headers[name] = name === 'set-cookie' ? [value] : value
  } else if (Array.isArray(prev)) {
    prev.push(value)
  } else if (!FIRST_WINS.has(name)) {
    headers[name] = `${prev}${name === 'cookie' ? '; ' : ', '}${value}`
  }
}

/** One Content-Length out of every field and list element sent: all must be the same decimal. */
function declaredLength(values: readonly string[]): number {
  let length: string | undefined
  for (const v of values) {
    for (const part of v.split(',')) {
      const p = part.trim()
      if (!DECIMAL.test(p)) throw new HttpProtocolError('invalid Content-Length')
      const n = p.replace(/^0+(?=\d)/, '')
      if (length !== undefined && n !== length) {
        throw new HttpProtocolError('conflicting Content-Length')
      }
      length = n
    }
  }
  if (length === undefined) throw new HttpProtocolError('invalid Content-Length')
  // beyond 15 digits a double is no longer exact; such a length exceeds any cap anyway
  return length.length > 15 ? Infinity : Number(length)
}
