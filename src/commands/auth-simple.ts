// `dstack-kms auth-simple`: the config-file policy webhook of upstream's kms/auth-simple as a
// subcommand. Options fall back to upstream's environment variables (PORT, AUTH_CONFIG_PATH).
// Deviation: upstream binds every interface; ours binds 127.0.0.1 unless --address says
// otherwise, because a policy server that answers anyone should not be exposed by accident.
// With --socket it listens on a unix socket under the sidecar's rules instead
// (docs/design.md#auth-simple-on-a-private-unix-socket).
import { resolve } from 'node:path'
import pino, { type Logger } from 'pino'
import { buildAuthSimpleServer, listenOnSocket } from '../auth-simple/server.js'
import { errorMessage } from '../errors.js'
import { readSecretFile } from '../fs/secret-file.js'
import { loadAuthSimpleConfig } from '../auth-simple/config.js'
import { defaultLimits } from '../config/load.js'
import { claimSocketPath } from '../fs/private-socket.js'
import { socketPathTooLong, unixUrl } from '../http/unix-url.js'
import { UsageError, parseCommandLine, parseFlags } from './usage.js'

export const AUTH_SIMPLE_USAGE = `Usage: dstack-kms auth-simple [--config FILE] [--port N] [--address ADDR] [--token-file FILE]
       dstack-kms auth-simple [--config FILE] --socket PATH [--token-file FILE]

Serves the auth-simple KMS webhook (POST /bootAuth/app, POST /bootAuth/kms, GET /), deciding
from a JSON policy file that is re-read on every request. The listener has the built-in
defaults of kms.toml's [limits] (timeouts, connection caps, header size); this command reads
no kms.toml.

Options:
  -c, --config FILE    policy file (default: $AUTH_CONFIG_PATH, else ./auth-config.json)
  -p, --port N         TCP port, 0 for any free one (default: $PORT, else 3000)
      --address ADDR   address to bind (default: 127.0.0.1; upstream binds all interfaces)
      --socket PATH    listen on a unix socket at PATH instead of TCP (not with --port or
                       --address; $PORT is then ignored). PATH's directory is created with
                       mode 0700; an existing one must be a real directory of this user with
                       no group or other permission bits. A socket left by a dead server of
                       this user is replaced; anything else at PATH stops the start. The
                       socket is mode 0600; a KMS reaches it with url = "unix:PATH".
      --token-file FILE
                       require "Authorization: Bearer <the secret in FILE>" on every request;
                       FILE must be mode 0600 (default: $AUTH_SIMPLE_TOKEN_FILE, else no token)
  -h, --help           print this help and exit
`

export interface AuthSimpleIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  /** default: process.env */
  env?: NodeJS.ProcessEnv
  /** told where the server listens once it does (a port-0 caller learns the real port) */
  onListening?: (where: { address: string; port: number } | { socket: string }) => void
}

type Listener = { kind: 'tcp'; port: number; address: string } | { kind: 'unix'; socket: string }

interface Options {
  configPath: string
  listener: Listener
  /** "" = no bearer token required */
  tokenFile: string
}

export const ENV_AUTH_SIMPLE_TOKEN_FILE = 'AUTH_SIMPLE_TOKEN_FILE'

function parseOptions(argv: string[], env: NodeJS.ProcessEnv): Options | 'help' {
  const values = parseFlags(argv, {
    config: { type: 'string', short: 'c' },
    port: { type: 'string', short: 'p' },
    address: { type: 'string' },
    socket: { type: 'string' },
    'token-file': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  })
  if (values.help) return 'help'
  // `||` as upstream: an empty variable counts as unset
  const configPath = values.config ?? (env.AUTH_CONFIG_PATH || './auth-config.json')
  if (configPath === '') throw new UsageError("option '--config' needs a file name")
  const tokenFile = values['token-file'] ?? (env[ENV_AUTH_SIMPLE_TOKEN_FILE] || '')
  if (values['token-file'] === '') throw new UsageError("option '--token-file' needs a file name")
  const listener = parseListener(values, env)
  return { configPath, listener, tokenFile }
}

