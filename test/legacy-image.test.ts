// The legacy image pipeline end to end on loopback: a real HTTP server serves synthetic
// `mr_<hash>.tar.gz` archives, the verifier downloads, checks, installs and measures them, and
// RTMR0 comes from a real child process (a stub table generator). Covers the cache (hit without
// network, clear, concurrent clear), caps and timeouts, hostile archives and bad manifests.
import assert from 'node:assert/strict'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { gzipSync } from 'node:zlib'
import { createHash } from 'node:crypto'
import pino from 'pino'
import {
  createLegacyVerifier,
  type LegacyVerifierOptions,
  type LegacyVmParams,
} from '../src/image/legacy/index.js'
import { sha384 } from '../src/image/tdx-registers.js'
import { replayRtmr } from '../src/attestation/runtime-events.js'
import { measureCmdline } from '../src/image/legacy/kernel.js'
import { parseVmConfig } from '../src/image/vm-config.js'
import {
  FAKE_SECTIONS,
  imageArchive,
  modelMrtd,
  syntheticImage,
  tar,
  type SyntheticImage,
} from './helpers/legacy-image.js'
import { captureLogger } from './helpers/capture-logger.js'
import { mountTmpfs } from './helpers/small-tmpfs.js'

const STUB = new URL('./fixtures/acpi-tables-stub.mjs', import.meta.url).pathname

interface Route {
  body: Buffer
  status?: number
  /** send the headers and this many bytes, then stall */
  stallAfter?: number
  /** chunked, without Content-Length */
  noLength?: boolean
}

let server: Server
let base = ''
const routes = new Map<string, Route>()
const hits = new Map<string, number>()
const work = mkdtempSync(join(tmpdir(), 'legacy-image-'))

