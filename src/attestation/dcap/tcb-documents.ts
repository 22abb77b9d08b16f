// TCB info and QE identity documents as the DCAP verifier reads them, and the TCB level matching
// and status arithmetic. Reading follows dcap-qvl (`TcbInfo::fromJSON`, `QeIdentity::fromJSON`):
// members are taken as they are and only the shapes the matching walks are required, so that a
// document is accepted, matched and refused exactly as by today's verifier.

export interface TcbLevel {
  sgxComponents: unknown[]
  tdxComponents: unknown[]
  pceSvn: unknown
  status: unknown
  advisoryIds: unknown
}

export interface TcbInfo {
  id: unknown
  version: unknown
  issueDate: unknown
  nextUpdate: unknown
  fmspc: unknown
  levels: TcbLevel[]
}

export interface QeTcbLevel {
  isvSvn: unknown
  status: unknown
  advisoryIds: unknown
}

export interface QeIdentity {
  id: unknown
  version: unknown
  issueDate: unknown
  nextUpdate: unknown
  miscselect: unknown
  miscselectMask: unknown
  attributes: unknown
  attributesMask: unknown
  mrsigner: unknown
  isvprodid: unknown
  levels: QeTcbLevel[]
}

// JSON members are read the way a JS object is read; a missing member is `undefined`, and a
// member whose container is missing throws a TypeError (which becomes the "Failed to decode"
// cause, as today).
type Json = Record<string, unknown>
const member = (o: unknown, key: string): unknown => (o as Json)[key]
function list(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new TypeError(`${what} is not an array`)
  return v
}

export function parseTcbInfo(text: string): TcbInfo {
  const obj: unknown = JSON.parse(text)
  const levels = list(member(obj, 'tcbLevels'), 'tcbLevels').map((level): TcbLevel => {
    const tcb = member(level, 'tcb')
    const sgx = list(member(tcb, 'sgxtcbcomponents'), 'sgxtcbcomponents').map((c) =>
      member(c, 'svn'),
    )
    const tdxRaw = member(tcb, 'tdxtcbcomponents')
    const tdx = (
      tdxRaw === undefined || tdxRaw === null || tdxRaw === false || tdxRaw === 0 || tdxRaw === ''
        ? []
        : list(tdxRaw, 'tdxtcbcomponents')
    ).map((c) => member(c, 'svn'))
    const advisories = member(level, 'advisoryIDs')
    return {
      sgxComponents: sgx,
      tdxComponents: tdx,
      pceSvn: member(tcb, 'pcesvn'),
      status: member(level, 'tcbStatus'),
      advisoryIds: isFalsy(advisories) ? [] : advisories,
    }
  })
  return {
    id: member(obj, 'id'),
    version: member(obj, 'version'),
    issueDate: member(obj, 'issueDate'),
    nextUpdate: member(obj, 'nextUpdate'),
    fmspc: member(obj, 'fmspc'),
    levels,
  }
}

export function parseQeIdentity(text: string): QeIdentity {
  const obj: unknown = JSON.parse(text)
  const levels = list(member(obj, 'tcbLevels'), 'tcbLevels').map((level): QeTcbLevel => {
    const advisories = member(level, 'advisoryIDs')
    return {
      isvSvn: member(member(level, 'tcb'), 'isvsvn'),
      status: member(level, 'tcbStatus'),
      advisoryIds: isFalsy(advisories) ? [] : advisories,
    }
  })
  return {
    id: member(obj, 'id'),
    version: member(obj, 'version'),
    issueDate: member(obj, 'issueDate'),
    nextUpdate: member(obj, 'nextUpdate'),
    miscselect: member(obj, 'miscselect'),
    miscselectMask: member(obj, 'miscselectMask'),
    attributes: member(obj, 'attributes'),
    attributesMask: member(obj, 'attributesMask'),
    mrsigner: member(obj, 'mrsigner'),
    isvprodid: member(obj, 'isvprodid'),
    levels,
  }
}

