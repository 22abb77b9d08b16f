// Deterministic crash injection for the crash-safety tests: when DSTACK_KMS_TEST_CRASH_POINT names
// a point, the process SIGKILLs itself there, exactly like a power cut at that instant (no
// cleanup handlers run). Unset in production, where this is a single string compare.
export function crashPoint(name: string): void {
  if (process.env.DSTACK_KMS_TEST_CRASH_POINT === name) process.kill(process.pid, 'SIGKILL')
}
