// BootInfo is a pure function of a verified attestation. The fixture quotes of attestation.bin and
// tdx-lite cannot be DCAP-verified offline (no collateral for their dates ships), so the
// VerifiedAttestation is assembled here from the decoded fixture and its PPID/status, exactly as
// AttestationVerifier.verify would return it.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import { bootInfoToJson, buildBootInfo, type BootInfo } from '../src/attestation/boot-info.js'
import { parseQuote } from '../src/attestation/quote.js'
import type { Attestation } from '../src/attestation/types.js'
import type { VerifiedAttestation } from '../src/attestation/verify.js'
import { decodeVersionedAttestation } from '../src/attestation/versioned.js'
import { vmConfigOsImageHash } from '../src/attestation/vm-config.js'
import { KmsError } from '../src/errors.js'
import { readVectorFile, readVectorJson } from './helpers/crypto-vectors.js'

interface BootValues {
  mr_system: string
  mr_aggregated: string
}
interface FixtureValues {
  app_id: string
  compose_hash: string
  instance_id: string
  ppid: string
  device_id: string
  full: BootValues
  boot_time: BootValues & { rtmr3: string }
}
const vectors = readVectorJson<{
  attestation_bin: FixtureValues & {
    os_image_hash_v1_path: string
    os_image_hash_bootinfo_with_empty_vm_config: string
  }
  tdx_lite: FixtureValues & { os_image_hash: string }
}>('vectors.json')

function verified(
  a: Attestation,
  ppidHex: string,
  status = 'UpToDate',
  advisoryIds: string[] = [],
): VerifiedAttestation {
  assert.equal(a.quote.kind, 'dstack-tdx')
  if (a.quote.kind !== 'dstack-tdx') throw new Error('unreachable')
  return {
    attestation: a,
    variant: 'dstack-tdx',
    report: {
      status,
      advisoryIds,
      quote: parseQuote(a.quote.quote),
      ppid: Buffer.from(ppidHex, 'hex'),
    },
  }
}

const attestationBin = (): Attestation =>
  decodeVersionedAttestation(readVectorFile('attestation.bin')).attestation
const tdxLite = (): Attestation =>
  decodeVersionedAttestation(
    Buffer.from(
      readVectorJson<{ attestation: string }>('tdx-lite-attestation.json').attestation,
      'hex',
    ),
  ).attestation

function checkIdentity(b: BootInfo, v: FixtureValues): void {
  assert.equal(b.attestationMode, 'dstack-tdx')
  assert.equal(b.appId.toString('hex'), v.app_id)
  assert.equal(b.composeHash.toString('hex'), v.compose_hash)
  assert.equal(b.instanceId.toString('hex'), v.instance_id)
  assert.equal(b.deviceId.toString('hex'), v.device_id)
}

describe('buildBootInfo on attestation.bin', () => {
  const values = vectors.attestation_bin
  const v = verified(attestationBin(), values.ppid)

  it('full values (GetAppKey): mr_system, mr_aggregated, key-provider info', () => {
    const b = buildBootInfo(v, { useBoottimeMr: false, vmConfig: '' })
    checkIdentity(b, values)
    assert.equal(b.mrSystem.toString('hex'), values.full.mr_system)
    assert.equal(b.mrAggregated.toString('hex'), values.full.mr_aggregated)
    const kp = JSON.parse(b.keyProviderInfo.toString('utf8')) as { name: string; id: string }
    assert.equal(kp.name, 'kms')
    assert.match(kp.id, /^3059/)
    assert.equal(b.tcbStatus, 'UpToDate')
    assert.deepEqual(b.advisoryIds, [])
  })

  it('boot-time values (SignCert): RTMR3 up to boot-mr-done, no key-provider', () => {
    const b = buildBootInfo(v, { useBoottimeMr: true, vmConfig: '' })
    checkIdentity(b, values)
    assert.equal(b.mrSystem.toString('hex'), values.boot_time.mr_system)
    assert.equal(b.mrAggregated.toString('hex'), values.boot_time.mr_aggregated)
    assert.equal(b.keyProviderInfo.length, 0)
  })

  it('osImageHash: empty for the sys-config in `config`, the hash for a real vm_config', () => {
    const b = buildBootInfo(v, { useBoottimeMr: false, vmConfig: '' })
    assert.equal(b.osImageHash.toString('hex'), values.os_image_hash_bootinfo_with_empty_vm_config)
    const nested = (JSON.parse(v.attestation.config) as { vm_config: string }).vm_config
    const withVmConfig = buildBootInfo(v, { useBoottimeMr: false, vmConfig: nested })
    assert.equal(withVmConfig.osImageHash.toString('hex'), values.os_image_hash_v1_path)
    // the vm_config argument does not enter the measurements
    assert.ok(withVmConfig.mrAggregated.equals(b.mrAggregated))
  })

  it('the remembered os_image_hash: by exact text and unwrap flag, never a failure, a copy each time', () => {
    const sys = v.attestation.config
    const nested = (JSON.parse(sys) as { vm_config: string }).vm_config
    const empty = values.os_image_hash_bootinfo_with_empty_vm_config
    const hash = values.os_image_hash_v1_path
    const of = (text: string, unwrap: boolean) => vmConfigOsImageHash(text, unwrap).toString('hex')
    // one text, both flags, in both orders
    assert.equal(of(sys, false), empty)
    assert.equal(of(sys, true), hash)
    assert.equal(of(sys, false), empty)
    const mine = vmConfigOsImageHash(nested, false)
    mine.fill(0)
    assert.equal(of(nested, false), hash)
    // one character of difference is another text
    assert.ok(nested.includes(hash))
    const other = 'ab' + hash.slice(2)
    assert.equal(of(nested.replace(hash, other), false), other)
    assert.equal(of(nested, false), hash)
    for (let i = 0; i < 2; i++) {
      assert.throws(
        () => vmConfigOsImageHash('[1]', false),
        /^KmsError: Failed to parse vm config: /,
      )
    }
  })

  it('deviceId is SHA-256 of the PPID, never SHA-256("") for a verified report', () => {
    const b = buildBootInfo(v, { useBoottimeMr: false, vmConfig: '' })
    assert.equal(
      b.deviceId.toString('hex'),
      createHash('sha256').update(Buffer.from(values.ppid, 'hex')).digest('hex'),
    )
    assert.notEqual(b.deviceId.toString('hex'), createHash('sha256').digest('hex'))
  })
})

