// `dstack-kms demo-guest`: plays a dstack guest CVM of the simulator's mock platform against a
// running KMS, the way a real guest fetches its keys (src/guest/guest-client.ts), and explains
// what was released and why. Only meaningful with `[tee] backend = "simulator"`.
import { createHash } from 'node:crypto'
import { buildBootInfo } from '../attestation/boot-info.js'
import { decodeVersionedAttestation } from '../attestation/versioned.js'
import { loadConfig } from '../config/load.js'
import type { KmsConfig } from '../config/types.js'
import { nobleSecp256k1 } from '../crypto/secp256k1.js'
import { x25519PublicKey } from '../crypto/x25519.js'
import { errorMessage } from '../errors.js'
import {
  DEMO_APP_ID,
  DEMO_COMPOSE_HASH,
  mockPlatformVerifier,
  requestSimulatedGuestKeys,
} from '../quickstart/demo.js'
import { claimingVmConfig, defaultOsImageHash, simulatedVmConfig } from '../tee/simulator/cvm.js'
import { simulateGuestAttestation } from '../tee/simulator/guest.js'
import { decodeHex } from '../util/hex.js'
import { UsageError, parseCommandLine, parseFlags, type CommandIo } from './usage.js'

export const DEMO_GUEST_USAGE = `Usage: dstack-kms demo-guest (-c FILE | --quickstart) [options]

Plays a dstack guest CVM on the TEE simulator's mock platform: fetches the KMS temp CA, makes an
RA-TLS client certificate carrying a simulated attestation, calls GetAppKey over mutual TLS while
trusting only the KMS root CA (host name and kms:rpc usage checked, the KMS's own attestation
verified), and prints what was released and why it was allowed.

Options:
  -c, --config FILE      the KMS configuration (tee.backend must be "simulator")
      --quickstart       use the quick-start profile, as \`serve --quickstart\` does
      --url URL          the KMS (default https://localhost:<rpc.port>)
      --app-id HEX       20 bytes (default: the quick-start demo app)
      --compose-hash HEX 32 bytes (default: the demo app's compose hash)
      --instance-id HEX  20 bytes (default: random, a new instance each run)
      --os-image-hash HEX claim this OS image (32 bytes) while booting the simulated one: the
                         policy refuses it unless data/auth-config.json lists it in osImages;
                         then, with [core.image] verify = true, OS-image verification does
  -h, --help             print this help and exit
`

function hexArg(name: string, value: string | undefined, length: number): Buffer | undefined {
  if (value === undefined) return undefined
  const bytes = decodeHex(value.replace(/^0x/i, ''))
  if (bytes.length !== length) throw new Error(`--${name} must be ${length} bytes of hex`)
  return bytes
}

const fp = (b: Buffer) => createHash('sha256').update(b).digest('hex').slice(0, 16)

interface DemoOptions {
  config?: string
  quickstart: boolean
  url?: string
  appId?: string
  composeHash?: string
  instanceId?: string
  osImageHash?: string
}

function parseOptions(argv: string[]): DemoOptions | 'help' {
  const values = parseFlags(argv, {
    config: { type: 'string', short: 'c' },
    quickstart: { type: 'boolean', default: false },
    url: { type: 'string' },
    'app-id': { type: 'string' },
    'compose-hash': { type: 'string' },
    'instance-id': { type: 'string' },
    'os-image-hash': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  })
  if (values.help) return 'help'
  if ((values.config === undefined) === !values.quickstart) {
    throw new UsageError("exactly one of '-c, --config' and '--quickstart' is required")
  }
  return {
    config: values.config,
    quickstart: values.quickstart,
    url: values.url,
    appId: values['app-id'],
    composeHash: values['compose-hash'],
    instanceId: values['instance-id'],
    osImageHash: values['os-image-hash'],
  }
}

