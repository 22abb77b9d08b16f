// Entry point of the worker processes the supervisor forks: `onboard` (no keys yet) or `kms`
// (the main service). The configuration arrives over IPC so both processes act on the very same
// resolved settings.
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { KmsConfig } from './config/types.js'
import { asError, errorMessage, hasErrorCode } from './errors.js'
import { listenUrl } from './http/server-options.js'
import { keysExist } from './keys/cert-dir.js'
import { recoverStaging } from './keys/commit.js'
import { buildAdminApp, buildKmsApp } from './kms/app.js'
import { AuditLog } from './audit/audit-log.js'
import { KmsService } from './kms/service.js'
import { kmsMethods, prpcPaths } from './kms/routes.js'
import { listenerTlsWarnings, loadKmsState } from './kms/state.js'
import { createLogger } from './log.js'
import { buildOnboardApp } from './onboard/app.js'
import { createEphemeralTls } from './onboard/ephemeral-tls.js'
import { OnboardService } from './onboard/service.js'
import {
  EXIT_CANNOT_START,
  SupervisorMetricsStore,
  onSupervisorGone,
  sendCannotStart,
  receiveStart,
  sendReady,
} from './supervisor/worker-ipc.js'
import { ClientCertVerifier } from './kms/client-cert.js'
import { createRuntime } from './runtime.js'
import { buildAuthSimpleServer, listenOnSocket } from './auth-simple/server.js'
import { BodyBudget } from './prpc/plugin.js'
import { openFileLimit, openFileShortfall } from './util/open-file-limit.js'
import { claimSocketPath } from './fs/private-socket.js'
import { readSecretFile } from './fs/secret-file.js'
import { errnoCode } from './fs/errno.js'
import { unixUrl } from './http/unix-url.js'

async function listen(
  app: FastifyInstance,
  address: string,
  port: number,
  scheme: 'http' | 'https',
): Promise<string> {
  await app.listen({
    host: address,
    port,
    // Fastify names the scheme from its own `https` option, which our server factory bypasses.
    listenTextResolver: (addr) => `Server listening at ${addr.replace(/^https?:/, `${scheme}:`)}`,
  })
  const addr = app.server.address()
  const bound = typeof addr === 'object' && addr !== null ? addr.port : port
  return listenUrl(scheme, address, bound)
}

/** Says so at start when this process's listeners, each full at its connection cap, would not
 * fit below its open-file limit (docs/design.md#resource-limits-on-every-listener). */
function checkOpenFileLimit(logger: Logger, config: KmsConfig, listeners: number): void {
  const limit = openFileLimit()
  if (limit === null) return
  const shortfall = openFileShortfall(limit, config.limits.maxConnections, listeners)
  if (shortfall !== null) logger.warn({ openFileLimit: limit }, shortfall)
}

/** Stops on SIGTERM/SIGINT (forwarded by the supervisor) after in-flight requests finish. */
function stopOnSignals(logger: Logger, close: () => Promise<void>): void {
  let stopping = false
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'stopping')
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err: asError(err) }, 'error while stopping')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

async function runOnboard(config: KmsConfig, logger: Logger): Promise<void> {
  // A Bootstrap that crashed after its commit point left a complete key set in staging: finish
  // it, and hand over to the KMS instead of asking the operator to bootstrap again.
  const recovery = recoverStaging(config.core.certDir)
  if (recovery.action !== 'none') logger.warn({ recovery }, 'recovered an interrupted key commit')
  if (keysExist(config.core.certDir)) {
    logger.info('keys are present; onboarding is complete')
    process.exit(0)
  }
  const rt = await createRuntime(config, logger)
  const service = new OnboardService({ config, logger, ...rt })
  const tls = config.core.onboard.tls ? createEphemeralTls() : null
  // onFinish runs after listen, when the app exists; the holder breaks the construction cycle.
  const holder: { app?: FastifyInstance } = {}
  const app = await buildOnboardApp({
    service,
    logger,
    tls,
    limits: config.limits,
    bodyBudget: new BodyBudget(config.limits),
    onFinish: () => {
      logger.info('onboarding finished; handing over to the KMS')
      // The reply is out (onResponse); closing only releases the port for the KMS worker, so
      // never let a stuck connection hold up the handover.
      setTimeout(() => process.exit(0), 3000).unref()
      holder.app?.close().then(
        () => process.exit(0),
        () => process.exit(0),
      )
    },
  })
  holder.app = app
  checkOpenFileLimit(logger, config, 1)
  stopOnSignals(logger, async () => {
    await app.close()
    await rt.close()
  })
  const { address, port } = config.core.onboard
  const url = await listen(app, address, port, tls === null ? 'http' : 'https')
  if (tls === null) {
    logger.warn({ url }, 'onboarding listener is plain HTTP (core.onboard.tls = false)')
  } else {
    logger.info(
      { url, fingerprint: tls.fingerprint },
      `onboarding certificate SHA-256 fingerprint ${tls.fingerprint}`,
    )
  }
  logger.warn({ url }, 'onboarding endpoint is unauthenticated; bootstrap or onboard it now')
  await sendReady('onboard', url)
}

