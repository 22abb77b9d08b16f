// A pino logger whose JSON lines land in an array, for tests that check what was logged.
import { Writable } from 'node:stream'
import pino, { type Logger } from 'pino'
import type { LogLine } from './kms-process.js'

export function captureLogger(level = 'info'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() !== '') lines.push(JSON.parse(line) as LogLine)
      }
      done()
    },
  })
  return { logger: pino({ level }, stream), lines }
}
