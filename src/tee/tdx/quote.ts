// `get_quote` of upstream `tdx-attest`: one quote at a time per process, configfs-tsm
// whenever it is configured or mounted (its errors never fall back), else QGS over vsock when
// /etc/tdx-attest.conf names a port, else not supported.
import { ConfigfsTsmQuoter, REPORT_DATA_SIZE } from './configfs-tsm.js'
import { selectQuoteMethod } from './detect.js'
import { TdxError } from './errors.js'
import type { TdxIo } from './io.js'
import { Mutex } from '../../util/concurrency.js'
import { getQuoteViaVsock } from './qgs.js'

export class TdxQuoter {
  readonly configfs: ConfigfsTsmQuoter
  readonly #io: TdxIo
  readonly #lock = new Mutex()

  constructor(io: TdxIo) {
    this.#io = io
    this.configfs = new ConfigfsTsmQuoter(io)
  }

  getQuote(reportData: Uint8Array): Promise<Buffer> {
    if (reportData.length !== REPORT_DATA_SIZE) {
      return Promise.reject(new TdxError('KMS_ERR_TDX_INVALID_PARAMETER'))
    }
    const data = Buffer.from(reportData)
    return this.#lock.run(() => this.#quote(data))
  }

  async #quote(reportData: Buffer): Promise<Buffer> {
    const method = await selectQuoteMethod(this.#io, this.configfs)
    if (method.kind === 'configfs') return this.configfs.getQuote(reportData)
    return getQuoteViaVsock(this.#io, reportData, method.port)
  }
}
