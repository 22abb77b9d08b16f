// The legacy TDX measurement math against upstream `dstack-mr`'s own unit vectors (TD HOB
// witness, initrd addresses), the fixed RTMR event digests, the real lite boot of
// tdx-lite-getquote.json (RTMR0–2 rebuilt from its TD HOB layout, ACPI digests and image
// digests), and a byte-stream model of MRTD; plus the hardening against malformed inputs.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { acpiBlobs, findAcpiTable, qemuArgs, type QemuMachine } from '../src/image/legacy/acpi.js'
import {
  authenticodeSha384,
  measureCmdline,
  patchKernel,
  patchedKernelAuthenticode,
} from '../src/image/legacy/kernel.js'
import {
  computeMrtd,
  measureTdHob,
  parseTdvf,
  tdHobWitnessV1,
  type TdvfSection,
} from '../src/image/legacy/tdvf.js'
import {
  efiVariableDigest,
  encodeGuid,
  qemuOptions,
  rtmr0Log,
  rtmr1Log,
  sha384,
} from '../src/image/tdx-registers.js'
import { replayRtmr } from '../src/attestation/runtime-events.js'
import {
  FAKE_SECTIONS,
  KERNEL_LAYOUT,
  fakeKernel,
  fakeOvmf,
  modelMrtd,
} from './helpers/legacy-image.js'

const hex = (b: Buffer): string => b.toString('hex')
const vectors = JSON.parse(
  readFileSync(new URL('./fixtures/vectors/vectors.json', import.meta.url), 'utf8'),
) as {
  tdx_lite: {
    rtmr0: string
    rtmr1: string
    rtmr2: string
    acpi_digests: Record<'acpi-loader' | 'acpi-rsdp' | 'acpi-tables', string>
    lite_measurement: { cmdline_sha384: string; kernel_authenticode: string; initrd_sha384: string }
  }
}

const section = (memoryAddress: number, memoryDataSize: number, type: number): TdvfSection => ({
  dataOffset: 0,
  rawDataSize: 0,
  memoryAddress,
  memoryDataSize,
  type,
  attributes: 0,
})
// upstream tdvf.rs `td_hob_witness_v1_encodes_current_dstack_ranges_compactly`
const DSTACK_HOB_SECTIONS = [
  section(0x810000, 0x10000, 3),
  section(0x80b000, 0x2000, 3),
  section(0x809000, 0x2000, 2),
  section(0x800000, 0x6000, 3),
]

test('TD HOB witness v1 of the dstack TDVF layout is upstream’s vector', () => {
  assert.equal(hex(tdHobWitnessV1(DSTACK_HOB_SECTIONS)), '80100904000609020b021010')
})

test('TD HOB digest for 2 GiB equals RTMR0 event 0 of the real lite boot', () => {
  assert.equal(
    hex(measureTdHob(DSTACK_HOB_SECTIONS, 0x80000000)),
    '0b8772e5b0b41b83e6044a68397e02f49fb47066b4fbe4917ea2c45c64f323fdacbb37948f821ebaf8bc9c938ba8a749',
  )
  // memory above 2816 MiB splits the top range at 2 GiB / 4 GiB; the digest must move
  assert.notEqual(
    hex(measureTdHob(DSTACK_HOB_SECTIONS, 0xc0000000)),
    hex(measureTdHob(DSTACK_HOB_SECTIONS, 0x80000000)),
  )
})

