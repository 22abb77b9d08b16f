#!/usr/bin/env node
// The dstack-kms command line: a thin shell over serve(). Like upstream's binary, a bare
// `dstack-kms` or `dstack-kms -c FILE` serves, so existing deployments (Docker `CMD dstack-kms`,
// `exec dstack-kms -c ./kms.toml`) keep working; `serve` is the explicit spelling.
import { parseArgs } from 'node:util'
import { errorMessage } from './errors.js'
import { serve } from './serve.js'
import { VERSION } from './version.js'
import { EXIT_USAGE, UsageError, type CommandIo } from './commands/usage.js'

const USAGE = `Usage: dstack-kms [serve] [-c FILE] [--quickstart]
       dstack-kms --help | --version

Key management service for dstack confidential VMs, compatible with the upstream dstack KMS.

Commands:
  serve                run the KMS (also what a bare \`dstack-kms\` does)
  verify-attestation   verify a TDX quote or attestation and print its BootInfo as JSON
  verify-image         recompute a guest's MRTD/RTMR0-2 from its vm_config and compare (JSON)
  auth-simple          run the auth-simple policy server (upstream's auth-simple)
  sim-attest           print a simulated guest attestation of a simulator config's platform
  demo-guest           play a dstack guest against a running KMS: RA-TLS + GetAppKey
  audit                verify the key-release audit log's hash chain, or print its rows

Run 'dstack-kms <command> --help' for a command's options.

Options:
  -c, --config FILE    configuration file, layered last over the built-in defaults,
                       /etc/kms/kms.toml and ./kms.toml
      --quickstart     local quick-start profile: TEE simulator + auth-simple, state under
                       ./data; not for production
  -h, --help           print this help and exit
  -V, --version        print the version and exit
`

type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'serve'; configFile?: string; quickstart: boolean }

function parseCommand(argv: string[]): Command {
  const rest = argv[0] === 'serve' ? argv.slice(1) : argv
  let parsed
  try {
    parsed = parseArgs({
      args: rest,
      strict: true,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        quickstart: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'V', default: false },
      },
    })
  } catch (err) {
    throw new UsageError(describeParseError(err))
  }
  const { values, positionals } = parsed
  if (values.help) return { kind: 'help' }
  if (values.version) return { kind: 'version' }
  const [extra] = positionals
  if (extra !== undefined) {
    throw new UsageError(
      argv[0] === 'serve' ? `unexpected argument '${extra}'` : `unknown command '${extra}'`,
    )
  }
  if (values.config === '') throw new UsageError("option '-c, --config' needs a file name")
  return { kind: 'serve', configFile: values.config, quickstart: values.quickstart }
}

/** parseArgs messages suggest JavaScript-level workarounds; ours name the option instead. */
function describeParseError(err: unknown): string {
  const code = err instanceof Error && 'code' in err ? err.code : undefined
  const option = /'([^']+)'/.exec(errorMessage(err))?.[1]
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option '${option ?? '?'}'`
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    return option?.includes('config') === true
      ? "option '-c, --config' needs a file name"
      : errorMessage(err)
  }
  return errorMessage(err)
}

/** Subcommands beside `serve`, loaded on demand so `serve` does not pay for them. */
const SUBCOMMANDS: Record<string, (argv: string[], io: CommandIo) => Promise<number>> = {
  'verify-attestation': async (argv, io) =>
    (await import('./commands/verify-attestation.js')).runVerifyAttestation(argv, io),
  'verify-image': async (argv, io) =>
    (await import('./commands/verify-image.js')).runVerifyImage(argv, io),
  'auth-simple': async (argv, io) =>
    (await import('./commands/auth-simple.js')).runAuthSimple(argv, io),
  'sim-attest': async (argv, io) =>
    (await import('./commands/sim-attest.js')).runSimAttest(argv, io),
  'demo-guest': async (argv, io) =>
    (await import('./commands/demo-guest.js')).runDemoGuest(argv, io),
  audit: async (argv, io) => (await import('./commands/audit.js')).runAudit(argv, io),
}

async function main(argv: string[]): Promise<number> {
  const sub = argv[0] === undefined ? undefined : SUBCOMMANDS[argv[0]]
  if (sub !== undefined) {
    return sub(argv.slice(1), { stdout: process.stdout, stderr: process.stderr })
  }
  let command: Command
  try {
    command = parseCommand(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`dstack-kms: ${err.message}\nRun 'dstack-kms --help' for usage.\n`)
    return EXIT_USAGE
  }
  switch (command.kind) {
    case 'help':
      process.stdout.write(USAGE)
      return 0
    case 'version':
      process.stdout.write(`dstack-kms ${VERSION}\n`)
      return 0
    case 'serve':
      return serve({ configFile: command.configFile, quickstart: command.quickstart })
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`dstack-kms: ${errorMessage(err)}\n`)
    process.exitCode = 1
  },
)
