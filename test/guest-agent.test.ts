import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { decodeVersionedAttestation } from '../src/attestation/versioned.js'
import { KmsError } from '../src/errors.js'
import {
  GUEST_AGENT_SOCKET_PATHS,
  GuestAgentBackend,
  createGuestAgentBackend,
  parseGuestAgentAddress,
  resolveGuestAgentAddress,
} from '../src/tee/guest-agent.js'
import { FakeGuestAgent } from './fixtures/fake-guest-agent.js'
import { readVectorFile } from './helpers/crypto-vectors.js'

const ATTESTATION_BIN = readVectorFile('attestation.bin')
const OS_IMAGE_HASH = 'e61be43dd1cc6a6f5edefd7c51b608983780839b0000ce60dd99737dcffe09b9'

function isTeeError(pattern: RegExp | string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof KmsError, `expected a KmsError, got ${String(err)}`)
    assert.equal(err.code, 'KMS_ERR_TEE')
    if (typeof pattern === 'string') assert.equal(err.message, pattern)
    else assert.match(err.message, pattern)
    return true
  }
}

describe('guest-agent address resolution', () => {
  const [modern, legacy] = GUEST_AGENT_SOCKET_PATHS as [string, string]

  it('DSTACK_AGENT_ADDRESS wins without looking at the filesystem', () => {
    const looked: string[] = []
    const exists = (p: string): boolean => {
      looked.push(p)
      return true
    }
    for (const address of ['unix:/tmp/agent.sock', 'http://10.0.2.2:8090', 'vsock:2:8000']) {
      assert.equal(resolveGuestAgentAddress({ DSTACK_AGENT_ADDRESS: address }, exists), address)
    }
    assert.deepEqual(looked, [])
  })

  it('prefers /var/run/dstack/dstack.sock, then /var/run/dstack.sock, else the first', () => {
    const only = (present: string[]) => (p: string) => present.includes(p)
    assert.equal(modern, '/var/run/dstack/dstack.sock')
    assert.equal(legacy, '/var/run/dstack.sock')
    assert.equal(resolveGuestAgentAddress({}, only([modern, legacy])), `unix:${modern}`)
    assert.equal(resolveGuestAgentAddress({}, only([modern])), `unix:${modern}`)
    assert.equal(resolveGuestAgentAddress({}, only([legacy])), `unix:${legacy}`)
    assert.equal(resolveGuestAgentAddress({}, only([])), `unix:${modern}`)
    // a blank variable (compose `DSTACK_AGENT_ADDRESS=`) counts as unset
    assert.equal(
      resolveGuestAgentAddress({ DSTACK_AGENT_ADDRESS: '' }, only([legacy])),
      `unix:${legacy}`,
    )
  })

  it('parses unix and http addresses and refuses vsock clearly', () => {
    assert.deepEqual(parseGuestAgentAddress('unix:/run/dstack.sock'), {
      kind: 'unix',
      socketPath: '/run/dstack.sock',
    })
    assert.deepEqual(parseGuestAgentAddress('http://127.0.0.1:8090/prefix/'), {
      kind: 'http',
      host: '127.0.0.1',
      port: 8090,
      basePath: '/prefix',
    })
    assert.deepEqual(parseGuestAgentAddress('http://[::1]'), {
      kind: 'http',
      host: '::1',
      port: 80,
      basePath: '',
    })
    const refused = (address: string, pattern: RegExp): void => {
      assert.throws(
        () => parseGuestAgentAddress(address),
        (err: unknown) =>
          err instanceof KmsError && err.code === 'KMS_ERR_CONFIG' && pattern.test(err.message),
      )
    }
    refused('vsock:2:8000', /uses vsock, which is not supported/)
    refused('https://agent:443', /unsupported guest-agent address/)
    refused('unix:', /empty socket path/)
    refused('/var/run/dstack.sock', /expected unix:\/path or http:\/\/host:port/)
    assert.throws(
      () => createGuestAgentBackend({ env: { DSTACK_AGENT_ADDRESS: 'vsock:3:8000' } }),
      /vsock, which is not supported/,
    )
  })
})

