// The TDX lite OS-image scheme against the real upstream fixture (a 0.6.0 guest's GetQuote
// answer): the recomputed MRTD and RTMR0–2 equal the quote's, and every single-byte change of
// the measurement document, the image hash, the event-log ACPI digests or the memory size is
// refused with a reason. Also the vm_config canonical form (config hash) and the TD HOB vectors.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { decode as cborDecode, encode as cborEncode } from 'cborg'
import pino from 'pino'
import { parseTdxEventLogJson } from '../src/attestation/event-log.js'
import { parseQuote, tdReportOf } from '../src/attestation/quote.js'
import type { TdxEvent } from '../src/attestation/types.js'
import { CacheDb } from '../src/cache/cache-db.js'
import { KmsError } from '../src/errors.js'
import { assertRegistersMatch } from '../src/image/compare.js'
import { OsImageVerifier } from '../src/image/image-verifier.js'
import { createLegacyVerifier } from '../src/image/legacy/index.js'
import { liteExpected, liteRegisters } from '../src/image/lite.js'
import { sha256sumEntryHash } from '../src/image/measurement-document.js'
import {
  buildTdHob,
  decodeTdHobWitness,
  encodeTdHobWitness,
  tdHobDigest,
} from '../src/image/td-hob.js'
import { decodeTdxMeasurement, encodeTdxMeasurement } from '../src/image/tdx-measurement.js'
import { type TdxRegisters, qemuOptions, registersToHex } from '../src/image/tdx-registers.js'
import {
  type VmConfig,
  canonicalVmConfigJson,
  parseVmConfig,
  vmConfigHash,
} from '../src/image/vm-config.js'
import { readVectorJson } from './helpers/crypto-vectors.js'
import { tempDir } from './helpers/kms-process.js'
import { mountTmpfs } from './helpers/small-tmpfs.js'

interface GetQuoteFixture {
  quote: string
  event_log: string
  vm_config: string
}
interface LiteVector {
  mr_td: string
  rtmr0: string
  rtmr1: string
  rtmr2: string
  os_image_hash: string
  acpi_digests: Record<string, string>
  lite_measurement: {
    sha256sum_txt: string
    cmdline_sha384: string
    kernel_authenticode: string
    initrd_sha384: string
    mrtd_single_pass: string
    mrtd_two_pass: string
    td_hob_witness: string
    td_hob_digest_2gib: string
  }
}

const fixture = readVectorJson<GetQuoteFixture>('tdx-lite-getquote.json')
const vector = readVectorJson<{ tdx_lite: LiteVector }>('vectors.json').tdx_lite
const events = parseTdxEventLogJson(fixture.event_log)
const td = tdReportOf(parseQuote(Buffer.from(fixture.quote, 'hex')))
assert.ok(td !== null)
const quoted: TdxRegisters = { mrtd: td.mrTd, rtmr0: td.rtmr0, rtmr1: td.rtmr1, rtmr2: td.rtmr2 }
const vm = parseVmConfig(fixture.vm_config)

/** The lite check as the KMS runs it; returns the refusal text, or null when accepted. */
function refusal(config: VmConfig, log: readonly TdxEvent[]): string | null {
  try {
    assertRegistersMatch(liteExpected(config, log).expected, quoted)
    return null
  } catch (err) {
    assert.ok(err instanceof KmsError, String(err))
    return err.message
  }
}

/** Every value but the original, for each byte of `bytes`; `check` must refuse each. */
function forEveryByteChange(bytes: Buffer, check: (mutated: Buffer) => void): number {
  let n = 0
  for (let i = 0; i < bytes.length; i++) {
    for (let delta = 1; delta < 256; delta++) {
      const m = Buffer.from(bytes)
      m[i] = ((bytes[i] ?? 0) + delta) & 0xff
      check(m)
      n++
    }
  }
  return n
}

