// Fuzz targets for the lite image path's measurement material: the `measurement.tdx.cbor`
// document (and the TD HOB witness inside it), and a whole vm_config carrying it, down to the
// expected registers. Seeds come from the real lite guest's GetQuote answer
// (test/fixtures/vectors/tdx-lite-getquote.json). Structure-aware generators edit the decoded
// document (missing and retyped fields, wrong lengths, unknown keys, mutated witnesses) and
// re-encode it, and rebuild vm_configs whose sha256sum.txt and os_image_hash still match the
// edited document, so that the inputs get past the hash checks to the CBOR decoder, the OVMF
// variant and memory gates and the TD HOB.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { decode as cborDecode, encode as cborEncode } from 'cborg'
import fc from 'fast-check'
import { parseTdxEventLogJson } from '../../src/attestation/event-log.js'
import { decodeVmConfig } from '../../src/attestation/vm-config.js'
import { KmsError } from '../../src/errors.js'
import { LITE_MEMORY_2G, liteExpected } from '../../src/image/lite.js'
import { TDX_MEASUREMENT_FILENAME } from '../../src/image/measurement-document.js'
import { HIGH_MEMORY_MIN, tdHobDigest } from '../../src/image/td-hob.js'
import { decodeTdxMeasurement } from '../../src/image/tdx-measurement.js'
import { parseVmConfig } from '../../src/image/vm-config.js'
import { bytesFrom, mutatedFrom } from './mutate.js'
import type { FuzzTarget } from './targets.js'

const FIXTURE = JSON.parse(
  readFileSync(
    join(resolve(import.meta.dirname, '../..'), 'test/fixtures/vectors/tdx-lite-getquote.json'),
    'utf8',
  ),
) as { event_log: string; vm_config: string }
const VM_CONFIG: Record<string, unknown> = JSON.parse(FIXTURE.vm_config) as Record<string, unknown>
const DOCUMENT = VM_CONFIG['tdx_measurement'] as { checksum_file: string; measurement: string }
const CHECKSUM_FILE = Buffer.from(DOCUMENT.checksum_file, 'base64')
const MEASUREMENT = Buffer.from(DOCUMENT.measurement, 'base64')
const EVENTS = parseTdxEventLogJson(FIXTURE.event_log)

type Tree = Record<string, unknown>
const DOC_TREE = cborDecode(MEASUREMENT) as Tree
const WITNESS = (DOC_TREE['tdvf'] as Tree)['td_hob'] as Uint8Array

/** Every path of the real document, maps included. */
function paths(t: Tree, prefix: string[] = []): string[][] {
  return Object.entries(t).flatMap(([k, v]) => {
    const here = [...prefix, k]
    const isMap = v !== null && typeof v === 'object' && !(v instanceof Uint8Array)
    return isMap ? [here, ...paths(v as Tree, here)] : [here]
  })
}
const DOC_PATHS = paths(DOC_TREE)

/** Values of every CBOR kind the decoder must refuse or accept: byte strings around the 48-byte
 * register size, integers up to the CBOR range, negative and float versions, nested maps and arrays. */
const cborValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(0, 1, 2, 3, 4, -1, 2 ** 32, Number.MAX_SAFE_INTEGER, 1.5, null, true, ''),
  fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n - 1n }),
  fc.string({ maxLength: 16 }),
  fc.constantFrom('pre202505', 'post202505', 'legacy', 'lite'),
  fc
    .constantFrom(0, 1, 32, 47, 48, 49, 64, 4096)
    .chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
  mutatedFrom([WITNESS]),
  fc.array(fc.nat(255), { maxLength: 8 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.nat(), { maxKeys: 3 }),
)

type DocEdit =
  | { kind: 'delete'; path: number }
  | { kind: 'set'; path: number; value: unknown }
  | { kind: 'add'; path: number; key: string; value: unknown }

const docEdit: fc.Arbitrary<DocEdit> = fc.oneof(
  fc.record({ kind: fc.constant('delete' as const), path: fc.nat() }),
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('set' as const), path: fc.nat(), value: cborValue }),
  },
  fc.record({
    kind: fc.constant('add' as const),
    path: fc.nat(),
    key: fc.oneof(
      fc.constantFrom('version', 'image', 'tdvf', 'td_hob', 'ovmf'),
      fc.string({ maxLength: 8 }),
    ),
    value: cborValue,
  }),
)

function clone(t: Tree): Tree {
  return Object.fromEntries(
    Object.entries(t).map(([k, v]) => [
      k,
      v !== null && typeof v === 'object' && !(v instanceof Uint8Array) && !Array.isArray(v)
        ? clone(v as Tree)
        : v,
    ]),
  )
}

function applyDocEdit(root: Tree, e: DocEdit): void {
  const path = DOC_PATHS[e.path % DOC_PATHS.length] ?? []
  let parent: unknown = root
  for (const k of path.slice(0, -1)) parent = (parent as Tree | undefined)?.[k]
  if (parent === null || typeof parent !== 'object' || parent instanceof Uint8Array) return
  const p = parent as Tree
  const last = path.at(-1) ?? ''
  if (e.kind === 'delete') delete p[last]
  else if (e.kind === 'set') p[last] = e.value
  else {
    const target = p[last]
    if (target !== null && typeof target === 'object' && !(target instanceof Uint8Array)) {
      ;(target as Tree)[e.key] = e.value
    } else p[e.key] = e.value
  }
}