function parseListener(
  values: { port?: string | undefined; address?: string | undefined; socket?: string | undefined },
  env: NodeJS.ProcessEnv,
): Listener {
  if (values.socket !== undefined) {
    if (values.port !== undefined || values.address !== undefined) {
      throw new UsageError(
        `option '--socket' cannot be combined with '${values.port !== undefined ? '--port' : '--address'}': a unix socket has no port or address`,
      )
    }
    if (values.socket === '') throw new UsageError("option '--socket' needs a path")
    const socket = resolve(values.socket)
    const tooLong = socketPathTooLong(socket)
    if (tooLong !== undefined) throw new UsageError(`socket path ${tooLong}`)
    return { kind: 'unix', socket }
  }
  const portText = values.port ?? (env.PORT || '3000')
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new UsageError(`invalid port '${portText}'`)
  }
  const address = values.address ?? '127.0.0.1'
  if (address === '') throw new UsageError("option '--address' needs an address")
  return { kind: 'tcp', port: Number(portText), address }
}

export async function runAuthSimple(argv: string[], io: AuthSimpleIo): Promise<number> {
  const opts = parseCommandLine('auth-simple', AUTH_SIMPLE_USAGE, io, () =>
    parseOptions(argv, io.env ?? process.env),
  )
  if (typeof opts === 'number') return opts

  const logger: Logger = pino({ base: { worker: 'auth-simple', pid: process.pid } }, io.stdout)
  const { listener } = opts
  let token: string | undefined
  try {
    token = opts.tokenFile === '' ? undefined : readSecretFile(opts.tokenFile, '--token-file')
    // the sidecar's checks: a private directory, and only a dead socket of ours replaced
    if (listener.kind === 'unix') await claimSocketPath(listener.socket)
  } catch (err) {
    io.stderr.write(`dstack-kms auth-simple: ${errorMessage(err)}\n`)
    return 1
  }
  const where = listener.kind === 'unix' ? unixUrl(listener.socket) : `port ${listener.port}`
  logger.info(`starting auth-simple server on ${where}`)
  logger.info(`config path: ${opts.configPath}`)
  // not needed for serving (every request reads the file); it surfaces a wrong path at start
  loadAuthSimpleConfig(opts.configPath, logger)

  // a standalone sidecar reads no kms.toml: the built-in listener limits
  const app = buildAuthSimpleServer({
    configPath: opts.configPath,
    logger,
    limits: defaultLimits(),
    ...(token === undefined ? {} : { token }),
  })
  let onSignal: (signal: string) => void = () => {}
  const stopped = new Promise<string>((resolve) => {
    onSignal = resolve
  })
  const unhook = () => {
    process.off('SIGTERM', onSignal)
    process.off('SIGINT', onSignal)
  }
  // hooked before listening, so a signal during start-up still ends in a clean close
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  try {
    if (listener.kind === 'unix') {
      await listenOnSocket(app, listener.socket)
    } else {
      await app.listen({ port: listener.port, host: listener.address })
    }
  } catch (err) {
    unhook()
    const target =
      listener.kind === 'unix' ? listener.socket : `${listener.address}:${listener.port}`
    logger.error({ err }, `failed to listen on ${target}`)
    await app.close()
    return 1
  }
  const bound = app.server.address()
  if (listener.kind === 'unix') io.onListening?.({ socket: listener.socket })
  else if (bound !== null && typeof bound === 'object') {
    io.onListening?.({ address: bound.address, port: bound.port })
  }
  const signal = await stopped
  // a second signal takes the default action (exit at once) should closing hang
  unhook()
  logger.info(`received ${signal}, shutting down`)
  await app.close()
  return 0
}
