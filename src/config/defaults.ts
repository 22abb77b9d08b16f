// Built-in defaults, the bottom layer: upstream's embedded kms.toml without the keys that have
// no effect here, plus our additions, read off the key declaration (keys.ts). Every key the
// typed configuration needs without a file setting it has a default there.

import { CONFIG_KEYS, FREE_FORM_TABLES, type KeyDecl } from './keys.js'
import { tableAt, type RawTable } from './schema.js'

export { DEFAULT_PCCS_URL } from './keys.js'
/** upstream's default `[core.image] download_url` */
export const DEFAULT_DOWNLOAD_URL: string = CONFIG_KEYS['core.image.download_url'].default
export const DEFAULT_ETC_FILE = '/etc/kms/kms.toml'

export function builtinDefaults(): RawTable {
  const root: RawTable = {}
  for (const [key, decl] of Object.entries(CONFIG_KEYS) as Array<[string, KeyDecl]>) {
    if (decl.default === undefined) continue
    const parts = key.split('.')
    const name = parts.pop() as string
    tableAt(root, parts)[name] = decl.default
  }
  for (const key of Object.keys(FREE_FORM_TABLES)) tableAt(root, key.split('.'))
  return root
}
