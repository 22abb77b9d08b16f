// A KMS's simulated CVM for tests that run several KMS nodes from one seed: the runtime-events
// file of `stateDir` gets the seed's KMS boot events with a fresh instance id, so each node has
// its own mr_aggregated.
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { BootInfo } from '../../src/attestation/boot-info.js'
import { formatRuntimeEventLine } from '../../src/attestation/event-log.js'
import { simulatedKmsBootInfo } from '../../src/quickstart/demo.js'
import { RUNTIME_EVENTS_FILE, kmsBootEvents } from '../../src/tee/simulator/simulator-backend.js'

/** Writes the CVM into `stateDir` and returns the BootInfo the KMS there will present. */
export async function simulatedKmsInstance(seed: Buffer, stateDir: string): Promise<BootInfo> {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 })
  const events = kmsBootEvents(seed).map((e) =>
    e.event === 'instance-id' ? { ...e, payload: randomBytes(20) } : e,
  )
  writeFileSync(
    join(stateDir, RUNTIME_EVENTS_FILE),
    events.map((e) => formatRuntimeEventLine(e) + '\n').join(''),
    { mode: 0o600 },
  )
  return simulatedKmsBootInfo(seed, stateDir)
}