test('fixed RTMR0 and RTMR1 event digests', () => {
  const g = '8BE4DF61-93CA-11D2-AA0D-00E098032B8C'
  const d = 'D719B2CB-3D3A-4596-A3BC-DAD00E67656F'
  assert.equal(hex(encodeGuid(g)), '61dfe48bca93d211aa0d00e098032b8c')
  const expected: Array<[string, string, string]> = [
    [
      g,
      'SecureBoot',
      '9dc3a1f80bcec915391dcda5ffbb15e7419f77eab462bbf72b42166fb70d50325e37b36f93537a863769bcf9bedae6fb',
    ],
    [
      g,
      'PK',
      '6f2e3cbc14f9def86980f5f66fd85e99d63e69a73014ed8a5633ce56eca5b64b692108c56110e22acadcef58c3250f1b',
    ],
    [
      g,
      'KEK',
      'd607c0efb41c0d757d69bca0615c3a9ac0b1db06c557d992e906c6b7dee40e0e031640c7bfd7bcd35844ef9edeadc6f9',
    ],
    [
      d,
      'db',
      '08a74f8963b337acb6c93682f934496373679dd26af1089cb4eaf0c30cf260a12e814856385ab8843e56a9acea19e127',
    ],
    [
      d,
      'dbx',
      '18cc6e01f0c6ea99aa23f8a280423e94ad81d96d0aeb5180504fc0f7a40cb3619dd39bd6a95ec1680a86ed6ab0f9828d',
    ],
  ]
  for (const [guid, name, digest] of expected) {
    assert.equal(hex(efiVariableDigest(guid, name)), digest, name)
  }
  const log = rtmr1Log(Buffer.alloc(48))
  assert.deepEqual(log.slice(1).map(hex), [
    '77a0dab2312b4e1e57a84d865a21e5b2ee8d677a21012ada819d0a98988078d3d740f6346bfe0abaa938ca20439a8d71',
    '394341b7182cd227c5c6b07ef8000cdfd86136c4292b8e576573ad7ed9ae41019f5818b4b971c9effc60e1ad9f1289f0',
    '214b0bef1379756011344877743fdc2a5382bac6e70362d624ccf3f654407c1b4badf7d8f9295dd3dabdef65b27677e0',
    '0a2e01c85deae718a530ad8c6d20a84009babe6c8989269e950d8cf440c6e997695e64d455c4174a652cd080f6230b74',
  ])
  const r0 = rtmr0Log(Buffer.alloc(48), {
    loader: Buffer.alloc(48),
    rsdp: Buffer.alloc(48),
    tables: Buffer.alloc(48),
  })
  assert.equal(r0.length, 13)
  assert.equal(
    hex(r0[1] as Buffer),
    '344bc51c980ba621aaa00da3ed7436f7d6e549197dfe699515dfa2c6583d95e6412af21c097d473155875ffd561d6790',
  )
  assert.equal(
    hex(r0[11] as Buffer),
    '1dd6f7b457ad880d840d41c961283bab688e94e4b59359ea45686581e90feccea3c624b1226113f824f315eb60ae0a7c',
  )
})

test('RTMR0–2 of the real 0.6.0 boot are reproduced from its image digests and ACPI events', () => {
  const v = vectors.tdx_lite
  const acpi = {
    loader: Buffer.from(v.acpi_digests['acpi-loader'], 'hex'),
    rsdp: Buffer.from(v.acpi_digests['acpi-rsdp'], 'hex'),
    tables: Buffer.from(v.acpi_digests['acpi-tables'], 'hex'),
  }
  const rtmr0 = replayRtmr(rtmr0Log(measureTdHob(DSTACK_HOB_SECTIONS, 0x80000000), acpi))
  assert.equal(hex(rtmr0), v.rtmr0)
  const m = v.lite_measurement
  assert.equal(hex(replayRtmr(rtmr1Log(Buffer.from(m.kernel_authenticode, 'hex')))), v.rtmr1)
  assert.equal(
    hex(replayRtmr([Buffer.from(m.cmdline_sha384, 'hex'), Buffer.from(m.initrd_sha384, 'hex')])),
    v.rtmr2,
  )
})

