// The test vectors live inside the repository (test/fixtures/vectors/, provenance in its
// PROVENANCE.md), so a clone runs its tests with nothing beside it.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const VECTORS_DIR: string = fileURLToPath(new URL('../fixtures/vectors/', import.meta.url))

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
