// Collects the lines a child process writes, so tests can wait for a condition ("bound",
// "KMS worker ready") instead of sleeping. Timeouts only guard against hangs; they assert nothing.
import type { Readable } from 'node:stream'

export interface LineCollector {
  readonly lines: string[]
  /** Resolves with the first line (already seen or future) that satisfies `pred`. */
  waitFor(pred: (line: string) => boolean, timeoutMs?: number): Promise<string>
}

export function collectLines(stream: Readable, echo = false): LineCollector {
  const lines: string[] = []
  const waiters = new Set<{ pred: (l: string) => boolean; resolve: (l: string) => void }>()
  let buf = ''
  stream.setEncoding('utf8')
  stream.on('data', (chunk: string) => {
    buf += chunk
    let nl: number
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      lines.push(line)
      if (echo) process.stderr.write(`${line}\n`)
      for (const w of [...waiters]) {
        if (w.pred(line)) {
          waiters.delete(w)
          w.resolve(line)
        }
      }
    }
  })
  return {
    lines,
    waitFor(pred, timeoutMs = 20_000) {
      const seen = lines.find(pred)
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const waiter = {
          pred,
          resolve: (l: string) => {
            clearTimeout(timer)
            resolve(l)
          },
        }
        const timer = setTimeout(() => {
          waiters.delete(waiter)
          reject(new Error(`no matching line within ${timeoutMs} ms; got:\n${lines.join('\n')}`))
        }, timeoutMs)
        waiters.add(waiter)
      })
    },
  }
}

/** Polls `check` until it returns a value other than undefined. */
export async function waitUntil<T>(
  check: () => T | undefined,
  what: string,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
