// Message descriptors and a generic protobuf codec that produces the same bytes as prost (the
// upstream encoder) and decodes with prost's rules and error texts. The KMS schema is small and
// flat, so a descriptor table beats generated code: one encoder, one decoder, one JSON mapping.
import { Buffer } from 'node:buffer'
import { KmsError } from '../errors.js'
import {
  ProtoDecodeError,
  RECURSION_LIMIT,
  Reader,
  WireType,
  type WireTypeNumber,
  Writer,
  checkWireType,
} from './wire.js'

export type ScalarType = 'string' | 'bytes' | 'bool' | 'uint32' | 'uint64'
export type FieldType = ScalarType | 'message'
/** implicit = proto3 plain field (default omitted); optional = proto3 `optional` or a message */
export type FieldLabel = 'implicit' | 'optional' | 'repeated'

export interface FieldDescriptor {
  readonly name: string
  readonly tag: number
  readonly type: FieldType
  readonly label: FieldLabel
  /** set iff type is 'message' */
  readonly message: MessageType<unknown> | null
  /** extra JSON keys written with the same value after this one and read when it is absent */
  readonly jsonAliases: readonly string[]
  /** the JSON keys this field is written under, quoted and followed by `:` (name, then aliases):
   * made once here rather than per encoded message */
  readonly jsonKeys: readonly string[]
}

export interface MessageType<T> {
  /** the Rust struct name: prost and serde print it in decode errors */
  readonly name: string
  /** declaration order, which is the JSON key order */
  readonly fields: readonly FieldDescriptor[]
  /** ascending tag order, which is the protobuf encoding order */
  readonly encodeOrder: readonly FieldDescriptor[]
  readonly byTag: ReadonlyMap<number, FieldDescriptor>
  /** a message with every field at its default */
  create(): T
  /** adopts an object whose fields a decoder filled in from `blankObject(this)` */
  adopt(value: object): T
}

// ---- field specs and the value types derived from them: a message is declared once, as a
// descriptor object, and its TypeScript type is computed from that object (`MessageOf`), so the
// schema and the type cannot drift apart.

/** One field of a message descriptor, as written in messages.ts. */
export interface FieldSpec {
  readonly tag: number
  readonly type: FieldType
  /** proto3 `optional`: the value may be null (message fields always may) */
  readonly optional?: true
  readonly repeated?: true
  /** set iff type is 'message' */
  readonly message?: MessageType<unknown>
  readonly jsonAliases?: readonly string[]
}

export type MessageSpec = Readonly<Record<string, FieldSpec>>

type ScalarValue<S> = S extends 'string'
  ? string
  : S extends 'bytes'
    ? Buffer
    : S extends 'bool'
      ? boolean
      : S extends 'uint32'
        ? number
        : S extends 'uint64'
          ? bigint
          : never

type SingleValue<F> = F extends { readonly type: 'message'; readonly message: MessageType<infer M> }
  ? M
  : F extends { readonly type: infer S }
    ? ScalarValue<S>
    : never

/** The value type of one field: repeated → array; optional scalar or message → nullable. */
export type FieldValue<F> = F extends { readonly repeated: true }
  ? SingleValue<F>[]
  : F extends { readonly optional: true } | { readonly type: 'message' }
    ? SingleValue<F> | null
    : SingleValue<F>

/** The value type of a message descriptor. */
export type MessageOf<D extends MessageSpec> = { -readonly [K in keyof D]: FieldValue<D[K]> }

/** The value type of a defined message (`MessageValue<typeof GetAppKeyRequestType>`). */
export type MessageValue<M> = M extends MessageType<infer T> ? T : never

const MAX_TAG = 2 ** 29 - 1

export function defineMessage<const D extends MessageSpec>(
  name: string,
  spec: D,
): MessageType<MessageOf<D>> {
  type T = MessageOf<D>
  const loose: MessageSpec = spec
  const fields: FieldDescriptor[] = []
  const byTag = new Map<number, FieldDescriptor>()
  for (const [fieldName, s] of Object.entries(loose)) {
    if (!Number.isInteger(s.tag) || s.tag < 1 || s.tag > MAX_TAG || byTag.has(s.tag)) {
      throw new KmsError('KMS_ERR_INTERNAL', `bad tag ${s.tag} for ${name}.${fieldName}`)
    }
    const isMessage = s.type === 'message'
    if (isMessage !== (s.message !== undefined)) {
      throw new KmsError('KMS_ERR_INTERNAL', `bad message type for ${name}.${fieldName}`)
    }
    const field: FieldDescriptor = {
      name: fieldName,
      tag: s.tag,
      type: s.type,
      label:
        s.repeated === true
          ? 'repeated'
          : s.optional === true || isMessage
            ? 'optional'
            : 'implicit',
      message: s.message ?? null,
      jsonAliases: s.jsonAliases ?? [],
      jsonKeys: [fieldName, ...(s.jsonAliases ?? [])].map((k) => `${JSON.stringify(k)}:`),
    }
    fields.push(field)
    byTag.set(s.tag, field)
  }
  const type: MessageType<T> = {
    name,
    fields,
    encodeOrder: [...fields].sort((a, b) => a.tag - b.tag),
    byTag,
    create: () => type.adopt(blankObject(type)),
    // The decoders only ever pass objects built by blankObject(type) and filled per descriptor.
    adopt: (value: object) => value as T,
  }
  return type
}

