// What of an attestation goes into a certificate: upstream `Attestation::into_stripped` and
// `TdxEvent::stripped`. Only the TDX event log shrinks.
import { isAcpiDataEvent, TDX_ACPI_DATA_EVENT_PAYLOAD } from './event-log.js'
import { DSTACK_RUNTIME_EVENT_TYPE, type Attestation, type TdxEvent } from './types.js'

/** `TdxEvent::stripped`: runtime events lose their digest (it is recomputed from the payload),
 * other events their payload. */
function strippedEvent(e: TdxEvent): TdxEvent {
  const out: TdxEvent = { ...e }
  if (e.eventType === DSTACK_RUNTIME_EVENT_TYPE) out.digest = Buffer.alloc(0)
  else out.eventPayload = Buffer.alloc(0)
  return out
}

function stripLite(events: readonly TdxEvent[]): TdxEvent[] {
  const out: TdxEvent[] = []
  for (const e of events) {
    if (isAcpiDataEvent(e)) {
      // the lite OS-image check needs the ACPI digests; the marker payload stays
      out.push({ ...strippedEvent(e), eventPayload: Buffer.from(TDX_ACPI_DATA_EVENT_PAYLOAD) })
    } else if (e.imr === 3) {
      out.push(strippedEvent(e))
    }
  }
  return out
}

/** What goes into a certificate (`into_stripped`): only the TDX event log shrinks. */
export function stripAttestation(a: Attestation): Attestation {
  switch (a.quote.kind) {
    case 'dstack-tdx':
      return { ...a, quote: { ...a.quote, eventLog: stripLite(a.quote.eventLog) } }
    case 'dstack-gcp-tdx':
      return {
        ...a,
        quote: {
          ...a.quote,
          eventLog: a.quote.eventLog.filter((e) => e.imr === 3).map(strippedEvent),
        },
      }
    default:
      return a
  }
}
