// Plain-text tables: first column left-aligned, the others right-aligned.

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)].map((l) => `  ${l}`).join('\n')
}

/** a number with thousands separators and a fixed number of decimals */
export function num(value: number, decimals = 0): string {
  if (!Number.isFinite(value)) return '-'
  return value.toLocaleString('en-US', {
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
  })
}

/** a duration given in microseconds, with enough digits to compare */
export function micros(us: number): string {
  if (us >= 100) return num(us, 0)
  if (us >= 10) return num(us, 1)
  return num(us, 2)
}
