// The auth API as the KMS sees it (upstream `kms/src/main_service.rs` and its auth client): `dev` answers locally; `webhook` asks an
// HTTP service, both for boot decisions (/bootAuth/app, /bootAuth/kms) and for the info call.
// Decisions are never cached: a policy change (a revoked app) must take effect on the next call.
import { bootInfoToJson, type BootInfo } from '../attestation/boot-info.js'
import { KmsError } from '../errors.js'
import type { AuthApiConfig } from '../config/types.js'
import { readSecretFile } from '../fs/secret-file.js'
import { HttpClient, type HttpReply } from '../http/http-client.js'
import { UNIX_SOCKET_ORIGIN, unixSocketOf } from '../http/unix-url.js'

export interface AuthInfo {
  isDev: boolean
  gatewayAppId: string | null
  kmsContractAddress: string | null
  chainId: bigint | null
  appAuthImplementation: string | null
  ethRpcUrl: string | null
}

/** The webhook's verdict; all three keys are required in a reply. */
export interface BootResponse {
  isAllowed: boolean
  gatewayAppId: string
  reason: string
}

/** A BootInfo with its webhook body (bootInfoToJson, serialized) made once: the KMS's own
 * BootInfo is asked about on every key request and changes only when it is rebuilt. */
export class PreparedBootInfo {
  readonly body: string
  constructor(readonly bootInfo: BootInfo) {
    this.body = JSON.stringify(bootInfoToJson(bootInfo))
  }
}

export interface AuthApi {
  info(): Promise<AuthInfo>
  /** The webhook body is bootInfoToJson of the BootInfo; `isKms` picks /bootAuth/kms over
   * /bootAuth/app. */
  bootAuth(bootInfo: BootInfo | PreparedBootInfo, isKms: boolean): Promise<BootResponse>
}

const MAX_BODY_IN_ERROR = 512
/** An auth API answers with a few hundred bytes; a larger reply is refused, not buffered. */
export const MAX_RESPONSE_BYTES = 1024 * 1024

/** Cuts at a character boundary (upstream slices bytes and could panic mid-character). */
export function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8')
  if (bytes.length <= maxBytes) return text
  let end = maxBytes
  // step back over UTF-8 continuation bytes (10xxxxxx)
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--
  return bytes.subarray(0, end).toString('utf8')
}

export interface WebhookClientOptions {
  /** http(s):// base URL, or `unix:/path/to.sock` for a server on a unix socket */
  url: string
  timeoutMs: number
  userAgent: string
  /** sent as `Authorization: Bearer <token>` on every request */
  token?: string
}

