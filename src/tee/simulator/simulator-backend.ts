// `[tee] backend = "simulator"` (docs/design.md#trust-model): the KMS runs in a simulated CVM on a mock Intel platform
// derived from the configured seed. Its quotes are real-format and correctly signed, so they verify
// with the production verifier — but only against the mock root this backend publishes
// (`mock-root-ca.der`/`.pem`, `collateral.json` in the state directory), never against Intel's.
//
// RTMR3 state: the runtime event log lives in `<stateDir>/runtime_events.log` (the guest's file
// format) and is the single source of truth, re-read on every call. A restarted KMS
// process therefore keeps its log and RTMR3, as it would inside one real CVM (RTMR3 and
// /run/log/dstack survive a process restart, not a reboot); all worker processes sharing the
// state directory see one register, as they would share the hardware one. Deleting the file is the
// simulated reboot: the next start replays the CVM's boot-time events again.
import { appendFileSync, existsSync, linkSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { KmsError } from '../../errors.js'
import { writeFileAtomic, writeFileDurable, tempPathFor } from '../../fs/atomic-write.js'
import { errnoCode } from '../../fs/errno.js'
import { formatRuntimeEventLine, parseRuntimeEventLog } from '../../attestation/event-log.js'
import type { RuntimeEvent, TdxEvent } from '../../attestation/types.js'
import type { TeeBackend } from '../backend.js'
import { tdxPresence } from '../tdx/detect.js'
import { NodeTdxIo, type TdxIo } from '../tdx/io.js'
import { type Collateral, mockCollateral } from './collateral.js'
import {
  type CvmRegisters,
  type SimulatedCvm,
  cvmAttestation,
  cvmEventLog,
  cvmRegisters,
  defaultOsImageHash,
  simulatedCvm,
} from './cvm.js'
import { type MockIntelPki, assertSeed, deriveBytes, mockIntelPki } from './mock-pki.js'

export const SIMULATED_QUOTE_WARNING = 'simulated TDX quote: not a real TEE'

export const RUNTIME_EVENTS_FILE = 'runtime_events.log'
export const MOCK_ROOT_CA_DER_FILE = 'mock-root-ca.der'
export const MOCK_ROOT_CA_PEM_FILE = 'mock-root-ca.pem'
export const COLLATERAL_FILE = 'collateral.json'

export interface SimulatorBackendOptions {
  seed: Buffer
  /** where the mock root, the collateral and the runtime event log are kept */
  stateDir: string
  logger?: Logger
  /** filesystem root for the real-TDX check (tests lay out a fake / in a temp directory) */
  root?: string
  /** the environment of the real-TDX check (`DCAP_TDX_QUOTE_CONFIGFS_PATH`); process.env by
   * default */
  env?: NodeJS.ProcessEnv
}

/** The events the KMS's own CVM emitted before the KMS started: a KMS CVM boots
 * like any dstack app, with the `none` key provider since it holds its own keys. */
export function kmsBootEvents(seed: Uint8Array): RuntimeEvent[] {
  const ev = (event: string, payload: Buffer = Buffer.alloc(0)): RuntimeEvent => ({
    event,
    payload,
  })
  return [
    ev('system-preparing'),
    ev('app-id', deriveBytes(seed, 'kms-app-id', 20)),
    ev('compose-hash', deriveBytes(seed, 'kms-compose-hash', 32)),
    ev('instance-id', deriveBytes(seed, 'kms-instance-id', 20)),
    ev('boot-mr-done'),
    ev('key-provider', Buffer.from(JSON.stringify({ name: 'none', id: '' }))),
    ev('storage-fs', Buffer.from('ext4')),
    ev('system-ready'),
  ]
}

export class SimulatorBackend implements TeeBackend {
  readonly name = 'simulator' as const
  readonly canAttest = true
  readonly mockRootCaDer: Buffer
  readonly stateDir: string
  readonly #pki: MockIntelPki
  readonly #cvm: SimulatedCvm
  readonly #logFile: string
  readonly #logger: Logger | undefined

  /** A simulator must never stand in for real TDX on a machine that has it: refuses with what it
   * found, by the same check the TDX backend starts with (so `DCAP_TDX_QUOTE_CONFIGFS_PATH`
   * counts). */
  static async refuseWhereRealTdx(io: TdxIo = new NodeTdxIo()): Promise<void> {
    const tdx = await tdxPresence(io)
    if (tdx.present) {
      throw new KmsError(
        'KMS_ERR_TEE',
        `refusing to start the TEE simulator on a machine with real TDX (${tdx.evidence.join(', ')}); set [tee] backend = "tdx"`,
      )
    }
  }

  /** The only way to a simulator: the refusal above runs first. */
  static async create(opts: SimulatorBackendOptions): Promise<SimulatorBackend> {
    await SimulatorBackend.refuseWhereRealTdx(
      new NodeTdxIo({ env: opts.env ?? process.env, root: opts.root ?? '/' }),
    )
    return new SimulatorBackend(opts)
  }

  private constructor(opts: SimulatorBackendOptions) {
    assertSeed(opts.seed)
    this.stateDir = opts.stateDir
    this.#logger = opts.logger
    this.#pki = mockIntelPki(opts.seed)
    this.#cvm = simulatedCvm(opts.seed, defaultOsImageHash(opts.seed))
    this.mockRootCaDer = this.#pki.root.der
    this.#logFile = join(opts.stateDir, RUNTIME_EVENTS_FILE)
    mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 })
    this.#publish(MOCK_ROOT_CA_DER_FILE, this.#pki.root.der)
    this.#publish(MOCK_ROOT_CA_PEM_FILE, Buffer.from(this.#pki.root.pem))
    this.#publish(COLLATERAL_FILE, Buffer.from(JSON.stringify(this.collateral(), null, 2) + '\n'))
    this.#createLogOnce(kmsBootEvents(opts.seed))
  }

  /** The collateral of the mock platform (for a StaticCollateralSource or a mock PCCS). */
  collateral(): Collateral {
    return mockCollateral(this.#pki)
  }

  async attest(reportData: Uint8Array): Promise<Buffer> {
    const bytes = cvmAttestation(this.#cvm, this.#runtimeEvents(), reportData)
    this.#logger?.warn({ backend: 'simulator' }, SIMULATED_QUOTE_WARNING)
    return bytes
  }

  async vmConfig(): Promise<string> {
    return this.#cvm.vmConfig
  }

  async eventLog(): Promise<TdxEvent[]> {
    return cvmEventLog(this.#cvm, this.#runtimeEvents())
  }

  /** The registers the next quote will carry (report_data aside). */
  registers(): CvmRegisters {
    return cvmRegisters(this.#cvm, this.#runtimeEvents())
  }

  async emitEvent(name: string, payload: Uint8Array): Promise<void> {
    const line = formatRuntimeEventLine({ event: name, payload: Buffer.from(payload) }) + '\n'
    // O_APPEND: concurrent writers (workers sharing the state directory) never interleave lines.
    appendFileSync(this.#logFile, line, { mode: 0o600 })
  }

  async close(): Promise<void> {}

  #runtimeEvents(): RuntimeEvent[] {
    return parseRuntimeEventLog(readFileSync(this.#logFile))
  }

  /** Writes files other tools read (the mock root for verifiers), only when their content changed. */
  #publish(file: string, content: Buffer): void {
    const path = join(this.stateDir, file)
    if (existsSync(path) && readFileSync(path).equals(content)) return
    writeFileAtomic(path, content, { mode: 0o644 })
  }

  /** Creates the log with the boot-time events unless it exists; link() makes the creation
   * atomic, so concurrent starts agree on one log and nobody reads a half-written one. */
  #createLogOnce(events: RuntimeEvent[]): void {
    if (existsSync(this.#logFile)) return
    const tmp = tempPathFor(this.#logFile)
    writeFileDurable(tmp, events.map((e) => formatRuntimeEventLine(e) + '\n').join(''), 0o600)
    try {
      linkSync(tmp, this.#logFile)
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err
    } finally {
      unlinkSync(tmp)
    }
  }
}
