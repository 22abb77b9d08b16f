// `dstack-kms verify-image`: the lite fixture matches (exit 0), a wrong register is reported
// with its name (exit 1), a refusal before comparison prints {"error"} (exit 1), usage errors
// exit 2; and once through the real CLI entry point in a child process.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { runVerifyImage } from '../src/commands/verify-image.js'
import { VECTORS_DIR, readVectorJson } from './helpers/crypto-vectors.js'

const FIXTURE = join(VECTORS_DIR, 'tdx-lite-getquote.json')
const fixture = readVectorJson<{ quote: string; event_log: string; vm_config: string }>(
  'tdx-lite-getquote.json',
)
const lite = readVectorJson<{
  tdx_lite: { mr_td: string; rtmr0: string; rtmr1: string; rtmr2: string; os_image_hash: string }
}>('vectors.json').tdx_lite

async function cli(args: string[]): Promise<{ code: number; out: Record<string, unknown> }> {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const chunks: Buffer[] = []
  stdout.on('data', (c: Buffer) => chunks.push(c))
  const code = await runVerifyImage(args, { stdout, stderr })
  const text = Buffer.concat(chunks).toString('utf8')
  return { code, out: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }
}

describe('dstack-kms verify-image', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'verify-image-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('the lite fixture matches: one JSON object, exit 0, says the quote was not DCAP-verified', async () => {
    const r = await cli(['--quote', FIXTURE, '--event-log', FIXTURE, '--vm-config', FIXTURE])
    assert.equal(r.code, 0)
    const registers = { mrtd: lite.mr_td, rtmr0: lite.rtmr0, rtmr1: lite.rtmr1, rtmr2: lite.rtmr2 }
    assert.deepEqual(r.out, {
      scheme: 'lite',
      os_image_hash: lite.os_image_hash,
      expected: registers,
      quote: registers,
      match: true,
      mismatches: [],
      skipped: [],
      dcap_verified: false,
    })
  })

  it('separate files (hex quote, bare event log, bare vm_config) work the same', async () => {
    const q = join(dir, 'quote.hex')
    const e = join(dir, 'events.json')
    const c = join(dir, 'vm_config.json')
    writeFileSync(q, fixture.quote + '\n')
    writeFileSync(e, fixture.event_log)
    writeFileSync(c, fixture.vm_config)
    const r = await cli([
      '--quote',
      q,
      '--event-log',
      e,
      '--vm-config',
      c,
      '--image-cache',
      join(dir, 'cache'),
    ])
    assert.equal(r.code, 0)
    assert.equal(r.out['match'], true)
  })

  it('a tampered ACPI digest: match false, the register named, exit 1', async () => {
    const events = JSON.parse(fixture.event_log) as Array<Record<string, unknown>>
    const rsdp = events.find((x) => x['event'] === 'acpi-rsdp')
    assert.ok(rsdp !== undefined)
    rsdp['digest'] = '00'.repeat(48)
    const e = join(dir, 'tampered.json')
    writeFileSync(e, JSON.stringify(events))
    const r = await cli(['--quote', FIXTURE, '--event-log', e, '--vm-config', FIXTURE])
    assert.equal(r.code, 1)
    assert.equal(r.out['match'], false)
    assert.deepEqual(r.out['mismatches'], ['rtmr0'])
    assert.equal((r.out['quote'] as Record<string, string>)['rtmr0'], lite.rtmr0)
  })

  it('a refusal before the comparison prints {"error"} and exits 1', async () => {
    const c = join(dir, 'small.json')
    writeFileSync(c, JSON.stringify({ ...JSON.parse(fixture.vm_config), memory_size: 1 << 30 }))
    const r = await cli(['--quote', FIXTURE, '--event-log', FIXTURE, '--vm-config', c])
    assert.equal(r.code, 1)
    assert.match(
      String(r.out['error']),
      /^Failed to compute TDX expected measurements without image download: TDX lite attestation without image download requires memory_size == 2147483648 bytes/,
    )
    assert.deepEqual(Object.keys(r.out), ['error'])
  })

  it('usage errors exit 2', async () => {
    assert.equal((await cli(['--quote', FIXTURE])).code, 2)
    assert.equal(
      (
        await cli([
          '--quote',
          FIXTURE,
          '--event-log',
          FIXTURE,
          '--vm-config',
          FIXTURE,
          '--legacy-rtmr0',
          'maybe',
        ])
      ).code,
      2,
    )
  })

  it('runs as `dstack-kms verify-image` in a child process', async () => {
    const r = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(
        process.execPath,
        [
          '--import',
          'tsx',
          'src/cli.ts',
          'verify-image',
          '--quote',
          FIXTURE,
          '--event-log',
          FIXTURE,
          '--vm-config',
          FIXTURE,
        ],
        { cwd: fileURLToPath(new URL('..', import.meta.url)) },
        (error, stdout) => {
          resolve({
            code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1,
            stdout,
          })
        },
      )
    })
    assert.equal(r.code, 0)
    assert.equal((JSON.parse(r.stdout) as { match: boolean }).match, true)
  })
})
