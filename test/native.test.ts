// The native addon against the real kernel: flock between real processes, datagrams to a real
// unix socket (received by python3, since Node cannot receive unix datagrams), errno shapes.
import assert from 'node:assert/strict'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { closeSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { getSystemErrorName } from 'node:util'
import { KmsError } from '../src/errors.js'
import {
  BINDING_PATH_ENV,
  DEFAULT_BINDING_PATH,
  isNativeErrnoError,
  loadNativeBinding,
  nativeBindingPath,
  type NativeErrnoError,
} from '../src/native/binding.js'
import { flock, isLockHeldError, lockFileExclusive } from '../src/native/flock.js'
import { notify } from '../src/native/sd-notify.js'
import { collectLines, type LineCollector } from './helpers/line-collector.js'
import { tempDir } from './helpers/temp-dir.js'

const dir = tempDir('dstack-kms-native-')
after(() => rmSync(dir, { recursive: true, force: true }))

const children: ChildProcessWithoutNullStreams[] = []
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
})

function start(
  cmd: string,
  args: string[],
): { child: ChildProcessWithoutNullStreams; out: LineCollector } {
  const child = spawn(cmd, args, { stdio: 'pipe' })
  children.push(child)
  child.stderr.on('data', (d: Buffer) => process.stderr.write(d))
  return { child, out: collectLines(child.stdout) }
}

function exited(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode)
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)))
}

/** Asserts Node's fs error shape, with a code that agrees with Node's own errno table. */
function assertErrno(
  err: unknown,
  expected: { code: string; errno: number; syscall: string; message: string; path?: string },
): NativeErrnoError {
  assert.ok(isNativeErrnoError(err), `not an errno error: ${String(err)}`)
  assert.equal(err.code, expected.code)
  assert.equal(err.errno, expected.errno)
  assert.equal(err.syscall, expected.syscall)
  assert.equal(err.message, expected.message)
  assert.equal(err.path, expected.path)
  assert.equal(getSystemErrorName(err.errno), err.code)
  return err
}

// A second process that takes the lock with the addon and holds it until told otherwise.
const HOLDER = `
const binding = require(process.argv[1])
const fs = require('node:fs')
const fd = fs.openSync(process.argv[2], 'a+')
binding.flock(fd, 'exclusive', true).then(() => console.log('locked'), (e) => { console.log('failed ' + e.code); process.exit(1) })
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'ping') console.log('pong')
  if (line === 'unlock') binding.flock(fd, 'unlock', false).then(() => console.log('unlocked'))
  if (line === 'exit') process.exit(0)
})
`

function startHolder(path: string): { child: ChildProcessWithoutNullStreams; out: LineCollector } {
  return start(process.execPath, ['-e', HOLDER, DEFAULT_BINDING_PATH, path])
}

describe('loader', () => {
  test('loads the built addon from build/Release by default', () => {
    assert.match(nativeBindingPath({}), /\/build\/Release\/dstack_kms_native\.node$/)
    const binding = loadNativeBinding({})
    assert.equal(typeof binding.flock, 'function')
    assert.equal(typeof binding.sendUnixDatagram, 'function')
  })

  test('honours the override path and names it when the file is missing', () => {
    const missing = join(dir, 'nowhere.node')
    assert.equal(nativeBindingPath({ [BINDING_PATH_ENV]: missing }), missing)
    assert.throws(
      () => loadNativeBinding({ [BINDING_PATH_ENV]: missing }),
      (err: unknown) =>
        err instanceof KmsError &&
        err.code === 'KMS_ERR_NATIVE' &&
        err.message === `native addon not found at ${missing} (set by ${BINDING_PATH_ENV})`,
    )
  })

  test('a file that is not an addon fails with the build hint', () => {
    const bogus = join(dir, 'bogus.node')
    writeFileSync(bogus, 'not an ELF file')
    assert.throws(
      () => loadNativeBinding({ [BINDING_PATH_ENV]: bogus }),
      (err: unknown) =>
        err instanceof KmsError &&
        err.code === 'KMS_ERR_NATIVE' &&
        err.message.startsWith(`failed to load native addon ${bogus}: `) &&
        err.message.endsWith('; run `npm run build:native`'),
    )
  })
})

