// The errno checks every "absent file is fine" path relies on, against real system errors.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { errnoCode, isNotFound } from '../src/fs/errno.js'
import { tempDir } from './helpers/temp-dir.js'

function thrownBy(f: () => unknown): unknown {
  try {
    f()
  } catch (err) {
    return err
  }
  throw new Error('nothing was thrown')
}

describe('errno checks', () => {
  const dir = tempDir()

  it('a missing file is not found', () => {
    const err = thrownBy(() => readFileSync(join(dir, 'missing')))
    assert.equal(errnoCode(err), 'ENOENT')
    assert.equal(isNotFound(err), true)
  })

  it('a file that is there but unreadable is not "not found"', () => {
    const err = thrownBy(() => readFileSync(dir))
    assert.equal(errnoCode(err), 'EISDIR')
    assert.equal(isNotFound(err), false)
  })

  it('values without a string code have no errno name', () => {
    for (const v of [undefined, null, 'ENOENT', 2, new Error('ENOENT'), { code: 2 }]) {
      assert.equal(errnoCode(v), undefined)
      assert.equal(isNotFound(v), false)
    }
  })
})
