// The Intel SGX extension of a PCK certificate (Intel's "PCK Certificate and CRL Profile"): the
// PPID, FMSPC and TCB (CPUSVN, PCESVN) the quote's platform was certified with. The messages are
// dcap-qvl's (`get_intel_extension`, `find_extension`, `get_fmspc`, …), which clients see inside
// "Invalid PCK certificate: …" and in TCB failures.
import { type DerNode, TAG, derChildren, parseDer, readOid } from '../../asn1/der.js'
import { parseCertificate } from '../../x509/parse.js'

const SGX = '1.2.840.113741.1.13.1'
export const SGX_EXTENSION_OID = {
  extension: SGX,
  ppid: `${SGX}.1`,
  tcb: `${SGX}.2`,
  fmspc: `${SGX}.4`,
  pceSvn: `${SGX}.2.17`,
  cpuSvn: `${SGX}.2.18`,
} as const

/** The extension's value (a SEQUENCE of OID/value pairs) of a DER certificate. */
export function intelExtension(certDer: Buffer): Buffer {
  const ext = parseCertificate(certDer).extensions.get(SGX_EXTENSION_OID.extension)
  if (ext === undefined) throw new Error('Intel extension not found')
  return ext.value
}

/** The value under `path`: an OCTET STRING's contents, any other type as its whole TLV. */
export function findSgxValue(path: readonly string[], raw: Buffer): Buffer {
  let current: DerNode = parseDer(raw)
  for (const oid of path) {
    const found = derChildren(current).find((item) => {
      const [id] = derChildren(item)
      return id !== undefined && id.tag === TAG.OID && readOid(id, 'SGX extension OID') === oid
    })
    const value = found === undefined ? undefined : derChildren(found)[1]
    if (value === undefined) throw new Error(`OID ${oid} is missing`)
    current = value
  }
  return current.tag === TAG.OCTET_STRING ? current.content : current.raw
}

export function sgxFmspc(ext: Buffer): Buffer {
  const v = findSgxValue([SGX_EXTENSION_OID.fmspc], ext)
  if (v.length !== 6) throw new Error('Fmspc length mismatch')
  return v
}

export function sgxCpuSvn(ext: Buffer): Buffer {
  const v = findSgxValue([SGX_EXTENSION_OID.tcb, SGX_EXTENSION_OID.cpuSvn], ext)
  if (v.length !== 16) throw new Error('CpuSvn length mismatch')
  return v
}

export function sgxPceSvn(ext: Buffer): number {
  let v = findSgxValue([SGX_EXTENSION_OID.tcb, SGX_EXTENSION_OID.pceSvn], ext)
  // an INTEGER arrives as its TLV; its one- or two-byte content is the big-endian SVN
  if (v.length >= 2 && v[0] === TAG.INTEGER) v = v.subarray(2, 2 + (v[1] ?? 0))
  if (v.length === 1) return v[0] ?? 0
  if (v.length === 2) return ((v[0] ?? 0) << 8) | (v[1] ?? 0)
  throw new Error('PceSvn length mismatch')
}

export function sgxPpid(ext: Buffer): Buffer {
  return findSgxValue([SGX_EXTENSION_OID.ppid], ext)
}
