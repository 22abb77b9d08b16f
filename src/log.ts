// One logger shape for every process: pino JSON on stdout with a `worker` field naming the
// process, pretty-printed only when a human is watching (stdout is a TTY).
import pino, { type Logger } from 'pino'

export type WorkerName = 'supervisor' | 'onboard' | 'kms' | 'auth-simple' | 'cli'

export function createLogger(worker: WorkerName, level = 'info'): Logger {
  const options = { level, base: { worker, pid: process.pid } }
  if (process.stdout.isTTY) {
    return pino({
      ...options,
      transport: { target: 'pino-pretty', options: { colorize: true, destination: 1 } },
    })
  }
  return pino(options, pino.destination({ dest: 1, sync: true }))
}
