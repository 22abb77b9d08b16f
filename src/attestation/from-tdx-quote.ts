// upstream `Attestation::from_tdx_quote`: the attestation of a raw TDX quote and its event log.
import { withContext } from '../errors.js'
import { attErr } from './attestation-error.js'
import { parseTdxEventLogJson } from './event-log.js'
import { parseQuote, tdReportOf } from './quote.js'
import { tdxEventToRuntimeEvent } from './runtime-events.js'
import type { Attestation, RuntimeEvent, TdxEvent } from './types.js'

/** Builds the V0 attestation of a raw TDX quote and its JSON event log (legacy certificates, CSR
 * V1, raw verifier input). Errors: `Failed to parse tdx_event_log: …`, `Invalid TDX quote: …`,
 * `Invalid TDX report`. */
export function attestationFromTdxQuote(quote: Buffer, eventLogJson: Uint8Array): Attestation {
  let eventLog: TdxEvent[]
  try {
    eventLog = parseTdxEventLogJson(eventLogJson)
  } catch (err) {
    throw withContext('Failed to parse tdx_event_log', err, 'KMS_ERR_ATTESTATION')
  }
  let parsed
  try {
    parsed = parseQuote(quote)
  } catch (err) {
    throw withContext('Invalid TDX quote', err, 'KMS_ERR_ATTESTATION')
  }
  const td = tdReportOf(parsed)
  if (td === null) throw attErr('Invalid TDX report')
  const runtimeEvents: RuntimeEvent[] = []
  for (const e of eventLog) {
    const r = tdxEventToRuntimeEvent(e)
    if (r !== null) runtimeEvents.push(r)
  }
  return {
    quote: { kind: 'dstack-tdx', quote: Buffer.from(quote), eventLog },
    runtimeEvents,
    reportData: Buffer.from(td.reportData),
    config: '',
    stack: { kind: 'dstack' },
  }
}
