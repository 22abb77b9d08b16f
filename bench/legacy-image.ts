// Legacy TDX image verification costs: cold (download over loopback, gunzip, confined untar,
// sha256sum check, install, MRTD/RTMR0–2 with the ACPI tables stub as the table generator),
// per MiB of archive; warm from disk (a restarted verifier: no network, files re-read and
// re-hashed); warm in memory (the per-request cost once an image is known).
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { createLegacyVerifier, type LegacyVerifierOptions } from '../src/image/legacy/index.js'
import { parseVmConfig } from '../src/image/vm-config.js'
import { imageArchive, syntheticImage } from '../test/helpers/legacy-image.js'
import type { MicroOptions } from './micro.js'

export interface LegacyImageFigures {
  archiveMiB: number
  coldMs: number
  coldMsPerMiB: number
  diskWarmMs: number
  memoryWarmUs: number
  rounds: number
}

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? NaN
}

export async function runLegacyImageBench(
  micro: MicroOptions,
  initrdMiB = 16,
): Promise<LegacyImageFigures> {
  // incompressible initrd, like a real gzip'ed cpio
  const img = syntheticImage({ initrdData: randomBytes(initrdMiB << 20) })
  const body = imageArchive(img)
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': body.length }).end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const dir = mkdtempSync(join(tmpdir(), 'bench-legacy-'))
  const opts: LegacyVerifierOptions = {
    imageCacheDir: join(dir, 'images'),
    downloadUrl: `http://127.0.0.1:${port}/mr_{OS_IMAGE_HASH}.tar.gz`,
    maxImageBytes: 1 << 30,
    downloadTimeoutMs: 60_000,
    acpiTablesCommand: [
      process.execPath,
      new URL('../test/fixtures/acpi-tables-stub.mjs', import.meta.url).pathname,
    ],
    acpiTimeoutMs: 30_000,
    legacyRtmr0: 'require',
    log: pino({ level: 'silent' }),
  }
  const vm = { ...parseVmConfig('{}'), cpuCount: 2, memorySize: 2n << 30n, qemuVersion: '8.2.2' }
  const rounds = Math.max(3, micro.rounds)
  try {
    const cold: number[] = []
    const disk: number[] = []
    for (let i = 0; i < rounds; i++) {
      const v = createLegacyVerifier(opts)
      await v.clear('all')
      let t = nowMs()
      await v.expectedRegisters(img.osImageHash, vm)
      cold.push(nowMs() - t)
      const restarted = createLegacyVerifier(opts)
      t = nowMs()
      await restarted.expectedRegisters(img.osImageHash, vm)
      disk.push(nowMs() - t)
    }
    const v = createLegacyVerifier(opts)
    await v.expectedRegisters(img.osImageHash, vm)
    let n = 0
    const start = nowMs()
    while (nowMs() - start < micro.roundMs * micro.rounds || n < 100) {
      await v.expectedRegisters(img.osImageHash, vm)
      n++
    }
    const memoryWarmUs = ((nowMs() - start) * 1000) / n
    const archiveMiB = body.length / (1 << 20)
    const coldMs = median(cold)
    return {
      archiveMiB,
      coldMs,
      coldMsPerMiB: coldMs / archiveMiB,
      diskWarmMs: median(disk),
      memoryWarmUs,
      rounds,
    }
  } finally {
    server.closeAllConnections()
    server.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