function isFalsy(v: unknown): boolean {
  return v === undefined || v === null || v === false || v === 0 || v === ''
}

/** JS `<` on JSON values, as the matching compares them (a missing SVN never compares). */
function lessThan(a: unknown, b: unknown): boolean {
  return (a as number) < (b as number)
}

/** An advisory list as an array (a non-iterable member is the TypeError today's verifier hits). */
function advisoryList(v: unknown): unknown[] {
  if (typeof v === 'string') return [...v]
  if (!Array.isArray(v)) throw new TypeError('advisoryIDs is not iterable')
  return [...(v as unknown[])]
}

export interface TcbStatus {
  status: string
  advisoryIds: unknown[]
}

function status(raw: unknown, advisories: unknown): TcbStatus {
  const s = isFalsy(raw) ? 'Unknown' : raw
  return { status: s as string, advisoryIds: advisoryList(advisories) }
}

function svnsAtLeast(actual: Uint8Array, required: readonly unknown[]): boolean {
  if (actual.length !== required.length) return false
  for (let i = 0; i < actual.length; i++) if (lessThan(actual[i], required[i])) return false
  return true
}

/** The first TCB level the platform (CPUSVN, PCESVN and, for TDX, TEE_TCB_SVN) is at or above. */
export function matchPlatformTcb(
  info: TcbInfo,
  cpuSvn: Uint8Array,
  pceSvn: number,
  tdx: { teeTcbSvn: Uint8Array | null } | null,
): TcbStatus {
  for (const level of info.levels) {
    if (lessThan(pceSvn, level.pceSvn)) continue
    if (level.sgxComponents.length === 0) throw new Error('No SGX components in the TCB info')
    if (!svnsAtLeast(cpuSvn, level.sgxComponents)) continue
    if (tdx !== null) {
      // a TDX header over an enclave report (possible in v5) only fails once a level is reached
      if (tdx.teeTcbSvn === null) throw new Error('Failed to get TD10 report')
      if (level.tdxComponents.length === 0) throw new Error('No TDX components in the TCB info')
      if (!svnsAtLeast(tdx.teeTcbSvn, level.tdxComponents)) continue
    }
    return status(level.status, level.advisoryIds)
  }
  throw new Error('No matching TCB level found')
}

/** The QE's TCB level by ISVSVN (levels are listed newest first). */
export function matchQeTcbLevel(isvSvn: number, levels: readonly QeTcbLevel[]): TcbStatus {
  for (const level of levels) {
    if (isvSvn >= (level.isvSvn as number)) {
      return status(level.status, level.advisoryIds)
    }
  }
  const last = levels[levels.length - 1]
  if (last === undefined) throw new Error('No TCB levels found in QE Identity')
  throw new Error(
    `QE ISVSVN ${isvSvn} is below minimum required ${String(last.isvSvn)} from QE Identity`,
  )
}

const SEVERITY: Record<string, number> = {
  UpToDate: 0,
  SWHardeningNeeded: 1,
  ConfigurationNeeded: 2,
  ConfigurationAndSWHardeningNeeded: 3,
  OutOfDate: 4,
  OutOfDateConfigurationNeeded: 5,
  Revoked: 6,
}
const severity = (s: string): number => (Object.hasOwn(SEVERITY, s) ? (SEVERITY[s] ?? 100) : 100)

/** The worse of the two statuses, with both advisory lists (first occurrence kept). */
export function mergeTcbStatus(platform: TcbStatus, qe: TcbStatus): TcbStatus {
  const worse = severity(qe.status) > severity(platform.status) ? qe.status : platform.status
  const ids = [...platform.advisoryIds]
  for (const id of qe.advisoryIds) if (!ids.includes(id)) ids.push(id)
  return { status: worse, advisoryIds: ids }
}

/** Statuses a key may be released under (Revoked and anything unknown are refused). */
export function isAcceptableStatus(s: string): boolean {
  return severity(s) <= 5
}