before(async () => {
  server = createServer((req, res) => {
    const path = req.url ?? ''
    hits.set(path, (hits.get(path) ?? 0) + 1)
    const route = routes.get(path)
    if (route === undefined) {
      res.writeHead(404).end('not found')
      return
    }
    res.writeHead(route.status ?? 200, {
      'content-type': 'application/gzip',
      ...(route.noLength === true ? {} : { 'content-length': route.body.length }),
    })
    if (route.stallAfter !== undefined) {
      res.write(route.body.subarray(0, route.stallAfter))
      return // never ends; the client's timeout must fire
    }
    res.end(route.body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

after(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  rmSync(work, { recursive: true, force: true })
})

const pathOf = (hex: string): string => `/mr_${hex}.tar.gz`
const serve = (hex: string, route: Route): void => {
  routes.set(pathOf(hex), route)
}
const hitsOf = (hex: string): number => hits.get(pathOf(hex)) ?? 0

let dirs = 0
function verifier(over: Partial<LegacyVerifierOptions> = {}) {
  const imageCacheDir = join(work, `cache-${dirs++}`)
  const { logger: log, lines } = captureLogger()
  const opts: LegacyVerifierOptions = {
    imageCacheDir,
    downloadUrl: `${base}/mr_{OS_IMAGE_HASH}.tar.gz`,
    maxImageBytes: 4 << 20,
    downloadTimeoutMs: 5000,
    acpiTablesCommand: [process.execPath, STUB],
    acpiTimeoutMs: 10_000,
    legacyRtmr0: 'require',
    log,
    ...over,
  }
  return { v: createLegacyVerifier(opts), opts, lines, imageCacheDir }
}

const VM: LegacyVmParams = {
  ...parseVmConfig('{}'),
  cpuCount: 2,
  memorySize: 2n << 30n,
  qemuVersion: '8.2.2',
}

function published(
  opts: Parameters<typeof syntheticImage>[0] = {},
  archive: Parameters<typeof imageArchive>[1] = {},
): SyntheticImage {
  const img = syntheticImage(opts)
  serve(img.hex, { body: imageArchive(img, archive) })
  return img
}

test('cold download, install and measurement; warm hit without network', async () => {
  const img = published({ seed: 11 })
  const { v, imageCacheDir } = verifier()
  const { expected, skipped } = await v.expectedRegisters(img.osImageHash, VM)
  assert.deepEqual(skipped, [])
  assert.equal(hitsOf(img.hex), 1)
  // MRTD: qemu 8.2.2 adds pages in two passes
  assert.equal(
    expected.mrtd.toString('hex'),
    modelMrtd(img.firmware, FAKE_SECTIONS, true).toString('hex'),
  )
  const rtmr2 = replayRtmr([measureCmdline(`${img.cmdline} initrd=initrd`), sha384(img.initrd)])
  assert.equal(expected.rtmr2.toString('hex'), rtmr2.toString('hex'))
  assert.equal(expected.rtmr1.length, 48)
  assert.ok(expected.rtmr0 !== null && expected.rtmr0.length === 48)
  // installed: exactly the listed files plus sha256sum.txt; digest.txt (unlisted) pruned
  assert.deepEqual(readdirSync(join(imageCacheDir, img.hex)).sort(), [
    'bzImage',
    'initramfs.cpio.gz',
    'metadata.json',
    'ovmf.fd',
    'sha256sum.txt',
  ])
  assert.deepEqual(readdirSync(join(imageCacheDir, 'tmp')), [])

  // a fresh verifier on the same directory, with the network gone, gives the same registers
  const offline = createLegacyVerifier({
    imageCacheDir,
    downloadUrl: 'http://127.0.0.1:9/mr_{OS_IMAGE_HASH}.tar.gz',
    maxImageBytes: 1,
    downloadTimeoutMs: 100,
    acpiTablesCommand: [process.execPath, STUB],
    acpiTimeoutMs: 10_000,
    legacyRtmr0: 'require',
    log: pino({ level: 'silent' }),
  })
  const again = await offline.expectedRegisters(img.osImageHash, VM)
  assert.deepEqual(again.expected, expected)
  assert.equal(hitsOf(img.hex), 1)

  // the QEMU version picks single-pass MRTD; memory moves RTMR0 (TD HOB) and, below 2816 MiB, RTMR1
  const q9 = await v.expectedRegisters(img.osImageHash, { ...VM, qemuVersion: '9.2.1' })
  assert.equal(
    q9.expected.mrtd.toString('hex'),
    modelMrtd(img.firmware, FAKE_SECTIONS, false).toString('hex'),
  )
  const small = await v.expectedRegisters(img.osImageHash, { ...VM, memorySize: 1n << 30n })
  assert.notDeepEqual(small.expected.rtmr1, expected.rtmr1)
  assert.notDeepEqual(small.expected.rtmr0, expected.rtmr0)
  assert.deepEqual(small.expected.rtmr2, expected.rtmr2)
  const big = await v.expectedRegisters(img.osImageHash, { ...VM, memorySize: 4n << 30n })
  assert.deepEqual(
    big.expected.rtmr1,
    expected.rtmr1,
    '2 GiB and ≥ 2816 MiB patch the kernel alike',
  )
  // machine options reach the table generator
  const cpus = await v.expectedRegisters(img.osImageHash, { ...VM, cpuCount: 3 })
  assert.notDeepEqual(cpus.expected.rtmr0, expected.rtmr0)
  assert.deepEqual(cpus.expected.rtmr1, expected.rtmr1)
  assert.equal(hitsOf(img.hex), 1)
})

test('./-prefixed and multi-member gzip archives install like plain ones', async () => {
  const img = syntheticImage({ seed: 12 })
  serve(img.hex, { body: imageArchive(img, { dotSlash: true, members: 3 }) })
  const { v, imageCacheDir } = verifier()
  const r = await v.expectedRegisters(img.osImageHash, VM)
  assert.equal(
    r.expected.mrtd.toString('hex'),
    modelMrtd(img.firmware, FAKE_SECTIONS, true).toString('hex'),
  )
  assert.deepEqual(readFileSync(join(imageCacheDir, img.hex, 'initramfs.cpio.gz')), img.initrd)
})

test('single flight: concurrent verifications of one image download it once', async () => {
  const img = published({ seed: 13 })
  const { v } = verifier()
  const results = await Promise.all(
    [1, 2, 3, 4].map(() => v.expectedRegisters(img.osImageHash, VM)),
  )
  assert.equal(hitsOf(img.hex), 1)
  for (const r of results) assert.deepEqual(r.expected, results[0]?.expected)
})

test('ACPI tables command runs once per machine shape and image', async () => {
  const img = published({ seed: 14 })
  const counter = join(work, 'acpi-count')
  const { v } = verifier({ acpiTablesCommand: [process.execPath, STUB, '--count', counter] })
  await v.expectedRegisters(img.osImageHash, VM)
  await v.expectedRegisters(img.osImageHash, VM)
  await v.expectedRegisters(img.osImageHash, { ...VM, cpuCount: 8 })
  assert.equal(readFileSync(counter, 'utf8'), 'run\nrun\n')
})

test('size cap: refused by Content-Length and by the unpacked size; nothing installed', async () => {
  const img = published({ seed: 15, initrdBytes: 300_000 })
  const archiveSize = (routes.get(pathOf(img.hex)) as Route).body.length
  const { v, imageCacheDir } = verifier({ maxImageBytes: archiveSize - 1 })
  await assert.rejects(
    v.expectedRegisters(img.osImageHash, VM),
    /larger than \d+ bytes \(Content-Length/,
  )
  assert.equal(existsSync(join(imageCacheDir, img.hex)), false)
  // compressible content: the archive fits, the unpacked tar does not
  const chunked = syntheticImage({ seed: 17, initrdBytes: 300_000 })
  const chunkedBody = imageArchive(chunked)
  serve(chunked.hex, { body: chunkedBody, noLength: true })
  const streamed = verifier({ maxImageBytes: chunkedBody.length - 1 })
  await assert.rejects(
    streamed.v.expectedRegisters(chunked.osImageHash, VM),
    /: image archive is larger than \d+ bytes$/,
  )
  const bomb = syntheticImage({ seed: 16 })
  const padded = { ...bomb, files: new Map(bomb.files) }
  padded.files.set('padding.bin', Buffer.alloc(3 << 20))
  serve(bomb.hex, { body: imageArchive(padded) })
  const capped = verifier({ maxImageBytes: 1 << 20 })
  await assert.rejects(
    capped.v.expectedRegisters(bomb.osImageHash, VM),
    /unpacked image archive is larger than 1048576 bytes/,
  )
  assert.equal(existsSync(join(capped.imageCacheDir, bomb.hex)), false)
  assert.deepEqual(readdirSync(join(capped.imageCacheDir, 'tmp')), [])
})

test('a full cache disk fails the download with its reason; nothing installed; the next try after space returns succeeds', async (t) => {
  const img = published({ seed: 19, initrdBytes: 600_000 })
  const { v, imageCacheDir } = verifier()
  const fs = mountTmpfs(imageCacheDir, 256)
  t.after(() => fs.unmount())
  await assert.rejects(v.expectedRegisters(img.osImageHash, VM), {
    message: /^Failed to download image [0-9a-f]{64}: ENOSPC: no space left on device/,
  })
  assert.equal(existsSync(join(imageCacheDir, img.hex)), false, 'no half-installed image')
  assert.deepEqual(readdirSync(join(imageCacheDir, 'tmp')), [], 'staging cleaned up')
  fs.remount('size=16m')
  // the failure is remembered for a short while (no tight retry loop); a fresh verifier on the
  // same cache directory is the next try
  const later = createLegacyVerifier({ ...verifier().opts, imageCacheDir })
  const r = await later.expectedRegisters(img.osImageHash, VM)
  assert.equal(r.expected.mrtd.length, 48)
  assert.equal(existsSync(join(imageCacheDir, img.hex)), true)
})

test('hostile archive entries are refused and nothing lands outside the target', async () => {
  const absolute = join(work, 'absolute-x')
  const cases: Array<[string, Parameters<typeof tar>[0][number], RegExp]> = [
    // staging is <cache>/tmp/tmp-download-*/extracted: ../../x is <cache>/tmp/x, ../../../x <cache>/x
    [
      'parent',
      { name: '../../../x', data: Buffer.from('owned') },
      /unsafe path \.\.\/\.\.\/\.\.\/x/,
    ],
    ['grandparent', { name: '../../x', data: Buffer.from('owned') }, /unsafe path/],
    ['nested parent', { name: 'a/../../../../x', data: Buffer.from('owned') }, /unsafe path/],
    ['absolute', { name: absolute, data: Buffer.from('owned') }, /unsafe path \//],
    ['symlink', { name: 'ovmf.fd', type: '2', linkname: '/etc/passwd' }, /symbolic link/],
    ['hard link', { name: 'link', type: '1', linkname: '/etc/passwd' }, /hard link/],
    ['device', { name: 'dev', type: '3' }, /device/],
  ]
  for (const [label, entry, why] of cases) {
    const img = syntheticImage({ seed: 20 + cases.findIndex((c) => c[0] === label) })
    const entries = [entry, ...[...img.files].map(([name, data]) => ({ name, data }))]
    serve(img.hex, { body: gzipSync(tar(entries)) })
    const { v, imageCacheDir } = verifier()
    await assert.rejects(v.expectedRegisters(img.osImageHash, VM), (err: Error) => {
      assert.match(err.message, why, label)
      assert.match(err.message, /^Failed to download image [0-9a-f]{64}: /)
      return true
    })
    assert.equal(existsSync(join(imageCacheDir, img.hex)), false, label)
    assert.equal(existsSync(join(imageCacheDir, 'x')), false, label)
    assert.equal(existsSync(join(imageCacheDir, 'tmp', 'x')), false, label)
    assert.deepEqual(readdirSync(join(imageCacheDir, 'tmp')), [], label)
  }
  assert.equal(existsSync(absolute), false)
})

test('truncated and corrupt archives are refused', async () => {
  const img = syntheticImage({ seed: 30 })
  const raw = tar([...img.files].map(([name, data]) => ({ name, data })))
  serve(img.hex, { body: gzipSync(raw.subarray(0, 5000)) })
  const a = verifier()
  await assert.rejects(a.v.expectedRegisters(img.osImageHash, VM), /image archive is truncated/)
  const corrupt = Buffer.from(raw)
  corrupt[10] = 0x41
  serve(img.hex, { body: gzipSync(corrupt) })
  const b = verifier()
  await assert.rejects(b.v.expectedRegisters(img.osImageHash, VM), /corrupt header checksum/)
  serve(img.hex, { body: Buffer.from('not gzip at all') })
  const c = verifier()
  await assert.rejects(
    c.v.expectedRegisters(img.osImageHash, VM),
    /Failed to download image [0-9a-f]{64}: .*header/,
  )
})

test('wrong sha256sum.txt: a file that does not match, a missing file, a foreign image hash', async () => {
  const img = syntheticImage({ seed: 31 })
  const tampered = new Map(img.files)
  tampered.set('initramfs.cpio.gz', Buffer.from('another initrd'))
  serve(img.hex, { body: gzipSync(tar([...tampered].map(([name, data]) => ({ name, data })))) })
  const a = verifier()
  await assert.rejects(
    a.v.expectedRegisters(img.osImageHash, VM),
    /Checksum verification failed: initramfs\.cpio\.gz: FAILED/,
  )

  const missing = new Map(img.files)
  missing.delete('bzImage')
  serve(img.hex, { body: gzipSync(tar([...missing].map(([name, data]) => ({ name, data })))) })
  const b = verifier()
  await assert.rejects(
    b.v.expectedRegisters(img.osImageHash, VM),
    /Checksum verification failed: bzImage: No such file/,
  )

  // a valid image served under another image's hash
  const other = syntheticImage({ seed: 32 })
  serve(img.hex, { body: imageArchive(other) })
  const c = verifier()
  await assert.rejects(
    c.v.expectedRegisters(img.osImageHash, VM),
    /os_image_hash does not match sha256\(sha256sum\.txt\)/,
  )
  assert.equal(existsSync(join(c.imageCacheDir, img.hex)), false)

  const unsafe = syntheticImage({ seed: 33 })
  const files = new Map(unsafe.files)
  const list = `${'00'.repeat(32)}  ../etc/passwd\n`
  files.set('sha256sum.txt', Buffer.from(list))
  const hex = createHash('sha256').update(list).digest('hex')
  serve(hex, { body: gzipSync(tar([...files].map(([name, data]) => ({ name, data })))) })
  const d = verifier()
  await assert.rejects(
    d.v.expectedRegisters(Buffer.from(hex, 'hex'), VM),
    /image manifest line 1 has an unsafe path/,
  )
})

test('wrong metadata.json: missing field, non-bare or unlisted file names, unknown OVMF variant', async () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [
      { bios: 'ovmf.fd', kernel: 'bzImage', initrd: 'initramfs.cpio.gz' },
      /Failed to parse image metadata: missing field `cmdline`/,
    ],
    [
      { bios: '../ovmf.fd', kernel: 'bzImage', initrd: 'initramfs.cpio.gz', cmdline: 'x' },
      /`bios` is not a bare file name/,
    ],
    [
      { bios: 'ovmf.fd', kernel: 'vmlinuz', initrd: 'initramfs.cpio.gz', cmdline: 'x' },
      /`kernel` \(vmlinuz\) is not in sha256sum\.txt/,
    ],
    [
      {
        bios: 'ovmf.fd',
        kernel: 'bzImage',
        initrd: 'initramfs.cpio.gz',
        cmdline: 'x',
        ovmf_variant: 'stable202505',
      },
      /unknown variant `stable202505`/,
    ],
  ]
  let seed = 40
  for (const [metadata, why] of cases) {
    const img = published({ seed: seed++, metadata })
    const { v } = verifier()
    await assert.rejects(v.expectedRegisters(img.osImageHash, VM), why)
  }
})

test('HTTP errors and download timeout; the failure is cached, not retried in a loop', async () => {
  const img = syntheticImage({ seed: 50 })
  serve(img.hex, { body: Buffer.from('boom'), status: 500 })
  const { v } = verifier({ negativeCacheMs: 60_000 })
  await assert.rejects(
    v.expectedRegisters(img.osImageHash, VM),
    /Failed to download image: HTTP status 500 Internal Server Error, url: http:\/\/127\.0\.0\.1:\d+\/mr_/,
  )
  await assert.rejects(
    v.expectedRegisters(img.osImageHash, VM),
    /HTTP status 500.*\(not retried for another \d+ s\)/,
  )
  assert.equal(hitsOf(img.hex), 1)
  // clearing the image forgets the failure: the next verification tries again
  serve(img.hex, { body: imageArchive(img) })
  await v.clear(img.osImageHash)
  await v.expectedRegisters(img.osImageHash, VM)
  assert.equal(hitsOf(img.hex), 2)

  const slow = syntheticImage({ seed: 51 })
  serve(slow.hex, { body: imageArchive(slow), stallAfter: 100 })
  const t = verifier({ downloadTimeoutMs: 300, negativeCacheMs: 0 })
  const started = Date.now()
  await assert.rejects(
    t.v.expectedRegisters(slow.osImageHash, VM),
    /: Download image timeout: no complete image within 300 ms/,
  )
  assert.ok(Date.now() - started < 5000)
  assert.equal(existsSync(join(t.imageCacheDir, slow.hex)), false)
  assert.deepEqual(readdirSync(join(t.imageCacheDir, 'tmp')), [])
  // with no negative cache the next call goes to the network again
  await assert.rejects(
    t.v.expectedRegisters(slow.osImageHash, VM),
    /: Download image timeout: no complete image within 300 ms/,
  )
  assert.equal(hitsOf(slow.hex), 2)
})

test('RTMR0: stub failures, timeout and output cap are clear errors', async () => {
  const img = published({ seed: 60 })
  const fail = verifier({ acpiTablesCommand: [process.execPath, STUB, '--fail'] })
  await assert.rejects(
    fail.v.expectedRegisters(img.osImageHash, VM),
    /ACPI tables command failed \(exit code 3\): qemu: could not load firmware/,
  )
  const sleep = verifier({
    acpiTablesCommand: [process.execPath, STUB, '--sleep'],
    acpiTimeoutMs: 500,
  })
  const started = Date.now()
  await assert.rejects(
    sleep.v.expectedRegisters(img.osImageHash, VM),
    /ACPI tables command timed out after 500 ms/,
  )
  assert.ok(Date.now() - started < 8000)
  const flood = verifier({
    acpiTablesCommand: [process.execPath, STUB, '--flood'],
    acpiMaxOutputBytes: 1 << 20,
  })
  await assert.rejects(
    flood.v.expectedRegisters(img.osImageHash, VM),
    /wrote more than 1048576 bytes/,
  )
  const zero = verifier({ acpiTablesCommand: [process.execPath, STUB, '--zero'] })
  await assert.rejects(
    zero.v.expectedRegisters(img.osImageHash, VM),
    /found table with zero length/,
  )
  const missing = verifier({ acpiTablesCommand: [join(work, 'no-such-binary')] })
  await assert.rejects(
    missing.v.expectedRegisters(img.osImageHash, VM),
    /failed to execute ACPI tables command .*ENOENT/,
  )
  // arguments are never given to a shell
  const marker = join(work, 'shell-ran')
  const shell = verifier({ acpiTablesCommand: [process.execPath, STUB, `; touch ${marker}`] })
  await shell.v.expectedRegisters(img.osImageHash, VM)
  assert.equal(existsSync(marker), false)
})

test('legacy_rtmr0: require without a command fails closed before any download; skip warns per verification', async () => {
  const img = published({ seed: 70 })
  const strict = verifier({ acpiTablesCommand: null, legacyRtmr0: 'require' })
  await assert.rejects(
    strict.v.expectedRegisters(img.osImageHash, VM),
    /needs RTMR0.*no \[core\.image\] acpi_tables_command is configured and legacy_rtmr0 = "require"/,
  )
  assert.equal(hitsOf(img.hex), 0)

  const lax = verifier({ acpiTablesCommand: null, legacyRtmr0: 'skip' })
  assert.equal(lax.lines.filter((l) => l.level === 40).length, 1, 'one warning at start')
  const withCommand = await verifier().v.expectedRegisters(img.osImageHash, VM)
  const r1 = await lax.v.expectedRegisters(img.osImageHash, VM)
  const r2 = await lax.v.expectedRegisters(img.osImageHash, VM)
  assert.deepEqual(r1.skipped, ['rtmr0'])
  assert.equal(r1.expected.rtmr0, null)
  assert.deepEqual(r1.expected.mrtd, withCommand.expected.mrtd)
  assert.deepEqual(r1.expected.rtmr1, withCommand.expected.rtmr1)
  assert.deepEqual(r1.expected.rtmr2, withCommand.expected.rtmr2)
  assert.deepEqual(r2, r1)
  const warnings = lax.lines.filter((l) => l.level === 40 && /WITHOUT RTMR0/.test(String(l.msg)))
  assert.equal(warnings.length, 3, 'the start warning and one per verification')
})

test('unmeasurable VM parameters are refused before any download', async () => {
  const img = published({ seed: 80 })
  const { v } = verifier()
  const bad: Array<[Partial<LegacyVmParams>, RegExp]> = [
    [{ cpuCount: 0 }, /cpuCount must be greater than 0/],
    [{ swtpm: true }, /swtpm measurement is not supported/],
    [{ hostShareMode: 'nfs' }, /Invalid shared disk mode: nfs/],
    [{ qemuVersion: '9.2.1-x' }, /Failed to parse QEMU version/],
    [{ memorySize: 0n }, /memory_size 0 cannot be measured/],
    [{ numNics: 0xffffffff }, /num_nics 4294967295 is more than 256/],
    [{ numGpus: -1 }, /num_gpus -1 is not a u32/],
  ]
  for (const [over, why] of bad) {
    await assert.rejects(v.expectedRegisters(img.osImageHash, { ...VM, ...over }), why)
  }
  await assert.rejects(v.expectedRegisters(Buffer.alloc(31), VM), /os_image_hash must be 32 bytes/)
  assert.equal(hitsOf(img.hex), 0)
})

test('clear: one image, everything, and concurrently with verifications', async () => {
  const a = published({ seed: 90 })
  const b = published({ seed: 91 })
  const { v, imageCacheDir } = verifier()
  const ra = await v.expectedRegisters(a.osImageHash, VM)
  await v.expectedRegisters(b.osImageHash, VM)
  await v.clear(a.osImageHash)
  assert.equal(existsSync(join(imageCacheDir, a.hex)), false)
  assert.equal(existsSync(join(imageCacheDir, b.hex)), true)
  const again = await v.expectedRegisters(a.osImageHash, VM)
  assert.deepEqual(again.expected, ra.expected)
  assert.equal(hitsOf(a.hex), 2)
  assert.equal(hitsOf(b.hex), 1)

  writeFileSync(join(imageCacheDir, 'tmp', 'stale'), 'left by a crash')
  await v.clear('all')
  assert.deepEqual(readdirSync(imageCacheDir), [])

  // verifications racing clears: every verification either completes or is recomputed, none
  // sees a half-removed directory
  const results = await Promise.all([
    v.expectedRegisters(a.osImageHash, VM),
    v.clear(a.osImageHash),
    v.expectedRegisters(a.osImageHash, VM),
    v.clear('all'),
    v.expectedRegisters(a.osImageHash, VM),
    v.expectedRegisters(b.osImageHash, VM),
  ])
  for (const r of [results[0], results[2], results[4]]) {
    assert.deepEqual((r as typeof ra).expected, ra.expected)
  }
  const after = await v.expectedRegisters(a.osImageHash, VM)
  assert.deepEqual(after.expected, ra.expected)
})

test('a tampered or damaged cache entry is refused, not trusted', async () => {
  const img = published({ seed: 100 })
  const { v, opts, imageCacheDir } = verifier()
  await v.expectedRegisters(img.osImageHash, VM)
  const dir = join(imageCacheDir, img.hex)
  writeFileSync(join(dir, 'sha256sum.txt'), Buffer.concat([img.sha256sum, Buffer.from('\n')]))
  const fresh = createLegacyVerifier(opts)
  await assert.rejects(
    fresh.expectedRegisters(img.osImageHash, VM),
    /legacy TDX attestation requires os_image_hash = sha256\(sha256sum\.txt\)/,
  )
  writeFileSync(join(dir, 'sha256sum.txt'), img.sha256sum)
  rmSync(join(dir, 'initramfs.cpio.gz'))
  await assert.rejects(
    createLegacyVerifier(opts).expectedRegisters(img.osImageHash, VM),
    /Failed to read image [0-9a-f]{64}: ENOENT/,
  )
  assert.equal(hitsOf(img.hex), 1)
})

test('RwLock: readers share, a writer waits for them, later readers queue behind the writer', async () => {
  const { RwLock } = await import('../src/image/legacy/rw-lock.js')
  const lock = new RwLock()
  const events: string[] = []
  let releaseA!: () => void
  const a = lock.read(async () => {
    events.push('a+')
    await new Promise<void>((resolve) => (releaseA = resolve))
    events.push('a-')
  })
  const b = lock.read(async () => {
    events.push('b')
  })
  await b
  const w = lock.write(async () => {
    events.push('w')
  })
  const c = lock.read(async () => {
    events.push('c')
  })
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(
    events,
    ['a+', 'b'],
    'the writer waits for reader a; reader c waits for the writer',
  )
  releaseA()
  await Promise.all([a, w, c])
  assert.deepEqual(events, ['a+', 'b', 'a-', 'w', 'c'])
})

test('two processes sharing a cache install one image concurrently; stale staging is swept', async () => {
  const img = published({ seed: 110 })
  const first = verifier()
  const second = createLegacyVerifier(first.opts)
  mkdirSync(join(first.imageCacheDir, 'tmp', 'tmp-download-old'), { recursive: true })
  mkdirSync(join(first.imageCacheDir, 'tmp', 'tmp-download-young'))
  const old = new Date(Date.now() - 2 * 3_600_000)
  utimesSync(join(first.imageCacheDir, 'tmp', 'tmp-download-old'), old, old)
  const [a, b] = await Promise.all([
    first.v.expectedRegisters(img.osImageHash, VM),
    second.expectedRegisters(img.osImageHash, VM),
  ])
  assert.deepEqual(a.expected, b.expected)
  assert.equal(hitsOf(img.hex), 2)
  assert.deepEqual(readdirSync(join(first.imageCacheDir, 'tmp')), ['tmp-download-young'])
  const third = createLegacyVerifier(first.opts)
  assert.deepEqual((await third.expectedRegisters(img.osImageHash, VM)).expected, a.expected)
})

test('tar reader: pax paths and sizes, GNU long names, global headers, directories', async () => {
  const { TarExtractor } = await import('../src/image/legacy/tar.js')
  const pax = (records: Record<string, string>): Buffer =>
    Buffer.from(
      Object.entries(records)
        .map(([k, v]) => {
          const body = ` ${k}=${v}\n`
          let len = body.length + 1
          while (String(len).length + body.length !== len) len++
          return `${len}${body}`
        })
        .join(''),
    )
  const long = `${'d'.repeat(120)}/${'f'.repeat(150)}`
  const archive = tar([
    { name: 'pax_global_header', type: 'g', data: pax({ comment: 'ignored' }) },
    { name: 'dir', type: '5' },
    { name: 'PaxHeaders/x', type: 'x', data: pax({ path: long }) },
    { name: 'short-name-replaced', data: Buffer.from('via pax') },
    { name: '././@LongLink', type: 'L', data: Buffer.from('gnu/' + 'g'.repeat(200) + '\0') },
    { name: 'truncated-gnu-name', data: Buffer.from('via gnu') },
    { name: './dir/plain', data: Buffer.alloc(1500, 7) },
  ])
  const target = mkdtempSync(join(work, 'tar-'))
  const x = new TarExtractor(target)
  // odd chunk sizes exercise header and padding splits
  for (let i = 0; i < archive.length; i += 333) await x.push(archive.subarray(i, i + 333))
  const files = await x.finish()
  assert.deepEqual(
    files.map((f) => [f.path, f.size]).sort(),
    [
      [`gnu/${'g'.repeat(200)}`, 7],
      ['dir/plain', 1500],
      [long, 7],
    ].sort(),
  )
  assert.equal(readFileSync(join(target, long), 'utf8'), 'via pax')
  assert.equal(readFileSync(join(target, 'gnu', 'g'.repeat(200)), 'utf8'), 'via gnu')
  assert.deepEqual(
    files.find((f) => f.path === 'dir/plain')?.sha256,
    createHash('sha256').update(Buffer.alloc(1500, 7)).digest(),
  )
  // a duplicate entry is refused rather than silently overwritten
  const dup = new TarExtractor(mkdtempSync(join(work, 'tar-')))
  await assert.rejects(
    dup.push(
      tar([
        { name: 'a', data: Buffer.from('1') },
        { name: './a', data: Buffer.from('2') },
      ]),
    ),
    /contains the file a twice/,
  )
  await dup.abort()
})
