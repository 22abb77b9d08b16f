// The pRPC route (`/prpc/<method>`) for Fastify, following upstream's ra-rpc handler: strip the
// service prefix, read the raw body with the per-method limit, run the pre-dispatch checks,
// dispatch, and answer 200 with the result or 400 with an error body, in JSON or protobuf
// (docs/design.md#json-unless-the-request-asks-for-protobuf).
import { Buffer } from 'node:buffer'
import type { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { KmsError, errorView } from '../errors.js'
import { errorJson, markRoutineRequest } from '../http/server-options.js'
import { CountsByKey } from '../util/counts-by-key.js'
import { EMPTY_JSON, decodeJson, encodeJson } from './json.js'
import { decodeQuery } from './query.js'
import { ProtoErrorType } from './messages.js'
import { wantsJson } from './negotiate.js'
import { decodeMessage, encodeMessage, type MessageType } from './schema.js'

/** Upstream's default Rocket data limit for a pRPC body. */
export const DEFAULT_BODY_LIMIT = 10 * 1024 * 1024

export interface RpcCall<Ctx> {
  request: FastifyRequest
  ctx: Ctx
}

export interface RpcMethod<Ctx, I, O> {
  /** null = google.protobuf.Empty: the payload is never looked at and the handler gets null */
  input: MessageType<I> | null
  /** null = google.protobuf.Empty: JSON `null`, empty protobuf body */
  output: MessageType<O> | null
  handle(input: I, call: RpcCall<Ctx>): Promise<O | null>
}

/** A method with its message types erased; `handle` is a method, so any RpcMethod fits. */
export type AnyRpcMethod<Ctx> = RpcMethod<Ctx, unknown, unknown>

export function defineMethod<Ctx, I, O>(
  input: MessageType<I> | null,
  output: MessageType<O> | null,
  handle: (input: I, call: RpcCall<Ctx>) => Promise<O | null>,
): RpcMethod<Ctx, I, O> {
  return { input, output, handle }
}

export interface PrpcOptions<Ctx> {
  /** 'KMS.' | 'Onboard.' | 'Admin.': all leading repetitions are stripped from the method */
  servicePrefix: string
  methods: Readonly<Record<string, AnyRpcMethod<Ctx>>>
  /** per-method body limit in bytes; default 10 MiB */
  limits?: Readonly<Record<string, number>>
  /** runs after the body is read and before dispatch (client-certificate checks); a throw → 400.
   * Without it, handlers get `ctx: undefined`. */
  preDispatch?: (request: FastifyRequest) => Ctx | Promise<Ctx>
  /** the ceiling on buffered request bodies, shared by every listener of the process */
  bodyBudget: BodyBudget
  /** logs every failed call (fields and level from `errorView`) under this message */
  failureLog?: { logger: Logger; message: string }
  /** called with every error answered to the client */
  onError?: (err: unknown, method: string, request: FastifyRequest) => void
  /** methods whose successful calls are logged at debug (see markRoutineRequest) */
  routineMethods?: ReadonlySet<string>
}

type BodyRead = { kind: 'ok'; data: Buffer; release: () => void } | { kind: 'too-large' }

const EMPTY = Buffer.alloc(0)

/** The shared ceilings on buffered request bodies; kms.toml's `[limits]` table resolves to a
 * superset of this shape. */
export interface BodyBudgetLimits {
  /** bytes of request bodies buffered at once, across all requests of the process: every method
   * may take 10 MiB, so without a shared ceiling a few hundred parallel uploads would exhaust
   * memory; past it a body is refused like an oversized one (fail closed, no crash) */
  readonly bodyBudgetBytes: number
  /** bytes one source address may have buffered at once: above the largest per-method limit, so
   * one legitimate upload fits, and below the process budget, so stalled uploads from one source
   * cannot lock everyone else out */
  readonly bodyBudgetPerSourceBytes: number
  /** how long a body may take to arrive; a stalled upload gives its bytes back after it */
  readonly bodyReadDeadlineMs: number
}

export class BodyBudget {
  used = 0
  readonly max: number
  readonly perSource: number
  readonly readDeadlineMs: number
  readonly #bySource = new CountsByKey()

  constructor(limits: BodyBudgetLimits) {
    this.max = limits.bodyBudgetBytes
    this.perSource = limits.bodyBudgetPerSourceBytes
    this.readDeadlineMs = limits.bodyReadDeadlineMs
  }

  take(n: number, source = ''): boolean {
    if (this.used + n > this.max || this.#bySource.get(source) + n > this.perSource) return false
    this.used += n
    this.#bySource.add(source, n)
    return true
  }

  give(n: number, source = ''): void {
    if (n === 0) return
    this.used -= n
    this.#bySource.subtract(source, n)
  }

  /** entries kept per source, holding or swept later: bounded, whatever the sources seen */
  get trackedSources(): number {
    return this.#bySource.size
  }
}

/** Reads the whole body; past `limit` (or the shared budget) it keeps draining, so the client
 * gets its 400, but stops buffering. With `keep` false (Empty-input and unknown methods, whose
 * payload is never looked at) nothing is buffered at all, only counted. The `release` it hands on
 * gives the buffered bytes back to the budget. `finish` is called exactly once. Callbacks, not a
 * Promise: this runs on every request, and Fastify takes a callback-style parser as it is. */
function readBody(
  stream: Readable,
  limit: number,
  keep: boolean,
  budget: BodyBudget,
  source: string,
  finish: (err: Error | null, body?: BodyRead) => void,
): void {
  const chunks: Buffer[] = []
  let size = 0
  let held = 0
  let tooLarge = false
  let done = false
  const drop = () => {
    budget.give(held, source)
    held = 0
    chunks.length = 0
  }
  // a body that does not arrive in time is abandoned with its connection: the bytes it held go
  // back to the budget
  const deadline = setTimeout(() => {
    if (done) return
    done = true
    drop()
    stream.destroy()
    finish(new KmsError('KMS_ERR_TIMEOUT', 'failed to read data: body read deadline passed'))
  }, budget.readDeadlineMs)
  deadline.unref()
  // `on` rather than `once` (no wrapper per listener): `done` makes every later event a no-op
  stream.on('data', (chunk: Buffer) => {
    if (tooLarge || done) return
    size += chunk.length
    if (size > limit || (keep && !budget.take(chunk.length, source))) {
      tooLarge = true
      drop()
      return
    }
    if (!keep) return
    held += chunk.length
    chunks.push(chunk)
  })
  stream.on('end', () => {
    if (done) return
    done = true
    clearTimeout(deadline)
    if (tooLarge) return finish(null, { kind: 'too-large' })
    const data = !keep
      ? EMPTY
      : chunks.length === 1
        ? (chunks[0] as Buffer)
        : Buffer.concat(chunks, size)
    const bytes = held
    held = 0
    finish(null, { kind: 'ok', data, release: () => budget.give(bytes, source) })
  })
  stream.on('error', (err) => {
    if (done) return
    done = true
    clearTimeout(deadline)
    drop()
    finish(err)
  })
  stream.on('close', () => {
    clearTimeout(deadline)
    if (done) return
    done = true
    drop()
    finish(new KmsError('KMS_ERR_BAD_REQUEST', 'failed to read data: aborted'))
  })
}

function decodeSegment(raw: string): string {
  // the common case, nothing escaped, needs no decoder
  if (!raw.includes('%')) return raw
  try {
    return decodeURIComponent(raw)
  } catch {
    // upstream names a malformed escape in its "Service not found" text as sent
    return raw
  }
}

/** The percent-decoded `<method>` segment of the path `url.slice(0, end)`, or null when it is
 * not exactly `/prpc/<one non-empty segment>` (those are 404s, like upstream's router). Segments
 * are split before decoding, as the router does: `a%2Fb` is one segment, and
 * `/%70rpc/x/prpc/Bootstrap` has four and never names `Bootstrap`. */
function methodSegment(url: string, end: number): string | null {
  if (url.charCodeAt(0) !== 0x2f) return null
  const second = url.indexOf('/', 1)
  if (second < 0 || second >= end) return null
  const third = url.indexOf('/', second + 1)
  if (third !== -1 && third < end) return null
  const raw = url.slice(second + 1, end)
  if (decodeSegment(url.slice(1, second)) !== 'prpc' || raw === '') return null
  return decodeSegment(raw)
}

export function stripServicePrefix(segment: string, prefix: string): string {
  let method = segment
  if (prefix === '') return method
  while (method.startsWith(prefix)) method = method.slice(prefix.length)
  return method
}

function ownEntry<V>(record: Readonly<Record<string, V>>, key: string): V | undefined {
  // `Object.hasOwn` keeps `/prpc/toString` from reaching Object.prototype
  return Object.hasOwn(record, key) ? record[key] : undefined
}

function sendBody(reply: FastifyReply, status: number, json: boolean, body: Buffer): FastifyReply {
  // a Buffer with an explicit type: Fastify adds no charset
  return reply
    .code(status)
    .header('content-type', json ? 'application/json' : 'application/octet-stream')
    .send(body)
}

/** The 400 body: `{\n  "error": "…"\n}` in JSON, `ProtoError` in protobuf. */
export function encodeErrorBody(json: boolean, message: string): Buffer {
  if (json) return errorJson(message)
  return encodeMessage(ProtoErrorType, { message })
}

/** What the pRPC route keeps about one request between its hook, its body parser and its
 * handler. */
interface PrpcRequestState {
  /** the Content-Type header as sent; hidden from Fastify while the body is read */
  readonly contentType: string | undefined
  /** the percent-decoded method segment, or null when the path is not `/prpc/<segment>` */
  readonly segment: string | null
  /** the query part of the request target (everything after the first `?`), undecoded */
  readonly rawQuery: string
  body: BodyRead | undefined
}

declare module 'fastify' {
  interface FastifyRequest {
    /** set by the pRPC route's onRequest hook; null on every other route */
    prpcState: PrpcRequestState | null
  }
}

function newRequestState(request: FastifyRequest): PrpcRequestState {
  const url = request.raw.url ?? request.url
  const queryAt = url.indexOf('?')
  return {
    contentType: request.headers['content-type'],
    segment: methodSegment(url, queryAt < 0 ? url.length : queryAt),
    rawQuery: queryAt < 0 ? '' : url.slice(queryAt + 1),
    body: undefined,
  }
}

export async function registerPrpc<Ctx>(
  app: FastifyInstance,
  opts: PrpcOptions<Ctx>,
): Promise<void> {
  const limits = opts.limits ?? {}

  /** How a body is read: its limit, and whether it is buffered at all (only for a method whose
   * payload is ever decoded: not Empty-input, not unknown). */
  const bodyPolicy = (segment: string | null): { limit: number; keep: boolean } => {
    if (segment === null) return { limit: DEFAULT_BODY_LIMIT, keep: false }
    const method = stripServicePrefix(segment, opts.servicePrefix)
    const entry = ownEntry(opts.methods, method)
    return {
      limit: ownEntry(limits, method) ?? DEFAULT_BODY_LIMIT,
      keep: entry !== undefined && entry.input !== null,
    }
  }
  const budget = opts.bodyBudget
  const stateOf = (request: FastifyRequest): PrpcRequestState =>
    (request.prpcState ??= newRequestState(request))

  // A call is these sync steps around the two awaits (preDispatch, the handler), written out in
  // the route handler itself: one async function per request, not one more for the dispatch.

  /** The request body to decode; a body past its limit is refused here, before preDispatch. */
  const payloadOf = (request: FastifyRequest, state: PrpcRequestState): Buffer => {
    if (request.method === 'GET' || request.method === 'HEAD') return EMPTY
    const body = state.body
    if (body?.kind === 'too-large') {
      throw new KmsError('KMS_ERR_PAYLOAD_TOO_LARGE', 'failed to read data: payload too large')
    }
    return body?.data ?? EMPTY
  }

  const methodEntry = (method: string): AnyRpcMethod<Ctx> => {
    const entry = ownEntry(opts.methods, method)
    if (entry === undefined) throw new KmsError('KMS_ERR_NOT_FOUND', `Service not found: ${method}`)
    return entry
  }

  const decodeInput = (
    entry: AnyRpcMethod<Ctx>,
    request: FastifyRequest,
    state: PrpcRequestState,
    payload: Buffer,
    json: boolean,
  ): unknown => {
    if (entry.input === null) return null
    if (!json) return decodeMessage(entry.input, payload)
    if (request.method === 'GET' || request.method === 'HEAD') {
      return decodeQuery(entry.input, state.rawQuery)
    }
    return decodeJson(entry.input, payload)
  }

  const encodeOutput = (
    entry: AnyRpcMethod<Ctx>,
    method: string,
    output: unknown,
    json: boolean,
  ): Buffer => {
    if (entry.output === null) return json ? Buffer.from(EMPTY_JSON) : EMPTY
    if (output === null) throw new KmsError('KMS_ERR_INTERNAL', `${method} returned no response`)
    return json
      ? Buffer.from(encodeJson(entry.output, output), 'utf8')
      : encodeMessage(entry.output, output)
  }

  await app.register(async (scope) => {
    scope.decorateRequest('prpcState', null)
    // Only our raw reader may see pRPC bodies: any content type, none, or an invalid one.
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (request: FastifyRequest, payload: Readable, done) => {
      const state = stateOf(request)
      const { limit, keep } = bodyPolicy(state.segment)
      const source = request.raw.socket.remoteAddress ?? ''
      readBody(payload, limit, keep, budget, source, (err, body) => {
        if (err !== null) return done(err)
        state.body = body
        done(null, undefined)
      })
    })

    scope.route({
      method: ['GET', 'HEAD', 'POST'],
      url: '/prpc/*',
      exposeHeadRoute: false,
      // Hooks in callback style: an async hook costs a promise and a microtask per request.
      onRequest: (request, _reply, done) => {
        // Fastify answers 415 for a malformed Content-Type before any parser runs; upstream
        // accepts anything, so keep the header for negotiation and hide it from Fastify (set to
        // undefined rather than deleted: a delete turns the headers object into a slow
        // dictionary).
        const state = stateOf(request)
        if (state.contentType !== undefined) request.headers['content-type'] = undefined
        done()
      },
      handler: async (request, reply) => {
        const state = stateOf(request)
        // the body has been read: the handlers see the header again
        if (state.contentType !== undefined) request.headers['content-type'] = state.contentType
        const segment = state.segment
        if (segment === null) return reply.callNotFound()
        const method = stripServicePrefix(segment, opts.servicePrefix)
        if (opts.routineMethods?.has(method) === true) markRoutineRequest(request)
        const json = wantsJson({
          method: request.method,
          rawQuery: state.rawQuery,
          contentType: state.contentType,
        })
        try {
          const payload = payloadOf(request, state)
          // documented contract: without preDispatch the context is undefined
          const ctx =
            opts.preDispatch === undefined ? (undefined as Ctx) : await opts.preDispatch(request)
          const entry = methodEntry(method)
          const input = decodeInput(entry, request, state, payload, json)
          const output = await entry.handle(input, { request, ctx })
          return sendBody(reply, 200, json, encodeOutput(entry, method, output, json))
        } catch (err) {
          const view = errorView(err)
          try {
            const log = opts.failureLog
            log?.logger[view.level]({ method, ...view.log }, log.message)
            opts.onError?.(err, method, request)
          } catch {
            // a failing logger must not change the answer
          }
          return sendBody(reply, view.status, json, encodeErrorBody(json, view.message))
        } finally {
          const body = state.body
          if (body?.kind === 'ok') body.release()
          state.body = undefined
        }
      },
    })
  })
}
