// `dstack-kms verify-attestation`: verifies a TDX quote or a dstack attestation exactly as the KMS
// does before releasing keys (docs/design.md#trust-model) and prints the verdict, the quoted
// registers and the BootInfo an auth webhook would receive, as one JSON object.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bootInfoToJson, buildBootInfo } from '../attestation/boot-info.js'
import { type CollateralSource, StaticCollateralSource } from '../attestation/collateral.js'
import { PccsCollateralSource } from '../attestation/pccs-source.js'
import { type ParsedQuote, TEE_TYPE_SGX, parseQuote } from '../attestation/quote.js'
import { findEventPayload } from '../attestation/runtime-events.js'
import { INTEL_SGX_ROOT_CA_DER, readRootCaFile } from '../attestation/trust.js'
import type { Attestation } from '../attestation/types.js'
import { AttestationVerifier, type VerifiedReport } from '../attestation/verify.js'
import { attestationFromTdxQuote } from '../attestation/from-tdx-quote.js'
import { decodeVersionedAttestation } from '../attestation/versioned.js'
import { CacheDb } from '../cache/cache-db.js'
import { DEFAULT_PCCS_URL } from '../config/defaults.js'
import { attestationFromCertificate } from '../ratls/cert-attestation.js'
import { parseCertificate } from '../x509/parse.js'
import { pemDecode } from '../asn1/pem.js'
import { binaryOrHex, hexMember, jsonObject, readInput } from './input-files.js'
import { UsageError, parseCommandLine, parseFlags } from './usage.js'
import { KmsError, errorMessage, withContext } from '../errors.js'

export const VERIFY_ATTESTATION_USAGE = `Usage: dstack-kms verify-attestation (--attestation FILE | --quote FILE [--event-log FILE] | --cert FILE) [options]

Verifies a dstack attestation or a raw DCAP quote the way the KMS does (quote signature and TCB
through DCAP, dstack's TD attribute checks, RTMR3 replay of the runtime events, report_data) and
prints one JSON object: {"status", "advisory_ids", "report", "boot_info"}. boot_info is the
BootInfo an auth webhook would receive; it is null when the attestation has no app-id runtime
event (a bare quote, or a guest that is not a dstack app). Exits 1 with the error on failure.

Input:
      --attestation FILE   VersionedAttestation (V0 SCALE or V1 msgpack), binary or hex, or a
                           JSON object with an "attestation" hex member
      --quote FILE         raw quote, binary or hex, or a JSON object with "quote" (hex) and
                           optionally "event_log" (a guest-agent GetQuote reply)
      --event-log FILE     JSON TDX event log for --quote (default: none)
      --cert FILE          an RA-TLS certificate (PEM or DER, e.g. the KMS's rpc.crt): its
                           attestation, which must also be bound to the certificate's key
      --vm-config FILE     vm_config JSON for the BootInfo (default: the attestation's config)
      --boottime           BootInfo with boot-time measurements (what SignCert uses)
Verification:
      --collateral FILE    collateral JSON (as dcap-qvl's getCollateral returns it); no network
      --pccs URL           PCCS to fetch collateral from (default ${DEFAULT_PCCS_URL})
      --at UNIX_SECONDS    verify as of this time (default: now)
      --root-ca FILE       trust this root CA (PEM or DER) instead of Intel's; needs
                           --insecure-allow-external-trust-anchors
      --insecure-allow-external-trust-anchors
  -h, --help               print this help and exit
`

export interface VerifyAttestationIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  /** collateral cache for --pccs; a throw-away one in a temporary directory otherwise */
  db?: CacheDb
}

interface Options {
  attestation?: string
  cert?: string
  quote?: string
  eventLog?: string
  vmConfig?: string
  collateral?: string
  at?: number
  pccs: string
  boottime: boolean
  rootCa?: string
}

