// The PEM scan the DCAP verifier applies to the quote's certification data and the collateral's
// issuer chains. It is deliberately the permissive scan of dcap-qvl (`extract_certs`): blocks
// are found by their armour lines anywhere in the text and anything between them is ignored, so
// that a chain is counted and walked exactly as today's verifier counts and walks it.

const PEM_BLOCK =
  /-----BEGIN CERTIFICATE-----\r?\n?([A-Za-z0-9+/=\r\n]+)\r?\n?-----END CERTIFICATE-----/g

/** DER of every CERTIFICATE block in `text`, in order (empty when there is none). */
export function scanPemCertificates(text: string): Buffer[] {
  const out: Buffer[] = []
  for (const m of text.matchAll(PEM_BLOCK)) {
    out.push(Buffer.from((m[1] ?? '').replace(/\r?\n/g, ''), 'base64'))
  }
  return out
}
