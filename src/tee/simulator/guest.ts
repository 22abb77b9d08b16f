// A simulated dstack *guest* (an app CVM) on the same mock platform as the simulated KMS: same
// mock PKI, PCK certificate, PPID and FMSPC, so one mock root and one collateral cover both. Its
// boot registers derive from (seed, os_image_hash) like the KMS's: a guest running the KMS's image
// (the default) has the KMS's MRTD and RTMR0–2, another image gives other values. RTMR3 holds the
// runtime events a real guest emits, in its order.
import { KmsError } from '../../errors.js'
import type { RuntimeEvent } from '../../attestation/types.js'
import {
  type CvmRegisters,
  cvmAttestation,
  cvmRegisters,
  defaultOsImageHash,
  simulatedCvm,
} from './cvm.js'
import { MOCK_PKI_NOT_AFTER, MOCK_PKI_NOT_BEFORE, assertSeed, deriveBytes } from './mock-pki.js'

export interface GuestOptions {
  seed: Buffer
  reportData: Buffer
  /** 20 bytes; default derived from the seed */
  appId?: Buffer
  /** 32 bytes; default derived from the seed */
  composeHash?: Buffer
  /** 20 bytes (empty allowed: `no_instance_id`); default derived from the seed */
  instanceId?: Buffer
  /** 32 bytes; default the simulated KMS's image (same MRTD/RTMR0–2 as the KMS) */
  osImageHash?: Buffer
  /** the KMS root CA SPKI DER for the `key-provider` event (`{"name":"kms",…}`); without it the
   * guest reports `{"name":"none","id":""}` */
  keyProviderId?: Buffer
  /** 32 bytes: emitted as `mr-kms` during the key fetch when given (full boot only) */
  mrKms?: Buffer
  /** continue past `boot-mr-done`: os-image-hash, key-provider, storage-fs, system-ready */
  fullBoot?: boolean
  /** unix seconds; refused outside the mock PKI's validity (2020–2100), default now */
  now?: number
  /** a debug TD (TUD.DEBUG set): verifiers must refuse it */
  debug?: boolean
}

function checked(v: Buffer, lengths: number[], what: string): Buffer {
  if (!lengths.includes(v.length)) {
    throw new KmsError(
      'KMS_ERR_TEE',
      `${what} must be ${lengths.join(' or ')} bytes, got ${v.length}`,
    )
  }
  return v
}

interface ResolvedGuest {
  osImageHash: Buffer
  events: RuntimeEvent[]
}

function resolveGuest(o: Omit<GuestOptions, 'reportData'>): ResolvedGuest {
  assertSeed(o.seed)
  const appId = checked(o.appId ?? deriveBytes(o.seed, 'guest-app-id', 20), [20], 'app_id')
  const composeHash = checked(
    o.composeHash ?? deriveBytes(o.seed, 'guest-compose-hash', 32),
    [32],
    'compose_hash',
  )
  const instanceId = checked(
    o.instanceId ?? deriveBytes(o.seed, 'guest-instance-id', 20),
    [0, 20],
    'instance_id',
  )
  const osImageHash = checked(o.osImageHash ?? defaultOsImageHash(o.seed), [32], 'os_image_hash')
  const ev = (event: string, payload: Buffer = Buffer.alloc(0)): RuntimeEvent => ({
    event,
    payload,
  })
  const events = [
    ev('system-preparing'),
    ev('app-id', appId),
    ev('compose-hash', composeHash),
    ev('instance-id', instanceId),
    ev('boot-mr-done'),
  ]
  if (o.fullBoot === true) {
    if (o.mrKms !== undefined) events.push(ev('mr-kms', checked(o.mrKms, [32], 'mr_kms')))
    const keyProvider =
      o.keyProviderId === undefined
        ? { name: 'none', id: '' }
        : { name: 'kms', id: o.keyProviderId.toString('hex') }
    events.push(
      ev('os-image-hash', osImageHash),
      ev('key-provider', Buffer.from(JSON.stringify(keyProvider))),
      ev('storage-fs', Buffer.from('ext4')),
      ev('system-ready'),
    )
  }
  return { osImageHash, events }
}

/** The quote registers of the guest (report_data aside), e.g. to compute mr_aggregated. */
export function simulatedGuestRegisters(o: Omit<GuestOptions, 'reportData'>): CvmRegisters {
  const g = resolveGuest(o)
  return cvmRegisters(simulatedCvm(o.seed, g.osImageHash), g.events)
}

/** The runtime events the guest emitted, in order. */
export function simulatedGuestRuntimeEvents(o: Omit<GuestOptions, 'reportData'>): RuntimeEvent[] {
  return resolveGuest(o).events
}

/** The guest's V0 VersionedAttestation for `reportData` (up to 64 bytes, zero-padded). */
export function simulateGuestAttestation(o: GuestOptions): Buffer {
  const now = o.now ?? Math.floor(Date.now() / 1000)
  if (now * 1000 < MOCK_PKI_NOT_BEFORE.getTime() || now * 1000 >= MOCK_PKI_NOT_AFTER.getTime()) {
    throw new KmsError(
      'KMS_ERR_TEE',
      `the mock platform's certificates are valid from ${MOCK_PKI_NOT_BEFORE.toISOString()} to ${MOCK_PKI_NOT_AFTER.toISOString()}; now = ${now} is outside`,
    )
  }
  const g = resolveGuest(o)
  return cvmAttestation(simulatedCvm(o.seed, g.osImageHash), g.events, o.reportData, {
    debug: o.debug === true,
  })
}
