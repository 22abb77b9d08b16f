// `[tee] backend = "tdx"`: this KMS attests itself from inside a TDX guest, doing what upstream's
// `Attestation::quote` does for DstackTdx (vm_config from the sys-config, runtime events, a quote
// through configfs-tsm, CCEL + runtime event log), without a guest-agent in between.
import type { Logger } from 'pino'
import { encodeVersionedAttestation, intoVersioned } from '../../attestation/versioned.js'
import { runtimeEventToTdxEvent } from '../../attestation/runtime-events.js'
import type { Attestation, RuntimeEvent, TdxEvent } from '../../attestation/types.js'
import { KmsError, withContext } from '../../errors.js'
import { isNotFound } from '../../fs/errno.js'
import { readCcelEvents } from './ccel.js'
import { REPORT_DATA_SIZE } from './configfs-tsm.js'
import { detectTdx } from './detect.js'
import { NodeTdxIo, joinPath, readText, type TdxIo } from './io.js'
import { TdxQuoter } from './quote.js'
import { extendRtmr } from './rtmr.js'
import {
  emitRuntimeEvent,
  readRuntimeEvents,
  runtimeLogPaths,
  type RuntimeLogPaths,
} from './runtime-log.js'
import type { TeeBackend } from '../backend.js'
import { Mutex } from '../../util/concurrency.js'

export const HOST_SHARED_DIR = '/dstack/.host-shared'
export const HOST_SHARED_DIR_ENV = 'DSTACK_HOST_SHARED_DIR'
export const SYS_CONFIG_FILE = '.sys-config.json'

/** `$DSTACK_HOST_SHARED_DIR/.sys-config.json`, else `/dstack/.host-shared/.sys-config.json`. */
export function sysConfigPath(env: Readonly<Record<string, string | undefined>>): string {
  return joinPath(env[HOST_SHARED_DIR_ENV] ?? HOST_SHARED_DIR, SYS_CONFIG_FILE)
}

export interface TdxBackendOptions {
  io?: TdxIo
  logger?: Pick<Logger, 'info' | 'warn'>
  /** directory of runtime_events.log and its lock (default /run/log/dstack) */
  runtimeLogDir?: string
  /** the guest's sys-config (default: from DSTACK_HOST_SHARED_DIR, see sysConfigPath) */
  sysConfigPath?: string
}

export class TdxBackend implements TeeBackend {
  readonly name = 'tdx' as const
  readonly canAttest = true
  readonly #io: TdxIo
  readonly #quoter: TdxQuoter
  readonly #paths: RuntimeLogPaths
  readonly #sysConfig: string
  readonly #lock = new Mutex()

  /** Use createTdxBackend: it refuses to build a backend on a machine without TDX. */
  constructor(io: TdxIo, quoter: TdxQuoter, options: TdxBackendOptions = {}) {
    this.#io = io
    this.#quoter = quoter
    this.#paths = runtimeLogPaths(options.runtimeLogDir)
    this.#sysConfig = options.sysConfigPath ?? sysConfigPath(io.env)
  }

  /** Upstream's quote lock covers the whole attestation, so the runtime events read match the
   * RTMR3 the quote carries unless another process emits in between. */
  attest(reportData: Uint8Array): Promise<Buffer> {
    if (reportData.length !== REPORT_DATA_SIZE) {
      return Promise.reject(
        new KmsError('KMS_ERR_TEE', `report_data must be ${REPORT_DATA_SIZE} bytes`),
      )
    }
    const data = Buffer.from(reportData)
    return this.#lock.run(() => this.#attest(data))
  }

  async #attest(reportData: Buffer): Promise<Buffer> {
    let config: string
    try {
      config = await this.vmConfig()
    } catch (err) {
      throw withContext('Failed to read vm config', err, 'KMS_ERR_TEE')
    }
    let runtimeEvents: RuntimeEvent[]
    try {
      runtimeEvents = await readRuntimeEvents(this.#io, this.#paths)
    } catch (err) {
      throw withContext('Failed to read runtime events', err, 'KMS_ERR_TEE')
    }
    let quote: Buffer
    try {
      quote = await this.#quoter.getQuote(reportData)
    } catch (err) {
      throw withContext('Failed to get quote', err, 'KMS_ERR_TEE')
    }
    let eventLog: TdxEvent[]
    try {
      eventLog = await this.eventLog()
    } catch (err) {
      throw withContext('Failed to read event log', err, 'KMS_ERR_TEE')
    }
    const attestation: Attestation = {
      quote: { kind: 'dstack-tdx', quote, eventLog },
      runtimeEvents,
      reportData,
      config,
      stack: { kind: 'dstack' },
    }
    // V0 SCALE unless V2 events need the msgpack wire (upstream's into_versioned)
    return encodeVersionedAttestation(intoVersioned(attestation))
  }

  /** The sys-config's `vm_config` string; "" when the guest has no sys-config. */
  async vmConfig(): Promise<string> {
    let text: string
    try {
      text = await readText(this.#io, this.#sysConfig)
    } catch (err) {
      if (isNotFound(err)) return ''
      throw withContext('Failed to read sys-config', err, 'KMS_ERR_TEE')
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (err) {
      throw withContext('Failed to parse sys-config', err, 'KMS_ERR_TEE')
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new KmsError(
        'KMS_ERR_TEE',
        'Failed to parse sys-config: invalid type, expected struct SysConfig',
      )
    }
    const vmConfig: unknown = (parsed as Record<string, unknown>).vm_config
    if (vmConfig === undefined) {
      throw new KmsError('KMS_ERR_TEE', 'Failed to parse sys-config: missing field `vm_config`')
    }
    if (typeof vmConfig !== 'string') {
      throw new KmsError(
        'KMS_ERR_TEE',
        'Failed to parse sys-config: invalid type for `vm_config`, expected a string',
      )
    }
    return vmConfig
  }

  /** Upstream `read_event_log`: CCEL boot events, then the runtime events with computed digests. */
  async eventLog(): Promise<TdxEvent[]> {
    const boot = await readCcelEvents(this.#io)
    const runtime = await readRuntimeEvents(this.#io, this.#paths)
    return [...boot, ...runtime.map(runtimeEventToTdxEvent)]
  }

  /** Extends RTMR3 first, then appends the log line, under the system-wide event lock. */
  async emitEvent(name: string, payload: Uint8Array): Promise<void> {
    await emitRuntimeEvent(this.#io, this.#paths, name, payload, (digest) =>
      extendRtmr(this.#io, 3, digest),
    )
  }

  async close(): Promise<void> {
    await this.#lock.idle()
  }
}

/** Builds the TDX backend after checking that this machine is a TDX guest with a working quote
 * method; otherwise fails with every reason found. Never falls back to another backend. */
export async function createTdxBackend(options: TdxBackendOptions = {}): Promise<TdxBackend> {
  const io = options.io ?? new NodeTdxIo()
  const quoter = new TdxQuoter(io)
  const found = await detectTdx(io, quoter.configfs)
  if (found.reasons.length > 0) {
    throw new KmsError(
      'KMS_ERR_TEE',
      `tee.backend = "tdx" but TDX attestation is not available on this machine: ${found.reasons.join('; ')}`,
    )
  }
  const backend = new TdxBackend(io, quoter, options)
  const method = found.quoteMethod
  options.logger?.info({ quoteMethod: method }, 'TDX backend ready')
  return backend
}
