// The legacy TDX image path: fetch the image named by `os_image_hash` (once, cached on disk),
// then recompute the MRTD and RTMR0–2 a genuine boot of that image with the VM's parameters
// produces (upstream `verifier/src/verification.rs` `verify_os_image_hash_for_dstack_tdx` and
// `dstack-mr`). The caller compares them with the quote. RTMR0 needs QEMU's ACPI tables, which
// only the operator's `acpi_tables_command` can produce (its contract: `acpi.ts`).
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { acpiBlobs, qemuArgs, runAcpiCommand, type QemuMachine } from './acpi.js'
import { downloadImage, removeDirAtomically, sweepStaging, TMP_DIR_NAME } from './download.js'
import { ImageError } from './errors.js'
import {
  kernelHashIsMemoryIndependent,
  measureCmdline,
  patchedKernelAuthenticode,
} from './kernel.js'
import { MANIFEST_NAME, METADATA_NAME, parseManifest, parseMetadata } from './manifest.js'
import { RwLock } from './rw-lock.js'
import { replayRtmr } from '../../attestation/runtime-events.js'
import type { VmConfig } from '../vm-config.js'
import { computeMrtd, measureTdHob, parseTdvf, type TdvfSection } from './tdvf.js'
import {
  type AcpiDigests,
  qemuOptions,
  type QemuOptions,
  rtmr0Log,
  rtmr1Log,
  sha384,
} from '../tdx-registers.js'

export { ImageError } from './errors.js'

/** The measured parts of the guest's parsed `vm_config` (defaults already applied by
 * parseVmConfig). `qemuSinglePassAddPages` is used as upstream uses it: `true` selects two-pass MRTD. */
export type LegacyVmParams = Pick<
  VmConfig,
  | 'cpuCount'
  | 'memorySize'
  | 'qemuVersion'
  | 'numGpus'
  | 'numNvswitches'
  | 'hotplugOff'
  | 'pciHole64Size'
  | 'pic'
  | 'qemuSinglePassAddPages'
  | 'hugepages'
  | 'numNics'
  | 'numVerityVolumes'
  | 'swtpm'
  | 'hostShareMode'
>

export interface ExpectedRegisters {
  mrtd: Buffer
  rtmr0: Buffer | null
  rtmr1: Buffer
  rtmr2: Buffer
}

export interface LegacyVerifierOptions {
  /** images live in `<imageCacheDir>/<hex os_image_hash>/` */
  imageCacheDir: string
  /** URL template with `{OS_IMAGE_HASH}` */
  downloadUrl: string
  /** cap on the compressed archive and on its unpacked size */
  maxImageBytes: number
  downloadTimeoutMs: number
  /** argv of the ACPI table generator; the QEMU arguments are appended */
  acpiTablesCommand: string[] | null
  acpiTimeoutMs: number
  legacyRtmr0: 'require' | 'skip'
  log: Logger
  /** how long a failed download is answered from memory before the network is tried again */
  negativeCacheMs?: number
  /** cap on the ACPI table generator's stdout */
  acpiMaxOutputBytes?: number
}

export interface LegacyVerifier {
  expectedRegisters(
    osImageHash: Buffer,
    vm: LegacyVmParams,
  ): Promise<{ expected: ExpectedRegisters; skipped: string[] }>
  /** Drops the in-memory state of one image (or all) and removes its files, under the write
   * lock; `remove`, when given, does the file (and index) removal instead of this module. */
  clear(osImageHash: Buffer | 'all', remove?: () => void | Promise<void>): Promise<void>
}

const DEFAULT_NEGATIVE_CACHE_MS = 60_000
const DEFAULT_ACPI_MAX_OUTPUT = 16 << 20
const PER_IMAGE_MEMO = 64
/** distinct failed hashes remembered; the oldest is forgotten first */
const MAX_FAILURES = 4096
/** staging leftovers younger than this may belong to another live process sharing the cache */
const STALE_STAGING_MS = 3_600_000
/**
 * Device counts are guest-supplied and each becomes QEMU arguments; no q35 VM has more than a
 * few hundred PCIe devices, so larger values are refused instead of building huge argv arrays.
 */