export async function runDemoGuest(argv: string[], io: CommandIo): Promise<number> {
  const values = parseCommandLine('demo-guest', DEMO_GUEST_USAGE, io, () => parseOptions(argv))
  if (typeof values === 'number') return values
  try {
    const config: KmsConfig = loadConfig({
      ...(values.config === undefined ? {} : { configFile: values.config }),
      quickstart: values.quickstart,
    })
    if (config.tee.backend !== 'simulator') {
      throw new Error(
        `demo-guest simulates a guest of the TEE simulator's mock platform, but this configuration has tee.backend = "${config.tee.backend}"`,
      )
    }
    const seed = Buffer.from(config.tee.simulator.seed, 'hex')
    const appId = hexArg('app-id', values.appId, 20) ?? DEMO_APP_ID
    const composeHash = hexArg('compose-hash', values.composeHash, 32) ?? DEMO_COMPOSE_HASH
    const instanceId =
      hexArg('instance-id', values.instanceId, 20) ??
      createHash('sha256')
        .update(String(process.hrtime.bigint()))
        .update(String(process.pid))
        .digest()
        .subarray(0, 20)
    const osImageHash = defaultOsImageHash(seed)
    const claimed = hexArg('os-image-hash', values.osImageHash, 32)
    const url = values.url ?? `https://localhost:${config.rpc.port}`
    const vmConfig =
      claimed === undefined ? simulatedVmConfig(seed, osImageHash) : claimingVmConfig(seed, claimed)

    // The guest trusts the same (mock) platform root the KMS was told to trust.
    const verifier = mockPlatformVerifier(seed)
    const guest = { seed, appId, composeHash, instanceId, osImageHash }
    const result = await requestSimulatedGuestKeys({ kmsUrl: url, guest, vmConfig, verifier })
    // What the KMS saw: the same BootInfo computed from our own attestation.
    const own = decodeVersionedAttestation(
      simulateGuestAttestation({ ...guest, reportData: Buffer.alloc(64) }),
    ).attestation
    const boot = buildBootInfo(await verifier.verify(own), { useBoottimeMr: false, vmConfig })
    const k = result.keys
    const out = [
      `KMS ${url}`,
      `  RPC certificate: chains to the KMS root CA, host name and kms:rpc usage checked`,
      result.kmsMrAggregated === null
        ? '  RPC certificate attestation: none (the KMS runs without a TEE)'
        : `  RPC certificate attestation: verified, KMS mr_aggregated ${result.kmsMrAggregated.toString('hex')}`,
      '',
      'Guest (simulated TDX CVM) presented an RA-TLS client certificate whose attestation says:',
      `  app_id         ${boot.appId.toString('hex')}`,
      `  compose_hash   ${boot.composeHash.toString('hex')}`,
      `  instance_id    ${boot.instanceId.toString('hex')}`,
      `  os_image_hash  ${boot.osImageHash.toString('hex')}`,
      `  device_id      ${boot.deviceId.toString('hex')}`,
      `  mr_aggregated  ${boot.mrAggregated.toString('hex')}`,
      `  tcb_status     ${boot.tcbStatus}`,
      '',
      'Allowed: the KMS verified that attestation (quote signature, TCB, RTMR3 replay, key binding)',
      "and its auth API's /bootAuth/app admitted this app id, compose hash, device and OS image.",
      config.core.image.verify
        ? 'OS image verified (lite): the KMS recomputed MRTD and RTMR0-2 from the measurement document in the vm_config (bound to os_image_hash) and found them in the quote.'
        : 'OS image NOT verified ([core.image] verify = false): os_image_hash is only what the guest claims.',
      '',
      'Released (fingerprints = first 8 bytes of SHA-256; the keys themselves stay here):',
      `  disk_crypt_key   sha256:${fp(k.diskCryptKey)}  (derived from app id + instance id)`,
      `  env_crypt_key    sha256:${fp(k.envCryptKey)}  X25519 public ${x25519PublicKey(k.envCryptKey).toString('hex')}`,
      `  k256_key         public ${nobleSecp256k1.publicKeyCompressed(k.k256Key).toString('hex')}`,
      `  k256_signature   ${k.k256Signature.toString('hex')}`,
      `  gateway_app_id   ${JSON.stringify(k.gatewayAppId)}`,
      `  os_image_hash    ${k.osImageHash.toString('hex')}`,
      '',
    ]
    io.stdout.write(out.join('\n'))
    return 0
  } catch (err) {
    io.stderr.write(`dstack-kms demo-guest: ${errorMessage(err)}\n`)
    return 1
  }
}
