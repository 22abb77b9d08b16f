// `dstack-kms serve`: loads the configuration, takes the cert_dir lock, finishes any interrupted
// key commit, and hands over to the supervisor, which runs the onboarding and KMS workers.
import { mkdirSync, statSync } from 'node:fs'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig } from './config/load.js'
import { QUICKSTART_TOKEN_FILE, quickstartDataDir } from './config/quickstart.js'
import { ensureQuickstartAdminToken, ensureQuickstartSeed } from './quickstart/files.js'
import { ensureQuickstartPolicy } from './quickstart/policy-file.js'
import type { KmsConfig } from './config/types.js'
import { unsafeDefaultWarnings } from './config/validate.js'
import { autoBootstrap } from './keys/bootstrap.js'
import { keysExist } from './keys/cert-dir.js'
import { recoverStaging } from './keys/commit.js'
import { loadStartupKeySet, type StartupKeySet } from './keys/key-set.js'
import { updateCerts } from './keys/update-certs.js'
import { errorMessage } from './errors.js'
import { createLogger } from './log.js'
import { describeSource, onboardFromSource } from './onboard/replicate.js'
import { lockFileExclusive } from './native/flock.js'
import { runSupervisor } from './supervisor/supervisor.js'
import { createRuntime } from './runtime.js'
import { VERSION } from './version.js'

/** Overrides /etc/kms/kms.toml; tests point it elsewhere so a developer's file never leaks in. */
export const SYSTEM_CONFIG_ENV = 'DSTACK_KMS_SYSTEM_CONFIG'
export const LOCK_FILE = '.dstack-kms.lock'

export interface ServeOptions {
  configFile?: string
  quickstart: boolean
}

function printQuickstartToken(token: string, dataDir: string): void {
  // stderr, not the JSON log: logs get shipped and kept, this secret must be shown exactly once.
  process.stderr.write(
    [
      '',
      '================================================================================',
      ' dstack-kms quick start: admin token for ClearImageCache (shown only this once)',
      `   ${token}`,
      ` Only its SHA-256 is kept, in ${join(dataDir, QUICKSTART_TOKEN_FILE)}.`,
      '================================================================================',
      '',
    ].join('\n'),
  )
}

function workerScriptPath(): string {
  // Run from source under tsx the worker is a .ts file, compiled it is .js; fork inherits the
  // loader flags either way.
  const self = fileURLToPath(import.meta.url)
  return join(self, '..', `worker${extname(self)}`)
}

export async function serve(opts: ServeOptions): Promise<number> {
  if (opts.quickstart) {
    const dataDir = quickstartDataDir(process.cwd())
    const { createdToken } = ensureQuickstartAdminToken(dataDir)
    if (createdToken !== undefined) printQuickstartToken(createdToken, dataDir)
    ensureQuickstartSeed(dataDir)
  }
  const config: KmsConfig = loadConfig({
    ...(opts.configFile === undefined ? {} : { configFile: opts.configFile }),
    quickstart: opts.quickstart,
    ...(process.env[SYSTEM_CONFIG_ENV] === undefined
      ? {}
      : { etcFile: process.env[SYSTEM_CONFIG_ENV] }),
  })
  const logger = createLogger('supervisor', config.log.level)
  logger.info(
    { version: VERSION, sources: config.sources, tee: config.tee.backend },
    'dstack-kms starting',
  )
  for (const w of config.warnings) logger.warn(w)
  for (const w of unsafeDefaultWarnings(config)) logger.warn(`UNSAFE FOR PRODUCTION: ${w}`)

  if (opts.quickstart) await ensureQuickstartPolicy(config, logger)
  // Fail before forking anything if the TEE backend cannot run here
  // (docs/design.md#tee-backend-chosen-explicitly-never-a-fallback).
  const rt = await createRuntime(config, logger, { announce: true })
  const tee = rt.tee
  const certDir = config.core.certDir
  mkdirSync(certDir, { recursive: true, mode: 0o700 })
  const certDirMode = statSync(certDir).mode & 0o777
  if ((certDirMode & 0o022) !== 0) {
    // Anyone who can write here can plant files (or a symlinked .staging) next to the keys.
    logger.warn(
      `UNSAFE: cert_dir ${certDir} is writable by group or others (mode ${certDirMode.toString(8)}); restrict it to the KMS user (chmod 700)`,
    )
  }
  // Two KMS processes on one cert_dir could both bootstrap; the lock makes the second one fail.
  const lock = await lockFileExclusive(join(certDir, LOCK_FILE))
  try {
    const recovery = recoverStaging(certDir)
    if (recovery.action !== 'none') {
      logger.warn({ recovery }, 'finished an interrupted key commit in cert_dir')
    }
    // read by the key-set check below and handed to update_certs, so the supervisor reads and
    // parses the key files once per start
    let keySet: StartupKeySet | undefined
    const bootstrapDeps = {
      certDir,
      tee,
      secp256k1: rt.secp256k1,
      ensureSelfKmsAllowed: () => rt.selfAuth.ensureSelfKmsAllowed(),
    }
    return await runSupervisor({
      config,
      logger,
      workerScript: workerScriptPath(),
      // A key set that is present but does not load (a damaged key, bootstrap-info.json or CA
      // certificate) is a fatal start-up error here, before any worker: a main worker would
      // otherwise fail on it forever.
      keysExist: () => {
        if (!keysExist(certDir)) return false
        keySet = loadStartupKeySet(certDir)
        return true
      },
      autoOnboard: async () => {
        const { autoOnboardSource, autoOnboardDomain } = config.core.onboard
        const r = await onboardFromSource(
          { ...bootstrapDeps, verifier: rt.verifier, authApi: rt.authApi, selfAuth: rt.selfAuth },
          autoOnboardSource,
          autoOnboardDomain,
        )
        logger.info(
          {
            source: describeSource(r.source),
            domain: autoOnboardDomain,
            caPubkey: r.caPubkey.toString('hex'),
            k256Pubkey: r.k256Pubkey.toString('hex'),
          },
          'auto-onboarded',
        )
      },
      autoBootstrap: async () => {
        await autoBootstrap(bootstrapDeps, config.core.onboard.autoBootstrapDomain)
        logger.info({ domain: config.core.onboard.autoBootstrapDomain }, 'auto-bootstrapped')
      },
      updateCerts: async () => {
        try {
          await updateCerts({
            certDir,
            autoBootstrapDomain: config.core.onboard.autoBootstrapDomain,
            tee,
            logger,
            ...(keySet === undefined ? {} : { keySet }),
          })
        } catch (err) {
          // docs/design.md#certificate-renewal-follows-upstream-head: fatal only when the RPC
          // certificate should carry an attestation; without a TEE the existing certificates
          // keep serving.
          if (tee.canAttest) throw err
          logger.error(
            `Failed to update certs: ${errorMessage(err)}; continuing with the existing certificates`,
          )
        }
      },
    })
  } finally {
    await rt.close()
    await lock.release()
  }
}
