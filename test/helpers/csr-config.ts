// The certificate settings a test CSR asks for (a plain server certificate for app.example.com
// unless the test says otherwise, so each test spells out only what it is about) and the SignCert
// request body that carries the CSR.
import type { P256Key } from '../../src/crypto/p256.js'
import type { CsrCertConfig, CsrCertConfigV2 } from '../../src/ratls/csr.js'

/** Upstream `CertConfig` (CSR V1) with `overrides` over the defaults. */
export function csrConfigV1(overrides: Partial<CsrCertConfig> = {}): CsrCertConfig {
  return {
    orgName: null,
    subject: 'app.example.com',
    subjectAltNames: [],
    usageServerAuth: true,
    usageClientAuth: false,
    extQuote: false,
    ...overrides,
  }
}

/** Upstream `CertConfigV2` with `overrides` over the defaults (no app info, no validity bounds). */
export function csrConfig(overrides: Partial<CsrCertConfigV2> = {}): CsrCertConfigV2 {
  return {
    ...csrConfigV1(),
    extAppInfo: false,
    notBefore: null,
    notAfter: null,
    ...overrides,
  }
}

/** The JSON body of a SignCert request with the fields as given (a wrong signature included). */
export function signCertBody(req: {
  apiVersion: number
  csr: Buffer
  signature: Buffer
  vmConfig: string
}): string {
  return JSON.stringify({
    api_version: req.apiVersion,
    csr: req.csr.toString('hex'),
    signature: req.signature.toString('hex'),
    vm_config: req.vmConfig,
  })
}

/** The JSON body of a V2 SignCert request carrying `csr` signed by `key`, as a guest sends it. */
export function signCertJson(key: P256Key, csr: Buffer, vmConfig: string): string {
  return signCertBody({ apiVersion: 2, csr, signature: key.sign(csr), vmConfig })
}
