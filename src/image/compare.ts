// Expected versus quoted registers (upstream `verifier` `Mrs::assert_eq`): MRTD, then RTMR0–2,
// the first difference reported with both values, wrapped as `MRs do not match`.
import { KmsError } from '../errors.js'
import { REGISTER_NAMES, type RegisterName, type TdxRegisters } from './tdx-registers.js'

export interface RegisterMismatch {
  register: RegisterName
  expected: string
  actual: string
}

/** Registers set to null in `expected` were not computed (legacy `skip` mode) and are skipped. */
export function registerMismatches(
  expected: { [K in RegisterName]: Buffer | null },
  actual: TdxRegisters,
): RegisterMismatch[] {
  const out: RegisterMismatch[] = []
  for (const name of REGISTER_NAMES) {
    const e = expected[name]
    if (e === null) continue
    if (!e.equals(actual[name])) {
      out.push({
        register: name,
        expected: e.toString('hex'),
        actual: actual[name].toString('hex'),
      })
    }
  }
  return out
}

export function assertRegistersMatch(
  expected: { [K in RegisterName]: Buffer | null },
  actual: TdxRegisters,
): void {
  const first = registerMismatches(expected, actual)[0]
  if (first === undefined) return
  throw new KmsError(
    'KMS_ERR_ATTESTATION',
    `MRs do not match: ${first.register.toUpperCase()} mismatch: expected=${first.expected}, actual=${first.actual}`,
  )
}
