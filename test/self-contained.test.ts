// The repository stands on its own: nothing in src/ or test/ reads or cites documents that only
// exist beside a particular checkout, and every `docs/design.md#…` a comment cites is a real
// heading of docs/design.md (docs/design.md#deliberate-deviations-from-upstream explains why the
// design lives there).
import assert from 'node:assert/strict'
import { readFileSync, readdirSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DESIGN = join(ROOT, 'docs', 'design.md')

/** Text files under `dir`, relative to the repository root. Test fixtures are data with their own
 * PROVENANCE.md, so they are not scanned. */
function sourceFiles(dir: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const path = relative(ROOT, join(entry.parentPath, entry.name))
    if (path.startsWith(join('test', 'fixtures'))) continue
    if (!/\.(ts|mts|js|mjs|cjs|json|md|cc|h|sh)$/.test(entry.name)) continue
    out.push(path)
  }
  return out.sort()
}

/** GitHub's heading anchor: lower case, punctuation other than `-` and `_` dropped, each space a
 * hyphen; a repeated heading gets `-1`, `-2`, … */
function githubAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-')
}

function designAnchors(markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const anchors = new Set<string>()
  let fenced = false
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced
    const m = fenced ? null : /^#{1,6} (.+)$/.exec(line)
    if (m === null) continue
    const base = githubAnchor(m[1] as string)
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    anchors.add(n === 0 ? base : `${base}-${n}`)
  }
  return anchors
}

/** Forms of a reference to something outside the repository. Written so that this file does not
 * match them itself. */
const OUTSIDE_REFERENCES: readonly RegExp[] = [/\.\.\/shared/, /shared\/vectors/, /spec 0\d §/i]

const SCANNED = ['src', 'test'].flatMap(sourceFiles)

describe('self-contained repository', () => {
  it('computes anchors the way GitHub does', () => {
    assert.equal(
      githubAnchor('64-bit integers are JSON numbers'),
      '64-bit-integers-are-json-numbers',
    )
    assert.equal(githubAnchor('/health on every listener'), 'health-on-every-listener')
    assert.equal(githubAnchor('update_certs'), 'update_certs')
    assert.equal(
      githubAnchor("Stable error codes beside upstream's texts"),
      'stable-error-codes-beside-upstreams-texts',
    )
    assert.deepEqual(
      [...designAnchors('# A\n## A\n```\n# not a heading\n```\n### B c')],
      ['a', 'a-1', 'b-c'],
    )
  })

  it('scans the source and test trees', () => {
    assert.ok(SCANNED.includes(join('src', 'cli.ts')))
    assert.ok(SCANNED.includes(join('test', 'self-contained.test.ts')))
  })

  it('no file in src/ or test/ points at documents outside the repository', () => {
    const found: string[] = []
    for (const file of SCANNED) {
      readFileSync(join(ROOT, file), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          for (const re of OUTSIDE_REFERENCES) {
            if (re.test(line)) found.push(`${file}:${i + 1}: ${line.trim()}`)
          }
        })
    }
    assert.deepEqual(found, [])
  })

  it('every docs/design.md anchor cited in src/ or test/ is a heading of docs/design.md', () => {
    const anchors = designAnchors(readFileSync(DESIGN, 'utf8'))
    const cited = new Map<string, string>()
    for (const file of SCANNED) {
      readFileSync(join(ROOT, file), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          for (const m of line.matchAll(/docs\/design\.md#([\w-]+)/g)) {
            cited.set(`${file}:${i + 1} #${m[1] as string}`, m[1] as string)
          }
        })
    }
    // the comments cite dozens of sections; far fewer means the scan itself is broken
    assert.ok(cited.size >= 50, `only ${cited.size} citations found`)
    const missing = [...cited].filter(([, anchor]) => !anchors.has(anchor)).map(([where]) => where)
    assert.deepEqual(missing, [])
  })
})