test('initrd addresses of upstream kernel.rs (protocol 2.12, 4 GiB-capable, 1 MiB initrd)', () => {
  const kernel = Buffer.alloc(0x1000)
  kernel.writeUInt16LE(0x020c, 0x206)
  kernel.writeUInt16LE(0x0040, 0x236)
  const addr = (mem: number): number =>
    patchKernel(kernel, 0x100000, mem, 0x28000).readUInt32LE(0x218)
  assert.equal(addr(0x7ffff000), 0x7fed6000)
  assert.equal(addr(0x80000000), 0x7fed7000)
  assert.equal(addr(0xaffff000), 0xafed6000)
  assert.equal(addr(0xb0000000), 0x7fed7000)
  assert.equal(addr(0xf0000000), 0x7fed7000)
  const patched = patchKernel(kernel, 0x100000, 0x80000000, 0x28000)
  assert.equal(patched[0x210], 0xb0)
  assert.equal(patched.readUInt32LE(0x228), 0x9a000) // LOADED_HIGH clear: low command-line address
  assert.equal(patched.readUInt32LE(0x21c), 0x100000)
  assert.equal(kernel[0x210], 0, 'the input is not modified')
})

test('kernel patch refuses what QEMU refuses', () => {
  assert.throws(() => patchKernel(Buffer.alloc(0xfff), 0, 0x80000000, 0x28000), /too short/)
  const old = Buffer.alloc(0x1000)
  old.writeUInt16LE(0x01ff, 0x206)
  assert.throws(() => patchKernel(old, 10, 0x80000000, 0x28000), /too old for ramdisk/)
  const k = fakeKernel()
  assert.throws(() => patchKernel(k, 0x40000000, 0x40000000, 0x28000), /initrd is too large/)
  assert.throws(() => patchKernel(k, 1, 0x20000, 0x28000), /exceeds available memory/)
})

test('Authenticode skips the checksum and certificate directory, hashes sections, pads to 8', () => {
  const k = fakeKernel()
  const base = authenticodeSha384(k)
  const L = KERNEL_LAYOUT
  const changed = (mutate: (b: Buffer) => void): boolean => {
    const b = Buffer.from(k)
    mutate(b)
    return !authenticodeSha384(b).equals(base)
  }
  assert.equal(
    changed((b) => b.writeUInt32LE(0xdeadbeef, L.checksum)),
    false,
  )
  assert.equal(
    changed((b) => b.writeUInt32LE(0, L.certDir + 4)),
    false,
  )
  assert.equal(
    changed((b) => (b[0x1800] = (b[0x1800] ?? 0) ^ 1)),
    true,
  )
  assert.equal(
    changed((b) => (b[0x10] = 1)),
    true,
  )
  // bytes after the last section are not hashed without a certificate table
  assert.equal(
    changed((b) => (b[0x2001] = (b[0x2001] ?? 0) ^ 1)),
    false,
  )
  // the model: headers minus the two holes, sections by pointer, zero padding to 8 bytes
  const model = createHash('sha384')
    .update(k.subarray(0, L.checksum))
    .update(k.subarray(L.checksum + 4, L.certDir))
    .update(k.subarray(L.certDir + 8, L.sizeOfHeaders))
    .update(k.subarray(0x200, 0x1000))
    .update(k.subarray(0x1000, 0x2000))
    .update(Buffer.alloc(8 - (k.length % 8)))
    .digest()
  assert.equal(hex(base), hex(model))
  const short = Buffer.alloc(0x40)
  short.writeUInt32LE(0x100, 0x3c)
  assert.throws(() => authenticodeSha384(short), /truncated \(PE signature\)/)
  assert.throws(() => authenticodeSha384(k.subarray(0, 0x80)), /truncated/)
  const bad = Buffer.from(k)
  bad.writeUInt32LE(0, L.lfanew)
  assert.throws(() => authenticodeSha384(bad), /Invalid PE signature/)
  const badHeaders = Buffer.from(k)
  badHeaders.writeUInt32LE(0x10, L.optionalHeader + 60)
  assert.throws(() => authenticodeSha384(badHeaders), /inconsistent/)
  // the patched digest is the same for 2 GiB and for every size ≥ 2816 MiB, not below
  const at = (mem: number): string => hex(patchedKernelAuthenticode(k, 0x3456, mem))
  assert.equal(at(0x80000000), at(0xb0000000))
  assert.equal(at(0x100000000), at(0xb0000000))
  assert.notEqual(at(0x7ffff000), at(0x80000000))
})

