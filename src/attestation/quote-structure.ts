// Bytes of a DCAP quote that no signature, hash or chain covers, refused before verification
// (docs/design.md#what-binds-each-attestation-byte). The quote parser follows dcap-qvl and reads
// through the length fields, so whatever a length field declares but no field reads, and the type
// fields of the certification data (outside the QE report's hash), would otherwise pass unseen.
// Runs in front of both quote verifier engines, so node-crypto and dcap-qvl refuse the same.
import { attErr } from './attestation-error.js'
import {
  PCK_CERT_CHAIN_TYPE,
  QE_REPORT_CERTIFICATION_DATA_TYPE,
  type ParsedQuote,
} from './quote.js'

// Intel's PCK chains end in "\n\0" (a C string); whitespace and NUL around the PEM blocks are
// the only bytes outside them that carry nothing
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*-----END CERTIFICATE-----/g
const FILLER = /^[\s\0]*$/

/** Throws `KMS_ERR_ATTESTATION` naming the first unbound byte range or type field. `raw` is the
 * encoding `q` was parsed from. */
export function checkQuoteStructure(raw: Uint8Array, q: ParsedQuote): void {
  if (q.declaredBodySize !== null && q.declaredBodySize !== q.bodySize) {
    throw attErr(`Quote body size field is ${q.declaredBodySize}, the body is ${q.bodySize} bytes`)
  }
  // v3 carries the PCK data directly; v4/v5 wrap it in QE report certification data
  if (q.version !== 3 && q.certificationDataType !== QE_REPORT_CERTIFICATION_DATA_TYPE) {
    throw attErr(
      `Unsupported certification data type: ${q.certificationDataType} (expected ${QE_REPORT_CERTIFICATION_DATA_TYPE}, QE report certification data)`,
    )
  }
  if (q.pckCertType !== PCK_CERT_CHAIN_TYPE) {
    throw attErr(`Unsupported DCAP PCK cert format: ${q.pckCertType}`)
  }
  if (q.unreadQeCertificationData !== 0) {
    throw attErr(
      `${q.unreadQeCertificationData} unread bytes after the PCK certification data inside the QE report certification data`,
    )
  }
  if (q.unreadSignatureData !== 0) {
    throw attErr(`${q.unreadSignatureData} unread bytes at the end of the quote signature data`)
  }
  if (!FILLER.test(q.pckChainPem.replace(PEM_BLOCK, ''))) {
    throw attErr('PCK certificate chain has content outside its PEM certificates')
  }
  // zero padding after the quote is what fixed-size quote buffers (configfs-tsm, the QGS
  // protocol) leave; anything else would ride along unverified
  const tail = raw.subarray(q.length)
  const nonZero = tail.findIndex((b) => b !== 0)
  if (nonZero !== -1) {
    throw attErr(
      `Non-zero byte after the quote's signature data at offset ${q.length + nonZero} (only zero padding may follow a quote)`,
    )
  }
}
