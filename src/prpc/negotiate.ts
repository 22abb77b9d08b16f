// JSON or protobuf for one pRPC exchange
// (docs/design.md#json-unless-the-request-asks-for-protobuf). Upstream answers protobuf unless
// `?json`, GET or `Content-Type: application/json`; we answer protobuf only when the client
// explicitly sends a protobuf content type, so the product document's `curl -d '{}'` examples (form
// content type) get JSON, while every real client (all send `?json`) sees upstream's behaviour.

const PROTOBUF_TYPES: ReadonlySet<string> = new Set([
  'application/octet-stream',
  'application/x-protobuf',
  'application/protobuf',
])

/** Upstream's `?json` flag: the first field whose decoded key is exactly `json` has the value
 * `""`, `"1"` or `"true"` (`?json`, `?json=`, `?json=1`, `?json=true`; not `?json=false`, `?JSON`). */
export function jsonQueryFlag(rawQuery: string): boolean {
  // what every known client sends
  if (rawQuery === 'json') return true
  const value = new URLSearchParams(rawQuery).get('json')
  return value === '' || value === '1' || value === 'true'
}

/** The media type essence (`type/subtype`, lowercase, parameters dropped), or null if absent. */
export function contentTypeEssence(header: string | undefined): string | null {
  if (header === undefined) return null
  const semi = header.indexOf(';')
  const essence = (semi < 0 ? header : header.slice(0, semi)).trim().toLowerCase()
  return essence === '' ? null : essence
}

export function isProtobufContentType(header: string | undefined): boolean {
  const essence = contentTypeEssence(header)
  return essence !== null && PROTOBUF_TYPES.has(essence)
}

export interface NegotiationInput {
  /** HTTP method; HEAD counts as GET */
  readonly method: string
  /** the query part of the request target (everything after the first `?`), undecoded */
  readonly rawQuery: string
  /** the request's Content-Type header as sent, if any */
  readonly contentType: string | undefined
}

/** Protobuf only for a non-GET without `?json` whose Content-Type is a protobuf type. Used for
 * request decoding, success bodies and all error bodies alike. */
export function wantsJson(input: NegotiationInput): boolean {
  const method = input.method.toUpperCase()
  if (method === 'GET' || method === 'HEAD') return true
  if (jsonQueryFlag(input.rawQuery)) return true
  return !isProtobufContentType(input.contentType)
}
