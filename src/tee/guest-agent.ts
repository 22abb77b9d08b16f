// The `guest-agent` TEE backend: the KMS runs as an app inside a dstack CVM and asks the dstack
// guest agent for its attestation, exactly like upstream's KMS: pRPC JSON over
// HTTP on a unix socket (or TCP), no service prefix, `Invalid status code: <n>, path=<path>` for
// any status other than 200.
import { existsSync } from 'node:fs'
import type { Logger } from 'pino'
import { KmsError, errorMessage } from '../errors.js'
import { HttpClient, HttpReplyTooLargeError, HttpTimeoutError } from '../http/http-client.js'
import { UNIX_SOCKET_ORIGIN, unixSocketOf, unixUrl } from '../http/unix-url.js'
import { decodeVersionedAttestation } from '../attestation/versioned.js'
import type { TdxEvent, VersionedAttestation } from '../attestation/types.js'
import { decodeHex } from '../util/hex.js'
import type { TeeBackend } from './backend.js'

/** Where upstream's `dstack_agent_address()` looks, newest layout first. */
export const GUEST_AGENT_SOCKET_PATHS = [
  '/var/run/dstack/dstack.sock',
  '/var/run/dstack.sock',
] as const

/** Upstream has no timeout at all; a hung agent must not hang a KMS request forever. */
export const GUEST_AGENT_DEFAULT_TIMEOUT_MS = 30_000

/** Real replies are a few tens of KiB; the cap only bounds what a broken agent can make us buffer. */
export const GUEST_AGENT_MAX_REPLY_BYTES = 16 * 1024 * 1024

export type GuestAgentEnv = Record<string, string | undefined>

/**
 * Upstream's `dstack_agent_address()`: `DSTACK_AGENT_ADDRESS` verbatim when set, else the first
 * socket that exists, else the first candidate (so the later connect error names the modern
 * path). An empty variable counts as unset: compose files often declare it blank.
 */
export function resolveGuestAgentAddress(
  env: GuestAgentEnv,
  exists: (path: string) => boolean = existsSync,
): string {
  const fromEnv = env.DSTACK_AGENT_ADDRESS
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  for (const path of GUEST_AGENT_SOCKET_PATHS) {
    if (exists(path)) return unixUrl(path)
  }
  return unixUrl(GUEST_AGENT_SOCKET_PATHS[0])
}

export type GuestAgentEndpoint =
  | { kind: 'unix'; socketPath: string }
  | { kind: 'http'; host: string; port: number; basePath: string }

/** Parses `unix:/path` or `http://host:port[/prefix]`; anything else is refused up front. */
export function parseGuestAgentAddress(address: string): GuestAgentEndpoint {
  const socketPath = unixSocketOf(address)
  if (socketPath !== undefined) {
    if (socketPath === '') {
      throw new KmsError(
        'KMS_ERR_CONFIG',
        `invalid guest-agent address ${JSON.stringify(address)}: empty socket path`,
      )
    }
    return { kind: 'unix', socketPath }
  }
  if (address.startsWith('vsock:')) {
    // Upstream can reach an agent over AF_VSOCK; Node has no vsock sockets and we add no addon
    // for it: inside a CVM the agent is always on a unix socket.
    throw new KmsError(
      'KMS_ERR_CONFIG',
      `guest-agent address ${JSON.stringify(address)} uses vsock, which is not supported; use unix:/path or http://host:port (DSTACK_AGENT_ADDRESS)`,
    )
  }
  let url: URL
  try {
    url = new URL(address)
  } catch {
    throw new KmsError(
      'KMS_ERR_CONFIG',
      `invalid guest-agent address ${JSON.stringify(address)}: expected unix:/path or http://host:port`,
    )
  }
  if (url.protocol !== 'http:') {
    throw new KmsError(
      'KMS_ERR_CONFIG',
      `unsupported guest-agent address ${JSON.stringify(address)}: expected unix:/path or http://host:port`,
    )
  }
  return {
    kind: 'http',
    // URL keeps IPv6 literals bracketed; node:http wants them bare
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port === '' ? 80 : Number(url.port),
    basePath: url.pathname.replace(/\/+$/, ''),
  }
}

export interface GuestAgentClientOptions {
  timeoutMs?: number
  maxReplyBytes?: number
}

