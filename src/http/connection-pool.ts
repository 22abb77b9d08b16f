// Per-origin connections for the outbound HTTP/1.1 client: TCP, a unix socket, or TLS over
// either. One request at a time per connection (no pipelining); a connection goes back to the
// idle list only when the client says its response was completely framed, and an idle connection
// that receives anything, or is closed by the server, is destroyed at once, so a stray byte can
// never be read as the answer to a later request. A new TLS connection resumes its origin's last
// session (docs/design.md#quote-verification-library explains what a session is keyed by).
import { connect as netConnect, isIP, type NetConnectOpts, type Socket } from 'node:net'
import {
  connect as tlsConnect,
  createSecureContext,
  type ConnectionOptions,
  type SecureContext,
  type TLSSocket,
} from 'node:tls'
import { BoundedCache } from '../util/bounded-cache.js'

export interface HttpTlsOptions {
  /** trust anchors (PEM) replacing the system store */
  ca?: string
  /** client certificate and key (PEM) for mutual TLS */
  cert?: string
  key?: string
  /** false: the server's certificate is not checked (a deliberate, documented use only) */
  rejectUnauthorized?: boolean
}

/** TLS sessions kept for resumption, one per origin, as node:https's Agent keeps up to 100. */
const MAX_TLS_SESSIONS = 100

/** Where requests go. Connections and TLS sessions are shared only between requests with the
 * same `key`, so it must name everything of the destination that the server's certificate is
 * checked against: scheme, host (the SNI and the name checked) and port. */
export interface Origin {
  key: string
  tls: boolean
  /** the host name or IP literal (no brackets) */
  host: string
  port: number
  /** when set, the connection goes to this unix socket instead of host:port */
  socketPath?: string
}

/** What the request on a connection hears from it. */
export interface ConnectionUser {
  onData(chunk: Buffer): void
  /** the server ended the stream (EOF) */
  onEnd(): void
  /** a socket error, or the connection closed without an EOF */
  onError(err: Error): void
}

export interface PoolOptions {
  /** false: every connection carries one request and is closed (maxSockets still applies) */
  keepAlive: boolean
  /** connections per origin, busy and idle together (default unbounded) */
  maxSockets?: number
  /** idle connections kept per origin */
  maxIdle: number
  /** an idle connection is closed after this long, before a server's keep-alive close is likely */
  idleTimeoutMs: number
  tls?: HttpTlsOptions
}

type Waiter = (err: Error | undefined, conn?: Connection) => void

interface TlsSession {
  session: Buffer
  /** the server certificate its first handshake verified (DER) */
  peerCertDer: Buffer
}

interface OriginState {
  /** connections counted against maxSockets: busy and idle */
  open: number
  idle: Connection[]
  waiters: Waiter[]
}

/** The connection closed under a request without an EOF or a socket error (it was destroyed). */
export class ConnectionClosedError extends Error {
  constructor() {
    super('connection closed')
    this.name = 'ConnectionClosedError'
  }
}

export class Connection {
  readonly socket: Socket
  /** requests this connection carried before the current one */
  uses = 0
  #user: ConnectionUser | undefined
  #idleTimer: NodeJS.Timeout | undefined
  #dead = false
  readonly #pool: ConnectionPool
  readonly #origin: Origin
  /** counted against maxSockets and eligible for the idle list */
  readonly pooled: boolean
  /** the server's certificate (DER) once a TLS handshake is done */
  peerCertDer: Buffer | undefined

