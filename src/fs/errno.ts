// Node's system errors name their errno in `code`. A caught value is `unknown`, so the name is
// read without assuming an Error, in one place.

/** The errno name of a Node-style error (`'ENOENT'`), or undefined for anything else. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined
  return typeof err.code === 'string' ? err.code : undefined
}

/** The path does not exist (ENOENT). */
export function isNotFound(err: unknown): boolean {
  return errnoCode(err) === 'ENOENT'
}