/** A minimal pRPC client for the guest agent (upstream `http_client::prpc::PrpcClient`). */
export class GuestAgentClient {
  readonly address: string
  private readonly endpoint: GuestAgentEndpoint
  private readonly http: HttpClient
  private closed = false

  constructor(address: string, opts: GuestAgentClientOptions = {}) {
    this.address = address
    this.endpoint = parseGuestAgentAddress(address)
    this.http = new HttpClient({
      timeoutMs: opts.timeoutMs ?? GUEST_AGENT_DEFAULT_TIMEOUT_MS,
      maxResponseBytes: opts.maxReplyBytes ?? GUEST_AGENT_MAX_REPLY_BYTES,
      maxSockets: 4,
      ...(this.endpoint.kind === 'unix' ? { socketPath: this.endpoint.socketPath } : {}),
    })
  }

  /** POSTs `body` (JSON text) to `<method>?json` and returns the parsed 200 reply. */
  async call(method: string, body: string): Promise<unknown> {
    // upstream's error text names the path without the leading slash
    const path = `${method}?json`
    const { status, reply } = await this.post(path, body)
    if (status !== 200) {
      throw new GuestAgentStatusError(status, path, reply)
    }
    try {
      return JSON.parse(reply.toString('utf8')) as unknown
    } catch (err) {
      throw new KmsError('KMS_ERR_TEE', `Failed to deserialize response: ${errorMessage(err)}`, {
        cause: err,
      })
    }
  }

  close(): void {
    this.closed = true
    this.http.close()
  }

  private async post(path: string, body: string): Promise<{ status: number; reply: Buffer }> {
    if (this.closed) {
      throw new KmsError('KMS_ERR_TEE', 'the guest-agent client is closed')
    }
    const ep = this.endpoint
    // over a unix socket the URL only supplies the path (and `Host: localhost`, as node:http
    // always sent); URL brackets IPv6 literals again
    const url =
      ep.kind === 'unix'
        ? `${UNIX_SOCKET_ORIGIN}/${path}`
        : `http://${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}${ep.basePath}/${path}`
    try {
      const r = await this.http.request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      })
      return { status: r.status, reply: r.body }
    } catch (err) {
      if (err instanceof HttpTimeoutError) {
        throw new KmsError(
          'KMS_ERR_TEE',
          `guest-agent request timed out after ${err.timeoutMs} ms (${this.address}), path=${path}`,
          { cause: err },
        )
      }
      if (err instanceof HttpReplyTooLargeError) {
        throw new KmsError(
          'KMS_ERR_TEE',
          `guest-agent reply exceeds ${err.limit} bytes, path=${path}`,
          { cause: err },
        )
      }
      throw new KmsError(
        'KMS_ERR_TEE',
        `guest-agent request failed (${this.address}), path=${path}: ${errorMessage(err)}`,
        { cause: err },
      )
    }
  }
}

/** A non-200 reply. The message is upstream's exact text; the body is kept for the log only. */
export class GuestAgentStatusError extends KmsError {
  readonly status: number
  readonly path: string
  readonly body: Buffer
  constructor(status: number, path: string, body: Buffer) {
    super('KMS_ERR_TEE', `Invalid status code: ${status}, path=${path}`)
    this.name = 'GuestAgentStatusError'
    this.status = status
    this.path = path
    this.body = body
  }
}

function replyObject(reply: unknown): Record<string, unknown> {
  if (reply === null || typeof reply !== 'object' || Array.isArray(reply)) {
    throw new KmsError('KMS_ERR_TEE', 'Failed to deserialize response: expected a JSON object')
  }
  return reply as Record<string, unknown>
}

/** A string field of a pRPC reply; absent → default, like serde over prost structs. */
function stringField(reply: Record<string, unknown>, name: string): string {
  const v = reply[name]
  if (v === undefined) return ''
  if (typeof v !== 'string') {
    throw new KmsError(
      'KMS_ERR_TEE',
      `Failed to deserialize response: field \`${name}\` is not a string`,
    )
  }
  return v
}

export interface GuestAgentBackendOptions extends GuestAgentClientOptions {
  address: string
  logger?: Logger
}

