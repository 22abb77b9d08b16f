// `dstack-kms sim-attest`: prints the V0 attestation (hex) of a simulated guest CVM on the mock
// platform of the configured `[tee.simulator] seed`, for driving a simulator KMS (GetAppKey,
// SignCert, auth policies) from tests and scripts without a TEE.
import { type LoadOptions, loadConfig } from '../config/load.js'
import { errorMessage } from '../errors.js'
import { simulateGuestAttestation } from '../tee/simulator/guest.js'
import { UsageError, parseCommandLine, parseFlags } from './usage.js'
import { decodeHex } from '../util/hex.js'

export const SIM_ATTEST_USAGE = `Usage: dstack-kms sim-attest [-c FILE] --report-data HEX [options]

Prints the hex VersionedAttestation (V0) of a simulated guest CVM on the mock TDX platform of
[tee.simulator] seed. Its quote verifies only against that simulator's mock root. Not a TEE.

Options:
  -c, --config FILE          configuration file (layered like 'dstack-kms serve')
      --quickstart           use the quick-start profile's seed (./data), as 'serve --quickstart'
      --report-data HEX      up to 64 bytes, zero-padded (required)
      --app-id HEX           20 bytes (default derived from the seed)
      --compose-hash HEX     32 bytes (default derived from the seed)
      --instance-id HEX      20 bytes (default derived from the seed)
      --os-image-hash HEX    32 bytes (default: the simulated KMS's image)
      --full-boot            also emit os-image-hash, key-provider, storage-fs, system-ready
      --key-provider-id HEX  KMS root CA SPKI DER for the key-provider event (with --full-boot)
  -h, --help                 print this help and exit
`

export interface SimAttestIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  /** how the configuration is found (tests point /etc and ./ elsewhere) */
  load?: Omit<LoadOptions, 'configFile'>
}

const HEX_OPTIONS = [
  'report-data',
  'app-id',
  'compose-hash',
  'instance-id',
  'os-image-hash',
  'key-provider-id',
] as const

interface Options {
  configFile?: string
  quickstart: boolean
  hex: Partial<Record<(typeof HEX_OPTIONS)[number], Buffer>>
  fullBoot: boolean
}

function parseOptions(argv: string[]): Options | 'help' {
  const values = parseFlags(argv, {
    config: { type: 'string', short: 'c' },
    quickstart: { type: 'boolean', default: false },
    'report-data': { type: 'string' },
    'app-id': { type: 'string' },
    'compose-hash': { type: 'string' },
    'instance-id': { type: 'string' },
    'os-image-hash': { type: 'string' },
    'key-provider-id': { type: 'string' },
    'full-boot': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  })
  if (values.help) return 'help'
  if (values.config === '') throw new UsageError("option '-c, --config' needs a file name")
  const hex: Options['hex'] = {}
  for (const name of HEX_OPTIONS) {
    const text = values[name]
    if (text === undefined) continue
    try {
      hex[name] = decodeHex(text)
    } catch (err) {
      throw new UsageError(`option '--${name}': ${errorMessage(err)}`)
    }
  }
  if (hex['report-data'] === undefined) throw new UsageError("option '--report-data' is required")
  return {
    configFile: values.config,
    quickstart: values.quickstart,
    hex,
    fullBoot: values['full-boot'],
  }
}

export async function runSimAttest(argv: string[], io: SimAttestIo): Promise<number> {
  const opts = parseCommandLine('sim-attest', SIM_ATTEST_USAGE, io, () => parseOptions(argv))
  if (typeof opts === 'number') return opts
  try {
    const config = loadConfig({
      ...io.load,
      configFile: opts.configFile,
      quickstart: opts.quickstart,
    })
    const seedHex = config.tee.simulator.seed
    if (seedHex === '') {
      throw new Error(
        'tee.simulator.seed is not set; sim-attest simulates a guest of the mock platform that seed defines',
      )
    }
    const attestation = simulateGuestAttestation({
      seed: decodeHex(seedHex),
      reportData: opts.hex['report-data'] ?? Buffer.alloc(0),
      appId: opts.hex['app-id'],
      composeHash: opts.hex['compose-hash'],
      instanceId: opts.hex['instance-id'],
      osImageHash: opts.hex['os-image-hash'],
      keyProviderId: opts.hex['key-provider-id'],
      fullBoot: opts.fullBoot,
    })
    io.stdout.write(attestation.toString('hex') + '\n')
    return 0
  } catch (err) {
    io.stderr.write(`dstack-kms sim-attest: ${errorMessage(err)}\n`)
    return 1
  }
}
