// The pRPC JSON reader on hostile strings: a 10 MB body made of escapes must cost memory in
// proportion to its size, for every escape form, and decode exactly as JSON does.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { describe, it } from 'node:test'
import { decodeJson } from '../src/prpc/json.js'
import { GetAppKeyRequestType } from '../src/prpc/messages.js'

const MB = 1024 * 1024

// each escape form repeated to ~10 MB of body
const FORMS: Record<string, string> = {
  newline: '\\n',
  quote: '\\"',
  solidus: '\\/',
  ascii: '\\u0041',
  twoByte: '\\u00e9',
  threeByte: '\\u20ac',
  surrogatePair: '\\ud83d\\ude00',
  mixed: 'ab\\tc\\u00e9',
}

describe('JSON reader cost on escapes', () => {
  it('decodes every escape form exactly as JSON.parse does', () => {
    for (const [name, escape] of Object.entries(FORMS)) {
      const text = `{"vm_config":"x${escape.repeat(1000)}y"}`
      const want = (JSON.parse(text) as { vm_config: string }).vm_config
      assert.equal(decodeJson(GetAppKeyRequestType, Buffer.from(text)).vm_config, want, name)
    }
    // escapes between plain runs in several strings of one body
    const text = '{"app_id":"0a0b","vm_config":"a\\nb\\u00e9c\\"d"}'
    const got = decodeJson(GetAppKeyRequestType, Buffer.from(text))
    assert.equal(got.vm_config, 'a\nbéc"d')
  })

  it('keeps peak memory within a small multiple of a 10 MB body of escapes', () => {
    // a child process per form: its peak RSS (maxRSS) shows what decoding cost, free of this
    // test process's history
    const script = `
      import { decodeJson } from './src/prpc/json.js'
      import { GetAppKeyRequestType } from './src/prpc/messages.js'
      const escape = process.argv[1]
      const count = Math.floor(${10 * MB} / escape.length)
      const input = Buffer.from('{"vm_config":"' + escape.repeat(count) + '"}')
      decodeJson(GetAppKeyRequestType, Buffer.from('{"vm_config":"a\\\\n"}'))
      const before = process.resourceUsage().maxRSS
      for (let k = 0; k < 3; k++) decodeJson(GetAppKeyRequestType, input)
      process.stdout.write(JSON.stringify({ grewKb: process.resourceUsage().maxRSS - before }))
    `
    for (const [name, escape] of Object.entries(FORMS)) {
      const r = spawnSync(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', script, escape],
        { cwd: new URL('..', import.meta.url).pathname, encoding: 'utf8', maxBuffer: MB },
      )
      assert.equal(r.status, 0, r.stderr)
      const { grewKb } = JSON.parse(r.stdout) as { grewKb: number }
      // input 10 MB, scratch ≤ 10 MB, result ≤ 20 MB as UTF-16: 120 MB leaves room for the GC;
      // a Buffer per escape took this past 1 GB
      assert.ok(grewKb < 120 * 1024, `${name}: peak RSS grew by ${Math.round(grewKb / 1024)} MB`)
    }
  })
})