export class GuestAgentBackend implements TeeBackend {
  readonly name = 'guest-agent' as const
  readonly canAttest = true
  readonly address: string
  private readonly client: GuestAgentClient
  private readonly logger: Logger | undefined

  constructor(opts: GuestAgentBackendOptions) {
    this.address = opts.address
    this.client = new GuestAgentClient(opts.address, opts)
    this.logger = opts.logger
  }

  async attest(reportData: Uint8Array): Promise<Buffer> {
    return (await this.attestDecoded(reportData)).bytes
  }

  private async attestDecoded(
    reportData: Uint8Array,
  ): Promise<{ bytes: Buffer; decoded: VersionedAttestation }> {
    if (reportData.length > 64) {
      // the agent's own refusal text (it zero-pads anything shorter)
      throw new KmsError('KMS_ERR_TEE', 'Report data is too long')
    }
    const padded = Buffer.alloc(64)
    padded.set(reportData)
    const reply = replyObject(
      await this.call('Attest', JSON.stringify({ report_data: padded.toString('hex') })),
    )
    let bytes: Buffer
    try {
      bytes = decodeHex(stringField(reply, 'attestation'))
    } catch (err) {
      throw new KmsError(
        'KMS_ERR_TEE',
        `Failed to deserialize response: attestation: ${errorMessage(err)}`,
        { cause: err },
      )
    }
    // Refuse garbage here, where the agent is still the obvious culprit, rather than deep in a
    // certificate or a verification step later.
    const decoded = this.decode(bytes)
    if (!decoded.attestation.reportData.subarray(0, 64).equals(padded)) {
      this.logger?.warn(
        { requested: padded.toString('hex'), got: decoded.attestation.reportData.toString('hex') },
        'the guest-agent returned an attestation for different report_data (a simulator keeping its fixture?); verification will fail',
      )
    }
    return { bytes, decoded }
  }

  async vmConfig(): Promise<string> {
    const reply = replyObject(await this.call('Info', 'null'))
    return stringField(reply, 'vm_config')
  }

  /** The event log of a fresh attestation: the agent returns the full log (CCEL boot events,
   * then the runtime events of RTMR3) unstripped, so no separate GetQuote call is needed. */
  async eventLog(): Promise<TdxEvent[]> {
    const { decoded } = await this.attestDecoded(Buffer.alloc(64))
    const quote = decoded.attestation.quote
    if (quote.kind === 'dstack-tdx' || quote.kind === 'dstack-gcp-tdx') return quote.eventLog
    throw new KmsError(
      'KMS_ERR_TEE',
      `the guest-agent attests with ${quote.kind}, which has no TDX event log`,
    )
  }

  /** Upstream removed `EmitEvent` from the agent before the spec revision (apps should use the
   * native interfaces); older agents still serve it, newer ones answer a non-200 status. */
  async emitEvent(name: string, payload: Uint8Array): Promise<void> {
    await this.call(
      'EmitEvent',
      JSON.stringify({ event: name, payload: Buffer.from(payload).toString('hex') }),
    )
  }

  async close(): Promise<void> {
    this.client.close()
  }

  private async call(method: string, body: string): Promise<unknown> {
    try {
      return await this.client.call(method, body)
    } catch (err) {
      if (err instanceof GuestAgentStatusError) {
        // upstream drops the body; the operator still wants the agent's reason
        this.logger?.warn(
          { address: this.address, status: err.status, body: err.body.toString('utf8', 0, 2048) },
          `guest-agent ${method} failed`,
        )
      }
      throw err
    }
  }

  private decode(bytes: Buffer): VersionedAttestation {
    try {
      return decodeVersionedAttestation(bytes)
    } catch (err) {
      throw new KmsError(
        'KMS_ERR_TEE',
        `the guest-agent returned an undecodable attestation: ${errorMessage(err)}`,
        { cause: err },
      )
    }
  }
}

export function createGuestAgentBackend(opts: {
  env?: GuestAgentEnv
  logger?: Logger
  exists?: (path: string) => boolean
  timeoutMs?: number
}): GuestAgentBackend {
  const address = resolveGuestAgentAddress(opts.env ?? process.env, opts.exists)
  const backend = new GuestAgentBackend({
    address,
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
  })
  opts.logger?.info({ address }, 'TEE backend: dstack guest-agent')
  return backend
}
