// The boot event log (RTMR0–2) the firmware leaves in the ACPI CCEL log area,
// converted to TDX events with the codec's CCEL parser.
import { parseCcel } from '../../attestation/event-log.js'
import type { TdxEvent } from '../../attestation/types.js'
import { KmsError, withContext } from '../../errors.js'
import { ioErrorText } from './errors.js'
import type { TdxIo } from './io.js'

/** The log area itself (kernel ≥ 6.4 exposes it when the table's LAML and LASA are non-zero). */
export const CCEL_DATA_PATH = '/sys/firmware/acpi/tables/data/CCEL'
export const CCEL_FILE_ENV = 'DSTACK_CCEL_FILE'

/** `DSTACK_CCEL_FILE` when set (absolute and non-empty, else an error: no fallback), else the
 * ACPI path. */
export function ccelPath(io: TdxIo): string {
  const override = io.env[CCEL_FILE_ENV]
  if (override === undefined) return CCEL_DATA_PATH
  if (override === '') {
    throw new KmsError('KMS_ERR_TDX', `empty path override from ${CCEL_FILE_ENV}`)
  }
  if (!override.startsWith('/')) {
    throw new KmsError(
      'KMS_ERR_TDX',
      `path override from ${CCEL_FILE_ENV} must be absolute: ${override}`,
    )
  }
  return override
}

export async function readCcel(io: TdxIo): Promise<Buffer> {
  const path = ccelPath(io)
  try {
    return await io.readFile(path)
  } catch (err) {
    throw new KmsError('KMS_ERR_TDX', `failed to read CCEL from ${path}: ${ioErrorText(err)}`, {
      cause: err,
    })
  }
}

/** The CCEL records as TDX events (mr_index 0 dropped, ACPI DATA events labelled). */
export async function readCcelEvents(io: TdxIo): Promise<TdxEvent[]> {
  const data = await readCcel(io)
  try {
    return parseCcel(data).events
  } catch (err) {
    throw withContext('failed to decode CCEL', err, 'KMS_ERR_TDX')
  }
}
