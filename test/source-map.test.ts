// The README's source map, the dependency-cruiser layers and the folders of src/ must agree: the
// map is how a newcomer learns the layers, and a stale one would teach the wrong rules.
import assert from 'node:assert/strict'
import { readFileSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, it } from 'node:test'
// @ts-expect-error: the dependency-cruiser config is plain JavaScript without types
import { LAYERS } from '../.dependency-cruiser.js'

const ROOT = resolve(import.meta.dirname, '..')

/** The layers of the README's "Source map", bottom to top: the backticked names of each block. */
function readmeLayers(): string[][] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const start = readme.indexOf('## Source map')
  assert.ok(start >= 0, 'README.md has a "Source map" section')
  const end = readme.indexOf('\n## ', start + 1)
  const section = readme.slice(start, end < 0 ? undefined : end)
  const layers: string[][] = []
  for (const line of section.split('\n')) {
    if (line.startsWith('**Layer ')) layers.push([])
    else if (line.startsWith('- ') && layers.length > 0) {
      const names = line.slice(2).split(':')[0] ?? ''
      for (const m of names.matchAll(/`([^`]+)`/g)) {
        layers[layers.length - 1]?.push((m[1] ?? '').replace(/\/$/, ''))
      }
    }
  }
  return layers
}

describe('source map', () => {
  const configured = (LAYERS as string[][]).map((l) => [...l].sort())

  it('lists the same layers, in the same order, as .dependency-cruiser.js', () => {
    assert.deepEqual(
      readmeLayers().map((l) => [...l].sort()),
      configured,
    )
  })

  it('covers every folder and top-level module of src/, and nothing else', () => {
    const entries = readdirSync(join(ROOT, 'src'), { withFileTypes: true })
      .map((e) => (e.isDirectory() ? e.name : e.name.endsWith('.ts') ? e.name : ''))
      .filter((n) => n !== '')
      .sort()
    assert.deepEqual(configured.flat().sort(), entries)
  })
})