describe('TDX lite OS-image verification', () => {
  it('the fixture verifies and reproduces the four quoted registers', () => {
    const { expected, acpi } = liteExpected(vm, events)
    assert.deepEqual(registersToHex(expected), {
      mrtd: vector.mr_td,
      rtmr0: vector.rtmr0,
      rtmr1: vector.rtmr1,
      rtmr2: vector.rtmr2,
    })
    assert.equal(acpi.loader.toString('hex'), vector.acpi_digests['acpi-loader'])
    assert.equal(acpi.rsdp.toString('hex'), vector.acpi_digests['acpi-rsdp'])
    assert.equal(acpi.tables.toString('hex'), vector.acpi_digests['acpi-tables'])
    assert.equal(refusal(vm, events), null)
    // qemu 8.2.2 → two-pass page adds: the document's two_pass MRTD
    assert.equal(qemuOptions(vm).twoPassAddPages, true)
  })

  it('every single-byte change of sha256sum.txt or the measurement CBOR is refused', () => {
    const doc = vm.tdxMeasurement
    assert.ok(doc !== null)
    const n1 = forEveryByteChange(doc.checksumFile, (m) => {
      const r = refusal({ ...vm, tdxMeasurement: { ...doc, checksumFile: m } }, events)
      assert.match(
        r ?? 'accepted',
        /^tdx lite measurement material does not match os_image_hash: os_image_hash mismatch: /,
      )
    })
    const n2 = forEveryByteChange(doc.measurement, (m) => {
      const r = refusal({ ...vm, tdxMeasurement: { ...doc, measurement: m } }, events)
      assert.match(
        r ?? 'accepted',
        /^tdx lite measurement material does not match os_image_hash: measurement\.tdx\.cbor hash mismatch: /,
      )
    })
    assert.equal(n1 + n2, (doc.checksumFile.length + doc.measurement.length) * 255)
  })

  it('every single-byte change of os_image_hash is refused', () => {
    forEveryByteChange(vm.osImageHash, (m) => {
      assert.match(
        refusal({ ...vm, osImageHash: m }, events) ?? 'accepted',
        new RegExp(
          `os_image_hash mismatch: expected sha256\\(sha256sum\\.txt\\)=${m.toString('hex')}, actual=${vector.os_image_hash}$`,
        ),
      )
    })
  })

  it('every single-byte change of an event-log ACPI digest breaks RTMR0', () => {
    for (const name of ['acpi-loader', 'acpi-rsdp', 'acpi-tables']) {
      const index = events.findIndex((e) => e.event === name)
      const original = events[index]
      assert.ok(original !== undefined)
      forEveryByteChange(original.digest, (m) => {
        const log = events.map((e, i) => (i === index ? { ...e, digest: m } : e))
        assert.match(
          refusal(vm, log) ?? 'accepted',
          new RegExp(
            `^MRs do not match: RTMR0 mismatch: expected=[0-9a-f]{96}, actual=${vector.rtmr0}$`,
          ),
        )
      })
    }
  })

  it('every single-byte change of memory_size is refused (memory gate or TD HOB)', () => {
    const original = Buffer.alloc(8)
    original.writeBigUInt64LE(vm.memorySize)
    let gated = 0
    let rtmr0 = 0
    forEveryByteChange(original, (m) => {
      const memorySize = m.readBigUInt64LE()
      const r = refusal({ ...vm, memorySize }, events) ?? 'accepted'
      if (r.includes('requires memory_size == 2147483648 bytes (2048 MiB) or >= 2952790016')) {
        gated++
      } else if (r.startsWith('MRs do not match: RTMR0 mismatch: ')) rtmr0++
      else assert.fail(`memory_size ${memorySize}: ${r}`)
    })
    assert.ok(gated > 0 && rtmr0 > 0, `${gated} gated, ${rtmr0} with another TD HOB`)
  })

  it('the ACPI DATA events must be three, named once each, 48-byte digests', () => {
    const acpiIndex = events.findIndex((e) => e.event === 'acpi-rsdp')
    const renamed = events.map((e, i) => (i === acpiIndex ? { ...e, event: 'acpi-loader' } : e))
    assert.equal(
      refusal(vm, renamed),
      'TDX lite attestation is missing named RTMR0 ACPI DATA digests: TDX lite attestation requires exactly one RTMR0 ACPI DATA event named acpi-loader; found 2',
    )
    const unnamed = events.map((e) => ({ ...e, event: '' }))
    assert.match(
      refusal(vm, unnamed) ?? '',
      /exactly one RTMR0 ACPI DATA event named acpi-loader; found 0$/,
    )
    const dropped = events.filter((_, i) => i !== acpiIndex)
    assert.match(
      refusal(vm, dropped) ?? '',
      /requires exactly 3 RTMR0 ACPI DATA events; found 2 candidates and 12 RTMR0 events$/,
    )
    const short = events.map((e, i) =>
      i === acpiIndex ? { ...e, digest: e.digest.subarray(0, 32) } : e,
    )
    assert.match(
      refusal(vm, short) ?? '',
      /event acpi-rsdp has invalid digest length 32, expected 48$/,
    )
  })

  it('other refusals: no document, unknown OVMF variant, bad QEMU version, single-pass MRTD', () => {
    assert.equal(
      refusal({ ...vm, tdxMeasurement: null }, events),
      'tdx lite attestation requires vm_config.tdx_measurement',
    )
    assert.throws(
      () => parseVmConfig(fixture.vm_config.replace('"pre202505"', '"stable202505"')),
      /unknown variant `stable202505`/,
    )
    assert.match(
      refusal({ ...vm, qemuVersion: '9.2.1-x' }, events) ?? '',
      /^Failed to compute TDX expected measurements without image download: failed to resolve QEMU measurement options: Failed to parse QEMU version: Invalid version number$/,
    )
    assert.match(
      refusal({ ...vm, qemuVersion: '7.2.0' }, events) ?? '',
      /Unsupported QEMU version: \(7, 2, 0\)$/,
    )
    // the quote was taken with two-pass adds; the single-pass candidate must not match
    assert.match(
      refusal({ ...vm, qemuSinglePassAddPages: false }, events) ?? '',
      /^MRs do not match: MRTD mismatch: expected=a6f2ac94/,
    )
  })

  it('the measurement CBOR round-trips byte for byte; a wrong version is refused', () => {
    const doc = vm.tdxMeasurement
    assert.ok(doc !== null)
    const m = decodeTdxMeasurement(doc.measurement)
    assert.ok(encodeTdxMeasurement(m).equals(doc.measurement))
    const lm = vector.lite_measurement
    assert.deepEqual(
      [
        m.image.cmdlineSha384,
        m.image.kernelAuthenticode,
        m.image.initrdSha384,
        m.tdvf.mrtd.singlePass,
        m.tdvf.mrtd.twoPass,
        m.tdvf.tdHobWitness,
      ].map((b) => b.toString('hex')),
      [
        lm.cmdline_sha384,
        lm.kernel_authenticode,
        lm.initrd_sha384,
        lm.mrtd_single_pass,
        lm.mrtd_two_pass,
        lm.td_hob_witness,
      ],
    )
    assert.equal(doc.checksumFile.toString(), lm.sha256sum_txt)
    const v4 = Buffer.from(doc.measurement)
    assert.equal(v4[9], 3) // "version" key then the unsigned 3
    v4[9] = 4
    assert.throws(() => decodeTdxMeasurement(v4), /unsupported version 4, expected 3/)
    assert.throws(() => decodeTdxMeasurement(Buffer.from([0xa0])), /missing field `version`/)
    // found by the measurement-cbor fuzz target: an integer OVMF variant past 2^53 (a bigint)
    // crashed the error message instead of being refused
    const tree = cborDecode(doc.measurement) as { tdvf: { ovmf: unknown } }
    tree.tdvf.ovmf = 2n ** 60n
    assert.throws(
      () => decodeTdxMeasurement(cborEncode(tree)),
      (err: unknown) =>
        err instanceof KmsError &&
        err.message ===
          'TdxOsImageMeasurement: failed to decode CBOR: unknown ovmf variant 1152921504606846976',
    )
    // found by the same target a session later: the bigint one level down, inside an array or a
    // map, still reached JSON.stringify (seed 1168372763)
    const refused = (ovmf: unknown, shown: string) => {
      tree.tdvf.ovmf = ovmf
      assert.throws(
        () => decodeTdxMeasurement(cborEncode(tree)),
        (err: unknown) =>
          err instanceof KmsError &&
          err.message ===
            `TdxOsImageMeasurement: failed to decode CBOR: unknown ovmf variant ${shown}`,
      )
    }
    refused([1n, 2n ** 60n], '[1, 1152921504606846976]')
    refused({ v: -(2n ** 64n) }, '{"v": -18446744073709551616}')
    refused(new Uint8Array([0xde, 0xad]), "h'dead'")
    refused('sev', '"sev"')
    refused([true, null, 1.5, 'x'], '[true, null, 1.5, "x"]')
    // a guest's value is never repeated at length in an error
    refused('a'.repeat(1000), `"${'a'.repeat(119)}…`)
    refused(
      Array.from({ length: 500 }, () => 2n ** 60n),
      `[${Array(7).fill('1152921504606846976').join(', ')}, 1152921504606846976`.slice(0, 120) +
        '…',
    )
  })

  it('sha256sum.txt parsing: missing, duplicate, short and nameless entries', () => {
    const h = 'ab'.repeat(32)
    assert.equal(sha256sumEntryHash(Buffer.from(`${h}  f\r\n\n`), 'f').toString('hex'), h)
    assert.throws(
      () => sha256sumEntryHash(Buffer.from(`${h}  g\n`), 'f'),
      /sha256sum.txt is missing f$/,
    )
    assert.throws(
      () => sha256sumEntryHash(Buffer.from(`${h}  f\n${h} f\n`), 'f'),
      /contains duplicate f entries/,
    )
    assert.throws(
      () => sha256sumEntryHash(Buffer.from('abcd  f\n'), 'f'),
      /invalid length 2, expected 32/,
    )
    assert.throws(
      () => sha256sumEntryHash(Buffer.from(`${h}\n`), 'f'),
      /line 1 is missing filename/,
    )
    assert.throws(() => sha256sumEntryHash(Buffer.from([0xff, 0x20, 0x66]), 'f'), /not valid UTF-8/)
  })
})