test('TDVF metadata of the synthetic firmware parses; MRTD matches the byte-stream model', () => {
  const fw = fakeOvmf()
  const sections = parseTdvf(fw)
  assert.deepEqual(
    sections,
    FAKE_SECTIONS.map((s) => ({ ...s })),
  )
  assert.equal(hex(tdHobWitnessV1(sections)), '80100904000609020b021010')
  const single = computeMrtd(fw, sections, false)
  const two = computeMrtd(fw, sections, true)
  assert.equal(hex(single), hex(modelMrtd(fw, FAKE_SECTIONS, false)))
  assert.equal(hex(two), hex(modelMrtd(fw, FAKE_SECTIONS, true)))
  assert.notEqual(hex(single), hex(two))
  // a firmware byte inside an extended section changes MRTD; one outside does not
  const flipped = Buffer.from(fw)
  flipped[0x100] = (flipped[0x100] ?? 0) ^ 1
  assert.notEqual(hex(computeMrtd(flipped, sections, true)), hex(two))
  const outside = Buffer.from(fw)
  outside[0x3800] = (outside[0x3800] ?? 0) ^ 1
  assert.equal(hex(computeMrtd(outside, sections, true)), hex(two))
})

test('malformed TDVF metadata fails with a clear error, never a hang', () => {
  assert.throws(() => parseTdvf(fakeOvmf({ otherEntryLength: 0 })), /zero-length GUID table entry/)
  assert.throws(() => parseTdvf(fakeOvmf({ otherEntryLength: 0xffff })), /Invalid entry length/)
  const noFooter = fakeOvmf()
  noFooter.writeUInt8((noFooter.at(-40) ?? 0) ^ 1, noFooter.length - 40)
  assert.throws(() => parseTdvf(noFooter), /Invalid footer GUID/)
  assert.throws(() => parseTdvf(Buffer.alloc(20)), /too small/)
  const unaligned = fakeOvmf({ sections: [{ ...section(0x800100, 0x1000, 3) }] })
  assert.throws(() => parseTdvf(unaligned), /not aligned/)
  const past = [
    {
      dataOffset: 0xf000,
      rawDataSize: 0x2000,
      memoryAddress: 0,
      memoryDataSize: 0x2000,
      type: 0,
      attributes: 1,
    },
  ]
  const pastFw = fakeOvmf({ sections: past })
  assert.throws(() => computeMrtd(pastFw, parseTdvf(pastFw), true), /past the end of the firmware/)
  const huge = [section(0, 0x1000000000, 3)]
  const hugeFw = fakeOvmf({ sections: huge })
  assert.throws(() => computeMrtd(hugeFw, parseTdvf(hugeFw), true), /refusing to measure/)
  const tooMany = fakeOvmf()
  tooMany.writeUInt32LE(0xffffff, 0x8000 + 12)
  assert.throws(() => parseTdvf(tooMany), /truncated/)
  const badVersion = fakeOvmf()
  badVersion.writeUInt32LE(2, 0x8000 + 8)
  assert.throws(() => parseTdvf(badVersion), /Unsupported TDVF version/)
})

