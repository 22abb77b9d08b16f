// `dstack-kms verify-image`: recomputes the MRTD and RTMR0–2 a guest's vm_config promises (lite
// or legacy scheme, exactly as the KMS does with `[core.image] verify = true`) and compares them
// with a quote's registers. The quote itself is NOT DCAP-verified here (verify-attestation does
// that); the output says so.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { parseTdxEventLogJson } from '../attestation/event-log.js'
import { parseQuote, tdReportOf } from '../attestation/quote.js'
import { CacheDb } from '../cache/cache-db.js'
import { KmsError, errorMessage, withContext } from '../errors.js'
import { OsImageVerifier } from '../image/image-verifier.js'
import { createLegacyVerifier } from '../image/legacy/index.js'
import { REGISTER_NAMES, registersToHex, type TdxRegisters } from '../image/tdx-registers.js'
import { parseVmConfig } from '../image/vm-config.js'
import { DEFAULT_DOWNLOAD_URL } from '../config/defaults.js'
import { binaryOrHex, hexMember, jsonObject, readInput, stringMember } from './input-files.js'
import { UsageError, parseCommandLine, parseFlags, type CommandIo } from './usage.js'

export const VERIFY_IMAGE_USAGE = `Usage: dstack-kms verify-image --quote FILE --event-log FILE --vm-config FILE [options]

Recomputes the MRTD and RTMR0-2 that the guest's vm_config promises (TDX lite: from its
measurement document and the event log's ACPI digests; legacy: from the downloaded image) and
compares them with the quote's registers, as the KMS does with [core.image] verify = true. The
quote's signature and TCB are NOT verified (no DCAP; use verify-attestation for that).

Prints one JSON object {"scheme", "os_image_hash", "expected", "quote", "match", "mismatches",
"skipped", "dcap_verified": false} and exits 0 only on a match; a refusal before the comparison
(bad document, memory gate, missing ACPI events, no image) prints {"error": "..."} and exits 1.

Input (each file may also be a JSON object with "quote", "event_log" and "vm_config" members,
like a guest-agent GetQuote reply, so one such file can be given for all three):
      --quote FILE                 raw TDX quote, binary or hex
      --event-log FILE             the TDX event log (JSON array)
      --vm-config FILE             the guest's vm_config JSON
Legacy scheme:
      --image-cache DIR            image and measurement cache (default: a temporary directory)
      --download-url TEMPLATE      image URL with {OS_IMAGE_HASH} (default ${DEFAULT_DOWNLOAD_URL})
      --acpi-tables-command CMD    command printing QEMU's ACPI tables (split on spaces, no shell)
      --legacy-rtmr0 require|skip  without that command: refuse (default) or skip RTMR0
  -h, --help                       print this help and exit
`

interface Options {
  quote: string
  eventLog: string
  vmConfig: string
  imageCache?: string
  downloadUrl: string
  acpiTablesCommand: string[]
  legacyRtmr0: 'require' | 'skip'
}

function parseOptions(argv: string[]): Options | 'help' {
  const values = parseFlags(argv, {
    quote: { type: 'string' },
    'event-log': { type: 'string' },
    'vm-config': { type: 'string' },
    'image-cache': { type: 'string' },
    'download-url': { type: 'string' },
    'acpi-tables-command': { type: 'string' },
    'legacy-rtmr0': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  })
  if (values.help) return 'help'
  const { quote } = values
  const eventLog = values['event-log']
  const vmConfig = values['vm-config']
  if (quote === undefined || eventLog === undefined || vmConfig === undefined) {
    throw new UsageError("'--quote', '--event-log' and '--vm-config' are required")
  }
  const rtmr0 = values['legacy-rtmr0'] ?? 'require'
  if (rtmr0 !== 'require' && rtmr0 !== 'skip') {
    throw new UsageError(`option '--legacy-rtmr0' must be 'require' or 'skip', got '${rtmr0}'`)
  }
  return {
    quote,
    eventLog,
    vmConfig,
    imageCache: values['image-cache'],
    downloadUrl: values['download-url'] ?? DEFAULT_DOWNLOAD_URL,
    acpiTablesCommand: (values['acpi-tables-command'] ?? '').split(/\s+/).filter((a) => a !== ''),
    legacyRtmr0: rtmr0,
  }
}

function loadQuoteRegisters(path: string): TdxRegisters {
  const raw = readInput(path, 'quote')
  const obj = jsonObject(raw)
  const bytes = obj !== undefined ? hexMember(obj, 'quote', path) : binaryOrHex(raw)
  let td
  try {
    td = tdReportOf(parseQuote(bytes))
  } catch (err) {
    throw withContext('Failed to decode quote', err, 'KMS_ERR_ATTESTATION')
  }
  if (td === null) throw new KmsError('KMS_ERR_ATTESTATION', 'the quote is not a TDX quote')
  return { mrtd: td.mrTd, rtmr0: td.rtmr0, rtmr1: td.rtmr1, rtmr2: td.rtmr2 }
}

function loadText(path: string, what: string, member: string): string {
  const raw = readInput(path, what)
  const obj = jsonObject(raw)
  // a vm_config is itself a JSON object: only a wrapper with the member is unwrapped
  if (obj !== undefined && typeof obj[member] === 'string') return stringMember(obj, member, path)
  return raw.toString('utf8')
}

export async function runVerifyImage(argv: string[], io: CommandIo): Promise<number> {
  const opts = parseCommandLine('verify-image', VERIFY_IMAGE_USAGE, io, () => parseOptions(argv))
  if (typeof opts === 'number') return opts
  const tempDir =
    opts.imageCache === undefined ? mkdtempSync(join(tmpdir(), 'dstack-verify-image-')) : null
  let db: CacheDb | null = null
  try {
    const actual = loadQuoteRegisters(opts.quote)
    const events = parseTdxEventLogJson(loadText(opts.eventLog, 'event log', 'event_log'))
    const vm = parseVmConfig(loadText(opts.vmConfig, 'vm_config', 'vm_config'))
    db = CacheDb.open(opts.imageCache ?? tempDir ?? '')
    const log = pino({ level: 'warn' }, pino.destination(2))
    const verifier = new OsImageVerifier({
      cache: db,
      cacheMaxBytes: Number.MAX_SAFE_INTEGER,
      log,
      legacy: createLegacyVerifier({
        imageCacheDir: db.imagesDir,
        downloadUrl: opts.downloadUrl,
        maxImageBytes: 4 * 1024 ** 3,
        downloadTimeoutMs: 10 * 60_000,
        acpiTablesCommand: opts.acpiTablesCommand.length === 0 ? null : opts.acpiTablesCommand,
        acpiTimeoutMs: 60_000,
        legacyRtmr0: opts.legacyRtmr0,
        log,
      }),
    })
    const check = await verifier.checkTdx(vm, events, actual)
    const expected: Record<string, string | null> = {}
    for (const name of REGISTER_NAMES) {
      expected[name] = check.expected[name]?.toString('hex') ?? null
    }
    const match = check.mismatches.length === 0
    io.stdout.write(
      JSON.stringify({
        scheme: check.scheme,
        os_image_hash: check.osImageHash.toString('hex'),
        expected,
        quote: registersToHex(actual),
        match,
        mismatches: check.mismatches.map((m) => m.register),
        skipped: check.skipped,
        dcap_verified: false,
      }) + '\n',
    )
    return match ? 0 : 1
  } catch (err) {
    io.stdout.write(JSON.stringify({ error: errorMessage(err) }) + '\n')
    return 1
  } finally {
    db?.close()
    if (tempDir !== null) rmSync(tempDir, { recursive: true, force: true })
  }
}
