// docs/configuration.md documents every kms.toml key the loader accepts, and nothing else: the
// key tables of its "Keys" section are read back and compared with the declaration in
// src/config/keys.ts.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { CONFIG_KEYS, FREE_FORM_TABLES } from '../src/config/keys.js'

const DOC = join(import.meta.dirname, '..', 'docs', 'configuration.md')

/** Dotted key names from the first cell of each key-table row under `## Keys`: a `### [table]`
 * heading sets the table; a cell names one or more keys, the first optionally prefixed by
 * `[sub.table]`, which then applies to the rest of the cell. `<Method>` stands for any key. */
export function documentedKeys(markdown: string): string[] {
  const keys: string[] = []
  let inKeys = false
  let table: string | undefined
  for (const line of markdown.split('\n')) {
    if (line.startsWith('## ')) {
      inKeys = line === '## Keys'
      table = undefined
      continue
    }
    if (!inKeys) continue
    const heading = /^### `\[([a-z0-9_.]+)\]`/.exec(line)
    if (heading !== null) {
      table = heading[1]
      continue
    }
    if (table === undefined || !line.startsWith('| `')) continue
    const cell = line.split('|')[1]?.trim() ?? ''
    let prefix = table
    for (const m of cell.matchAll(/`(?:\[([a-z0-9_.]+)\] )?([a-z0-9_<>A-Z]+)[^`]*`/g)) {
      if (m[1] !== undefined) prefix = m[1]
      const name = m[2] ?? ''
      keys.push(`${prefix}.${name.startsWith('<') ? '*' : name}`)
    }
  }
  return keys
}

describe('docs/configuration.md', () => {
  test('documents exactly the declared keys', () => {
    const documented = documentedKeys(readFileSync(DOC, 'utf8'))
    const declared = [
      ...Object.keys(CONFIG_KEYS),
      ...Object.keys(FREE_FORM_TABLES).map((t) => `${t}.*`),
    ]
    const missing = declared.filter((k) => !documented.includes(k))
    const undeclared = documented.filter((k) => !declared.includes(k))
    assert.deepEqual(missing, [], 'declared keys that docs/configuration.md does not document')
    assert.deepEqual(undeclared, [], 'documented keys that src/config/keys.ts does not declare')
    assert.equal(new Set(documented).size, documented.length, 'a key documented twice')
  })

  test('the reader finds table-prefixed, listed and free-form keys', () => {
    const sample = [
      '## Keys',
      '### `[rpc]` — x',
      '| `port` | port | 1 | a |',
      '| `[rpc.tls] key`, `certs` | path | x | b |',
      '| `[rpc.limits] <Method> = <size>` | size | x | c |',
      '## Other',
      '| `[rpc] nope` | x | x | x |',
    ].join('\n')
    assert.deepEqual(documentedKeys(sample), [
      'rpc.port',
      'rpc.tls.key',
      'rpc.tls.certs',
      'rpc.limits.*',
    ])
  })
})