describe('TD HOB witness', () => {
  it("encodes dstack OVMF's sections like upstream and rebuilds the 2 GiB TD HOB of the fixture", () => {
    const witness = encodeTdHobWitness(0x809n, [
      [0x810n, 0x10n],
      [0x80bn, 0x2n],
      [0x809n, 0x2n],
      [0x800n, 0x6n],
    ])
    assert.equal(witness.toString('hex'), '80100904000609020b021010')
    assert.equal(
      tdHobDigest(witness, 0x80000000n).toString('hex'),
      '0b8772e5b0b41b83e6044a68397e02f49fb47066b4fbe4917ea2c45c64f323fdacbb37948f821ebaf8bc9c938ba8a749',
    )
    assert.equal(
      tdHobDigest(witness, 0x80000000n).toString('hex'),
      vector.lite_measurement.td_hob_digest_2gib,
    )
    assert.equal(
      events[0]?.digest.toString('hex'),
      tdHobDigest(witness, 0x80000000n).toString('hex'),
    )
    // high memory: RAM above 2 GiB is described at 4 GiB, so the HOB grows by one resource
    const high = buildTdHob(decodeTdHobWitness(witness), 0x100000000n)
    const low = buildTdHob(decodeTdHobWitness(witness), 0x80000000n)
    assert.equal(high.length, low.length + 48)
  })

  it('refuses truncated, oversized and trailing witnesses', () => {
    assert.throws(() => decodeTdHobWitness(Buffer.from([0x80])), /truncated TD HOB witness varuint/)
    assert.throws(() => decodeTdHobWitness(Buffer.alloc(11, 0xff)), /varuint is too large/)
    assert.throws(
      () => decodeTdHobWitness(Buffer.from('80100904000609020b02101000', 'hex')),
      /trailing bytes/,
    )
    assert.throws(
      () => decodeTdHobWitness(Buffer.from([0, 0, 0xff, 0x7f])),
      /at most 256 are supported/,
    )
  })
})

