import { strict as assert } from 'node:assert'
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { after, describe, it } from 'node:test'
import { QuoteVerifier, type Collateral } from '@phala/dcap-qvl'
import pino from 'pino'
import { parseCcel } from '../src/attestation/event-log.js'
import { parseQuote, tdReportOf, type TdReport10 } from '../src/attestation/quote.js'
import {
  replayEventLogRtmrs,
  replayRuntimeEvents,
  runtimeEventDigest,
} from '../src/attestation/runtime-events.js'
import {
  decodeVersionedAttestation,
  encodeVersionedAttestation,
} from '../src/attestation/versioned.js'
import { AttestationVerifier, extractPpid } from '../src/attestation/verify.js'
import { StaticCollateralSource } from '../src/attestation/collateral.js'
import type { Attestation } from '../src/attestation/types.js'
import { KmsError } from '../src/errors.js'
import { runSimAttest } from '../src/commands/sim-attest.js'
import { encodeCcel, simulatedBoot } from '../src/tee/simulator/boot-log.js'
import { mockCollateral } from '../src/tee/simulator/collateral.js'
import { defaultOsImageHash } from '../src/tee/simulator/cvm.js'
import {
  simulateGuestAttestation,
  simulatedGuestRegisters,
  simulatedGuestRuntimeEvents,
} from '../src/tee/simulator/guest.js'
import { createMockIntelPki, mockIntelPki } from '../src/tee/simulator/mock-pki.js'
import {
  COLLATERAL_FILE,
  MOCK_ROOT_CA_DER_FILE,
  MOCK_ROOT_CA_PEM_FILE,
  RUNTIME_EVENTS_FILE,
  SIMULATED_QUOTE_WARNING,
  SimulatorBackend,
} from '../src/tee/simulator/simulator-backend.js'
import { isTdxAvailable } from '../src/tee/tdx/detect.js'
import { NodeTdxIo } from '../src/tee/tdx/io.js'
import { readVectorFile } from './helpers/crypto-vectors.js'
import { tempDir } from './helpers/temp-dir.js'

// A fixed verification time inside the mock PKI's 2020–2100 window (never the wall clock).
const NOW = 1_751_328_000
const SEED_A = Buffer.alloc(32, 0xa1)
const SEED_B = Buffer.alloc(32, 0xb2)

const tmp = tempDir('kms-simulator-test-')
after(() => rmSync(tmp, { recursive: true, force: true }))
let dirCounter = 0
const freshDir = (): string => join(tmp, `state-${dirCounter++}`)

function decode(bytes: Buffer): Attestation {
  const v = decodeVersionedAttestation(bytes)
  assert.equal(v.version, 0)
  return v.attestation
}

function quoteOf(a: Attestation): Buffer {
  assert.equal(a.quote.kind, 'dstack-tdx')
  return a.quote.quote
}

function tdOf(quote: Buffer): TdReport10 {
  const td = tdReportOf(parseQuote(quote))
  assert.ok(td !== null)
  return td
}

function verifyMock(
  seed: Buffer,
  quote: Buffer,
  collateral: Collateral = mockCollateral(mockIntelPki(seed)),
) {
  return QuoteVerifier.newWithRootCa(mockIntelPki(seed).root.der).verify(quote, collateral, NOW)
}

function newBackend(seed = SEED_A, stateDir = freshDir()): Promise<SimulatorBackend> {
  return SimulatorBackend.create({ seed, stateDir, root: join(tmp, 'no-tdx-root'), env: {} })
}