function parseOptions(argv: string[]): Options | 'help' {
  const values = parseFlags(argv, {
    attestation: { type: 'string' },
    quote: { type: 'string' },
    cert: { type: 'string' },
    'event-log': { type: 'string' },
    'vm-config': { type: 'string' },
    collateral: { type: 'string' },
    at: { type: 'string' },
    pccs: { type: 'string' },
    boottime: { type: 'boolean', default: false },
    'root-ca': { type: 'string' },
    'insecure-allow-external-trust-anchors': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  })
  if (values.help) return 'help'
  const inputs = [values.attestation, values.quote, values.cert].filter((v) => v !== undefined)
  if (inputs.length !== 1) {
    throw new UsageError("exactly one of '--attestation', '--quote' and '--cert' is required")
  }
  if (values['event-log'] !== undefined && values.quote === undefined) {
    throw new UsageError("'--event-log' goes with '--quote'")
  }
  if (values.collateral !== undefined && values.pccs !== undefined) {
    throw new UsageError("'--collateral' and '--pccs' exclude each other")
  }
  if (values['root-ca'] !== undefined && !values['insecure-allow-external-trust-anchors']) {
    throw new UsageError(
      "'--root-ca' replaces the Intel root of trust; it needs '--insecure-allow-external-trust-anchors'",
    )
  }
  let at: number | undefined
  if (values.at !== undefined) {
    if (!/^\d+$/.test(values.at)) {
      throw new UsageError(`option '--at' needs unix seconds, got '${values.at}'`)
    }
    at = Number(values.at)
  }
  return {
    attestation: values.attestation,
    cert: values.cert,
    quote: values.quote,
    eventLog: values['event-log'],
    vmConfig: values['vm-config'],
    collateral: values.collateral,
    at,
    pccs: values.pccs ?? DEFAULT_PCCS_URL,
    boottime: values.boottime,
    rootCa: values['root-ca'],
  }
}

type Input =
  | { kind: 'attestation'; attestation: Attestation; spkiDer?: Buffer }
  | { kind: 'sgx'; quote: Buffer }

function loadCertificate(path: string): Input {
  const raw = readInput(path, 'certificate')
  const text = raw.toString('latin1')
  const der = text.includes('-----BEGIN') ? pemDecode(text, 'CERTIFICATE') : raw
  const cert = parseCertificate(der)
  let attestation: Attestation | null
  try {
    attestation = attestationFromCertificate(cert)
  } catch (err) {
    throw withContext('Failed to decode the certificate attestation', err, 'KMS_ERR_ATTESTATION')
  }
  if (attestation === null) {
    throw new KmsError('KMS_ERR_ATTESTATION', `${path}: the certificate carries no attestation`)
  }
  return { kind: 'attestation', attestation, spkiDer: cert.spkiDer }
}

function loadInput(opts: Options): Input {
  if (opts.cert !== undefined) return loadCertificate(opts.cert)
  if (opts.attestation !== undefined) {
    const raw = readInput(opts.attestation, 'attestation')
    const obj = jsonObject(raw)
    const bytes =
      obj === undefined ? binaryOrHex(raw) : hexMember(obj, 'attestation', opts.attestation)
    try {
      return { kind: 'attestation', attestation: decodeVersionedAttestation(bytes).attestation }
    } catch (err) {
      throw withContext('Failed to decode attestation', err, 'KMS_ERR_ATTESTATION')
    }
  }
  const path = opts.quote ?? ''
  const raw = readInput(path, 'quote')
  const obj = jsonObject(raw)
  let quote: Buffer
  let eventLog: Buffer | undefined
  if (obj === undefined) {
    quote = binaryOrHex(raw)
  } else {
    quote = hexMember(obj, 'quote', path)
    const log = obj['event_log']
    if (typeof log === 'string' && log !== '') eventLog = Buffer.from(log, 'utf8')
  }
  if (opts.eventLog !== undefined) eventLog = readInput(opts.eventLog, 'event log')
  let parsed: ParsedQuote
  try {
    parsed = parseQuote(quote)
  } catch (err) {
    throw withContext('Failed to decode quote', err, 'KMS_ERR_ATTESTATION')
  }
  // an SGX quote has no TD report to build an attestation around; only the quote is verified
  if (parsed.teeType === TEE_TYPE_SGX) return { kind: 'sgx', quote }
  // a bare quote stands for an attestation with an empty event log (RTMR3 must then be zero)
  const attestation = attestationFromTdxQuote(quote, eventLog ?? Buffer.from('[]'))
  return { kind: 'attestation', attestation }
}

const hex = (b: Buffer): string => b.toString('hex')

