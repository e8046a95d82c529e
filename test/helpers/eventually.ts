/** Polls `check` until it holds, for at most `timeoutMs`: for state that timers and loops reach (leader election, publication, rotation). */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000, intervalMs = 100): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
