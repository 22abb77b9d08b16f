// The outbound client's HTTP/1.1 response parser, fed every response twice: in one chunk and
// byte by byte, so framing never depends on how the bytes happen to arrive.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  Http1ResponseParser,
  HttpProtocolError,
  HttpReplyTooLargeError,
} from '../src/http/http1-response.js'

const MAX_BODY = 1024

/** Feeds `raw` whole and then one byte at a time; `end` signals the close afterwards. Returns
 * the byte-by-byte parser after checking that both agree. */
function parse(raw: string | Buffer, opts: { end?: boolean; maxBody?: number } = {}) {
  const bytes = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw
  const run = (pieces: Buffer[]) => {
    const p = new Http1ResponseParser({ maxBodyBytes: opts.maxBody ?? MAX_BODY })
    for (const piece of pieces) p.push(piece)
    if (opts.end === true) p.end()
    return p
  }
  const whole = run([bytes])
  const split = run([...bytes].map((b) => Buffer.from([b])))
  for (const p of [whole, split]) assert.ok(p.head !== undefined, 'a head was parsed')
  assert.deepEqual(
    { head: split.head, body: split.body(), done: split.done, reusable: split.reusable },
    { head: whole.head, body: whole.body(), done: whole.done, reusable: whole.reusable },
  )
  return split
}

/** Both ways of feeding `raw` must fail with `expected`. */
function refuses(raw: string, expected: RegExp, opts: { end?: boolean; maxBody?: number } = {}) {
  const bytes = Buffer.from(raw, 'latin1')
  for (const pieces of [[bytes], [...bytes].map((b) => Buffer.from([b]))]) {
    const p = new Http1ResponseParser({ maxBodyBytes: opts.maxBody ?? MAX_BODY })
    assert.throws(
      () => {
        for (const piece of pieces) p.push(piece)
        if (opts.end === true) p.end()
      },
      (e: unknown) =>
        (e instanceof HttpProtocolError || e instanceof HttpReplyTooLargeError) &&
        expected.test(e.message),
      `${JSON.stringify(raw.slice(0, 80))} in ${pieces.length === 1 ? 'one chunk' : 'bytes'}`,
    )
  }
}

