// The one way tests get a scratch directory: a fresh directory under the OS temp dir, removed
// when the test process exits (a test may still remove it earlier itself).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const created: string[] = []

process.once('exit', () => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true })
})

export function tempDir(prefix = 'dstack-kms-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  created.push(dir)
  return dir
}