test('QEMU version options: 8.x two-pass with PIC, others neither; overrides pass through', () => {
  assert.deepEqual(qemuOptions({ qemuVersion: '8.2.2', pic: null, qemuSinglePassAddPages: null }), {
    version: [8, 2, 2],
    pic: true,
    twoPassAddPages: true,
  })
  assert.deepEqual(qemuOptions({ qemuVersion: null, pic: null, qemuSinglePassAddPages: null }), {
    version: [9, 1, 0],
    pic: false,
    twoPassAddPages: false,
  })
  assert.equal(
    qemuOptions({ qemuVersion: '9.2.1', pic: true, qemuSinglePassAddPages: true }).twoPassAddPages,
    true,
  )
  assert.equal(
    qemuOptions({ qemuVersion: '8.2.2', pic: false, qemuSinglePassAddPages: false }).pic,
    false,
  )
  assert.throws(
    () => qemuOptions({ qemuVersion: '9.2.1-x', pic: null, qemuSinglePassAddPages: null }),
    /Failed to parse QEMU version/,
  )
  assert.throws(
    () => qemuOptions({ qemuVersion: '9.2', pic: null, qemuSinglePassAddPages: null }),
    /Failed to parse QEMU version/,
  )
  assert.throws(
    () => qemuOptions({ qemuVersion: '7.2.0', pic: null, qemuSinglePassAddPages: null }),
    /Unsupported QEMU version/,
  )
})

const machine = (over: Partial<QemuMachine> = {}): QemuMachine => ({
  cpuCount: 1,
  memorySize: 0x80000000,
  firmwarePath: '/img/ovmf.fd',
  kernelPath: '/img/bzImage',
  pic: false,
  version: [9, 1, 0],
  hugepages: false,
  numGpus: 0,
  numNvswitches: 0,
  numNics: 1,
  numVerityVolumes: 0,
  hotplugOff: false,
  pciHole64Size: 0n,
  hostShareMode: '',
  swtpm: false,
  ...over,
})

test('QEMU arguments of the default machine, in upstream order', () => {
  assert.equal(
    qemuArgs(machine()).join(' '),
    '-cpu qemu64 -smp 1 -m 2048M -nographic -nodefaults -serial stdio -bios /img/ovmf.fd ' +
      '-kernel /img/bzImage -initrd /bin/sh -drive file=/bin/sh,if=none,id=hd1,format=raw,readonly=on ' +
      '-device virtio-blk-pci,drive=hd1 -netdev user,id=net0 -device virtio-net-pci,netdev=net0 ' +
      '-object tdx-guest,id=tdx -device vhost-vsock-pci,guest-cid=3 ' +
      '-virtfs local,path=/bin,mount_tag=host-shared,readonly=on,security_model=none,id=virtfs0 ' +
      '-drive file=/bin/sh,if=none,id=hd0,format=raw,readonly=on -device virtio-blk-pci,drive=hd0 ' +
      '-machine q35,kernel-irqchip=split,confidential-guest-support=tdx,hpet=off,smm=off,pic=off',
  )
  const full = qemuArgs(
    machine({
      cpuCount: 4,
      hugepages: true,
      numGpus: 1,
      numNvswitches: 1,
      hotplugOff: true,
      pciHole64Size: 0x10000000000n,
      hostShareMode: 'vhd',
      numNics: 2,
      numVerityVolumes: 1,
      pic: true,
    }),
  ).join(' ')
  for (const part of [
    '-drive file=/bin/sh,if=none,id=vol0,format=raw,readonly=on -device virtio-blk-pci,drive=vol0 -netdev user,id=net0',
    '-netdev user,id=net1 -device virtio-net-pci,netdev=net1',
    '-drive file=/bin/sh,if=none,id=hd2,format=raw,readonly=on -device virtio-blk-pci,drive=hd2',
    'smm=off,pic=on -numa node,nodeid=0,cpus=0-3,memdev=mem0 -object memory-backend-file,id=mem0,size=2048M,mem-path=/dev/hugepages,share=on,prealloc=no,host-nodes=0,policy=bind',
    '-object iommufd,id=iommufd0 -device pxb-pcie,id=pcie.node0,bus=pcie.0,addr=10,numa_node=0,bus_nr=5 -device pcie-root-port,id=pci.0,bus=pcie.node0,chassis=0 -device vfio-pci,host=00:00.0,bus=pci.0,iommufd=iommufd0',
    '-device pcie-root-port,id=pci.1,bus=pcie.0,chassis=1 -device vfio-pci,host=00:00.0,bus=pci.1,iommufd=iommufd0',
    '-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off -global q35-pcihost.pci-hole64-size=0x10000000000',
  ]) {
    assert.ok(full.includes(part), part)
  }
  assert.throws(() => qemuArgs(machine({ cpuCount: 0 })), /cpuCount must be greater than 0/)
  assert.throws(() => qemuArgs(machine({ swtpm: true })), /swtpm measurement is not supported/)
  assert.throws(() => qemuArgs(machine({ hostShareMode: 'nfs' })), /Invalid shared disk mode: nfs/)
})