const head = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`

describe('Http1ResponseParser framing', () => {
  it('a Content-Length body, with headers combined as node:http does', () => {
    const p = parse(
      head([
        'HTTP/1.1 201 Created',
        'Content-Length: 5',
        'X-Multi: 1',
        'x-multi:  2 ',
        'Set-Cookie: a=1',
        'Set-Cookie: b=2',
        'Content-Type: application/json',
        'Content-Type: text/plain',
      ]) + 'hello',
    )
    assert.equal(p.head?.status, 201)
    assert.equal(p.head?.reason, 'Created')
    assert.equal(p.head?.minor, 1)
    assert.equal(p.head?.headers['x-multi'], '1, 2')
    assert.deepEqual(p.head?.headers['set-cookie'], ['a=1', 'b=2'])
    assert.equal(p.head?.headers['content-type'], 'application/json')
    assert.equal(p.body().toString(), 'hello')
    assert.ok(p.done)
    assert.ok(p.reusable)
  })

  it('repeated identical Content-Length values are one length', () => {
    const p = parse(head(['HTTP/1.1 200 OK', 'Content-Length: 3', 'Content-Length: 3, 03']) + 'abc')
    assert.equal(p.body().toString(), 'abc')
    assert.ok(p.reusable)
  })

  it('a chunked body with extensions, upper-case hex and trailers', () => {
    const p = parse(
      head(['HTTP/1.1 200 OK', 'Transfer-Encoding: Chunked']) +
        '5;name=value\r\nhello\r\n000B ; x\r\n and more!!\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n',
    )
    assert.equal(p.body().toString(), 'hello and more!!')
    assert.equal(p.head?.headers['x-trailer'], undefined, 'trailers are not headers')
    assert.ok(p.done)
    assert.ok(p.reusable)
  })

  it('a chunked body without trailers', () => {
    const p = parse(
      head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked']) + '2\r\nok\r\n0\r\n\r\n',
    )
    assert.equal(p.body().toString(), 'ok')
    assert.ok(p.reusable)
  })

  it('a body without a length runs to the close, and the connection is not reused', () => {
    const raw = head(['HTTP/1.1 200 OK', 'Content-Type: text/plain']) + 'until the end'
    const open = new Http1ResponseParser({ maxBodyBytes: MAX_BODY })
    open.push(Buffer.from(raw))
    assert.equal(open.done, false, 'not complete before the close')
    const p = parse(raw, { end: true })
    assert.equal(p.body().toString(), 'until the end')
    assert.ok(p.done)
    assert.equal(p.reusable, false)
  })

  it('skips interim 1xx responses', () => {
    const p = parse(
      head(['HTTP/1.1 100 Continue']) +
        head(['HTTP/1.1 103 Early Hints', 'Link: </x>; rel=preload']) +
        head(['HTTP/1.1 200 OK', 'Content-Length: 2']) +
        'ok',
    )
    assert.equal(p.head?.status, 200)
    assert.equal(p.head?.headers.link, undefined)
    assert.equal(p.body().toString(), 'ok')
    assert.ok(p.reusable)
  })

  it('HTTP/1.0 keeps the connection only when the server says keep-alive', () => {
    const plain = parse(head(['HTTP/1.0 200 OK', 'Content-Length: 1']) + 'x')
    assert.equal(plain.head?.minor, 0)
    assert.ok(plain.done)
    assert.equal(plain.reusable, false)
    const kept = parse(
      head(['HTTP/1.0 200 OK', 'Connection: Keep-Alive', 'Content-Length: 1']) + 'x',
    )
    assert.ok(kept.reusable)
    const closeDelimited = parse(head(['HTTP/1.0 200 OK']) + 'abc', { end: true })
    assert.equal(closeDelimited.body().toString(), 'abc')
  })

  it('Connection: close forbids reuse', () => {
    const p = parse(head(['HTTP/1.1 200 OK', 'Connection: foo, Close', 'Content-Length: 0']))
    assert.ok(p.done)
    assert.equal(p.reusable, false)
  })

  it('bytes after the response are counted and forbid reuse', () => {
    const p = parse(head(['HTTP/1.1 200 OK', 'Content-Length: 2']) + 'okHTTP/1.1 200 OK\r\n')
    assert.equal(p.body().toString(), 'ok')
    assert.ok(p.done)
    assert.equal(p.extra, 17)
    assert.equal(p.reusable, false)
  })

  it('204 and 304 have no body whatever the headers say', () => {
    for (const status of ['204 No Content', '304 Not Modified']) {
      const p = parse(head([`HTTP/1.1 ${status}`, 'Content-Length: 10']))
      assert.ok(p.done)
      assert.equal(p.body().length, 0)
      assert.ok(p.reusable)
    }
  })

  it('a status line without a reason phrase', () => {
    for (const line of ['HTTP/1.1 200', 'HTTP/1.1 200 ']) {
      const p = parse(head([line, 'Content-Length: 0']))
      assert.equal(p.head?.status, 200)
      assert.equal(p.head?.reason, '')
    }
  })

  it('headers are a null-prototype object: a hostile name cannot reach Object.prototype', () => {
    const p = parse(head(['HTTP/1.1 200 OK', '__proto__: x', 'Content-Length: 0']))
    assert.deepEqual(Object.entries(p.head?.headers ?? {}), [
      ['__proto__', 'x'],
      ['content-length', '0'],
    ])
    assert.equal(Object.getPrototypeOf(p.head?.headers), null)
  })
})

describe('Http1ResponseParser refusals', () => {
  it('a malformed status line', () => {
    for (const line of [
      'HTTP/1.1 20 OK',
      'HTTP/1.1 2000 OK',
      'HTTP/2 200 OK',
      'HTTP/1.2 200 OK',
      'HTTP/1.1  200 OK',
      'http/1.1 200 OK',
      'ICY 200 OK',
      'HTTP/1.1 099 Low',
      ' HTTP/1.1 200 OK',
    ]) {
      refuses(head([line, 'Content-Length: 0']), /^malformed status line$/)
    }
  })

  it('a head ended by bare LFs, or a bare CR or LF inside it', () => {
    refuses('HTTP/1.1 200 OK\nContent-Length: 0\n\n', /^bare LF in response header$/)
    refuses(head(['HTTP/1.1 200 OK', 'X: a\nb', 'Content-Length: 0']), /invalid character|bare LF/)
    refuses(head(['HTTP/1.1 200 OK', 'X: a\rb', 'Content-Length: 0']), /invalid character/)
  })

  it('a header block over the cap, complete or not', () => {
    const big = `X-Big: ${'a'.repeat(64 * 1024)}`
    refuses(
      head(['HTTP/1.1 200 OK', big, 'Content-Length: 0']),
      /^response header larger than 65536 bytes$/,
    )
    refuses(`HTTP/1.1 200 OK\r\n${big}`, /^response header larger than 65536 bytes$/)
  })

  it('malformed header lines: no colon, obs-fold, whitespace in the name, control bytes', () => {
    for (const line of ['NoColon', ': empty-name', ' Folded: x', 'Bad Name: x', 'Bad : x']) {
      refuses(
        head(['HTTP/1.1 200 OK', 'Content-Length: 0', line]),
        /^malformed header (line|name)$/,
      )
    }
    refuses(
      head(['HTTP/1.1 200 OK', 'X: \x01', 'Content-Length: 0']),
      /^invalid character in header value$/,
    )
  })

  it('a Transfer-Encoding other than exactly chunked', () => {
    for (const te of ['gzip', 'gzip, chunked', 'chunked, chunked', 'identity']) {
      refuses(
        head(['HTTP/1.1 200 OK', `Transfer-Encoding: ${te}`]) + '0\r\n\r\n',
        /^unsupported Transfer-Encoding$/,
      )
    }
    refuses(
      head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked']) +
        '0\r\n\r\n',
      /^unsupported Transfer-Encoding$/,
    )
  })

  it('Transfer-Encoding together with Content-Length', () => {
    refuses(
      head(['HTTP/1.1 200 OK', 'Content-Length: 5', 'Transfer-Encoding: chunked']) + '0\r\n\r\n',
      /^both Transfer-Encoding and Content-Length$/,
    )
  })

  it('differing or invalid Content-Length values', () => {
    refuses(
      head(['HTTP/1.1 200 OK', 'Content-Length: 5', 'Content-Length: 6']) + 'hello',
      /^conflicting Content-Length$/,
    )
    refuses(
      head(['HTTP/1.1 200 OK', 'Content-Length: 5, 6']) + 'hello',
      /^conflicting Content-Length$/,
    )
    for (const v of ['', 'abc', '-1', '+5', '5.0', '0x5', '5 5']) {
      refuses(
        head(['HTTP/1.1 200 OK', `Content-Length: ${v}`]) + 'hello',
        /^invalid Content-Length$/,
      )
    }
  })

  it('malformed chunked framing', () => {
    const te = head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked'])
    refuses(`${te}zz\r\n`, /^malformed chunk size line$/)
    refuses(`${te}\r\n`, /^malformed chunk size line$/)
    refuses(`${te}-5\r\nhello\r\n0\r\n\r\n`, /^malformed chunk size line$/)
    refuses(`${te}5\r\nhelloXX0\r\n\r\n`, /^chunk data not followed by CRLF$/)
    refuses(`${te}5\r\nhello\n0\r\n\r\n`, /^chunk data not followed by CRLF$/)
    refuses(`${te}5\nhello\r\n0\r\n\r\n`, /^(bare LF in|malformed) chunk size line$/)
    refuses(`${te}5;${'e'.repeat(5000)}`, /^chunk size line too long$/)
    refuses(`${te}0\r\nbad trailer\r\n\r\n`, /^malformed header line$/)
    refuses(`${te}0\r\nX: ${'t'.repeat(70_000)}`, /^response trailers larger than 65536 bytes$/)
  })

  it('101 Switching Protocols', () => {
    refuses(
      head(['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket']),
      /^unexpected 101 Switching Protocols$/,
    )
  })

  it('a close before the response is complete', () => {
    refuses('', /^connection closed before a reply$/, { end: true })
    refuses('HTTP/1.1 200 OK\r\nContent-', /^connection closed mid-reply$/, { end: true })
    refuses(
      head(['HTTP/1.1 200 OK', 'Content-Length: 5']) + 'hel',
      /^connection closed mid-reply$/,
      {
        end: true,
      },
    )
    refuses(
      head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked']) + '5\r\nhello\r\n',
      /^connection closed mid-reply$/,
      {
        end: true,
      },
    )
  })

  it('bodies over the cap: declared, chunked or close-delimited', () => {
    const tooLarge = /^response larger than 8 bytes$/
    refuses(head(['HTTP/1.1 200 OK', 'Content-Length: 9']), tooLarge, { maxBody: 8 })
    refuses(head(['HTTP/1.1 200 OK', `Content-Length: ${'9'.repeat(30)}`]), tooLarge, {
      maxBody: 8,
    })
    refuses(
      head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked']) + '5\r\nhello\r\n4\r\n',
      tooLarge,
      { maxBody: 8 },
    )
    refuses(
      head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked']) + `${'f'.repeat(40)}\r\n`,
      tooLarge,
      {
        maxBody: 8,
      },
    )
    refuses(head(['HTTP/1.1 200 OK']) + 'more than eight', tooLarge, { maxBody: 8 })
    // exactly at the cap is fine
    const p = parse(head(['HTTP/1.1 200 OK', 'Content-Length: 8']) + '12345678', { maxBody: 8 })
    assert.equal(p.body().toString(), '12345678')
  })
})