describe('vm_config', () => {
  it('the empty config re-serialises to the upstream canonical form', () => {
    const empty = parseVmConfig('{}')
    assert.equal(
      canonicalVmConfigJson(empty),
      '{"os_image_hash":"","cpu_count":0,"memory_size":0,"pci_hole64_size":0,"hugepages":false,"num_gpus":0,"num_nvswitches":0,"hotplug_off":false,"host_share_mode":""}',
    )
    assert.equal(
      vmConfigHash(empty),
      'c29cabd92088055f90883286c7ee5b222fe740a334753dec42492e9491898b70',
    )
    assert.equal(vmConfigHash(parseVmConfig('')), vmConfigHash(empty))
  })

  it('unknown keys are dropped, known ones kept in struct order, defaults omitted as upstream', () => {
    const text = canonicalVmConfigJson(vm)
    const parsed = JSON.parse(text) as Record<string, unknown>
    assert.deepEqual(Object.keys(parsed), [
      'os_image_hash',
      'cpu_count',
      'memory_size',
      'qemu_version',
      'pci_hole64_size',
      'hugepages',
      'num_gpus',
      'num_nvswitches',
      'hotplug_off',
      'image',
      'host_share_mode',
      'ovmf_variant',
      'tdx_attestation_variant',
      'tdx_measurement',
    ])
    // the fixture's own text is canonical apart from its extra spec_version key and the order
    // inside tdx_measurement (upstream serialises the struct's order: checksum_file first)
    const fromFixture = JSON.parse(fixture.vm_config) as Record<string, unknown>
    delete fromFixture['spec_version']
    const tdx = fromFixture['tdx_measurement'] as { checksum_file: string; measurement: string }
    fromFixture['tdx_measurement'] = {
      checksum_file: tdx.checksum_file,
      measurement: tdx.measurement,
    }
    assert.equal(text, JSON.stringify(fromFixture))
    const withExtras = parseVmConfig(
      JSON.stringify({ ...fromFixture, num_nics: 2, swtpm: true, unknown: [1, 2] }),
    )
    assert.match(
      canonicalVmConfigJson(withExtras),
      /"num_gpus":0,"num_nvswitches":0,"num_nics":2,"swtpm":true,"hotplug_off"/,
    )
    assert.notEqual(vmConfigHash(withExtras), vmConfigHash(vm))
  })

  it('type errors are refused with the field name', () => {
    assert.throws(
      () => parseVmConfig('{"memory_size":"2G"}'),
      /memory_size: invalid type: string "2G", expected u64/,
    )
    assert.throws(
      () => parseVmConfig('{"cpu_count":-1}'),
      /cpu_count: invalid value: integer `-1`, expected u32/,
    )
    assert.throws(
      () => parseVmConfig('{"os_image_hash":"abc"}'),
      /os_image_hash: Odd number of digits/,
    )
    assert.throws(
      () => parseVmConfig('{"tdx_attestation_variant":"fast"}'),
      /unknown variant `fast`/,
    )
    assert.throws(
      () => parseVmConfig('{"tdx_measurement":{"checksum_file":"a","measurement":""}}'),
      /tdx_measurement.checksum_file: invalid base64/,
    )
    assert.throws(() => parseVmConfig('[]'), /expected struct VmConfig/)
  })
})