describe('flock', () => {
  test('a lock held by another process gives EAGAIN (EWOULDBLOCK), then is free on release', async () => {
    const path = join(dir, 'kms.lock')
    const holder = startHolder(path)
    await holder.out.waitFor((l) => l === 'locked')

    const err = await lockFileExclusive(path).then(
      () => assert.fail('the lock should be held by the other process'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof KmsError)
    assert.equal(err.code, 'KMS_ERR_LOCKED')
    assert.equal(err.message, `another dstack-kms instance holds ${path}`)
    assert.ok(isLockHeldError(err.cause))
    assertErrno(err.cause, {
      code: 'EAGAIN',
      errno: -11,
      syscall: 'flock',
      message: 'EAGAIN: resource temporarily unavailable, flock',
    })

    holder.child.stdin.write('exit\n')
    assert.equal(await exited(holder.child), 0)

    const lock = await lockFileExclusive(path)
    // now we hold it: a second open file description, even in this process, is refused
    await assert.rejects(lockFileExclusive(path), { code: 'KMS_ERR_LOCKED' })
    await lock.release()
    await lock.release() // idempotent
    const again = await lockFileExclusive(path)
    await again.release()
  })

  test('lockFileExclusive creates a missing lock file with mode 0600', async () => {
    const path = join(dir, 'fresh.lock')
    const lock = await lockFileExclusive(path)
    try {
      assert.equal(statSync(path).mode & 0o777, 0o600)
      assert.equal(lock.path, path)
    } finally {
      await lock.release()
    }
  })

  test('a blocking flock waits on the thread pool, not on the event loop', async () => {
    const path = join(dir, 'blocking.lock')
    const holder = startHolder(path)
    await holder.out.waitFor((l) => l === 'locked')

    const fd = openSync(path, 'r')
    try {
      const events: string[] = []
      const waiting = flock(fd, 'exclusive').then(() => events.push('acquired'))
      // The round trip needs our event loop; it completes while flock is still blocked.
      holder.child.stdin.write('ping\n')
      await holder.out.waitFor((l) => l === 'pong')
      events.push('pong')
      holder.child.stdin.write('unlock\n')
      await waiting
      assert.deepEqual(events, ['pong', 'acquired'])
      await holder.out.waitFor((l) => l === 'unlocked')
      await flock(fd, 'unlock')
    } finally {
      closeSync(fd)
      holder.child.stdin.write('exit\n')
      await exited(holder.child)
    }
  })

  test('shared locks coexist; an exclusive one is refused while they are held', async () => {
    const path = join(dir, 'shared.lock')
    writeFileSync(path, '')
    const a = openSync(path, 'r')
    const b = openSync(path, 'r')
    const c = openSync(path, 'r')
    try {
      await flock(a, 'shared', { nonBlocking: true })
      await flock(b, 'shared', { nonBlocking: true })
      await assert.rejects(flock(c, 'exclusive', { nonBlocking: true }), { code: 'EAGAIN' })
      await flock(a, 'unlock')
      await flock(b, 'unlock')
      await flock(c, 'exclusive', { nonBlocking: true })
    } finally {
      for (const fd of [a, b, c]) closeSync(fd)
    }
  })

  test('a descriptor that is not open rejects with EBADF', async () => {
    // far above any RLIMIT_NOFILE, so it can never be a live descriptor
    const err = await flock(0x7fff0000, 'exclusive', { nonBlocking: true }).then(
      () => assert.fail('flock on a closed descriptor succeeded'),
      (e: unknown) => e,
    )
    assertErrno(err, {
      code: 'EBADF',
      errno: -9,
      syscall: 'flock',
      message: 'EBADF: bad file descriptor, flock',
    })
  })

  test('arguments are validated before and at the native boundary', () => {
    assert.throws(() => flock(-1, 'exclusive'), RangeError)
    assert.throws(() => flock(1.5, 'shared'), RangeError)
    const binding = loadNativeBinding()
    assert.throws(() => Reflect.apply(binding.flock, binding, [1]), {
      name: 'TypeError',
      message: 'flock(fd, operation, nonBlocking) takes 3 arguments',
    })
    assert.throws(() => Reflect.apply(binding.flock, binding, [1, 'both', true]), {
      name: 'RangeError',
      message: "operation must be 'exclusive', 'shared' or 'unlock'",
    })
    assert.throws(() => Reflect.apply(binding.flock, binding, ['1', 'shared', true]), TypeError)
    assert.throws(() => Reflect.apply(binding.flock, binding, [1, 'shared', 1]), TypeError)
  })
})

// Binds a unix datagram socket (a leading "@" = abstract), prints "bound", then prints each
// datagram it receives as hex, `count` times, and exits.
const RECEIVER = `
import socket, sys
addr, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + addr[1:] if addr.startswith('@') else addr)
print('bound', flush=True)
for _ in range(count):
    print(s.recv(65536).hex(), flush=True)
`

function startReceiver(addr: string, count: number) {
  return start('python3', ['-u', '-c', RECEIVER, addr, String(count)])
}

describe('unix datagrams and sd_notify', () => {
  test('sends exact bytes to a filesystem socket', async () => {
    const path = join(dir, 'notify.sock')
    const rx = startReceiver(path, 3)
    await rx.out.waitFor((l) => l === 'bound')
    const binding = loadNativeBinding()
    binding.sendUnixDatagram(path, Buffer.from('READY=1'))
    binding.sendUnixDatagram(path, new Uint8Array([0x00, 0xff, 0x0a, 0x41]))
    binding.sendUnixDatagram(path, Buffer.alloc(0))
    assert.equal(await exited(rx.child), 0)
    assert.deepEqual(rx.out.lines, ['bound', '52454144593d31', '00ff0a41', ''])

    // The socket file is still there but nobody is bound to it: a stale NOTIFY_SOCKET.
    const err = (() => {
      try {
        binding.sendUnixDatagram(path, Buffer.from('x'))
      } catch (e) {
        return e
      }
      return assert.fail('sending to a socket nobody listens on succeeded')
    })()
    assertErrno(err, {
      code: 'ECONNREFUSED',
      errno: -111,
      syscall: 'sendto',
      path,
      message: `ECONNREFUSED: connection refused, sendto '${path}'`,
    })
  })

  test('notify() writes the state to NOTIFY_SOCKET, including an abstract one', async () => {
    const abstract = `@dstack-kms-test-${process.pid}-${Date.now()}`
    const rx = startReceiver(abstract, 2)
    await rx.out.waitFor((l) => l === 'bound')
    assert.equal(notify('READY=1', { NOTIFY_SOCKET: abstract }), true)
    assert.equal(
      notify('STATUS=serving on https://127.0.0.1:8000', { NOTIFY_SOCKET: abstract }),
      true,
    )
    assert.equal(await exited(rx.child), 0)
    assert.deepEqual(rx.out.lines, [
      'bound',
      Buffer.from('READY=1').toString('hex'),
      Buffer.from('STATUS=serving on https://127.0.0.1:8000').toString('hex'),
    ])
  })

  test('notify() does nothing without NOTIFY_SOCKET and refuses other address kinds', () => {
    assert.equal(notify('READY=1', {}), false)
    assert.equal(notify('READY=1', { NOTIFY_SOCKET: '' }), false)
    assert.throws(() => notify('READY=1', { NOTIFY_SOCKET: 'vsock:2:1234' }), {
      code: 'KMS_ERR_NATIVE',
      message: 'unsupported NOTIFY_SOCKET address vsock:2:1234',
    })
  })

  test('a missing socket path throws ENOENT with the path', () => {
    const path = join(dir, 'no-such-dir', 'notify.sock')
    let caught: unknown
    try {
      notify('READY=1', { NOTIFY_SOCKET: path })
    } catch (e) {
      caught = e
    }
    assertErrno(caught, {
      code: 'ENOENT',
      errno: -2,
      syscall: 'sendto',
      path,
      message: `ENOENT: no such file or directory, sendto '${path}'`,
    })
  })

  test('addresses are checked against sockaddr_un limits', () => {
    const binding = loadNativeBinding()
    assert.throws(() => binding.sendUnixDatagram('/' + 'x'.repeat(108), Buffer.from('x')), {
      name: 'RangeError',
      message: 'socket path is too long',
    })
    assert.throws(() => binding.sendUnixDatagram('@' + 'x'.repeat(108), Buffer.from('x')), {
      name: 'RangeError',
      message: 'abstract socket name is too long',
    })
    assert.throws(() => binding.sendUnixDatagram('', Buffer.from('x')), TypeError)
    assert.throws(() => binding.sendUnixDatagram('/a\0b', Buffer.from('x')), TypeError)
    assert.throws(() => Reflect.apply(binding.sendUnixDatagram, binding, ['/a', 'text']), {
      name: 'TypeError',
      message: 'data must be a Buffer or Uint8Array',
    })
  })
})