describe('mock Intel PKI and quotes', () => {
  it('a simulated quote verifies against the mock root: UpToDate, no advisories', async () => {
    const backend = await newBackend()
    const quote = quoteOf(decode(await backend.attest(Buffer.alloc(64, 0x42))))
    const report = QuoteVerifier.newWithRootCa(backend.mockRootCaDer).verify(
      quote,
      backend.collateral(),
      NOW,
    )
    assert.equal(report.status, 'UpToDate')
    assert.deepEqual(report.advisory_ids, [])
    assert.equal(report.report.type, 'td10')
    // also at the edges of the fixed validity window
    assert.equal(verifyMock(SEED_A, quote, backend.collateral()).status, 'UpToDate')
    const v = QuoteVerifier.newWithRootCa(backend.mockRootCaDer)
    assert.equal(
      v.verify(quote, backend.collateral(), Date.UTC(2020, 0, 2) / 1000).status,
      'UpToDate',
    )
    assert.equal(
      v.verify(quote, backend.collateral(), Date.UTC(2099, 11, 30) / 1000).status,
      'UpToDate',
    )
    assert.throws(
      () => v.verify(quote, backend.collateral(), Date.UTC(2100, 0, 2) / 1000),
      /expired/,
    )
  })

  it("the same quote fails against Intel's production root and against another seed's root", async () => {
    const quote = quoteOf(decode(await (await newBackend()).attest(Buffer.alloc(0))))
    const collateral = mockCollateral(mockIntelPki(SEED_A))
    assert.throws(
      () => QuoteVerifier.newProd().verify(quote, collateral, NOW),
      /Failed to verify certificate chain - intermediate signature invalid/,
    )
    assert.throws(
      () =>
        QuoteVerifier.newWithRootCa(mockIntelPki(SEED_B).root.der).verify(quote, collateral, NOW),
      /Failed to verify certificate chain/,
    )
    // another platform's collateral is signed by another root
    assert.throws(
      () => verifyMock(SEED_A, quote, mockCollateral(mockIntelPki(SEED_B))),
      /certificate chain/,
    )
  })

  it('tampering with report_data, RTMR3 or the TCB info is detected by the library', async () => {
    const quote = quoteOf(decode(await (await newBackend()).attest(Buffer.alloc(64, 7))))
    assert.equal(verifyMock(SEED_A, quote).status, 'UpToDate')
    for (const offset of [568, 520 + 47, 184]) {
      const tampered = Buffer.from(quote)
      tampered[offset] = (tampered[offset] ?? 0) ^ 1
      assert.throws(() => verifyMock(SEED_A, tampered), /ISV enclave report signature is invalid/)
    }
    const collateral = mockCollateral(mockIntelPki(SEED_A))
    const tcbInfo = collateral.tcb_info.replace(
      '"tcbEvaluationDataNumber":1',
      '"tcbEvaluationDataNumber":2',
    )
    assert.notEqual(tcbInfo, collateral.tcb_info)
    assert.throws(
      () => verifyMock(SEED_A, quote, { ...collateral, tcb_info: tcbInfo }),
      /Signature is invalid for tcb_info/,
    )
    const qeIdentity = collateral.qe_identity.replace('"isvprodid":2', '"isvprodid":3')
    assert.throws(
      () => verifyMock(SEED_A, quote, { ...collateral, qe_identity: qeIdentity }),
      /Signature is invalid for qe_identity/,
    )
    // the QE report (at 636 + 128 + 6) is signed by the PCK key
    const qe = Buffer.from(quote)
    qe[636 + 134 + 320 + 40] = (qe[636 + 134 + 320 + 40] ?? 0) ^ 1
    assert.throws(() => verifyMock(SEED_A, qe), /Signature is invalid for qe_report in quote/)
  })

  it('the QE report binds the attestation key: SHA-256(attestation key ‖ QE auth data)', async () => {
    const parsed = parseQuote(quoteOf(decode(await (await newBackend()).attest(Buffer.alloc(0)))))
    const { createHash } = await import('node:crypto')
    const expected = createHash('sha256')
      .update(parsed.attestationKey)
      .update(parsed.qeAuthData)
      .digest()
    assert.deepEqual(parsed.qeReport.subarray(320, 352), expected)
    assert.equal(parsed.qeAuthData.length, 32)
    assert.equal(parsed.version, 4)
    assert.equal(parsed.teeType, 0x81)
    assert.equal(parsed.qeVendorId.toString('hex'), '939a7233f79c4ca9940a0db3957f0607')
    assert.equal((parsed.pckChainPem.match(/BEGIN CERTIFICATE/g) ?? []).length, 3)
  })

  it('is deterministic for one seed and differs between seeds (keys, PPID, FMSPC)', () => {
    const a1 = createMockIntelPki(SEED_A)
    const a2 = createMockIntelPki(SEED_A)
    assert.notEqual(a1, a2)
    for (const k of ['root', 'pckCa', 'pck', 'tcbSigning'] as const) {
      assert.deepEqual(a1[k].der, a2[k].der)
    }
    assert.deepEqual(a1.rootCrl, a2.rootCrl)
    assert.deepEqual(a1.pckCrl, a2.pckCrl)
    assert.deepEqual(mockCollateral(a1), mockCollateral(a2))
    const b = createMockIntelPki(SEED_B)
    assert.notDeepEqual(a1.root.der, b.root.der)
    assert.notDeepEqual(a1.root.key.publicPoint, b.root.key.publicPoint)
    assert.notDeepEqual(a1.ppid, b.ppid)
    assert.notDeepEqual(a1.fmspc, b.fmspc)
    assert.notEqual(mockCollateral(a1).tcb_info, mockCollateral(b).tcb_info)
    assert.throws(() => createMockIntelPki(Buffer.alloc(31)), KmsError)
  })

  it('the PCK certificate carries the seed-derived PPID and FMSPC; the TCB info is for that FMSPC', async () => {
    const pki = mockIntelPki(SEED_A)
    const quote = quoteOf(decode(await (await newBackend()).attest(Buffer.alloc(0))))
    assert.deepEqual(extractPpid(quote), pki.ppid)
    const tcbInfo = JSON.parse(mockCollateral(pki).tcb_info) as {
      id: string
      version: number
      fmspc: string
    }
    assert.equal(tcbInfo.id, 'TDX')
    assert.equal(tcbInfo.version, 3)
    assert.equal(tcbInfo.fmspc, pki.fmspc.toString('hex').toUpperCase())
    const qeIdentity = JSON.parse(mockCollateral(pki).qe_identity) as {
      id: string
      version: number
    }
    assert.deepEqual([qeIdentity.id, qeIdentity.version], ['TD_QE', 2])
  })

  it('dstack TD attributes: SEPT_VE_DISABLE, no debug, zero MRCONFIGID', async () => {
    const td = tdOf(quoteOf(decode(await (await newBackend()).attest(Buffer.alloc(0)))))
    assert.equal(td.tdAttributes.toString('hex'), '0000001000000000')
    assert.deepEqual(td.mrConfigId, Buffer.alloc(48))
  })

  it('the verifier of the codec accepts the simulated KMS attestation with the mock root', async () => {
    const backend = await newBackend()
    const verifier = new AttestationVerifier({
      rootCaDer: backend.mockRootCaDer,
      collateral: StaticCollateralSource.fromJson(
        readFileSync(join(backend.stateDir, COLLATERAL_FILE), 'utf8'),
      ),
      now: () => NOW,
    })
    const verified = await verifier.verify(decode(await backend.attest(Buffer.alloc(64, 3))))
    assert.equal(verified.report.status, 'UpToDate')
    assert.deepEqual(verified.report.ppid, mockIntelPki(SEED_A).ppid)
  })
})

