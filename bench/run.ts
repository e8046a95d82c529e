import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatTable, type BenchResult } from './harness.js';
import { benchGrpc } from './grpc.js';
import { benchIssuance } from './issuance.js';
import { benchPolicy } from './policy.js';
import { benchProxy } from './proxy.js';
import { benchSidecar } from './sidecar.js';
import { benchTls } from './tls.js';

/**
 * `npm run bench [-- --quick] [-- suite...]`: prints a table and writes bench/results.json
 * (name -> value, baseline, ratio) so runs can be compared.
 */
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const selected = args.filter((a) => !a.startsWith('--'));
let inProcessRate = 0;
const suites: Record<string, () => Promise<BenchResult[]>> = {
  issuance: async () => {
    const results = await benchIssuance({ rounds: quick ? 1 : 3, durationMs: quick ? 300 : 1500 });
    inProcessRate = results.find((r) => r.name.startsWith('in-process'))?.value ?? 0;
    return results;
  },
  policy: () => benchPolicy(),
  proxy: () => benchProxy({ durationMs: quick ? 500 : 2000 }),
  sidecar: () => benchSidecar({ requests: quick ? 5000 : 20_000 }),
  tls: () => benchTls({ rounds: quick ? 1 : 3, durationMs: quick ? 500 : 1000 }),
  grpc: async () => {
    if (inProcessRate === 0) inProcessRate = (await benchIssuance({ rounds: 1, durationMs: 500 })).find((r) => r.name.startsWith('in-process'))!.value;
    return benchGrpc({ inProcessRate, durationMs: quick ? 1000 : 3000, warmupMs: quick ? 1000 : 2000, caWarmupMs: quick ? 3000 : 10_000, burstTotal: quick ? 2000 : 10_000 });
  },
};

const results: BenchResult[] = [];
for (const [name, run] of Object.entries(suites)) {
  if (selected.length > 0 && !selected.includes(name)) continue;
  process.stderr.write(`suite ${name}\n`);
  results.push(...(await run()));
}
process.stdout.write(`\n${formatTable(results)}\n`);
const out = join(dirname(fileURLToPath(import.meta.url)), 'results.json');
await mkdir(dirname(out), { recursive: true });
await writeFile(
  out,
  JSON.stringify(
    {
      date: new Date().toISOString(),
      node: process.version,
      results: Object.fromEntries(results.map((r) => [r.name, { value: r.value, unit: r.unit, baseline: r.baseline, ratio: r.ratio, target: r.target, met: r.met }])),
    },
    null,
    2,
  ) + '\n',
);
process.stdout.write(`\nwrote ${out}\n`);
