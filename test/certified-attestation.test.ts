// What SignCert embeds, on real guests' data: the attestation of a 0.5.x guest
// (attestation.bin) and a lite guest's GetQuote answer. Their quotes are genuine but their
// collateral is not at hand offline, so the verified form is assembled from the parsed quote;
// the question here is only whether real event logs pass the replay and naming rules, not the
// DCAP verification (key-release.test.ts runs the whole SignCert with verified quotes).
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decodeAppInfo, encodeAppInfoMsgpack } from '../src/attestation/app-info.js'
import { certifiedAppInfo, certifiedAttestation } from '../src/attestation/certified.js'
import { attestationFromTdxQuote } from '../src/attestation/from-tdx-quote.js'
import { parseQuote, tdReportOf } from '../src/attestation/quote.js'
import { stripAttestation } from '../src/attestation/stripped.js'
import type { Attestation } from '../src/attestation/types.js'
import type { VerifiedAttestation } from '../src/attestation/verify.js'
import { decodeVersionedAttestation } from '../src/attestation/versioned.js'
import { KmsError } from '../src/errors.js'
import { readVectorFile, readVectorJson } from './helpers/crypto-vectors.js'

function asVerified(a: Attestation): VerifiedAttestation {
  assert.ok(a.quote.kind === 'dstack-tdx')
  return {
    attestation: a,
    report: {
      status: 'UpToDate',
      advisoryIds: [],
      quote: parseQuote(a.quote.quote),
      ppid: Buffer.alloc(16),
    },
    variant: 'dstack-tdx',
  }
}

describe('certified attestation on real guests', () => {
  it('a 0.5.x guest: the full log replays; the leaf form is the stripped one, padding dropped', () => {
    const a = decodeVersionedAttestation(readVectorFile('attestation.bin')).attestation
    assert.ok(a.quote.kind === 'dstack-tdx')
    const meaningful = parseQuote(a.quote.quote).length
    assert.ok(meaningful < a.quote.quote.length)
    const out = certifiedAttestation(asVerified(a), a.config)
    assert.deepEqual(
      out,
      stripAttestation({
        ...a,
        quote: { ...a.quote, quote: a.quote.quote.subarray(0, meaningful) },
      }),
    )
    // the config is kept only when it is the text the image check measured
    assert.equal(certifiedAttestation(asVerified(a), null).config, '')
    assert.equal(certifiedAttestation(asVerified(a), `${a.config} `).config, '')
  })

  it('app info: the replay of the runtime events is taken from the verified RTMR3', () => {
    const a = decodeVersionedAttestation(readVectorFile('attestation.bin')).attestation
    const v = asVerified(a)
    // decodeAppInfo on its own parses the quote and replays the events
    const replayed = decodeAppInfo(a, { vmConfig: a.config })
    assert.deepEqual(certifiedAppInfo(v, a.config), encodeAppInfoMsgpack(replayed))
    assert.deepEqual(
      certifiedAppInfo(v, null),
      encodeAppInfoMsgpack({ ...decodeAppInfo(a), osImageHash: Buffer.alloc(0) }),
    )
    // boot-time values stop at boot-mr-done, which the verified RTMR3 does not record
    assert.deepEqual(
      decodeAppInfo(a, { boottimeMr: true, verifiedTd: tdReportOf(v.report.quote) ?? undefined }),
      decodeAppInfo(a, { boottimeMr: true }),
    )
  })

  it('a lite guest: the labelled ACPI DATA events pass, a relabelled one does not', () => {
    const g = readVectorJson<{ quote: string; event_log: string }>('tdx-lite-getquote.json')
    const a = attestationFromTdxQuote(Buffer.from(g.quote, 'hex'), Buffer.from(g.event_log))
    const out = certifiedAttestation(asVerified(a), null)
    assert.ok(out.quote.kind === 'dstack-tdx')
    assert.deepEqual(
      out.quote.eventLog.filter((e) => e.imr === 0).map((e) => e.event),
      ['acpi-loader', 'acpi-rsdp', 'acpi-tables'],
    )
    const q = a.quote
    assert.ok(q.kind === 'dstack-tdx')
    const tables = q.eventLog.findIndex((e) => e.event === 'acpi-tables')
    const swapped = q.eventLog.map((e, i) => (i === tables ? { ...e, event: 'acpi-rsdp' } : e))
    assert.throws(
      () => certifiedAttestation(asVerified({ ...a, quote: { ...q, eventLog: swapped } }), null),
      (err: unknown) =>
        err instanceof KmsError &&
        err.message ===
          `event ${tables}: the name of a ACPI DATA boot event must be "" or "acpi-tables", not "acpi-rsdp"`,
    )
  })
})