function acpiTable(sig: string, len: number): Buffer {
  const t = Buffer.alloc(len)
  t.write(sig, 0, 'latin1')
  t.writeUInt32LE(len, 4)
  return t
}

test('RSDP and loader script built around the table offsets', () => {
  const tables = Buffer.concat(
    (
      [
        ['FACS', 64],
        ['DSDT', 100],
        ['FACP', 244],
        ['APIC', 44],
        ['MCFG', 60],
        ['WAET', 40],
        ['RSDT', 52],
      ] as Array<[string, number]>
    ).map(([s, l]) => acpiTable(s, l)),
  )
  assert.deepEqual(findAcpiTable(tables, 'FACP'), { off: 164, csum: 173, len: 244 })
  const { rsdp, loader } = acpiBlobs(tables)
  const rsdtOff = 64 + 100 + 244 + 44 + 60 + 40
  assert.equal(
    hex(rsdp),
    hex(
      Buffer.concat([
        Buffer.from('RSD PTR \0BOCHS \0', 'latin1'),
        Buffer.from([rsdtOff & 0xff, rsdtOff >> 8, 0, 0]),
      ]),
    ),
  )
  assert.equal(loader.length, 4096)
  assert.equal(
    loader.subarray(17 * 128).every((b) => b === 0),
    true,
  )
  // command 0: ALLOCATE etc/acpi/rsdp, align 16, zone FSEG
  assert.equal(loader.readUInt32LE(0), 1)
  assert.equal(loader.subarray(4, 17).toString('latin1'), 'etc/acpi/rsdp')
  assert.equal(loader.readUInt32LE(60), 16)
  assert.equal(loader[64], 2)
  // command 2: ADD_CHECKSUM of the DSDT
  const c2 = loader.subarray(256, 384)
  assert.deepEqual(
    [c2.readUInt32LE(0), c2.readUInt32LE(60), c2.readUInt32LE(64), c2.readUInt32LE(68)],
    [3, 73, 64, 100],
  )
  // command 5: ADD_POINTER FACP+140 (X_DSDT), 8 bytes
  const c5 = loader.subarray(5 * 128, 6 * 128)
  assert.deepEqual([c5.readUInt32LE(0), c5.readUInt32LE(116), c5[120]], [2, 164 + 140, 8])
  // last command: checksum of the RSDP at byte 8 over 20 bytes
  const c16 = loader.subarray(16 * 128, 17 * 128)
  assert.deepEqual(
    [c16.readUInt32LE(0), c16.readUInt32LE(60), c16.readUInt32LE(64), c16.readUInt32LE(68)],
    [3, 8, 0, 20],
  )
  assert.throws(() => acpiBlobs(tables.subarray(0, 64 + 100)), /Table not found: FACP/)
  const zero = Buffer.from(tables)
  zero.writeUInt32LE(0, 4)
  assert.throws(() => findAcpiTable(zero, 'RSDT'), /zero length at offset 0/)
})

test('RTMR2 event 0 is the UTF-16LE command line with a NUL terminator', () => {
  assert.equal(
    hex(measureCmdline('a b')),
    hex(sha384(Buffer.from([0x61, 0, 0x20, 0, 0x62, 0, 0, 0]))),
  )
})