const MAX_DEVICES = 256

/** What one image contributes, computed once per image and kept while the image is cached. */
interface ImageMaterial {
  dir: string
  firmwarePath: string
  kernelPath: string
  sections: TdvfSection[]
  mrtdSingle: Buffer
  mrtdTwo: Buffer
  initrdSize: number
  rtmr2: Buffer
  /** patched-kernel digest by memory size ('high' for every size that patches alike) */
  kernelHashes: Map<string, Buffer>
  /** ACPI digests by the generator's arguments */
  acpi: Map<string, AcpiDigests>
}

function remember<V>(map: Map<string, V>, key: string, value: V): V {
  if (map.size >= PER_IMAGE_MEMO) map.delete(map.keys().next().value as string)
  map.set(key, value)
  return value
}

async function sha384File(path: string): Promise<{ digest: Buffer; size: number }> {
  const h = createHash('sha384')
  let size = 0
  for await (const chunk of createReadStream(path)) {
    h.update(chunk as Buffer)
    size += (chunk as Buffer).length
  }
  return { digest: h.digest(), size }
}

function memoryBytes(vm: LegacyVmParams): number {
  if (vm.memorySize <= 0n || vm.memorySize > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ImageError(`memory_size ${vm.memorySize} cannot be measured`)
  }
  return Number(vm.memorySize)
}

/** The lite scheme's QEMU-version rules; their refusals keep the legacy path's KMS_ERR_IMAGE code. */
function versionOptions(vm: LegacyVmParams): QemuOptions {
  try {
    return qemuOptions(vm)
  } catch (err) {
    throw new ImageError((err as Error).message, { cause: err })
  }
}

function count(n: number, name: string, max = 0xffffffff): number {
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) {
    throw new ImageError(`${name} ${n} is not a u32`)
  }
  if (n > max) throw new ImageError(`${name} ${n} is more than ${max}; no such VM can be measured`)
  return n
}

