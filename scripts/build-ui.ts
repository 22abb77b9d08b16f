// Builds the onboarding wizard: type-checks ui/ (its own tsconfig with the DOM library), bundles
// ui/src/main.ts with esbuild into one browser script, and copies the page and stylesheet, all
// into dist/ui/ where the onboarding listener serves them. The output needs no network at run
// time: a KMS CVM often has none.
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { build } from 'esbuild'

const root = resolve(import.meta.dirname, '..')
const src = join(root, 'ui')
const out = join(root, 'dist', 'ui')

execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', src], {
  stdio: 'inherit',
})

rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })
await build({
  entryPoints: [join(src, 'src/main.ts')],
  outfile: join(out, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning',
})
for (const file of ['index.html', 'style.css']) copyFileSync(join(src, file), join(out, file))
