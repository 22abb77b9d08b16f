// Locates the shared test vectors: `shared/` sits beside the repository checkout both here and
// in CI (a fresh clone elsewhere), so resolve relative to this file, not to an absolute path.
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const candidates = [
  fileURLToPath(new URL('../../../shared/vectors/', import.meta.url)),
  '/work/shared/vectors/',
]

export const VECTORS_DIR: string =
  candidates.find((d) => existsSync(d)) ?? (candidates[0] as string)

export function readVectorFile(name: string): Buffer {
  return readFileSync(VECTORS_DIR + name)
}

export function readVectorJson<T>(name: string): T {
  return JSON.parse(readVectorFile(name).toString('utf8')) as T
}

export interface AppKeysFixture {
  ca_cert: string
  key_provider: { None: { key: string } }
}

export const hexBytes = (s: string): Buffer => Buffer.from(s, 'hex')
