// Builds the configured TEE backend ([tee] backend,
// docs/design.md#tee-backend-chosen-explicitly-never-a-fallback). Never a fallback: a KMS that
// believes it attests while it does not would hand out keys on the strength of nothing.
import { dirname, join } from 'node:path'
import type { Logger } from 'pino'
import type { KmsConfig } from '../config/types.js'
import { NoneBackend, type TeeBackend } from './backend.js'
import { createGuestAgentBackend } from './guest-agent.js'
import { SimulatorBackend } from './simulator/simulator-backend.js'
import { createTdxBackend } from './tdx/backend.js'

export interface TeeFactoryOptions {
  logger: Logger
  env?: NodeJS.ProcessEnv
  /** a directory laid out like / for the TDX presence check (tests) */
  root?: string
}

/** Where the simulator publishes its mock root CA and collateral: next to cert_dir. */
export function simulatorStateDir(config: KmsConfig): string {
  return join(dirname(config.core.certDir), 'tee-simulator')
}

export async function createTeeBackend(
  config: KmsConfig,
  opts: TeeFactoryOptions,
): Promise<TeeBackend> {
  const { logger } = opts
  switch (config.tee.backend) {
    case 'none':
      return new NoneBackend()
    case 'simulator':
      return await SimulatorBackend.create({
        seed: Buffer.from(config.tee.simulator.seed, 'hex'),
        stateDir: simulatorStateDir(config),
        logger,
        root: opts.root ?? '/',
        env: opts.env ?? process.env,
      })
    case 'guest-agent':
      return createGuestAgentBackend({ env: opts.env ?? process.env, logger })
    case 'tdx':
      return await createTdxBackend({ logger })
  }
}