describe('GuestAgentBackend against a fake agent on a unix socket', () => {
  let agent: FakeGuestAgent
  let backend: GuestAgentBackend

  before(async () => {
    agent = await FakeGuestAgent.start()
    backend = createGuestAgentBackend({ env: { DSTACK_AGENT_ADDRESS: agent.address } })
  })
  after(async () => {
    await backend.close()
    await agent.close()
  })

  it('is the guest-agent backend and can attest', () => {
    assert.equal(backend.name, 'guest-agent')
    assert.equal(backend.canAttest, true)
    assert.equal(backend.address, agent.address)
    assert.ok(agent.socketPath !== null && agent.address === `unix:${agent.socketPath}`)
  })

  it('Attest: POST /Attest?json with padded hex report_data, fixture bytes back intact', async () => {
    agent.requests.length = 0
    const reportData = Buffer.from('00112233445566778899aabbccddeeff', 'hex')
    const bytes = await backend.attest(reportData)
    assert.equal(bytes.length, 9504)
    assert.ok(bytes.equals(ATTESTATION_BIN))
    assert.equal(agent.requests.length, 1)
    const req = agent.requests[0]
    assert.equal(req?.method, 'POST')
    assert.equal(req?.url, '/Attest?json')
    assert.equal(req?.contentType, 'application/json')
    const padded = Buffer.alloc(64)
    reportData.copy(padded)
    assert.deepEqual(JSON.parse(req?.body ?? ''), { report_data: padded.toString('hex') })
  })

  it('Attest: more than 64 bytes of report_data is refused before any request', async () => {
    agent.requests.length = 0
    await assert.rejects(backend.attest(Buffer.alloc(65)), isTeeError('Report data is too long'))
    assert.equal(agent.requests.length, 0)
  })

  it('Info: POST /Info?json with body null → the vm_config string', async () => {
    agent.requests.length = 0
    const vmConfig = await backend.vmConfig()
    assert.equal(vmConfig, agent.vmConfig)
    const parsed = JSON.parse(vmConfig) as { os_image_hash: string }
    assert.equal(parsed.os_image_hash, OS_IMAGE_HASH)
    assert.deepEqual(
      agent.requests.map((r) => [r.url, r.body]),
      [['/Info?json', 'null']],
    )
  })

  it('EmitEvent: POST /EmitEvent?json with the payload in hex', async () => {
    await backend.emitEvent('kms-test', Buffer.from([0xde, 0xad, 0xbe, 0xef]))
    await backend.emitEvent('empty', Buffer.alloc(0))
    assert.deepEqual(
      agent.events.map((e) => [e.event, e.payload.toString('hex')]),
      [
        ['kms-test', 'deadbeef'],
        ['empty', ''],
      ],
    )
    const last = agent.requests.at(-1)
    assert.equal(last?.url, '/EmitEvent?json')
    assert.deepEqual(JSON.parse(last?.body ?? ''), { event: 'empty', payload: '' })
  })

  it('eventLog: the full boot + runtime log of the attestation', async () => {
    const events = await backend.eventLog()
    assert.equal(events.length, 33)
    assert.equal(events.map((e) => e.imr).join(''), '000000000000010000112211333333333')
    const runtime = events.filter((e) => e.imr === 3).map((e) => e.event)
    assert.deepEqual(runtime, [
      'system-preparing',
      'app-id',
      'compose-hash',
      'instance-id',
      'boot-mr-done',
      'os-image-hash',
      'key-provider',
      'storage-fs',
      'system-ready',
    ])
  })

  it('a status other than 200 → upstream text `Invalid status code: <n>, path=<path>`', async () => {
    agent.mode = 'status-500'
    try {
      await assert.rejects(
        backend.attest(Buffer.alloc(64)),
        isTeeError('Invalid status code: 500, path=Attest?json'),
      )
      await assert.rejects(
        backend.vmConfig(),
        isTeeError('Invalid status code: 500, path=Info?json'),
      )
      await assert.rejects(
        backend.emitEvent('x', Buffer.alloc(1)),
        isTeeError('Invalid status code: 500, path=EmitEvent?json'),
      )
    } finally {
      agent.mode = 'ok'
    }
  })

  it('refuses an attestation that does not decode, bad hex and non-JSON replies', async () => {
    try {
      agent.mode = 'garbage'
      await assert.rejects(
        backend.attest(Buffer.alloc(64)),
        isTeeError(/^the guest-agent returned an undecodable attestation: /),
      )
      agent.mode = 'bad-hex'
      await assert.rejects(
        backend.attest(Buffer.alloc(64)),
        isTeeError(/^Failed to deserialize response: attestation: Invalid character/),
      )
      agent.mode = 'not-json'
      await assert.rejects(backend.vmConfig(), isTeeError(/^Failed to deserialize response: /))
    } finally {
      agent.mode = 'ok'
    }
    // the connection pool survives the failures
    assert.ok((await backend.attest(Buffer.alloc(64))).equals(ATTESTATION_BIN))
  })

  it('a hung agent → a timeout error instead of waiting forever', async () => {
    const impatient = new GuestAgentBackend({ address: agent.address, timeoutMs: 200 })
    agent.mode = 'hang'
    try {
      await assert.rejects(
        impatient.attest(Buffer.alloc(64)),
        isTeeError(/^guest-agent request timed out after 200 ms \(unix:.*\), path=Attest\?json$/),
      )
    } finally {
      agent.mode = 'ok'
      await impatient.close()
    }
  })

  it('a reply over the size cap is refused', async () => {
    const small = new GuestAgentBackend({ address: agent.address, maxReplyBytes: 1024 })
    try {
      await assert.rejects(
        small.attest(Buffer.alloc(64)),
        isTeeError('guest-agent reply exceeds 1024 bytes, path=Attest?json'),
      )
    } finally {
      await small.close()
    }
  })

  it('a closed backend refuses further calls', async () => {
    const once = new GuestAgentBackend({ address: agent.address })
    assert.ok((await once.attest(Buffer.alloc(64))).equals(ATTESTATION_BIN))
    await once.close()
    await assert.rejects(once.vmConfig(), isTeeError('the guest-agent client is closed'))
  })
})

