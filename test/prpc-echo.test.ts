// Error texts that echo a request value: short values read exactly as upstream's, long ones are
// cut so that a 4 MB string does not come back as a 4 MB error body and log line.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { errorMessage } from '../src/errors.js'
import { decodeJson } from '../src/prpc/json.js'
import { GetAppKeyRequestType, SignCertRequestType } from '../src/prpc/messages.js'
import { decodeQuery } from '../src/prpc/query.js'
// the documented cut-off (src/util/rust-text.ts)
const ECHO_MAX_CHARS = 128

const MB = 1024 * 1024

function failure(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    return errorMessage(err)
  }
  assert.fail('expected an error')
}

describe('echoed values in decode errors', () => {
  it('keeps upstream text for short values', () => {
    assert.equal(
      failure(() => decodeJson(GetAppKeyRequestType, Buffer.from('{"api_version":"x"}'))),
      'invalid value: string "x", expected u32 at line 1 column 18',
    )
    const exact = '9'.repeat(ECHO_MAX_CHARS)
    const text = `{"api_version":"${exact}"}`
    assert.equal(
      failure(() => decodeJson(GetAppKeyRequestType, Buffer.from(text))),
      `invalid value: string "${exact}", expected u32 at line 1 column ${text.length - 1}`,
    )
  })

  it('cuts a 4 MB value in a number field, a wrong-type string and a query value', () => {
    const big = '7'.repeat(4 * MB)
    const cases: [string, () => unknown][] = [
      [
        'u32 string',
        () => decodeJson(GetAppKeyRequestType, Buffer.from(`{"api_version":"${big}"}`)),
      ],
      ['struct', () => decodeJson(GetAppKeyRequestType, Buffer.from(`"${big}"`))],
      ['sequence', () => decodeJson(SignCertRequestType, Buffer.from(`{"api_version":"é${big}"}`))],
      ['query', () => decodeQuery(GetAppKeyRequestType, `api_version=${big}x`)],
    ]
    for (const [name, fn] of cases) {
      const message = failure(fn)
      assert.ok(message.length < 400, `${name}: ${message.length} chars`)
      assert.match(message, /… \(\d+ bytes\)/, name)
    }
  })
})
