// GET query strings of pRPC requests: serde_qs over the raw query as upstream's prpc reads it
// (flat `key=value&…`, percent-decoded, `+` = space); unknown keys (e.g. `json`) are ignored.
import { rustDebugStrEcho } from '../util/rust-text.js'
import { JsonError } from './json-reader.js'
import { badRequest, decodeHexField, lookupKey, uintFromText } from './field-values.js'
import { blankObject, type FieldDescriptor, type MessageType } from './schema.js'

function queryValue(f: FieldDescriptor, text: string): unknown {
  switch (f.type) {
    case 'string':
      return text
    case 'bytes':
      return decodeHexField(text)
    case 'bool':
      if (text === 'true') return true
      if (text === 'false') return false
      throw new JsonError(`invalid value: string ${rustDebugStrEcho(text)}, expected a boolean`)
    case 'uint32':
    case 'uint64':
      return uintFromText(f.type, text)
    case 'message':
      throw new JsonError(`field \`${f.name}\` cannot be given in a query string`)
  }
}

/** Decodes a GET query string into a request message; unknown keys (e.g. `json`) are ignored. */
export function decodeQuery<T>(type: MessageType<T>, rawQuery: string): T {
  const target = blankObject(type)
  const seen = new Set<string>()
  try {
    for (const [key, text] of new URLSearchParams(rawQuery)) {
      const hit = lookupKey(type, key)
      if (hit === undefined) continue
      const f = hit.field
      if (seen.has(f.name)) throw new JsonError(`duplicate field \`${f.name}\``)
      seen.add(f.name)
      if (f.label === 'repeated') {
        throw new JsonError(`field \`${f.name}\` cannot be given in a query string`)
      }
      Reflect.set(target, f.name, queryValue(f, text))
    }
  } catch (err) {
    throw badRequest(err)
  }
  return type.adopt(target)
}
