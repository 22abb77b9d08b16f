// The one way tests build a KmsConfig: settings written as a kms.toml table (or TOML text), run
// through the real loader so the result can never drift from what `serve` would load. The layer
// is isolated: no /etc file, no ./kms.toml of the working directory, an empty environment unless
// one is given.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'smol-toml'
import { loadConfig } from '../../src/config/load.js'
import type { KmsConfig } from '../../src/config/types.js'
import { tempDir } from './temp-dir.js'

/** A kms.toml document as nested tables: `{ core: { cert_dir: '/x' }, tee: { backend: 'none' } }` */
export type TomlTable = { [key: string]: TomlValue }
export type TomlValue = string | number | boolean | TomlValue[] | TomlTable

export interface BuildConfigOptions {
  /** relative paths resolve against it; the TOML file is written here (default: a fresh temp dir) */
  cwd?: string
  /** default: empty */
  env?: NodeJS.ProcessEnv
  /** the file name inside `cwd` (default `kms-test.toml`) */
  fileName?: string
}

export function buildConfig(
  settings: TomlTable | string,
  opts: BuildConfigOptions = {},
): KmsConfig {
  const cwd = opts.cwd ?? tempDir('kms-config-')
  const file = join(cwd, opts.fileName ?? 'kms-test.toml')
  writeFileSync(file, typeof settings === 'string' ? settings : stringify(settings))
  return loadConfig({
    configFile: file,
    cwd,
    etcFile: join(cwd, 'no-etc', 'kms.toml'),
    env: opts.env ?? {},
  })
}