export class WebhookAuthApi implements AuthApi {
  readonly #opts: WebhookClientOptions
  readonly #http: HttpClient
  /** what requests are sent to: the configured URL, or UNIX_SOCKET_ORIGIN over the socket */
  readonly #base: string
  readonly #headers: Record<string, string>
  constructor(opts: WebhookClientOptions) {
    this.#opts = opts
    const socketPath = unixSocketOf(opts.url)
    this.#base = socketPath === undefined ? opts.url : UNIX_SOCKET_ORIGIN
    this.#http = new HttpClient({
      timeoutMs: opts.timeoutMs,
      maxResponseBytes: MAX_RESPONSE_BYTES,
      ...(socketPath === undefined ? {} : { socketPath }),
    })
    this.#headers = {
      'user-agent': opts.userAgent,
      ...(opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` }),
    }
  }

  /** `path` is "" (the info call) or `bootAuth/…`; errors name the configured URL. */
  async #request(
    path: string,
    init: { method: 'GET' } | { method: 'POST'; body: string },
  ): Promise<{ json: unknown; fail: () => KmsError }> {
    const url = joinPath(this.#opts.url, path)
    let res: HttpReply
    try {
      res = await this.#http.request(joinPath(this.#base, path), {
        method: init.method,
        headers:
          init.method === 'POST'
            ? { ...this.#headers, 'content-type': 'application/json' }
            : this.#headers,
        ...(init.method === 'POST' ? { body: init.body } : {}),
      })
    } catch (err) {
      throw new KmsError('KMS_ERR_RPC', `auth api ${url} request failed: ${describe(err)}`, {
        cause: err,
      })
    }
    const body = res.body.toString('utf8')
    if (res.status < 200 || res.status > 299) {
      throw new KmsError(
        'KMS_ERR_RPC',
        `auth api ${url} returned ${res.statusText}: ${truncateUtf8(body, MAX_BODY_IN_ERROR)}`,
      )
    }
    const fail = () => decodeError(url, res, body)
    try {
      return { json: JSON.parse(body), fail }
    } catch {
      throw fail()
    }
  }

  async bootAuth(bootInfo: BootInfo | PreparedBootInfo, isKms: boolean): Promise<BootResponse> {
    const body =
      bootInfo instanceof PreparedBootInfo
        ? bootInfo.body
        : JSON.stringify(bootInfoToJson(bootInfo))
    const { json, fail } = await this.#request(`bootAuth/${isKms ? 'kms' : 'app'}`, {
      method: 'POST',
      body,
    })
    // serde's derive upstream: every key required and typed, extra keys ignored
    const obj = json !== null && typeof json === 'object' ? (json as Record<string, unknown>) : {}
    const { isAllowed, gatewayAppId, reason } = obj
    if (
      typeof isAllowed !== 'boolean' ||
      typeof gatewayAppId !== 'string' ||
      typeof reason !== 'string'
    ) {
      throw fail()
    }
    return { isAllowed, gatewayAppId, reason }
  }

  async info(): Promise<AuthInfo> {
    // A missing or mistyped required key is a serde decode failure upstream: same message.
    const { json, fail } = await this.#request('', { method: 'GET' })
    const obj = json !== null && typeof json === 'object' ? (json as Record<string, unknown>) : {}
    const str = (k: string): string => {
      const v = obj[k]
      if (typeof v !== 'string') throw fail()
      return v
    }
    str('status')
    const chainId = obj.chainId
    if (typeof chainId !== 'number' || !Number.isSafeInteger(chainId) || chainId < 0) {
      throw fail()
    }
    const eth = obj.ethRpcUrl
    if (eth !== undefined && typeof eth !== 'string') {
      throw fail()
    }
    return {
      isDev: false,
      gatewayAppId: str('gatewayAppId'),
      kmsContractAddress: str('kmsContractAddr'),
      chainId: BigInt(chainId),
      appAuthImplementation: str('appImplementation'),
      ethRpcUrl: eth === undefined || eth === '' ? null : eth,
    }
  }
}

/** The info call goes to the base URL exactly as configured; boot checks below it. */
function joinPath(base: string, path: string): string {
  if (path === '') return base
  return `${base}${base.endsWith('/') ? '' : '/'}${path}`
}

function decodeError(url: string, res: HttpReply, body: string): KmsError {
  return new KmsError(
    'KMS_ERR_RPC',
    `failed to decode response from ${url}, status=${res.statusText}, body=${truncateUtf8(body, MAX_BODY_IN_ERROR)}`,
  )
}

function describe(err: unknown): string {
  if (err instanceof Error && err.name === 'TimeoutError') return 'timed out'
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : ''
    return `${err.message}${cause}`
  }
  return String(err)
}

export class DevAuthApi implements AuthApi {
  readonly #gatewayAppId: string
  constructor(gatewayAppId: string) {
    this.#gatewayAppId = gatewayAppId
  }

  async info(): Promise<AuthInfo> {
    return {
      isDev: true,
      gatewayAppId: this.#gatewayAppId,
      kmsContractAddress: null,
      chainId: null,
      appAuthImplementation: null,
      ethRpcUrl: null,
    }
  }

  async bootAuth(_bootInfo: BootInfo | PreparedBootInfo, _isKms: boolean): Promise<BootResponse> {
    return { isAllowed: true, gatewayAppId: this.#gatewayAppId, reason: '' }
  }
}

/** Reads the webhook's bearer secret now, so a missing or exposed token file stops the start. */
export function createAuthApi(cfg: AuthApiConfig, userAgent: string): AuthApi {
  if (cfg.type === 'dev') return new DevAuthApi(cfg.dev.gatewayAppId)
  const { url, timeoutMs, tokenFile } = cfg.webhook
  const token =
    tokenFile === '' ? undefined : readSecretFile(tokenFile, 'core.auth_api.webhook.token_file')
  return new WebhookAuthApi({
    url,
    timeoutMs,
    userAgent,
    ...(token === undefined ? {} : { token }),
  })
}