describe('event logs and registers', () => {
  it('RTMR0–2 replay from the event log and RTMR3 from the runtime events', async () => {
    const backend = await newBackend()
    const a = decode(await backend.attest(Buffer.alloc(64, 9)))
    const td = tdOf(quoteOf(a))
    assert.equal(a.quote.kind, 'dstack-tdx')
    const log = a.quote.kind === 'dstack-tdx' ? a.quote.eventLog : []
    const [r0, r1, r2, r3] = replayEventLogRtmrs(log)
    assert.deepEqual([td.rtmr0, td.rtmr1, td.rtmr2], [r0, r1, r2])
    assert.deepEqual(td.rtmr3, replayRuntimeEvents(a.runtimeEvents))
    assert.deepEqual(td.rtmr3, r3)
    assert.notDeepEqual(td.rtmr2, Buffer.alloc(48))
    assert.deepEqual(a.reportData, Buffer.alloc(64, 9))
    assert.deepEqual(td.reportData, Buffer.alloc(64, 9))
    assert.deepEqual(
      log.filter((e) => e.event.startsWith('acpi-')).map((e) => e.event),
      ['acpi-loader', 'acpi-rsdp', 'acpi-tables'],
    )
    // full log = boot events then the runtime events with their digests
    const runtime = log.filter((e) => e.imr === 3)
    assert.deepEqual(
      runtime.map((e) => e.digest),
      a.runtimeEvents.map((e) => runtimeEventDigest(e)),
    )
    assert.deepEqual(
      encodeVersionedAttestation({ version: 0, attestation: a }),
      await backend.attest(Buffer.alloc(64, 9)),
    )
    const config = JSON.parse(a.config) as { os_image_hash: string }
    assert.equal(config.os_image_hash, defaultOsImageHash(SEED_A).toString('hex'))
    assert.equal(await backend.vmConfig(), a.config)
  })

  it('the boot log round-trips through a CCEL like the one firmware leaves', () => {
    const boot = simulatedBoot(SEED_A, defaultOsImageHash(SEED_A))
    const ccel = encodeCcel(boot.events)
    assert.equal(ccel.length, 65536)
    const parsed = parseCcel(ccel)
    assert.deepEqual(parsed.events, boot.events)
    assert.deepEqual(parsed.specId.algorithms, [{ algId: 0x000c, digestSize: 48 }])
    // same event types and imr sequence as the real guest log shape (ccel.bin + RTMR2 tags)
    const real = parseCcel(readVectorFile('ccel.bin')).events
    assert.deepEqual(
      boot.events.filter((e) => e.imr < 2).map((e) => [e.imr, e.eventType]),
      real.map((e) => [e.imr, e.eventType]),
    )
    const other = simulatedBoot(SEED_B, defaultOsImageHash(SEED_A))
    assert.notDeepEqual(other.rtmr0, boot.rtmr0)
    assert.notDeepEqual(other.mrTd, boot.mrTd)
  })

  it('emitEvent extends RTMR3, persists across a restart, and eventLog shows it', async () => {
    const dir = freshDir()
    const first = await newBackend(SEED_A, dir)
    const before = first.registers().rtmr3
    const initial = (await first.eventLog()).filter((e) => e.imr === 3).map((e) => e.event)
    assert.deepEqual(initial, [
      'system-preparing',
      'app-id',
      'compose-hash',
      'instance-id',
      'boot-mr-done',
      'key-provider',
      'storage-fs',
      'system-ready',
    ])
    await first.emitEvent('kms-started', Buffer.from('hello'))
    const after1 = first.registers().rtmr3
    assert.notDeepEqual(after1, before)
    await first.close()
    const second = await newBackend(SEED_A, dir)
    assert.deepEqual(second.registers().rtmr3, after1)
    const a = decode(await second.attest(Buffer.alloc(0)))
    assert.deepEqual(a.runtimeEvents.at(-1), {
      event: 'kms-started',
      payload: Buffer.from('hello'),
    })
    assert.deepEqual(tdOf(quoteOf(a)).rtmr3, replayRuntimeEvents(a.runtimeEvents))
    assert.equal(statSync(join(dir, RUNTIME_EVENTS_FILE)).mode & 0o777, 0o600)
    // a simulated reboot (log removed) starts over from the boot-time events
    rmSync(join(dir, RUNTIME_EVENTS_FILE))
    assert.deepEqual((await newBackend(SEED_A, dir)).registers().rtmr3, before)
  })

  it('publishes the mock root and the collateral in the state directory', async () => {
    const backend = await newBackend()
    assert.deepEqual(
      readFileSync(join(backend.stateDir, MOCK_ROOT_CA_DER_FILE)),
      backend.mockRootCaDer,
    )
    assert.equal(
      readFileSync(join(backend.stateDir, MOCK_ROOT_CA_PEM_FILE), 'utf8'),
      mockIntelPki(SEED_A).root.pem,
    )
    assert.deepEqual(
      JSON.parse(readFileSync(join(backend.stateDir, COLLATERAL_FILE), 'utf8')),
      backend.collateral(),
    )
  })

  it('logs a warning on every quote', async () => {
    const sink = new PassThrough()
    const lines: string[] = []
    sink.on('data', (chunk: Buffer) =>
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)),
    )
    const backend = await SimulatorBackend.create({
      seed: SEED_A,
      stateDir: freshDir(),
      logger: pino({ level: 'info' }, sink),
      root: join(tmp, 'no-tdx-root'),
      env: {},
    })
    await backend.attest(Buffer.alloc(0))
    await backend.attest(Buffer.alloc(0))
    await new Promise((resolve) => setImmediate(resolve))
    const warnings = lines
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .filter((l) => l.msg === SIMULATED_QUOTE_WARNING)
    assert.equal(warnings.length, 2)
    assert.ok(warnings.every((w) => w.level === 40))
  })

  it('refuses report data longer than 64 bytes with the guest agent text', async () => {
    await assert.rejects((await newBackend()).attest(Buffer.alloc(65)), /Report data is too long/)
  })
})

