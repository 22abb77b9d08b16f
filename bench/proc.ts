// Memory and CPU of another process, from Linux /proc.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

export interface ProcMemory {
  /** resident set size now, KiB */
  rssKiB: number
  /** peak resident set size since the process started, KiB */
  hwmKiB: number
}

function statusField(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)
  if (m?.[1] === undefined) throw new Error(`no ${field} in /proc status`)
  return Number(m[1])
}

export function procMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return { rssKiB: statusField(status, 'VmRSS'), hwmKiB: statusField(status, 'VmHWM') }
}

let clockTicks: number | undefined

function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    } catch {
      clockTicks = Number.NaN
    }
    // USER_HZ is 100 on every Linux architecture Node supports
    if (!Number.isFinite(clockTicks) || clockTicks <= 0) clockTicks = 100
  }
  return clockTicks
}

/** user + system CPU time the process has used so far, in milliseconds */
export function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // the command name (field 2) may contain spaces; the fields after its ')' are fixed
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15
  const ticks = Number(fields[11]) + Number(fields[12])
  return (ticks * 1000) / ticksPerSecond()
}

/** procCpuMs summed over one process or several (a KMS's main workers) */
export function procsCpuMs(pids: number | readonly number[]): number {
  return (typeof pids === 'number' ? [pids] : pids).reduce((a, pid) => a + procCpuMs(pid), 0)
}

export function mib(kib: number): string {
  return `${(kib / 1024).toFixed(1)} MiB`
}