export function defaultValue(field: FieldDescriptor): unknown {
  if (field.label === 'repeated') return []
  if (field.label === 'optional') return null
  switch (field.type) {
    case 'string':
      return ''
    case 'bytes':
      return Buffer.alloc(0)
    case 'bool':
      return false
    case 'uint32':
      return 0
    case 'uint64':
      return 0n
    case 'message':
      return null
  }
}

/** A fresh object holding every field's default, for decoders to fill in. */
/** Per message type, an object of its immutable defaults: a blank object is a copy of it, which
 * V8 makes with the template's shape in one step (adding the fields one by one with Reflect.set
 * went through the runtime for every field of every decoded message). */
const blankTemplates = new WeakMap<MessageType<unknown>, Readonly<Record<string, unknown>>>()
const NO_BYTES = Buffer.alloc(0)

function blankTemplate(type: MessageType<unknown>): Readonly<Record<string, unknown>> {
  let template = blankTemplates.get(type)
  if (template === undefined) {
    const built: Record<string, unknown> = {}
    for (const f of type.fields) {
      // a zero-length Buffer has no bytes to change, so every blank message may share one
      built[f.name] = f.label === 'implicit' && f.type === 'bytes' ? NO_BYTES : defaultValue(f)
    }
    template = built
    blankTemplates.set(type, template)
  }
  return template
}

export function blankObject(type: MessageType<unknown>): Record<string, unknown> {
  const out = { ...blankTemplate(type) }
  // the decoders push into repeated fields: each message needs arrays of its own
  for (const f of type.fields) if (f.label === 'repeated') out[f.name] = []
  return out
}

export function isDefaultValue(field: FieldDescriptor, value: unknown): boolean {
  switch (field.type) {
    case 'string':
      return value === ''
    case 'bytes':
      return value instanceof Uint8Array && value.length === 0
    case 'bool':
      return value === false
    case 'uint32':
      return value === 0
    case 'uint64':
      return value === 0n
    case 'message':
      return value === null
  }
}

export function encodeError(message: string, field: string, expected: string): KmsError {
  return new KmsError('KMS_ERR_INTERNAL', `cannot encode ${message}.${field}: expected ${expected}`)
}

/** Reads field `name` of a message value, insisting that the value is an object. */
export function readField(type: MessageType<unknown>, value: unknown, name: string): unknown {
  if (typeof value !== 'object' || value === null) {
    throw new KmsError('KMS_ERR_INTERNAL', `cannot encode ${type.name}: not an object`)
  }
  // a keyed load, which the JIT inlines; Reflect.get is a builtin call per field
  return (value as Record<string, unknown>)[name]
}

// ---- protobuf encoding

function writeSingle(w: Writer, owner: string, f: FieldDescriptor, v: unknown): void {
  switch (f.type) {
    case 'string':
      if (typeof v !== 'string') throw encodeError(owner, f.name, 'a string')
      w.key(f.tag, WireType.LengthDelimited).lengthDelimited(Buffer.from(v, 'utf8'))
      return
    case 'bytes':
      if (!(v instanceof Uint8Array)) throw encodeError(owner, f.name, 'a Buffer')
      w.key(f.tag, WireType.LengthDelimited).lengthDelimited(v)
      return
    case 'bool':
      if (typeof v !== 'boolean') throw encodeError(owner, f.name, 'a boolean')
      w.key(f.tag, WireType.Varint).varint(v ? 1 : 0)
      return
    case 'uint32':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
        throw encodeError(owner, f.name, 'a uint32 number')
      }
      w.key(f.tag, WireType.Varint).varint(v)
      return
    case 'uint64':
      if (typeof v !== 'bigint' || v < 0n || v > 0xffffffffffffffffn) {
        throw encodeError(owner, f.name, 'a uint64 bigint')
      }
      w.key(f.tag, WireType.Varint).varint(v)
      return
    case 'message': {
      const inner = new Writer()
      if (f.message === null) throw encodeError(owner, f.name, 'a message type')
      writeMessage(inner, f.message, v)
      w.key(f.tag, WireType.LengthDelimited).lengthDelimited(inner.finish())
    }
  }
}