describe('refusal where real TDX exists', () => {
  const rooted = (root: string) => new NodeTdxIo({ root, env: {} })

  it('refuses to start with a /dev/tdx_guest', async () => {
    const root = join(tmp, 'fake-tdx-dev')
    mkdirSync(join(root, 'dev'), { recursive: true })
    writeFileSync(join(root, 'dev/tdx_guest'), '')
    await assert.rejects(
      SimulatorBackend.create({ seed: SEED_A, stateDir: freshDir(), root, env: {} }),
      (err: unknown) =>
        err instanceof KmsError &&
        err.code === 'KMS_ERR_TEE' &&
        /refusing to start the TEE simulator/.test(err.message),
    )
    await assert.rejects(SimulatorBackend.refuseWhereRealTdx(rooted(root)), KmsError)
  })

  it('refuses to start with a TDX configfs-tsm provider, not with an SEV one', async () => {
    const root = join(tmp, 'fake-tsm')
    const report = join(root, 'sys/kernel/config/tsm/report/com.intel.dcap')
    mkdirSync(report, { recursive: true })
    writeFileSync(join(report, 'provider'), 'sev_guest\n')
    await assert.doesNotReject(SimulatorBackend.refuseWhereRealTdx(rooted(root)))
    writeFileSync(join(report, 'provider'), 'tdx_guest\n')
    await assert.rejects(
      SimulatorBackend.refuseWhereRealTdx(rooted(root)),
      /refusing to start the TEE simulator/,
    )
  })

  it('refuses where DCAP_TDX_QUOTE_CONFIGFS_PATH names a configfs-tsm dir with a TDX provider', async () => {
    const empty = join(tmp, 'no-tdx-root-env')
    mkdirSync(empty, { recursive: true })
    const report = join(tmp, 'tsm-elsewhere', 'report0')
    mkdirSync(report, { recursive: true })
    writeFileSync(join(report, 'provider'), 'tdx_guest\n')
    const env = { DCAP_TDX_QUOTE_CONFIGFS_PATH: report }
    // the TDX backend's own check agrees that this is TDX
    assert.equal(await isTdxAvailable(new NodeTdxIo({ env })), true)
    await assert.rejects(
      SimulatorBackend.create({ seed: SEED_A, stateDir: freshDir(), env }),
      (err: unknown) =>
        err instanceof KmsError &&
        err.code === 'KMS_ERR_TEE' &&
        err.message.includes(`real TDX (${join(report, 'provider')})`),
    )
    // the same directory with an SEV provider is no reason to refuse
    writeFileSync(join(report, 'provider'), 'sev_guest\n')
    const sim = await SimulatorBackend.create({ seed: SEED_A, stateDir: freshDir(), env })
    await sim.close()
  })
})