function reportJson(report: VerifiedReport): Record<string, unknown> {
  const r = report.quote.report
  if (r.type === 'sgx') {
    return {
      type: 'sgx',
      mr_enclave: hex(r.mrEnclave),
      mr_signer: hex(r.mrSigner),
      attributes: hex(r.attributes),
      report_data: hex(r.reportData),
      ppid: hex(report.ppid),
    }
  }
  const td = r.td
  return {
    type: r.type,
    mr_td: hex(td.mrTd),
    rtmr0: hex(td.rtmr0),
    rtmr1: hex(td.rtmr1),
    rtmr2: hex(td.rtmr2),
    rtmr3: hex(td.rtmr3),
    report_data: hex(td.reportData),
    mr_config_id: hex(td.mrConfigId),
    mr_owner: hex(td.mrOwner),
    mr_owner_config: hex(td.mrOwnerConfig),
    td_attributes: hex(td.tdAttributes),
    xfam: hex(td.xfam),
    tee_tcb_svn: hex(td.teeTcbSvn),
    mr_seam: hex(td.mrSeam),
    mr_signer_seam: hex(td.mrSignerSeam),
    seam_attributes: hex(td.seamAttributes),
    ...(r.type === 'td15'
      ? { tee_tcb_svn2: hex(r.teeTcbSvn2), mr_service_td: hex(r.mrServiceTd) }
      : {}),
    ppid: hex(report.ppid),
  }
}

async function run(opts: Options, io: VerifyAttestationIo): Promise<Record<string, unknown>> {
  const input = loadInput(opts)
  const vmConfig =
    opts.vmConfig === undefined ? '' : readInput(opts.vmConfig, 'vm config').toString('utf8')
  const rootCaDer =
    opts.rootCa === undefined ? INTEL_SGX_ROOT_CA_DER : readRootCaFile(opts.rootCa, 'TDX')
  const now = opts.at === undefined ? () => Math.floor(Date.now() / 1000) : () => opts.at ?? 0

  let tempDir: string | undefined
  let db = io.db
  try {
    let collateral: CollateralSource
    if (opts.collateral !== undefined) {
      collateral = StaticCollateralSource.fromJson(
        readInput(opts.collateral, 'collateral').toString('utf8'),
      )
    } else {
      if (db === undefined) {
        tempDir = mkdtempSync(join(tmpdir(), 'dstack-kms-verify-'))
        db = CacheDb.open(tempDir)
      }
      collateral = new PccsCollateralSource({ pccsUrl: opts.pccs, db, now })
    }
    const verifier = new AttestationVerifier({ rootCaDer, collateral, now })

    if (input.kind === 'sgx') {
      const report = await verifier.verifyQuote(input.quote)
      return {
        status: report.status,
        advisory_ids: report.advisoryIds,
        report: reportJson(report),
        boot_info: null,
      }
    }
    const verified =
      input.spkiDer === undefined
        ? await verifier.verify(input.attestation)
        : await verifier.verifyWithRaPubkey(input.attestation, input.spkiDer)
    const hasAppId = findEventPayload(input.attestation.runtimeEvents, 'app-id').length > 0
    const bootInfo = hasAppId
      ? bootInfoToJson(buildBootInfo(verified, { useBoottimeMr: opts.boottime, vmConfig }))
      : null
    return {
      status: verified.report.status,
      advisory_ids: verified.report.advisoryIds,
      report: reportJson(verified.report),
      boot_info: bootInfo,
    }
  } finally {
    if (tempDir !== undefined) {
      db?.close()
      rmSync(tempDir, { recursive: true, force: true })
    }
  }
}

export async function runVerifyAttestation(
  argv: string[],
  io: VerifyAttestationIo,
): Promise<number> {
  const opts = parseCommandLine('verify-attestation', VERIFY_ATTESTATION_USAGE, io, () =>
    parseOptions(argv),
  )
  if (typeof opts === 'number') return opts
  try {
    const result = await run(opts, io)
    io.stdout.write(JSON.stringify(result, null, 2) + '\n')
    return 0
  } catch (err) {
    io.stderr.write(`dstack-kms verify-attestation: ${errorMessage(err)}\n`)
    return 1
  }
}
