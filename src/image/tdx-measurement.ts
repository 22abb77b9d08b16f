// `measurement.tdx.cbor` (upstream `dstack-types` `TdxOsImageMeasurement`, version 3): the
// image-static TDX material a lite guest ships instead of the image itself. Decoded with cbor-x
// and then checked field by field, because the decoder alone would accept any shape.
import { Decoder, Encoder } from 'cbor-x'
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

// Plain maps and byte strings only: no record extensions, no structured clones, no bundled
// strings, so a hostile document cannot switch the decoder into another mode.
const decoder = new Decoder({
  mapsAsObjects: true,
  useRecords: false,
  structuredClone: false,
  bundleStrings: false,
})

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

export function decodeTdxMeasurement(cbor: Uint8Array): TdxOsImageMeasurement {
  let root: unknown
  try {
    root = decoder.decode(cbor)
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
    fail(`failed to decode CBOR: unknown ovmf variant ${JSON.stringify(ovmf)}`)
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

const encoder = new Encoder({
  mapsAsObjects: true,
  useRecords: false,
  structuredClone: false,
  bundleStrings: false,
  variableMapSize: true,
})

/** The CBOR upstream's image build writes (keys in its struct order); used by the simulator to
 * describe its guest OS. */
export function encodeTdxMeasurement(m: TdxOsImageMeasurement): Buffer {
  return Buffer.from(
    encoder.encode({
      version: TDX_MEASUREMENT_VERSION,
      image: {
        cmdline_sha384: m.image.cmdlineSha384,
        kernel_authenticode: m.image.kernelAuthenticode,
        initrd_sha384: m.image.initrdSha384,
      },
      tdvf: {
        ovmf: m.tdvf.ovmfVariant,
        mrtd: { single_pass: m.tdvf.mrtd.singlePass, two_pass: m.tdvf.mrtd.twoPass },
        td_hob: m.tdvf.tdHobWitness,
      },
    }),
  )
}