describe('simulated guests', () => {
  const appId = Buffer.alloc(20, 0x11)
  const composeHash = Buffer.alloc(32, 0x22)
  const instanceId = Buffer.alloc(20, 0x33)

  it('emits the guest events in order and verifies against the same mock root', async () => {
    const bytes = simulateGuestAttestation({
      seed: SEED_A,
      reportData: Buffer.alloc(64, 5),
      appId,
      composeHash,
      instanceId,
      now: NOW,
    })
    const a = decode(bytes)
    assert.deepEqual(
      a.runtimeEvents.map((e) => [e.event, e.payload.toString('hex')]),
      [
        ['system-preparing', ''],
        ['app-id', appId.toString('hex')],
        ['compose-hash', composeHash.toString('hex')],
        ['instance-id', instanceId.toString('hex')],
        ['boot-mr-done', ''],
      ],
    )
    // the upstream-asserted RTMR3 for this exact sequence (upstream
    // `cc-eventlog/src/runtime_events.rs` tests)
    const td = tdOf(quoteOf(a))
    assert.equal(
      td.rtmr3.toString('hex'),
      '51e6737cc37085e270f04c1719caf0bb97a2d7e4396f570793ce9d61da7672cfeb07f01e154cb615295785002e931c47',
    )
    assert.equal(verifyMock(SEED_A, quoteOf(a)).status, 'UpToDate')
    // same platform as the KMS of this seed: one root and one collateral cover both
    const kms = await newBackend()
    assert.equal(
      QuoteVerifier.newWithRootCa(kms.mockRootCaDer).verify(quoteOf(a), kms.collateral(), NOW)
        .status,
      'UpToDate',
    )
    assert.deepEqual(extractPpid(quoteOf(a)), mockIntelPki(SEED_A).ppid)
    const regs = simulatedGuestRegisters({ seed: SEED_A, appId, composeHash, instanceId })
    assert.deepEqual(
      [regs.mrTd, regs.rtmr0, regs.rtmr1, regs.rtmr2, regs.rtmr3],
      [td.mrTd, td.rtmr0, td.rtmr1, td.rtmr2, td.rtmr3],
    )
    // default image = the KMS's image: same boot registers as the KMS
    const k = kms.registers()
    assert.deepEqual([k.mrTd, k.rtmr0, k.rtmr1, k.rtmr2], [td.mrTd, td.rtmr0, td.rtmr1, td.rtmr2])
  })

  it('full boot adds os-image-hash, key-provider, storage-fs, system-ready; another image changes MRs', () => {
    const osImageHash = Buffer.alloc(32, 0x44)
    const spki = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d03010703420004', 'hex')
    const opts = {
      seed: SEED_A,
      appId,
      composeHash,
      instanceId,
      osImageHash,
      keyProviderId: spki,
      fullBoot: true,
    }
    const events = simulatedGuestRuntimeEvents(opts)
    assert.deepEqual(
      events.map((e) => e.event),
      [
        'system-preparing',
        'app-id',
        'compose-hash',
        'instance-id',
        'boot-mr-done',
        'os-image-hash',
        'key-provider',
        'storage-fs',
        'system-ready',
      ],
    )
    assert.equal(
      events[6]?.payload.toString(),
      JSON.stringify({ name: 'kms', id: spki.toString('hex') }),
    )
    const a = decode(simulateGuestAttestation({ ...opts, reportData: Buffer.alloc(0), now: NOW }))
    assert.equal(
      (JSON.parse(a.config) as { os_image_hash: string }).os_image_hash,
      osImageHash.toString('hex'),
    )
    const td = tdOf(quoteOf(a))
    const kmsImage = simulatedGuestRegisters({ seed: SEED_A })
    // another image: other firmware, kernel, command line and initrd; RTMR0 holds the TD HOB
    // layout and the host's ACPI tables, the same for every image on one platform
    assert.notDeepEqual(td.mrTd, kmsImage.mrTd)
    assert.notDeepEqual(td.rtmr1, kmsImage.rtmr1)
    assert.notDeepEqual(td.rtmr2, kmsImage.rtmr2)
    assert.deepEqual(td.rtmr0, kmsImage.rtmr0)
    assert.deepEqual(td.rtmr3, replayRuntimeEvents(events))
    assert.equal(verifyMock(SEED_A, quoteOf(a)).status, 'UpToDate')
  })

  it('rejects wrong sizes and times outside the mock PKI validity', () => {
    assert.throws(
      () =>
        simulateGuestAttestation({
          seed: SEED_A,
          reportData: Buffer.alloc(0),
          appId: Buffer.alloc(19),
        }),
      /app_id must be 20 bytes/,
    )
    assert.throws(
      () =>
        simulateGuestAttestation({
          seed: SEED_A,
          reportData: Buffer.alloc(0),
          now: Date.UTC(2101, 0, 1) / 1000,
        }),
      /outside/,
    )
  })
})