function writeMessage(w: Writer, type: MessageType<unknown>, value: unknown): void {
  for (const f of type.encodeOrder) {
    const v = readField(type, value, f.name)
    if (f.label === 'repeated') {
      if (!Array.isArray(v)) throw encodeError(type.name, f.name, 'an array')
      for (const el of v) writeSingle(w, type.name, f, el)
    } else if (f.label === 'optional') {
      // proto3 `optional` and message fields are emitted whenever set, even when empty/zero
      if (v !== null) writeSingle(w, type.name, f, v)
    } else if (!isDefaultValue(f, v)) {
      writeSingle(w, type.name, f, v)
    }
  }
}

/** The prost encoding of `value` (no outer length prefix; all defaults → empty buffer). */
export function encodeMessage<T>(type: MessageType<T>, value: T): Buffer {
  const w = new Writer()
  writeMessage(w, type, value)
  return w.finish()
}

// ---- protobuf decoding

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes)
  } catch {
    throw new ProtoDecodeError('invalid string value: data is not UTF-8 encoded')
  }
}

function readSingle(r: Reader, f: FieldDescriptor, wireType: WireTypeNumber): unknown {
  switch (f.type) {
    case 'string':
      return decodeUtf8(r.bytes(wireType))
    case 'bytes':
      return r.bytes(wireType)
    case 'bool':
      checkWireType(WireType.Varint, wireType)
      return r.varint() !== 0n
    case 'uint32':
      checkWireType(WireType.Varint, wireType)
      // prost: `decode_varint(buf)? as u32` truncates
      return Number(r.varint() & 0xffffffffn)
    case 'uint64':
      checkWireType(WireType.Varint, wireType)
      return r.varint()
    case 'message':
      throw new KmsError('KMS_ERR_INTERNAL', 'messages are merged, not read')
  }
}

function mergeNested(
  r: Reader,
  type: MessageType<unknown>,
  target: object,
  wireType: WireTypeNumber,
  depth: number,
): void {
  checkWireType(WireType.LengthDelimited, wireType)
  if (depth <= 0) throw new ProtoDecodeError('recursion limit reached')
  const len = r.length()
  const end = r.pos + len
  mergeFields(r, type, target, end, depth - 1)
  if (r.pos !== end) throw new ProtoDecodeError('delimited length exceeded')
}

function mergeField(
  r: Reader,
  f: FieldDescriptor,
  target: object,
  wireType: WireTypeNumber,
  depth: number,
): void {
  if (f.type === 'message') {
    const inner = f.message
    if (inner === null) throw new KmsError('KMS_ERR_INTERNAL', `no message type for ${f.name}`)
    if (f.label === 'repeated') {
      const el = blankObject(inner)
      mergeNested(r, inner, el, wireType, depth)
      pushTo(target, f.name, el)
      return
    }
    // a repeated occurrence of a singular message field merges into the existing value
    let cur: unknown = Reflect.get(target, f.name)
    if (typeof cur !== 'object' || cur === null) {
      cur = blankObject(inner)
      Reflect.set(target, f.name, cur)
    }
    if (typeof cur === 'object' && cur !== null) mergeNested(r, inner, cur, wireType, depth)
    return
  }
  const v = readSingle(r, f, wireType)
  if (f.label === 'repeated') pushTo(target, f.name, v)
  else Reflect.set(target, f.name, v)
}

function pushTo(target: object, name: string, v: unknown): void {
  const arr: unknown = Reflect.get(target, name)
  if (Array.isArray(arr)) arr.push(v)
  else Reflect.set(target, name, [v])
}

function mergeFields(
  r: Reader,
  type: MessageType<unknown>,
  target: object,
  end: number,
  depth: number,
): void {
  while (r.pos < end) {
    const { tag, wireType } = r.key()
    const f = type.byTag.get(tag)
    if (f === undefined) {
      r.skip(wireType, tag, depth)
      continue
    }
    try {
      mergeField(r, f, target, wireType, depth)
    } catch (err) {
      if (err instanceof ProtoDecodeError) err.push(type.name, f.name)
      throw err
    }
  }
}

/** Decodes a prost message (empty input → all defaults). Errors carry prost's Display text. */
export function decodeMessage<T>(type: MessageType<T>, data: Uint8Array): T {
  const r = new Reader(data)
  const target = blankObject(type)
  try {
    mergeFields(r, type, target, data.length, RECURSION_LIMIT)
  } catch (err) {
    if (err instanceof ProtoDecodeError) {
      throw new KmsError('KMS_ERR_BAD_REQUEST', err.display(), { cause: err })
    }
    throw err
  }
  return type.adopt(target)
}