describe('GuestAgentBackend transports and simulator-style replies', () => {
  it('a missing socket → a connection error naming the address', async () => {
    const backend = new GuestAgentBackend({ address: 'unix:/nonexistent/dstack-kms-test.sock' })
    try {
      await assert.rejects(
        backend.vmConfig(),
        isTeeError(
          /^guest-agent request failed \(unix:\/nonexistent\/dstack-kms-test\.sock\), path=Info\?json: .*ENOENT/,
        ),
      )
    } finally {
      await backend.close()
    }
  })

  it('http://host:port over TCP loopback', async () => {
    const agent = await FakeGuestAgent.start({ listen: 'tcp' })
    const backend = createGuestAgentBackend({ env: { DSTACK_AGENT_ADDRESS: agent.address } })
    try {
      assert.match(agent.address, /^http:\/\/127\.0\.0\.1:\d+$/)
      assert.ok((await backend.attest(Buffer.alloc(64))).equals(ATTESTATION_BIN))
      assert.equal(await backend.vmConfig(), agent.vmConfig)
      assert.deepEqual(
        agent.requests.map((r) => r.url),
        ['/Attest?json', '/Info?json'],
      )
    } finally {
      await backend.close()
      await agent.close()
    }
  })

  it('patched report_data (upstream simulator): V1 reply carrying the requested report_data', async () => {
    const agent = await FakeGuestAgent.start({ patchReportData: true })
    const backend = new GuestAgentBackend({ address: agent.address })
    try {
      const reportData = Buffer.alloc(64)
      for (let i = 0; i < 64; i++) reportData[i] = i + 1
      const bytes = await backend.attest(reportData)
      assert.ok(!bytes.equals(ATTESTATION_BIN))
      const v = decodeVersionedAttestation(bytes)
      assert.equal(v.version, 1)
      assert.ok(v.attestation.reportData.equals(reportData))
      const original = decodeVersionedAttestation(ATTESTATION_BIN).attestation
      assert.equal(v.attestation.quote.kind, 'dstack-tdx')
      assert.equal(original.quote.kind, 'dstack-tdx')
      if (v.attestation.quote.kind !== 'dstack-tdx' || original.quote.kind !== 'dstack-tdx') return
      const quote = v.attestation.quote.quote
      assert.ok(quote.subarray(568, 632).equals(reportData))
      // everything but REPORT_DATA is the fixture's quote
      assert.ok(quote.subarray(0, 568).equals(original.quote.quote.subarray(0, 568)))
      assert.ok(quote.subarray(632).equals(original.quote.quote.subarray(632)))
      assert.deepEqual(v.attestation.runtimeEvents, original.runtimeEvents)
      assert.equal(v.attestation.config, original.config)
    } finally {
      await backend.close()
      await agent.close()
    }
  })
})