describe('dstack-kms sim-attest', () => {
  function capture(): { stream: PassThrough; text: () => string } {
    const stream = new PassThrough()
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    return { stream, text: () => Buffer.concat(chunks).toString('utf8') }
  }

  function writeConfig(seedHex: string): {
    file: string
    load: { cwd: string; etcFile: string; env: NodeJS.ProcessEnv }
  } {
    const dir = freshDir()
    mkdirSync(dir, { recursive: true })
    const file = join(dir, 'kms.toml')
    writeFileSync(
      file,
      `[core]\nenforce_self_authorization = false\n\n[tee]\nbackend = "simulator"\n\n[tee.simulator]\nseed = "${seedHex}"\n`,
    )
    return { file, load: { cwd: dir, etcFile: join(dir, 'absent-etc.toml'), env: {} } }
  }

  it('prints a hex V0 attestation of a guest of the configured platform', async () => {
    const { file, load } = writeConfig(SEED_A.toString('hex'))
    const out = capture()
    const err = capture()
    const code = await runSimAttest(
      [
        '-c',
        file,
        '--report-data',
        'ab'.repeat(64),
        '--app-id',
        appHex(),
        '--compose-hash',
        '22'.repeat(32),
        '--instance-id',
        '33'.repeat(20),
      ],
      { stdout: out.stream, stderr: err.stream, load },
    )
    assert.equal(err.text(), '')
    assert.equal(code, 0)
    assert.match(out.text(), /^[0-9a-f]+\n$/)
    const a = decode(Buffer.from(out.text().trim(), 'hex'))
    assert.deepEqual(a.reportData, Buffer.alloc(64, 0xab))
    assert.equal(a.runtimeEvents[1]?.payload.toString('hex'), appHex())
    assert.equal(verifyMock(SEED_A, quoteOf(a)).status, 'UpToDate')
  })

  function appHex(): string {
    return '11'.repeat(20)
  }

  it('usage errors exit 2; a config without a seed exits 1', async () => {
    const { file, load } = writeConfig(SEED_A.toString('hex'))
    const err = capture()
    assert.equal(
      await runSimAttest(['-c', file], { stdout: capture().stream, stderr: err.stream, load }),
      2,
    )
    assert.match(err.text(), /--report-data' is required/)
    const bad = capture()
    assert.equal(
      await runSimAttest(['-c', file, '--report-data', 'zz'], {
        stdout: capture().stream,
        stderr: bad.stream,
        load,
      }),
      2,
    )
    assert.match(bad.text(), /Invalid character/)
    const noSeed = freshDir()
    mkdirSync(noSeed, { recursive: true })
    const plain = join(noSeed, 'kms.toml')
    writeFileSync(plain, '[core]\nenforce_self_authorization = false\n\n[tee]\nbackend = "none"\n')
    const e2 = capture()
    assert.equal(
      await runSimAttest(['-c', plain, '--report-data', '00'], {
        stdout: capture().stream,
        stderr: e2.stream,
        load: { cwd: noSeed, etcFile: join(noSeed, 'absent.toml'), env: {} },
      }),
      1,
    )
    assert.match(e2.text(), /tee.simulator.seed is not set/)
  })
})
