// Writes the quick-start auth-simple policy at first start (never overwrites an edited one).
import { existsSync } from 'node:fs'
import type { Logger } from 'pino'
import { publishOnce } from './files.js'
import type { KmsConfig } from '../config/types.js'
import { simulatorStateDir } from '../tee/factory.js'
import {
  DEMO_APP_ID,
  DEMO_COMPOSE_HASH,
  demoPolicy,
  simulatedDemoAppMrSystem,
  simulatedKmsBootInfo,
} from './demo.js'

export async function ensureQuickstartPolicy(config: KmsConfig, logger: Logger): Promise<void> {
  const file = config.authSimple.config
  if (existsSync(file)) return
  const kms = await simulatedKmsBootInfo(
    Buffer.from(config.tee.simulator.seed, 'hex'),
    simulatorStateDir(config),
  )
  const seed = Buffer.from(config.tee.simulator.seed, 'hex')
  const policy = demoPolicy(kms, await simulatedDemoAppMrSystem(seed))
  if (publishOnce(file, `${JSON.stringify(policy, null, 2)}\n`)) {
    logger.info(
      {
        file,
        kmsMrAggregated: kms.mrAggregated.toString('hex'),
        demoAppId: DEMO_APP_ID.toString('hex'),
        demoComposeHash: DEMO_COMPOSE_HASH.toString('hex'),
      },
      'generated the quick-start auth-simple policy: it admits this simulated KMS and the demo app',
    )
  }
}