const keepOrder = (): number => 0

/** The real document with 1–4 field edits, re-encoded. */
const editedDocument: fc.Arbitrary<Uint8Array> = fc
  .array(docEdit, { minLength: 1, maxLength: 4 })
  .map((edits) => {
    const t = clone(DOC_TREE)
    for (const e of edits) applyDocEdit(t, e)
    return new Uint8Array(cborEncode(t, { mapSorter: keepOrder }))
  })

/** Measurement documents: the real one, byte mutations of it, field edits, random bytes. */
const measurementDocument: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(new Uint8Array(MEASUREMENT)) },
  { weight: 4, arbitrary: mutatedFrom([MEASUREMENT]) },
  { weight: 4, arbitrary: editedDocument },
  { weight: 1, arbitrary: bytesFrom(1024) },
)

const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest()

/** A vm_config around `doc`: with `consistent`, sha256sum.txt lists the document's hash and
 * os_image_hash is that file's hash, so every hash check passes; otherwise the real checksum
 * file, byte-mutated. A third of them get other values for some fields (the OVMF variant, QEMU
 * options, the document itself). */
const structuredVmConfig: fc.Arbitrary<Uint8Array> = fc
  .record({
    doc: measurementDocument,
    consistent: fc.oneof(
      { weight: 3, arbitrary: fc.constant(true) },
      { weight: 1, arbitrary: fc.constant(false) },
    ),
    checksum: mutatedFrom([CHECKSUM_FILE]),
    // mostly sizes the lite gate accepts, so that inputs reach the TD HOB
    memory: fc.oneof(
      {
        weight: 6,
        arbitrary: fc.constantFrom<unknown>(
          Number(LITE_MEMORY_2G),
          Number(HIGH_MEMORY_MIN),
          2 ** 33,
          Number.MAX_SAFE_INTEGER,
        ),
      },
      {
        weight: 1,
        arbitrary: fc.constantFrom<unknown>(Number(HIGH_MEMORY_MIN) - 1, 0, -1, '2G'),
      },
    ),
    fields: fc.oneof(
      { weight: 2, arbitrary: fc.constant({}) },
      {
        weight: 1,
        arbitrary: fc.dictionary(
          fc.constantFrom(
            'ovmf_variant',
            'tdx_attestation_variant',
            'qemu_version',
            'qemu_single_pass_add_pages',
            'pic',
            'cpu_count',
            'num_gpus',
            'hugepages',
            'tdx_measurement',
            'os_image_hash',
          ),
          fc.oneof(
            fc.jsonValue({ maxDepth: 2 }),
            fc.constantFrom('pre202505', 'lite', 'legacy', '8.2.2', '9.1.0'),
          ),
          { maxKeys: 2 },
        ),
      },
    ),
  })
  .map(({ doc, consistent, checksum, memory, fields }) => {
    const checksumFile = consistent
      ? Buffer.from(`${sha256(doc).toString('hex')}  ${TDX_MEASUREMENT_FILENAME}\n`)
      : Buffer.from(checksum)
    const vm: Record<string, unknown> = {
      ...VM_CONFIG,
      os_image_hash: consistent ? sha256(checksumFile).toString('hex') : VM_CONFIG['os_image_hash'],
      memory_size: memory,
      tdx_measurement: {
        checksum_file: checksumFile.toString('base64'),
        measurement: Buffer.from(doc).toString('base64'),
      },
    }
    Object.assign(vm, fields)
    return new Uint8Array(Buffer.from(JSON.stringify(vm)))
  })

const isKmsError = (err: unknown): boolean => err instanceof KmsError

export const MEASUREMENT_TARGETS: readonly FuzzTarget[] = [
  {
    name: 'measurement-cbor',
    arbitrary: measurementDocument,
    decode: (input) => {
      const m = decodeTdxMeasurement(input)
      // the witness is measured for both memory layouts the lite path accepts
      tdHobDigest(m.tdvf.tdHobWitness, LITE_MEMORY_2G)
      tdHobDigest(m.tdvf.tdHobWitness, HIGH_MEMORY_MIN * 2n)
    },
  },
  {
    name: 'vm-config-lite',
    arbitrary: fc.oneof(
      { weight: 3, arbitrary: mutatedFrom([Buffer.from(FIXTURE.vm_config)]) },
      { weight: 6, arbitrary: structuredVmConfig },
      { weight: 1, arbitrary: bytesFrom(2048) },
    ),
    decode: (input) => {
      const text = Buffer.from(input).toString('utf8')
      // the attestation's view of the same text (app info, BootInfo) must also fail typed
      try {
        decodeVmConfig(text, true)
      } catch (err) {
        if (!isKmsError(err)) throw err
      }
      liteExpected(parseVmConfig(text), EVENTS)
    },
  },
]
