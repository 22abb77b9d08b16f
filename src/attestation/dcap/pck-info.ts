// What the KMS reads from the quote's PCK leaf before it fetches collateral: the PPID (which
// dcap-qvl's JS verifier leaves empty), the FMSPC and the issuing PCK CA that choose the
// collateral. Read once per chain: the verifier keeps the result with the verified chain.
import { KmsError, errorMessage } from '../../errors.js'
import { parseCertificate } from '../../x509/parse.js'
import { intelExtension, sgxFmspc, sgxPpid } from './pck-extension.js'
import { scanPemCertificates } from '../../asn1/pem.js'

export interface PckInfo {
  ppid: Buffer
  /** 12 uppercase hex digits */
  fmspc: string
  /** `processor` or `platform`, as the PCCS `pckcrl?ca=` parameter wants it */
  ca: 'processor' | 'platform'
}

function attestationError(message: string, cause?: unknown): KmsError {
  return new KmsError('KMS_ERR_ATTESTATION', message, { cause })
}

/** PPID, FMSPC and issuing CA from the first (leaf) certificate of the quote's PCK chain. */
export function pckInfoFromChain(pckChainPem: string): PckInfo {
  const leaf = scanPemCertificates(pckChainPem)[0]
  if (leaf === undefined) throw attestationError('Failed to extract PCK certificates from quote')
  try {
    const ext = intelExtension(leaf)
    const ppid = Buffer.from(sgxPpid(ext))
    if (ppid.length !== 16) throw new Error(`PPID is ${ppid.length} bytes, expected 16`)
    const fmspc = sgxFmspc(ext).toString('hex').toUpperCase()
    // Rust dcap-qvl's rule: the issuer name says which PCK CA signed the leaf, processor being
    // the default. The names are ASCII strings, so they appear verbatim in the issuer DER.
    const issuer = parseCertificate(leaf).issuerDer.toString('latin1')
    const ca =
      !issuer.includes('Processor') && issuer.includes('Platform') ? 'platform' : 'processor'
    return { ppid, fmspc, ca }
  } catch (err) {
    throw attestationError(`Invalid PCK certificate: ${errorMessage(err)}`, err)
  }
}
