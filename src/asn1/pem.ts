// PEM (RFC 7468) in the exact shape upstream writes: 64-character base64 lines, LF line ends,
// trailing newline. Decoding is strict about the base64 body (canonical alphabet and padding,
// no RFC 1421 headers) but tolerates CRLF and text around the blocks, as RFC 7468 allows.
import { KmsError } from '../errors.js'

export function pemEncode(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64')
  const lines: string[] = []
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64))
  return `-----BEGIN ${label}-----\n${lines.join('\n')}${lines.length > 0 ? '\n' : ''}-----END ${label}-----\n`
}

interface PemBlock {
  label: string
  der: Buffer
}

const BASE64_LINE = /^[A-Za-z0-9+/]*={0,2}$/

function decodeBody(lines: readonly string[], label: string): Buffer {
  const body = lines.join('')
  if (body.length === 0) throw new KmsError('KMS_ERR_CERT', `PEM ${label}: empty body`)
  if (!BASE64_LINE.test(body) || body.length % 4 !== 0) {
    throw new KmsError('KMS_ERR_CERT', `PEM ${label}: invalid base64 body`)
  }
  const der = Buffer.from(body, 'base64')
  // Buffer's decoder ignores non-zero padding bits; a round trip catches that.
  if (der.toString('base64') !== body) {
    throw new KmsError('KMS_ERR_CERT', `PEM ${label}: non-canonical base64 body`)
  }
  return der
}

function parseBlocks(pem: string): PemBlock[] {
  const lines = pem.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l))
  const blocks: PemBlock[] = []
  let open: { label: string; body: string[] } | undefined
  for (const raw of lines) {
    const line = raw.trim()
    const begin = /^-----BEGIN ([^-]*)-----$/.exec(line)
    const end = /^-----END ([^-]*)-----$/.exec(line)
    if (open === undefined) {
      if (begin !== null) open = { label: begin[1] ?? '', body: [] }
      else if (end !== null) throw new KmsError('KMS_ERR_CERT', 'PEM: END line without BEGIN')
      continue
    }
    if (begin !== null) throw new KmsError('KMS_ERR_CERT', `PEM ${open.label}: missing END line`)
    if (end !== null) {
      if (end[1] !== open.label) {
        throw new KmsError('KMS_ERR_CERT', `PEM ${open.label}: END label ${end[1] ?? ''} differs`)
      }
      blocks.push({ label: open.label, der: decodeBody(open.body, open.label) })
      open = undefined
      continue
    }
    if (line.length > 0) open.body.push(line)
  }
  if (open !== undefined) throw new KmsError('KMS_ERR_CERT', `PEM ${open.label}: missing END line`)
  return blocks
}

/** All blocks with `label`, in order (blocks with other labels are skipped). */
export function pemDecodeAll(pem: string, label: string): Buffer[] {
  return parseBlocks(pem)
    .filter((b) => b.label === label)
    .map((b) => b.der)
}

/** The first block with `label`; throws when there is none or the text is malformed. */
export function pemDecode(pem: string, label: string): Buffer {
  const first = pemDecodeAll(pem, label)[0]
  if (first === undefined) throw new KmsError('KMS_ERR_CERT', `PEM: no ${label} block found`)
  return first
}

/** The labels of all blocks, in order (for error messages and format sniffing). */
export function pemLabels(pem: string): string[] {
  return parseBlocks(pem).map((b) => b.label)
}

// The permissive scan of dcap-qvl (`extract_certs`), for the DCAP verifier's reading of a quote's
// certification data and the collateral's issuer chains: blocks are found by their armour lines
// anywhere in the text and anything between them is ignored, so that a chain is counted and
// walked exactly as dcap-qvl counts and walks it. Everything else decodes PEM strictly above.
const PEM_CERTIFICATE_BLOCK =
  /-----BEGIN CERTIFICATE-----\r?\n?([A-Za-z0-9+/=\r\n]+)\r?\n?-----END CERTIFICATE-----/g

/** DER of every CERTIFICATE block `text` holds by dcap-qvl's scan, in order (empty when none). */
export function scanPemCertificates(text: string): Buffer[] {
  const out: Buffer[] = []
  for (const m of text.matchAll(PEM_CERTIFICATE_BLOCK)) {
    out.push(Buffer.from((m[1] ?? '').replace(/\r?\n/g, ''), 'base64'))
  }
  return out
}