async function runKms(config: KmsConfig, logger: Logger): Promise<void> {
  const rt = await createRuntime(config, logger, { announce: true })
  const state = loadKmsState(config.core.certDir, rt.secp256k1)
  for (const w of listenerTlsWarnings(config.core.certDir, config.rpc.tls)) logger.warn(w)
  // opened before the first request: a KMS that cannot record releases must not serve them
  const audit = config.core.audit.enabled
    ? AuditLog.open(config.core.audit.path, {
        retention: { maxBytes: config.core.audit.maxBytes, maxAgeMs: config.core.audit.maxAgeMs },
      })
    : null
  if (audit === null) logger.warn('key-release audit log is disabled (core.audit.enabled = false)')
  const service = new KmsService({ config, state, logger, audit, ...rt })
  const clientCerts = new ClientCertVerifier(rt.verifier)
  // every main worker counts into the supervisor, so a scrape sees the totals of all of them
  const metrics = new SupervisorMetricsStore()
  // one ceiling on buffered request bodies for both listeners of this process
  const bodyBudget = new BodyBudget(config.limits)
  const app = await buildKmsApp({ config, service, logger, clientCerts, metrics, bodyBudget })
  const admin = config.core.admin.enabled
    ? await buildAdminApp({ config, service, logger, bodyBudget })
    : null
  checkOpenFileLimit(logger, config, admin === null ? 1 : 2)
  stopOnSignals(logger, async () => {
    await Promise.all([app.close(), admin?.close()])
    await metrics.flush()
    audit?.close()
    await rt.close()
  })
  logger.info(
    {
      routes: prpcPaths(kmsMethods(service)),
    },
    'Starting KMS',
  )
  const url = await listen(app, config.rpc.address, config.rpc.port, 'https')
  if (admin !== null) {
    const adminUrl = await listen(admin, config.core.admin.address, config.core.admin.port, 'http')
    logger.info({ url: adminUrl }, 'admin listener ready')
  }
  logger.info({ url }, 'KMS listening')
  await sendReady('kms', url)
}

/** The auth-simple policy sidecar ([auth_simple] enabled): upstream's auth-simple, supervised
 * like the other workers so a crash restarts it. By default on a unix socket in a directory only
 * this user can enter (docs/design.md#auth-simple-on-a-private-unix-socket). */
async function runAuthSimpleWorker(config: KmsConfig, logger: Logger): Promise<void> {
  const { address, port, config: configPath, listen: kind, socket, tokenFile } = config.authSimple
  const token = tokenFile === '' ? undefined : readSecretFile(tokenFile, 'auth_simple.token_file')
  const app = buildAuthSimpleServer({
    configPath,
    logger,
    limits: config.limits,
    ...(token === undefined ? {} : { token }),
  })
  checkOpenFileLimit(logger, config, 1)
  stopOnSignals(logger, () => app.close())
  logger.info(`config path: ${configPath}`)
  let url: string
  if (kind === 'unix') {
    await claimSocketPath(socket)
    await listenOnSocket(app, socket)
    url = unixUrl(socket)
  } else {
    url = await listen(app, address, port, 'http')
  }
  logger.info({ url }, `starting auth-simple server on ${url}`)
  await sendReady('auth-simple', url)
}

async function main(): Promise<void> {
  const start = await receiveStart()
  const logger = createLogger(start.role, start.config.log.level)
  // The supervisor is gone (crashed or SIGKILLed): nobody will stop or restart us, so go.
  onSupervisorGone(() => {
    logger.warn('supervisor disappeared; exiting')
    process.exit(1)
  })
  try {
    if (start.role === 'onboard') await runOnboard(start.config, logger)
    else if (start.role === 'auth-simple') await runAuthSimpleWorker(start.config, logger)
    else await runKms(start.config, logger)
  } catch (err) {
    logger.fatal({ err: asError(err) }, `${start.role} worker failed to start`)
    if (cannotBeFixedByRestart(start.role, err)) {
      await sendCannotStart(start.role, errorMessage(err))
      process.exit(EXIT_CANNOT_START)
    }
    process.exit(1)
  }
}

/** Start failures that the next start would meet again: damaged or missing key material and
 * certificates, a damaged audit log, an invalid configuration, and the sidecar's address held
 * by another process (retrying would leave whoever holds it answering the KMS's authorization
 * queries). An audit log on a full disk is not among them: it recovers once space returns. */
function cannotBeFixedByRestart(role: string, err: unknown): boolean {
  if (
    hasErrorCode(err, 'KMS_ERR_KEYS') ||
    hasErrorCode(err, 'KMS_ERR_CONFIG') ||
    hasErrorCode(err, 'KMS_ERR_CERT') ||
    hasErrorCode(err, 'KMS_ERR_AUDIT_DAMAGED')
  ) {
    return true
  }
  return role === 'auth-simple' && errnoCode(err) === 'EADDRINUSE'
}

main().catch((err: unknown) => {
  process.stderr.write(`dstack-kms worker: ${errorMessage(err)}\n`)
  process.exit(1)
})
