// `measurement.tdx.cbor` (upstream `dstack-types` `TdxOsImageMeasurement`, version 3): the
// image-static TDX material a lite guest ships instead of the image itself. Decoded with cborg
// and then checked field by field, because the decoder alone would accept any shape.
import { decode as cborDecode, encode as cborEncode } from 'cborg'
import { KmsError, errorMessage } from '../errors.js'
import { OVMF_VARIANTS, type OvmfVariant } from './vm-config.js'

export const TDX_MEASUREMENT_VERSION = 3

export interface TdxOsImageMeasurement {
  image: { cmdlineSha384: Buffer; kernelAuthenticode: Buffer; initrdSha384: Buffer }
  tdvf: {
    ovmfVariant: OvmfVariant
    mrtd: { singlePass: Buffer; twoPass: Buffer }
    /** the compact TD HOB witness (td-hob.ts) */
    tdHobWitness: Buffer
  }
}

// cborg decodes maps with string keys into plain objects and byte strings into Uint8Array, and
// has no extension modes a hostile document could switch on; duplicate keys are refused.
const DECODE_OPTIONS = { rejectDuplicateMapKeys: true, allowUndefined: false } as const

const CONTEXT = 'TdxOsImageMeasurement'

function fail(message: string): never {
  throw new KmsError('KMS_ERR_ATTESTATION', `${CONTEXT}: ${message}`)
}

function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array)
}

function field(o: Record<string, unknown>, key: string, path: string): unknown {
  if (!Object.hasOwn(o, key)) fail(`failed to decode CBOR: missing field \`${path}${key}\``)
  return o[key]
}

function map(o: Record<string, unknown>, key: string, path: string): Record<string, unknown> {
  const v = field(o, key, path)
  if (!isMap(v)) fail(`failed to decode CBOR: \`${path}${key}\` is not a map`)
  return v
}

function bytes(o: Record<string, unknown>, key: string, path: string): Buffer {
  const v = field(o, key, path)
  if (!(v instanceof Uint8Array)) {
    fail(`failed to decode CBOR: \`${path}${key}\` is not a byte string`)
  }
  return Buffer.from(v)
}

/** The most of a hostile value an error message repeats. */
const SHOWN_CHARS = 120

/** A decoded CBOR value as an error message shows it, in CBOR's diagnostic notation: JSON has no
 * words for what cborg hands back for integers past 2^53 (bigint, on which JSON.stringify throws)
 * or for byte strings, and the value comes from the guest, so its length is capped. */
function cborText(value: unknown): string {
  let out = ''
  const put = (v: unknown): void => {
    if (out.length > SHOWN_CHARS) return
    if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'boolean' || v === null) {
      out += String(v)
    } else if (typeof v === 'string') {
      out += JSON.stringify(v)
    } else if (v instanceof Uint8Array) {
      out += `h'${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}'`
    } else if (Array.isArray(v)) {
      out += '['
      v.forEach((item: unknown, i) => {
        if (i > 0) out += ', '
        put(item)
      })
      out += ']'
    } else if (typeof v === 'object') {
      out += '{'
      Object.entries(v).forEach(([k, item], i) => {
        if (i > 0) out += ', '
        out += `${JSON.stringify(k)}: `
        put(item)
      })
      out += '}'
    } else {
      out += typeof v
    }
  }
  put(value)
  return out.length > SHOWN_CHARS ? `${out.slice(0, SHOWN_CHARS)}…` : out
}

export function decodeTdxMeasurement(cbor: Uint8Array): TdxOsImageMeasurement {
  let root: unknown
  try {
    root = cborDecode(cbor, DECODE_OPTIONS)
  } catch (err) {
    fail(`failed to decode CBOR: ${errorMessage(err)}`)
  }
  if (!isMap(root)) fail('failed to decode CBOR: not a map')
  const version = field(root, 'version', '')
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 0) {
    fail('failed to decode CBOR: `version` is not an unsigned integer')
  }
  if (version !== TDX_MEASUREMENT_VERSION) {
    fail(`unsupported version ${version}, expected ${TDX_MEASUREMENT_VERSION}`)
  }
  const image = map(root, 'image', '')
  const tdvf = map(root, 'tdvf', '')
  const mrtd = map(tdvf, 'mrtd', 'tdvf.')
  const ovmf = field(tdvf, 'ovmf', 'tdvf.')
  const variant = OVMF_VARIANTS.find((x) => x === ovmf)
  if (variant === undefined) {
    fail(`failed to decode CBOR: unknown ovmf variant ${cborText(ovmf)}`)
  }
  return {
    image: {
      cmdlineSha384: bytes(image, 'cmdline_sha384', 'image.'),
      kernelAuthenticode: bytes(image, 'kernel_authenticode', 'image.'),
      initrdSha384: bytes(image, 'initrd_sha384', 'image.'),
    },
    tdvf: {
      ovmfVariant: variant,
      mrtd: {
        singlePass: bytes(mrtd, 'single_pass', 'tdvf.mrtd.'),
        twoPass: bytes(mrtd, 'two_pass', 'tdvf.mrtd.'),
      },
      tdHobWitness: bytes(tdvf, 'td_hob', 'tdvf.'),
    },
  }
}

// keys in insertion (upstream struct) order, not cborg's canonical length-first order
const keepOrder = (): number => 0

/** The CBOR upstream's image build writes (keys in its struct order); used by the simulator to
 * describe its guest OS. */
export function encodeTdxMeasurement(m: TdxOsImageMeasurement): Buffer {
  const u8 = (b: Buffer): Uint8Array => new Uint8Array(b)
  return Buffer.from(
    cborEncode(
      {
        version: TDX_MEASUREMENT_VERSION,
        image: {
          cmdline_sha384: u8(m.image.cmdlineSha384),
          kernel_authenticode: u8(m.image.kernelAuthenticode),
          initrd_sha384: u8(m.image.initrdSha384),
        },
        tdvf: {
          ovmf: m.tdvf.ovmfVariant,
          mrtd: { single_pass: u8(m.tdvf.mrtd.singlePass), two_pass: u8(m.tdvf.mrtd.twoPass) },
          td_hob: u8(m.tdvf.tdHobWitness),
        },
      },
      { mapSorter: keepOrder },
    ),
  )
}
