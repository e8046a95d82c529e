/**
 * The measuring loop shared by the load generator children: warm-up (not counted), then
 * `concurrency` callers back to back until a deadline or a total, then one JSON result line on
 * stdout. "MEASURING"/"MEASURED" on stderr let the parent sample the server's CPU over exactly
 * the measured window.
 */
export interface LoopJob {
  readonly concurrency: number;
  /** Stop after this long (steady-state runs) ... */
  readonly durationMs?: number;
  /** ... or after these many requests (burst runs). */
  readonly total?: number;
  /** Load before the measured window, not counted: a CA runs for days, its JIT is warm. */
  readonly warmupMs?: number;
}

/** One request; `check` asks for a full decode of the answer (done for one call in 16). */
export type Call = (index: number, check: boolean) => Promise<void>;

export async function measureLoad(job: LoopJob, call: Call): Promise<void> {
  if (job.warmupMs) {
    const until = performance.now() + job.warmupMs;
    let w = 0;
    await Promise.all(
      Array.from({ length: job.concurrency }, async () => {
        while (performance.now() < until) await call(w++, true).catch(() => undefined);
      }),
    );
  }
  process.stderr.write('MEASURING\n');
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let next = 0;
  const started = performance.now();
  const cpuStart = process.cpuUsage();
  const deadline = job.durationMs === undefined ? Infinity : started + job.durationMs;
  const limit = job.total ?? Infinity;
  const caller = async (): Promise<void> => {
    while (performance.now() < deadline && next < limit) {
      const i = next++;
      const t0 = performance.now();
      try {
        await call(i, (i & 15) === 0);
        latencies.push(performance.now() - t0);
      } catch (err) {
        const key = err instanceof Error ? err.message : String(err);
        errors[key] = (errors[key] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, caller));
  const elapsedMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuStart);
  process.stderr.write('MEASURED\n');
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil((p / 100) * latencies.length) - 1))] ?? Number.NaN;
  process.stdout.write(
    JSON.stringify({
      ok: latencies.length,
      errors,
      elapsedMs,
      rate: (latencies.length * 1000) / elapsedMs,
      p50: pct(50),
      p99: pct(99),
      max: latencies.at(-1),
      cpuCores: (cpu.user + cpu.system) / 1000 / elapsedMs,
    }) + '\n',
  );
}

export async function readJob<T>(): Promise<T> {
  const input: Buffer[] = [];
  for await (const chunk of process.stdin) input.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(input).toString('utf8')) as T;
}
