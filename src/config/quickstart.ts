// The quick-start profile (`--quickstart`): a local, TEE-less KMS whose state lives under
// ./data. It is layered right after the built-in defaults, so any config file still overrides it.
// Only reading lives here; creating the files at first start is `src/quickstart/files.ts`.

import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { KmsError, errorMessage } from '../errors.js'
import { isNotFound } from '../fs/errno.js'

export const QUICKSTART_TOML = `# dstack-kms-ts quick-start profile (--quickstart).
# A local KMS on the TEE SIMULATOR: quotes are signed by a mock Intel PKI derived from a seed in
# ./data and are trusted only because trust_mock_root says so. The auth policy is auth-simple with
# a generated policy file that admits this KMS and one demo app. For trying things out only;
# never for production. Relative paths are resolved against the working directory.

[rpc]
address = "0.0.0.0"
port = 8000

[rpc.tls]
key = "./data/certs/rpc.key"
certs = "./data/certs/rpc.crt"

[rpc.tls.mutual]
ca_certs = "./data/certs/tmp-ca.crt"
mandatory = false

[core]
cert_dir = "./data/certs"
# The simulated KMS attests itself and asks the policy before serving, like a real one.
enforce_self_authorization = true
# admin_token_hash comes from ./data/admin-token.sha256 (created at first start).

[core.image]
# The production setting: the simulated guests carry a TDX lite measurement document, so every
# key release recomputes MRTD and RTMR0-2 from it and compares them with the quote.
verify = true
cache_dir = "./data/images"

[core.auth_api]
type = "webhook"

[core.auth_api.webhook]
# the auth-simple sidecar below, on its private unix socket
url = "unix:./data/run/auth-simple.sock"

[core.onboard]
enabled = true
address = "0.0.0.0"
port = 8000
tls = true

[auth_simple]
enabled = true
# a socket in ./data/run (created 0700): only this user can reach or replace the policy server
listen = "unix"
socket = "./data/run/auth-simple.sock"
# generated at first start: admits this simulated KMS and the demo app
config = "./data/auth-config.json"

[tee]
backend = "simulator"

[tee.simulator]
# seed comes from ./data/tee-simulator.seed (created at first start).
trust_mock_root = true
`

export const QUICKSTART_TOKEN_FILE = 'admin-token.sha256'
export const QUICKSTART_SEED_FILE = 'tee-simulator.seed'

/** The quick-start data directory for a working directory. */
export function quickstartDataDir(cwd: string): string {
  return resolve(cwd, 'data')
}

export function hashFileError(file: string, reason: string): KmsError {
  return new KmsError(
    'KMS_ERR_CONFIG',
    `invalid quick-start admin token hash file ${file}: ${reason}`,
  )
}

/** Reads a 32-byte hex value the quick start keeps in `dataDir`; undefined when the file does
 * not exist yet, an error when it is unreadable or not 64 hex digits. */
function readHex32File(dataDir: string, name: string, invalid: (file: string) => KmsError) {
  const file = join(dataDir, name)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if (isNotFound(err)) return undefined
    throw new KmsError('KMS_ERR_CONFIG', `failed to read ${file}: ${errorMessage(err)}`, {
      cause: err,
    })
  }
  const value = text.trim().toLowerCase()
  if (!/^[0-9a-f]{64}$/.test(value)) throw invalid(file)
  return value
}

/** Reads the stored hash; undefined when the file does not exist yet. */
export function readQuickstartAdminTokenHash(dataDir: string): string | undefined {
  return readHex32File(dataDir, QUICKSTART_TOKEN_FILE, (file) =>
    hashFileError(file, 'expected the 64-character hex SHA-256 of the admin token'),
  )
}

/** Reads the simulator seed (64 hex); undefined when the file does not exist yet. */
export function readQuickstartSeed(dataDir: string): string | undefined {
  return readHex32File(
    dataDir,
    QUICKSTART_SEED_FILE,
    (file) =>
      new KmsError(
        'KMS_ERR_CONFIG',
        `invalid quick-start simulator seed file ${file}: expected 64 hex digits`,
      ),
  )
}
