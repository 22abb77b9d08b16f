// The open-file limit as /proc/self/limits reports it, checked against the shell's own view, and
// the rule that a process's listeners at their connection caps must fit below it.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import {
  OUTBOUND_FILE_ROOM,
  openFileLimit,
  openFileShortfall,
} from '../src/util/open-file-limit.js'
import { tempDir } from './helpers/temp-dir.js'

describe('open-file limit', () => {
  it("reads this process's soft limit as the shell reports it", () => {
    // a child inherits the limit: `ulimit -Sn` in it prints ours
    const shell = spawnSync('sh', ['-c', 'ulimit -Sn'], { encoding: 'utf8' })
    assert.equal(shell.status, 0, shell.stderr)
    const printed = shell.stdout.trim()
    assert.equal(openFileLimit(), printed === 'unlimited' ? Infinity : Number(printed))
  })

  it('reads "unlimited", and gives null for a missing file or line', () => {
    const dir = tempDir()
    const file = join(dir, 'limits')
    writeFileSync(
      file,
      'Limit                     Soft Limit           Hard Limit           Units\n' +
        'Max processes             63704                63704                processes\n' +
        'Max open files            unlimited            unlimited            files\n',
    )
    assert.equal(openFileLimit(file), Infinity)
    writeFileSync(
      file,
      'Max processes             63704                63704                processes\n',
    )
    assert.equal(openFileLimit(file), null)
    assert.equal(openFileLimit(join(dir, 'missing')), null)
  })

  it('listeners full at their caps plus outbound room must fit below the limit', () => {
    assert.equal(openFileShortfall(2 * 8192 + OUTBOUND_FILE_ROOM, 8192, 2), null)
    assert.equal(openFileShortfall(Infinity, 8192, 2), null)
    assert.equal(
      openFileShortfall(1024, 8192, 1),
      `the open-file limit (1024) is below limits.max_connections (8192) × 1 listener(s) + ${OUTBOUND_FILE_ROOM} for outbound connections and files = ${8192 + OUTBOUND_FILE_ROOM}: a connection flood can exhaust file descriptors before the connection cap applies; raise LimitNOFILE (ulimit -n) or lower limits.max_connections`,
    )
  })
})