  constructor(pool: ConnectionPool, origin: Origin, socket: Socket, pooled: boolean) {
    this.#pool = pool
    this.#origin = origin
    this.socket = socket
    this.pooled = pooled
    socket.on('data', (chunk: Buffer) => {
      if (this.#user !== undefined) this.#user.onData(chunk)
      else this.destroy() // bytes nobody asked for: the connection can no longer be trusted
    })
    socket.on('end', () => {
      if (this.#user !== undefined) this.#user.onEnd()
      else this.destroy()
    })
    socket.on('error', (err: Error) => {
      const user = this.#user
      this.destroy()
      user?.onError(err)
    })
    socket.on('close', () => {
      const user = this.#user
      this.destroy()
      user?.onError(new ConnectionClosedError())
    })
  }

  get origin(): Origin {
    return this.#origin
  }

  get dead(): boolean {
    return this.#dead || this.socket.destroyed
  }

  attach(user: ConnectionUser): void {
    this.#user = user
  }

  detach(): void {
    this.#user = undefined
  }

  /** Closes the socket and frees its place; idempotent. */
  destroy(): void {
    this.#user = undefined
    if (this.#dead) return
    this.#dead = true
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer)
    this.socket.destroy()
    this.#pool.forget(this)
  }

  /** @internal the pool's idle bookkeeping */
  startIdle(ms: number): void {
    this.socket.unref()
    if (this.#idleTimer === undefined) {
      this.#idleTimer = setTimeout(() => {
        if (this.#pool.isIdle(this)) this.destroy()
      }, ms)
      this.#idleTimer.unref()
    } else {
      this.#idleTimer.refresh()
    }
  }

  /** @internal */
  endIdle(): void {
    this.socket.ref()
  }
}

export class ConnectionPool {
  readonly #opts: PoolOptions
  /** the trust anchors and client certificate parsed once, not on every new TLS connection */
  #secureContext: SecureContext | undefined
  /** The last TLS session of each origin, offered on its next new connection so that it resumes
   * instead of paying a full handshake. Kept per pool because the trust anchors and the client
   * certificate are the pool's: a session verified under one trust must never be resumed under
   * another (a resumed handshake checks neither the chain nor the name again). */
  readonly #sessions = new BoundedCache<TlsSession>(MAX_TLS_SESSIONS)
  readonly #origins = new Map<string, OriginState>()
  readonly #all = new Set<Connection>()
  #closed = false

  constructor(opts: PoolOptions) {
    this.#opts = opts
  }

  /** Hands `cb` a connection to `origin`: an idle one, a new one, or (at maxSockets) the next
   * one freed. `fresh`: a new connection outside the pool that is closed after its request. The
   * returned function withdraws a request still waiting for its turn. */
  acquire(origin: Origin, fresh: boolean, cb: Waiter): () => void {
    if (fresh) {
      this.#connect(origin, false, cb)
      return noop
    }
    const st = this.#state(origin.key)
    for (let conn = st.idle.pop(); conn !== undefined; conn = st.idle.pop()) {
      if (conn.dead) continue
      conn.endIdle()
      conn.uses++
      cb(undefined, conn)
      return noop
    }
    const max = this.#opts.maxSockets ?? Infinity
    if (st.open < max) {
      this.#connect(origin, true, cb)
      return noop
    }
    st.waiters.push(cb)
    return () => {
      const i = st.waiters.indexOf(cb)
      if (i >= 0) st.waiters.splice(i, 1)
    }
  }