export function createLegacyVerifier(opts: LegacyVerifierOptions): LegacyVerifier {
  const lock = new RwLock()
  const materials = new Map<string, ImageMaterial>()
  const inflight = new Map<string, Promise<ImageMaterial>>()
  const failures = new Map<string, { error: ImageError; until: number }>()
  const negativeMs = opts.negativeCacheMs ?? DEFAULT_NEGATIVE_CACHE_MS
  const log = opts.log.child({ component: 'legacy-image' })
  let swept: Promise<void> | undefined
  if (opts.legacyRtmr0 === 'skip' && opts.acpiTablesCommand === null) {
    log.warn(
      'legacy TDX images are verified WITHOUT RTMR0 (legacy_rtmr0 = "skip", no ' +
        'acpi_tables_command): the host controls the ACPI tables and TD HOB of legacy guests',
    )
  }

  async function fetchImage(hex: string): Promise<void> {
    const failed = failures.get(hex)
    if (failed !== undefined && failed.until > Date.now()) {
      const wait = Math.ceil((failed.until - Date.now()) / 1000)
      throw new ImageError(`${failed.error.message} (not retried for another ${wait} s)`, {
        cause: failed.error,
      })
    }
    failures.delete(hex)
    swept ??= sweepStaging(
      opts.imageCacheDir,
      Math.max(STALE_STAGING_MS, 2 * opts.downloadTimeoutMs),
    )
    await swept
    log.info({ osImageHash: hex }, `Image ${hex} not found, downloading`)
    const started = Date.now()
    try {
      await downloadImage(hex, {
        cacheDir: opts.imageCacheDir,
        downloadUrl: opts.downloadUrl,
        maxImageBytes: opts.maxImageBytes,
        timeoutMs: opts.downloadTimeoutMs,
      })
    } catch (err) {
      const error =
        err instanceof ImageError ? err : new ImageError((err as Error).message, { cause: err })
      if (failures.size >= MAX_FAILURES) failures.delete(failures.keys().next().value as string)
      failures.set(hex, { error, until: Date.now() + negativeMs })
      throw error
    }
    log.info({ osImageHash: hex, ms: Date.now() - started }, 'image downloaded and checked')
  }

  async function loadMaterial(hex: string): Promise<ImageMaterial> {
    try {
      return await readMaterial(hex)
    } catch (err) {
      if (err instanceof ImageError) throw err
      throw new ImageError(`Failed to read image ${hex}: ${(err as Error).message}`, { cause: err })
    }
  }

  async function readMaterial(hex: string): Promise<ImageMaterial> {
    const dir = join(opts.imageCacheDir, hex)
    const metaPath = join(dir, METADATA_NAME)
    const present = await readFile(metaPath).then(
      () => true,
      () => false,
    )
    if (!present) await fetchImage(hex)

    const manifestBytes = await readFile(join(dir, MANIFEST_NAME)).catch((err: unknown) => {
      throw new ImageError('Failed to read sha256sum.txt of the cached image', { cause: err })
    })
    if (createHash('sha256').update(manifestBytes).digest('hex') !== hex) {
      throw new ImageError('legacy TDX attestation requires os_image_hash = sha256(sha256sum.txt)')
    }
    const listed = new Set(parseManifest(manifestBytes.toString('utf8')).map((e) => e.name))
    const meta = parseMetadata(await readFile(metaPath), listed)
    const firmwarePath = join(dir, meta.bios)
    const kernelPath = join(dir, meta.kernel)
    const fw = await readFile(firmwarePath)
    let sections: TdvfSection[]
    try {
      sections = parseTdvf(fw)
    } catch (err) {
      throw new ImageError(`Failed to compute MR TD: ${(err as Error).message}`, { cause: err })
    }
    const initrd = await sha384File(join(dir, meta.initrd))
    const kernel = await readFile(kernelPath)
    const material: ImageMaterial = {
      dir,
      firmwarePath,
      kernelPath,
      sections,
      mrtdSingle: computeMrtd(fw, sections, false),
      mrtdTwo: computeMrtd(fw, sections, true),
      initrdSize: initrd.size,
      rtmr2: replayRtmr([measureCmdline(`${meta.cmdline} initrd=initrd`), initrd.digest]),
      kernelHashes: new Map(),
      acpi: new Map(),
    }
    material.kernelHashes.set('high', patchedKernelAuthenticode(kernel, initrd.size, 0xb0000000))
    return material
  }

  function ensureImage(hex: string): Promise<ImageMaterial> {
    const ready = materials.get(hex)
    if (ready !== undefined) return Promise.resolve(ready)
    let p = inflight.get(hex)
    if (p === undefined) {
      p = loadMaterial(hex)
        .then((m) => {
          materials.set(hex, m)
          return m
        })
        .finally(() => inflight.delete(hex))
      inflight.set(hex, p)
    }
    return p
  }

  async function kernelHash(m: ImageMaterial, memory: number): Promise<Buffer> {
    const key = kernelHashIsMemoryIndependent(memory) ? 'high' : String(memory)
    const known = m.kernelHashes.get(key)
    if (known !== undefined) return known
    const kernel = await readFile(m.kernelPath)
    return remember(m.kernelHashes, key, patchedKernelAuthenticode(kernel, m.initrdSize, memory))
  }

  async function acpiDigests(
    m: ImageMaterial,
    machine: QemuMachine,
    argv: string[],
  ): Promise<AcpiDigests> {
    const args = qemuArgs(machine)
    const compat = machine.version.join('.')
    const key = JSON.stringify([compat, args])
    const known = m.acpi.get(key)
    if (known !== undefined) return known
    const tables = await runAcpiCommand(
      {
        argv,
        timeoutMs: opts.acpiTimeoutMs,
        maxOutputBytes: opts.acpiMaxOutputBytes ?? DEFAULT_ACPI_MAX_OUTPUT,
      },
      args,
      compat,
    )
    const blobs = acpiBlobs(tables)
    return remember(m.acpi, key, {
      loader: sha384(blobs.loader),
      rsdp: sha384(blobs.rsdp),
      tables: sha384(blobs.tables),
    })
  }

  async function expectedRegisters(
    osImageHash: Buffer,
    vm: LegacyVmParams,
  ): Promise<{ expected: ExpectedRegisters; skipped: string[] }> {
    if (osImageHash.length !== 32) {
      throw new ImageError(`os_image_hash must be 32 bytes, got ${osImageHash.length}`)
    }
    const hex = osImageHash.toString('hex')
    const memory = memoryBytes(vm)
    const vopt = versionOptions(vm)
    const machineFor = (m: { firmwarePath: string; kernelPath: string }): QemuMachine => ({
      cpuCount: count(vm.cpuCount, 'cpu_count'),
      memorySize: memory,
      firmwarePath: m.firmwarePath,
      kernelPath: m.kernelPath,
      pic: vopt.pic,
      version: vopt.version,
      hugepages: vm.hugepages,
      numGpus: count(vm.numGpus, 'num_gpus', MAX_DEVICES),
      numNvswitches: count(vm.numNvswitches, 'num_nvswitches', MAX_DEVICES),
      numNics: count(vm.numNics, 'num_nics', MAX_DEVICES),
      numVerityVolumes: count(vm.numVerityVolumes, 'num_verity_volumes', MAX_DEVICES),
      hotplugOff: vm.hotplugOff,
      pciHole64Size: vm.pciHole64Size,
      hostShareMode: vm.hostShareMode,
      swtpm: vm.swtpm,
    })
    // Refuse what can never be measured before touching the network.
    qemuArgs(machineFor({ firmwarePath: '', kernelPath: '' }))
    const command = opts.acpiTablesCommand
    if (command === null && opts.legacyRtmr0 === 'require') {
      throw new ImageError(
        'legacy TDX verification needs RTMR0, which needs the ACPI tables of the VM: ' +
          'no [core.image] acpi_tables_command is configured and legacy_rtmr0 = "require"',
      )
    }

    return await lock.read(async () => {
      const m = await ensureImage(hex)
      const mrtd = vopt.twoPassAddPages ? m.mrtdTwo : m.mrtdSingle
      const rtmr1 = replayRtmr(rtmr1Log(await kernelHash(m, memory)))
      if (command === null) {
        log.warn(
          { osImageHash: hex },
          'legacy TDX image verified WITHOUT RTMR0 (legacy_rtmr0 = "skip"): firmware, kernel, ' +
            'command line and initrd are checked, the ACPI tables and TD HOB are not',
        )
        return { expected: { mrtd, rtmr0: null, rtmr1, rtmr2: m.rtmr2 }, skipped: ['rtmr0'] }
      }
      const acpi = await acpiDigests(m, machineFor(m), command)
      const rtmr0 = replayRtmr(rtmr0Log(measureTdHob(m.sections, memory), acpi))
      return { expected: { mrtd, rtmr0, rtmr1, rtmr2: m.rtmr2 }, skipped: [] }
    })
  }

  async function clear(
    osImageHash: Buffer | 'all',
    remove?: () => void | Promise<void>,
  ): Promise<void> {
    await lock.write(async () => {
      if (osImageHash === 'all') {
        materials.clear()
        failures.clear()
        if (remove !== undefined) {
          await remove()
          log.info('legacy image cache cleared')
          return
        }
        await mkdir(opts.imageCacheDir, { recursive: true })
        for (const name of await readdir(opts.imageCacheDir)) {
          if (/^[0-9a-f]{64}$/.test(name)) {
            await removeDirAtomically(opts.imageCacheDir, join(opts.imageCacheDir, name))
          }
        }
        // no download runs under the write lock, so the staging area holds only leftovers
        await rm(join(opts.imageCacheDir, TMP_DIR_NAME), { recursive: true, force: true })
        log.info('legacy image cache cleared')
        return
      }
      const hex = osImageHash.toString('hex')
      materials.delete(hex)
      failures.delete(hex)
      if (remove !== undefined) await remove()
      else await removeDirAtomically(opts.imageCacheDir, join(opts.imageCacheDir, hex))
      log.info({ osImageHash: hex }, 'legacy image removed from the cache')
    })
  }

  return { expectedRegisters, clear }
}