describe('buildBootInfo on tdx-lite', () => {
  const values = vectors.tdx_lite
  const v = verified(tdxLite(), values.ppid)

  it('full and boot-time values', () => {
    const full = buildBootInfo(v, { useBoottimeMr: false, vmConfig: '' })
    checkIdentity(full, values)
    assert.equal(full.mrSystem.toString('hex'), values.full.mr_system)
    assert.equal(full.mrAggregated.toString('hex'), values.full.mr_aggregated)
    assert.equal(full.osImageHash.toString('hex'), values.os_image_hash)
    const boot = buildBootInfo(v, { useBoottimeMr: true, vmConfig: '' })
    checkIdentity(boot, values)
    assert.equal(boot.mrSystem.toString('hex'), values.boot_time.mr_system)
    assert.equal(boot.mrAggregated.toString('hex'), values.boot_time.mr_aggregated)
  })
})

describe('buildBootInfo refusals', () => {
  it('app_id must be 20 bytes', () => {
    const a = attestationBin()
    a.runtimeEvents = a.runtimeEvents.filter((e) => e.event !== 'app-id')
    assert.throws(
      () => buildBootInfo(verified(a, '00'.repeat(16)), { useBoottimeMr: false, vmConfig: '' }),
      (e: unknown) =>
        e instanceof KmsError &&
        e.code === 'KMS_ERR_ATTESTATION' &&
        e.message === 'app_id must be 20 bytes',
    )
  })

  it('an app-id after system-ready does not count', () => {
    const a = attestationBin()
    const appId = a.runtimeEvents.find((e) => e.event === 'app-id')
    assert.ok(appId !== undefined)
    a.runtimeEvents = [...a.runtimeEvents.filter((e) => e.event !== 'app-id'), appId]
    assert.throws(
      () => buildBootInfo(verified(a, '00'.repeat(16)), { useBoottimeMr: false, vmConfig: '' }),
      /^KmsError: app_id must be 20 bytes$/,
    )
  })

  it('an unparsable vm_config carries upstream context', () => {
    const v = verified(attestationBin(), vectors.attestation_bin.ppid)
    assert.throws(
      () => buildBootInfo(v, { useBoottimeMr: false, vmConfig: '[1]' }),
      (e: unknown) => {
        assert.ok(e instanceof KmsError)
        assert.match(
          e.message,
          /^decode app info: Failed to decode os image hash: Failed to parse vm config: /,
        )
        return true
      },
    )
  })
})

describe('bootInfoToJson', () => {
  it('keeps the key order, sends both mode keys and lowercase hex', () => {
    const fill = (n: number, len: number) => Buffer.alloc(len, n)
    const b: BootInfo = {
      attestationMode: 'dstack-tdx',
      mrAggregated: fill(0x01, 32),
      osImageHash: fill(0x02, 32),
      mrSystem: fill(0x03, 32),
      appId: fill(0x04, 20),
      composeHash: fill(0x05, 32),
      instanceId: fill(0xab, 20),
      deviceId: fill(0x07, 32),
      keyProviderInfo: fill(0x08, 4),
      tcbStatus: 'UpToDate',
      advisoryIds: [],
    }
    const json = JSON.stringify(bootInfoToJson(b))
    assert.equal(
      json,
      '{"attestationMode":"dstack-tdx","teeVariant":"dstack-tdx",' +
        `"mrAggregated":"${'01'.repeat(32)}","osImageHash":"${'02'.repeat(32)}",` +
        `"mrSystem":"${'03'.repeat(32)}","appId":"${'04'.repeat(20)}",` +
        `"composeHash":"${'05'.repeat(32)}","instanceId":"${'ab'.repeat(20)}",` +
        `"deviceId":"${'07'.repeat(32)}","keyProviderInfo":"08080808",` +
        '"tcbStatus":"UpToDate","advisoryIds":[]}',
    )
  })

  it('carries the verifier status and advisories (SGX sample values) and empty fields as ""', () => {
    const values = vectors.attestation_bin
    const v = verified(attestationBin(), values.ppid, 'ConfigurationAndSWHardeningNeeded', [
      'INTEL-SA-00289',
      'INTEL-SA-00615',
    ])
    const json = bootInfoToJson(buildBootInfo(v, { useBoottimeMr: true, vmConfig: '' }))
    assert.deepEqual(Object.keys(json), [
      'attestationMode',
      'teeVariant',
      'mrAggregated',
      'osImageHash',
      'mrSystem',
      'appId',
      'composeHash',
      'instanceId',
      'deviceId',
      'keyProviderInfo',
      'tcbStatus',
      'advisoryIds',
    ])
    assert.equal(json['tcbStatus'], 'ConfigurationAndSWHardeningNeeded')
    assert.deepEqual(json['advisoryIds'], ['INTEL-SA-00289', 'INTEL-SA-00615'])
    assert.equal(json['osImageHash'], '')
    assert.equal(json['keyProviderInfo'], '')
    assert.equal(json['mrAggregated'], values.boot_time.mr_aggregated)
  })
})
