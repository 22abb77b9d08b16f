// dstack runtime events (RTMR3) and RTMR replay (upstream `cc-eventlog/src/runtime_events.rs`):
// digest formats V1 and V2, the extend operation, and replay of runtime events and of whole TDX
// event logs.
import { createHash } from 'node:crypto'
import { KmsError } from '../errors.js'
import { DSTACK_RUNTIME_EVENT_TYPE, type RuntimeEvent, type TdxEvent } from './types.js'

export const RTMR_LENGTH = 48
/** The event that ends the boot-time part of RTMR3 (`use_boottime_mr`). */
export const BOOT_MR_DONE_EVENT = 'boot-mr-done'
export const SYSTEM_READY_EVENT = 'system-ready'

export type ReplayHash = 'sha384' | 'sha256'

const HASH_LENGTH: Record<ReplayHash, number> = { sha384: 48, sha256: 32 }

function hash(alg: ReplayHash, ...parts: Uint8Array[]): Buffer {
  const h = createHash(alg)
  for (const p of parts) h.update(p)
  return h.digest()
}

/** The V2 digest input: RFC 8785 JSON of `{name, payload: lowercase hex, type}`. For this fixed
 * shape (ASCII keys already in sorted order, an integer, strings that are valid UTF-16 because they
 * come from UTF-8) `JSON.stringify` of the strings is exactly JCS. */
export function canonicalEventJsonV2(name: string, payload: Uint8Array): string {
  const hex = Buffer.from(payload).toString('hex')
  return `{"name":${JSON.stringify(name)},"payload":"${hex}","type":${DSTACK_RUNTIME_EVENT_TYPE}}`
}

/** The bytes hashed into the digest: V1 `LE32(type) ‖ ":" ‖ name ‖ ":" ‖ payload`, V2 the JCS
 * text. */
export function runtimeEventPreimage(e: RuntimeEvent): Buffer {
  if (e.version === 2) return Buffer.from(canonicalEventJsonV2(e.event, e.payload), 'utf8')
  const type = Buffer.alloc(4)
  type.writeUInt32LE(DSTACK_RUNTIME_EVENT_TYPE)
  return Buffer.concat([
    type,
    Buffer.from(':'),
    Buffer.from(e.event, 'utf8'),
    Buffer.from(':'),
    e.payload,
  ])
}

/** SHA-384 digest of a runtime event (SHA-256 for TPM PCR14 replay), V1 or V2 by `e.version`. */
export function runtimeEventDigest(e: RuntimeEvent, alg: ReplayHash = 'sha384'): Buffer {
  return hash(alg, runtimeEventPreimage(e))
}

/** The runtime event a TDX event log entry stands for, or null for a boot event. */
export function tdxEventToRuntimeEvent(e: TdxEvent): RuntimeEvent | null {
  if (e.eventType !== DSTACK_RUNTIME_EVENT_TYPE) return null
  const out: RuntimeEvent = { event: e.event, payload: e.eventPayload }
  if (e.version === 2) out.version = 2
  return out
}

/** A runtime event as the guest appends it to its full event log (imr 3, digest computed). */
export function runtimeEventToTdxEvent(e: RuntimeEvent): TdxEvent {
  const out: TdxEvent = {
    imr: 3,
    eventType: DSTACK_RUNTIME_EVENT_TYPE,
    digest: runtimeEventDigest(e),
    event: e.event,
    eventPayload: e.payload,
  }
  if (e.version === 2) out.version = 2
  return out
}

/** Upstream `TdxEvent::digest()`: runtime events are always re-hashed from their payload (logs
 * such as the guest-agent's `GetQuote` leave their digest empty); boot events use the digest as
 * given. */
export function tdxEventDigest(e: TdxEvent): Buffer {
  const runtime = tdxEventToRuntimeEvent(e)
  return runtime === null ? e.digest : runtimeEventDigest(runtime)
}

/** `rtmr' = SHA-384(rtmr ‖ digest)` (SHA-256 for 32-byte registers); both must have the
 * register's length. */
export function extendRtmr(
  rtmr: Uint8Array,
  digest: Uint8Array,
  alg: ReplayHash = 'sha384',
): Buffer {
  const len = HASH_LENGTH[alg]
  if (rtmr.length !== len || digest.length !== len) {
    throw new KmsError(
      'KMS_ERR_ATTESTATION',
      `cannot extend a ${rtmr.length}-byte register with a ${digest.length}-byte digest (expected ${len})`,
    )
  }
  return hash(alg, rtmr, digest)
}

/** Replays digests from an all-zero register. */
export function replayRtmr(digests: readonly Uint8Array[], alg: ReplayHash = 'sha384'): Buffer {
  let mr: Buffer = Buffer.alloc(HASH_LENGTH[alg])
  for (const d of digests) mr = extendRtmr(mr, d, alg)
  return mr
}

/** Upstream `replay_events`: replays runtime events from zero; with `toEvent` it stops after the
 * first event of that name (all events when there is none). */
export function replayRuntimeEvents(
  events: readonly RuntimeEvent[],
  toEvent?: string,
  alg: ReplayHash = 'sha384',
): Buffer {
  let mr: Buffer = Buffer.alloc(HASH_LENGTH[alg])
  for (const e of events) {
    mr = extendRtmr(mr, runtimeEventDigest(e, alg), alg)
    if (toEvent !== undefined && e.event === toEvent) break
  }
  return mr
}

/** Replays a full TDX event log into RTMR0–3 (runtime digests recomputed). */
export function replayEventLogRtmrs(events: readonly TdxEvent[]): [Buffer, Buffer, Buffer, Buffer] {
  const rtmrs: [Buffer, Buffer, Buffer, Buffer] = [
    Buffer.alloc(RTMR_LENGTH),
    Buffer.alloc(RTMR_LENGTH),
    Buffer.alloc(RTMR_LENGTH),
    Buffer.alloc(RTMR_LENGTH),
  ]
  events.forEach((e, i) => {
    if (!Number.isInteger(e.imr) || e.imr < 0 || e.imr > 3) {
      throw new KmsError('KMS_ERR_ATTESTATION', `event ${i}: invalid imr index ${e.imr}`)
    }
    const digest = tdxEventDigest(e)
    if (digest.length !== RTMR_LENGTH) {
      throw new KmsError(
        'KMS_ERR_ATTESTATION',
        `event ${i}: digest is ${digest.length} bytes, expected ${RTMR_LENGTH}`,
      )
    }
    rtmrs[e.imr] = extendRtmr(rtmrs[e.imr] as Buffer, digest)
  })
  return rtmrs
}

/** Upstream `find_event_payload`: the payload of the first event named `name` before the first
 * `system-ready` (events after it are application-controlled); empty when there is none. */
export function findEventPayload(events: readonly RuntimeEvent[], name: string): Buffer {
  for (const e of events) {
    if (e.event === SYSTEM_READY_EVENT) break
    if (e.event === name) return e.payload
  }
  return Buffer.alloc(0)
}

/** Like `findEventPayload` but tells "absent" (null) from "empty payload". */
export function findEvent(events: readonly RuntimeEvent[], name: string): RuntimeEvent | null {
  for (const e of events) {
    if (e.event === SYSTEM_READY_EVENT) break
    if (e.event === name) return e
  }
  return null
}
