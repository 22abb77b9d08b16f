// Command-line conventions shared by every dstack-kms subcommand: usage errors exit 2 (as clap,
// which upstream's binaries use, does) with a pointer to --help; --help prints to stdout.

import { parseArgs, type ParseArgsConfig } from 'node:util'
import { KmsError, errorMessage } from '../errors.js'

export const EXIT_USAGE = 2

/** A mistake in the command line, as opposed to a failure while running the command. */
export class UsageError extends KmsError {
  constructor(message: string) {
    super('KMS_ERR_USAGE', message)
    this.name = 'UsageError'
  }
}

export interface CommandIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
}

/** Runs `parse`; reports usage errors and `--help` itself. Returns the parsed options, or the
 * exit code the command should return. */
export function parseCommandLine<O>(
  command: string,
  usage: string,
  io: CommandIo,
  parse: () => O | 'help',
): O | number {
  let opts: O | 'help'
  try {
    opts = parse()
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    io.stderr.write(
      `dstack-kms ${command}: ${err.message}\nRun 'dstack-kms ${command} --help' for usage.\n`,
    )
    return EXIT_USAGE
  }
  if (opts === 'help') {
    io.stdout.write(usage)
    return 0
  }
  return opts
}

type FlagOptions = NonNullable<ParseArgsConfig['options']>

/** `parseArgs` with every subcommand's rules (strict, no positionals); its complaints become
 * usage errors. */
export function parseFlags<const O extends FlagOptions>(
  argv: string[],
  options: O,
): ReturnType<typeof parseArgs<{ options: O; strict: true; allowPositionals: false }>>['values'] {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values
  } catch (err) {
    throw new UsageError(errorMessage(err))
  }
}
