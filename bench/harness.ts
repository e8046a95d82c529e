/**
 * A small benchmark harness. Machines here are shared and noisy, so every figure is reported
 * next to a baseline measured in the same run, and as a ratio to it.
 */
export interface BenchResult {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly baselineName?: string;
  readonly baseline?: number;
  readonly ratio?: number;
  /** Human-readable target, e.g. ">= 2000/s and >= 0.08x"; `met` says whether this run met it. */
  readonly target?: string;
  readonly met?: boolean;
}

export function progress(text: string): void {
  process.stderr.write(`  · ${text}\n`);
}

/** Runs `op` repeatedly for `durationMs` and returns operations per second. */
export async function rate(op: () => unknown, durationMs: number): Promise<number> {
  // Warm up JIT and caches before the measured window.
  const warmEnd = performance.now() + Math.min(200, durationMs / 4);
  while (performance.now() < warmEnd) await op();
  let count = 0;
  const start = performance.now();
  let now = start;
  while (now - start < durationMs) {
    await op();
    count++;
    if ((count & 15) === 0) now = performance.now();
  }
  now = performance.now();
  return (count * 1000) / (now - start);
}

/** Median of `rounds` measurements, interleaving rounds of several ops so noise hits all alike. */
export async function interleavedMedians(ops: Record<string, () => unknown>, rounds: number, durationMs: number): Promise<Record<string, number>> {
  const samples: Record<string, number[]> = {};
  for (let r = 0; r < rounds; r++) {
    for (const [name, op] of Object.entries(ops)) {
      (samples[name] ??= []).push(await rate(op, durationMs));
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)]));
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function percentile(sortedValues: readonly number[], p: number): number {
  if (sortedValues.length === 0) return Number.NaN;
  const index = Math.min(sortedValues.length - 1, Math.ceil((p / 100) * sortedValues.length) - 1);
  return sortedValues[Math.max(0, index)]!;
}

function fmt(n: number | undefined, unit = ''): string {
  if (n === undefined || Number.isNaN(n)) return '';
  const digits = Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 1 ? 2 : 3;
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) + unit;
}

export function formatTable(results: readonly BenchResult[]): string {
  const rows = [
    ['benchmark', 'value', 'baseline', 'ratio', 'target', 'met'],
    ...results.map((r) => [
      r.name,
      `${fmt(r.value)} ${r.unit}`,
      r.baseline === undefined ? '' : `${fmt(r.baseline)} (${r.baselineName ?? ''})`,
      r.ratio === undefined ? '' : `${fmt(r.ratio)}x`,
      r.target ?? '',
      r.met === undefined ? '' : r.met ? 'yes' : 'NO',
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (row: readonly string[]): string => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}