/** The fixture's event log with another `acpi-tables` digest: RTMR0 can no longer match. */
function tamperedAcpiTables(): typeof events {
  const index = events.findIndex((e) => e.event === 'acpi-tables')
  return events.map((e, i) =>
    i === index ? { ...e, digest: createHash('sha384').update('x').digest() } : e,
  )
}

describe('OsImageVerifier measurement cache', () => {
  const log = pino({ level: 'silent' })
  const open = (cacheDir = join(tempDir(), 'cache'), logger: pino.Logger = log) => {
    const cache = CacheDb.open(cacheDir)
    const verifier = new OsImageVerifier({
      cache,
      cacheMaxBytes: 1 << 20,
      log: logger,
      legacy: createLegacyVerifier({
        imageCacheDir: cache.imagesDir,
        downloadUrl: 'http://127.0.0.1:9/{OS_IMAGE_HASH}.tar.gz',
        maxImageBytes: 1 << 20,
        downloadTimeoutMs: 1000,
        acpiTablesCommand: null,
        acpiTimeoutMs: 1000,
        legacyRtmr0: 'require',
        log,
      }),
    })
    return { cache, verifier }
  }

  it('caches the image-derived values by config hash; a clear makes the next check recompute', async () => {
    const { cache, verifier } = open()
    try {
      const configHash = vmConfigHash(vm)
      const first = await verifier.checkTdx(vm, events, quoted)
      assert.equal(first.scheme, 'lite')
      assert.equal(first.cacheHit, false)
      assert.deepEqual(first.mismatches, [])
      assert.equal(first.configHash, configHash)
      const row = cache.getMeasurement(configHash)
      assert.ok(row !== undefined)
      assert.equal(row.osImageHash, vector.os_image_hash)
      // a hit still reads this boot's ACPI digests: a tampered one still breaks RTMR0
      const second = await verifier.checkTdx(vm, events, quoted)
      assert.equal(second.cacheHit, true)
      assert.deepEqual(registersToHex(second.expected as TdxRegisters), registersToHex(quoted))
      const tampered = tamperedAcpiTables()
      const bad = await verifier.checkTdx(vm, tampered, quoted)
      assert.equal(bad.cacheHit, true)
      assert.deepEqual(
        bad.mismatches.map((m) => m.register),
        ['rtmr0'],
      )
      await verifier.clear('', configHash)
      assert.equal(cache.getMeasurement(configHash), undefined)
      assert.equal((await verifier.checkTdx(vm, events, quoted)).cacheHit, false)
      await verifier.clear('all', 'all')
      assert.equal(cache.countMeasurements(), 0)
      await assert.rejects(
        verifier.clear('../x', ''),
        /Failed to clear image cache: Invalid cache key/,
      )
    } finally {
      cache.close()
    }
  })

  it('a vm_config seen before skips its parse and cache read until a clear, from any process', async () => {
    const cacheDir = join(tempDir(), 'cache')
    const { cache, verifier } = open(cacheDir)
    const other = open(cacheDir)
    try {
      const text = fixture.vm_config
      const first = await verifier.checkText(text, events, quoted)
      assert.equal(first.cacheHit, false)
      assert.deepEqual(first.mismatches, [])
      // the row is gone behind the verifier's back (not a clear): the remembered values stand
      cache.deleteMeasurement(first.configHash)
      const second = await verifier.checkText(text, events, quoted)
      assert.equal(second.cacheHit, true)
      assert.deepEqual(registersToHex(second.expected as TdxRegisters), registersToHex(quoted))
      // this boot's ACPI digests are still read: a tampered one breaks RTMR0
      const tampered = tamperedAcpiTables()
      assert.deepEqual(
        (await verifier.checkText(text, tampered, quoted)).mismatches.map((m) => m.register),
        ['rtmr0'],
      )
      // a clear made by another worker's connection wins: the next check recomputes
      await other.verifier.clear('', first.configHash)
      assert.equal((await verifier.checkText(text, events, quoted)).cacheHit, false)
      assert.equal((await verifier.checkText(text, events, quoted)).cacheHit, true)
    } finally {
      cache.close()
      other.cache.close()
    }
  })

  it('a full cache disk (tmpfs): the check stands, the failed store is a warning; stored once there is room', async (t) => {
    const fs = mountTmpfs(join(tempDir(), 'cache'), 1024)
    t.after(() => fs.unmount())
    const warnings: string[] = []
    const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) })
    const { cache, verifier } = open(fs.dir, logger)
    try {
      fs.fill()
      const first = await verifier.checkTdx(vm, events, quoted)
      assert.deepEqual(first.mismatches, [])
      assert.equal(first.cacheHit, false)
      assert.equal(cache.countMeasurements(), 0)
      assert.ok(
        warnings.some((w) => w.includes('failed to store measurement') && /full/.test(w)),
        warnings.join(''),
      )
      fs.unfill()
      assert.equal((await verifier.checkTdx(vm, events, quoted)).cacheHit, false)
      assert.equal((await verifier.checkTdx(vm, events, quoted)).cacheHit, true)
    } finally {
      cache.close()
    }
  })

  it('a refused document stores nothing; a clear during a computation wins', async () => {
    const { cache, verifier } = open()
    try {
      const doc = vm.tdxMeasurement
      assert.ok(doc !== null)
      const broken = { ...vm, tdxMeasurement: { ...doc, measurement: Buffer.from([0xa0]) } }
      await assert.rejects(
        verifier.checkTdx(broken, events, quoted),
        /measurement\.tdx\.cbor hash mismatch/,
      )
      assert.equal(cache.countMeasurements(), 0)
      // a value computed before a ClearImageCache (in any worker) is not stored after it
      const generation = cache.clearGeneration()
      await verifier.clear('', 'all')
      assert.equal(
        cache.putMeasurementIfGeneration('ab'.repeat(32), 'cd'.repeat(32), '{}', generation),
        false,
      )
      assert.equal(cache.countMeasurements(), 0)
      assert.equal(
        cache.putMeasurementIfGeneration(
          'ab'.repeat(32),
          'cd'.repeat(32),
          '{}',
          cache.clearGeneration(),
        ),
        true,
      )
    } finally {
      cache.close()
    }
  })

  it('concurrent clears and verifications never leave a wrong verdict', async () => {
    const { cache, verifier } = open()
    try {
      const runs = Array.from({ length: 40 }, async (_, i) => {
        if (i % 3 === 0) return verifier.clear('all', 'all')
        const check = await verifier.checkTdx(vm, events, quoted)
        assert.deepEqual(check.mismatches, [])
      })
      await Promise.all(runs)
      const final = await verifier.checkTdx(vm, events, quoted)
      assert.deepEqual(final.mismatches, [])
    } finally {
      cache.close()
    }
  })

  it('a legacy boot is never moved onto the lite path, whatever document it carries', async () => {
    const { cache, verifier } = open()
    try {
      const legacy: VmConfig = { ...vm, tdxAttestationVariant: 'legacy' }
      await assert.rejects(verifier.checkTdx(legacy, events, quoted), (err: Error) => {
        assert.doesNotMatch(err.message, /^tdx lite/)
        return true
      })
      assert.equal(cache.countMeasurements(), 0)
    } finally {
      cache.close()
    }
  })
})

describe('liteRegisters memo of RTMR0', () => {
  it('never answers digests of the wrong length from a valid entry with the same bytes', () => {
    const d = (b: number) => Buffer.alloc(48, b)
    const image = { mrtd: d(1), tdHobDigest: d(2), rtmr1: d(3), rtmr2: d(4) }
    const good = liteRegisters(image, { loader: d(5), rsdp: d(6), tables: d(7) })
    assert.deepEqual(liteRegisters(image, { loader: d(5), rsdp: d(6), tables: d(7) }), good)
    // the same 144 bytes split 47 + 49 + 48: a replay refuses them, cached or not
    const all = Buffer.concat([d(5), d(6), d(7)])
    const shifted = { loader: all.subarray(0, 47), rsdp: all.subarray(47, 96), tables: d(7) }
    assert.throws(() => liteRegisters(image, shifted))
  })
})