  /** The request on `conn` is over. `reusable`: its response was completely framed, nothing
   * followed it and the server allowed keep-alive; anything else closes the connection. */
  release(conn: Connection, reusable: boolean): void {
    conn.detach()
    if (!reusable || !conn.pooled || !this.#opts.keepAlive || this.#closed || conn.dead) {
      conn.destroy()
      return
    }
    const st = this.#state(conn.origin.key)
    const next = st.waiters.shift()
    if (next !== undefined) {
      conn.uses++
      next(undefined, conn)
      return
    }
    if (st.idle.length >= this.#opts.maxIdle) {
      conn.destroy()
      return
    }
    st.idle.push(conn)
    conn.startIdle(this.#opts.idleTimeoutMs)
  }

  /** Closes every connection, busy ones included, and fails the requests waiting for one. */
  close(): void {
    this.#closed = true
    for (const st of this.#origins.values()) {
      for (const w of st.waiters.splice(0)) w(new Error('HTTP client closed'))
    }
    for (const conn of [...this.#all]) conn.destroy()
    this.#origins.clear()
    this.#sessions.clear()
  }

  /** @internal a connection died: free its place and give it to the next waiter */
  forget(conn: Connection): void {
    if (!this.#all.delete(conn) || !conn.pooled) return
    const st = this.#origins.get(conn.origin.key)
    if (st === undefined) return
    st.open--
    const i = st.idle.indexOf(conn)
    if (i >= 0) st.idle.splice(i, 1)
    const next = this.#closed ? undefined : st.waiters.shift()
    if (next !== undefined) this.#connect(conn.origin, true, next)
    // origins come and go (a PCCS may redirect anywhere): keep no state for an unused one
    else if (st.open === 0) this.#origins.delete(conn.origin.key)
  }

  /** @internal */
  isIdle(conn: Connection): boolean {
    return this.#origins.get(conn.origin.key)?.idle.includes(conn) ?? false
  }

  #state(key: string): OriginState {
    let st = this.#origins.get(key)
    if (st === undefined) {
      st = { open: 0, idle: [], waiters: [] }
      this.#origins.set(key, st)
    }
    return st
  }

  #connect(origin: Origin, pooled: boolean, cb: Waiter): void {
    let socket: Socket
    const offered = origin.tls ? this.#sessions.get(origin.key) : undefined
    try {
      socket = this.#open(origin, offered?.session)
    } catch (err) {
      cb(err instanceof Error ? err : new Error(String(err)))
      return
    }
    const conn = new Connection(this, origin, socket, pooled)
    if (origin.tls) this.#followHandshake(conn, socket as TLSSocket, offered)
    this.#all.add(conn)
    if (pooled) this.#state(origin.key).open++
    cb(undefined, conn)
  }

  #open(origin: Origin, session: Buffer | undefined): Socket {
    const path = origin.socketPath
    // node:http's defaults: no Nagle delay; TCP keep-alive probes on pooled connections
    const where: NetConnectOpts =
      path === undefined
        ? {
            host: origin.host,
            port: origin.port,
            noDelay: true,
            keepAlive: this.#opts.keepAlive,
            keepAliveInitialDelay: 1000,
          }
        : { path }
    if (!origin.tls) return netConnect(where)
    const t = this.#opts.tls
    this.#secureContext ??= createSecureContext({
      ...(t?.ca === undefined ? {} : { ca: t.ca }),
      ...(t?.cert === undefined ? {} : { cert: t.cert }),
      ...(t?.key === undefined ? {} : { key: t.key }),
    })
    const opts: ConnectionOptions = {
      ...where,
      // SNI and the certificate's name check use the host; an IP literal is not a server name
      ...(isIP(origin.host) === 0 ? { servername: origin.host } : {}),
      host: origin.host,
      secureContext: this.#secureContext,
      ...(t?.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: t.rejectUnauthorized }),
      ...(session === undefined ? {} : { session }),
    }
    return tlsConnect(opts)
  }

  /** Learns the server's certificate and keeps the connection's sessions for the next one. A
   * session is kept only from a handshake that passed verification (node emits 'session' after
   * 'secureConnect'; one before it is not kept): a resumed handshake checks neither the chain
   * nor the name again. A handshake that offered a session and failed drops it, so the next
   * connection starts afresh (node's https Agent evicts likewise); a newer session stored
   * meanwhile stays. */
  #followHandshake(conn: Connection, socket: TLSSocket, offered: TlsSession | undefined): void {
    const key = conn.origin.key
    const failed = (): void => {
      if (offered !== undefined && this.#sessions.peek(key) === offered) this.#sessions.delete(key)
    }
    socket.once('error', failed)
    socket.once('secureConnect', () => {
      socket.off('error', failed)
      // node reports no peer certificate on a resumed connection: it is the one the session's
      // first handshake verified
      conn.peerCertDer = socket.isSessionReused()
        ? offered?.peerCertDer
        : socket.getPeerX509Certificate()?.raw
    })
    socket.on('session', (session: Buffer) => {
      const peerCertDer = conn.peerCertDer
      if (this.#closed || peerCertDer === undefined) return
      this.#sessions.set(key, { session, peerCertDer })
    })
  }
}

function noop(): void {}
