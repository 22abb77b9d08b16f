// What SignCert copies into an issued leaf: the stripped attestation (upstream `sign_csr` embeds
// `into_stripped()`), rebuilt from the verified attestation so that every byte it carries is
// bound to the verified quote (docs/design.md#signcert-copies-only-bound-bytes). Upstream copies
// the CSR's attestation as sent.
import { attErr } from './attestation-error.js'
import { decodeAppInfo, encodeAppInfoMsgpack } from './app-info.js'
import { isAcpiDataEvent, labelAcpiDataEvents } from './event-log.js'
import { tdReportOf } from './quote.js'
import { replayEventLogRtmrs } from './runtime-events.js'
import { stripAttestation } from './stripped.js'
import { DSTACK_RUNTIME_EVENT_TYPE, type Attestation, type TdxEvent } from './types.js'
import type { VerifiedAttestation } from './verify.js'

/** Boot events carry their digest into the certificate but not their payload; their name is
 * bound only where it is derived from bound bytes: `""` as the CCEL gives it, or the ACPI DATA
 * label upstream's `label_tdx_acpi_data_events` gives by position (older guests send logs
 * without the labels, newer ones with). */
function checkBootEventNames(events: readonly TdxEvent[]): void {
  const expected = labelAcpiDataEvents(
    events.map((e) => ({ ...e, event: e.eventType === DSTACK_RUNTIME_EVENT_TYPE ? e.event : '' })),
  )
  events.forEach((e, i) => {
    if (e.eventType === DSTACK_RUNTIME_EVENT_TYPE) return
    const want = expected[i]?.event ?? ''
    if (e.event !== '' && e.event !== want) {
      const acpi = isAcpiDataEvent(e) ? ' ACPI DATA' : ''
      const allowed = want === '' ? '""' : `"" or "${want}"`
      throw attErr(
        `event ${i}: the name of a${acpi} boot event must be ${allowed}, not "${e.event}"`,
      )
    }
  })
}

/** The attestation a SignCert leaf may carry. `verifiedVmConfig` is the vm_config text the OS
 * image check measured (null when no image check ran); the attestation's `config` is copied only
 * when it is that text, and is empty otherwise. Throws when the event log does not replay to the
 * quoted RTMRs or names a boot event with unbound text. */
export function certifiedAttestation(
  v: VerifiedAttestation,
  verifiedVmConfig: string | null,
): Attestation {
  const a = v.attestation
  if (a.quote.kind !== 'dstack-tdx') {
    throw attErr(`${a.quote.kind} attestations cannot be embedded in a certificate`)
  }
  const td = tdReportOf(v.report.quote)
  if (td === null) throw attErr('no td report')
  const replayed = replayEventLogRtmrs(a.quote.eventLog)
  const quoted = [td.rtmr0, td.rtmr1, td.rtmr2, td.rtmr3]
  replayed.forEach((mr, i) => {
    if (!mr.equals(quoted[i] as Buffer)) {
      throw attErr(
        `Event log does not replay to RTMR${i}, quoted: ${(quoted[i] as Buffer).toString('hex')}, replayed: ${mr.toString('hex')}`,
      )
    }
  })
  checkBootEventNames(a.quote.eventLog)
  return stripAttestation({
    ...a,
    // the zero padding after the quote's signature data is covered by nothing
    quote: { ...a.quote, quote: Buffer.from(a.quote.quote.subarray(0, v.report.quote.length)) },
    config: verifiedVmConfig !== null && verifiedVmConfig === a.config ? a.config : '',
  })
}

/** The `.1.9` app-info extension of a SignCert leaf. Its `os_image_hash` is read from the
 * vm_config the OS-image check measured, and left empty when no check ran: the config's claim
 * alone is bound to nothing. The verification already replayed the runtime events to the quoted
 * RTMR3, so they are not replayed again here. */
export function certifiedAppInfo(v: VerifiedAttestation, verifiedVmConfig: string | null): Buffer {
  const verifiedTd = tdReportOf(v.report.quote) ?? undefined
  if (verifiedVmConfig === null) {
    const info = decodeAppInfo(v.attestation, { verifiedTd })
    return encodeAppInfoMsgpack({ ...info, osImageHash: Buffer.alloc(0) })
  }
  return encodeAppInfoMsgpack(
    decodeAppInfo(v.attestation, { vmConfig: verifiedVmConfig, verifiedTd }),
  )
}
