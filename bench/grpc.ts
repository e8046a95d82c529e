import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../src/clock.js';
import { startCa } from '../src/cmd/ca-runtime.js';
import { LOOPBACK_CA_OPTIONS, parseCaServeConfig } from '../src/config/ca-serve-config.js';
import { loadOrCreateDevIssuer } from '../src/files/dev-issuer-store.js';
import { createLogger } from '../src/log.js';
import { progress, type BenchResult } from './harness.js';

interface LoadResult {
  ok: number;
  errors: Record<string, number>;
  elapsedMs: number;
  rate: number;
  p50: number;
  p99: number;
  max: number;
}

function runLoad(job: Record<string, unknown>): Promise<LoadResult> {
  const script = fileURLToPath(new URL('./grpc-load.ts', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, ['--import', 'tsx', script], { maxBuffer: 64 * 1024 * 1024, timeout: 300_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`load generator failed: ${stderr || err.message}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!) as LoadResult);
    });
    child.stdin?.end(JSON.stringify(job));
  });
}

/**
 * gRPC issuance through the real CA runtime (TLS, token authentication, per-identity rate
 * limit), loaded from a separate process. Ratio base: the in-process issuance rate of this run.
 */
export async function benchGrpc(options: { inProcessRate: number; durationMs: number; burstTotal: number; workers?: number }): Promise<BenchResult[]> {
  const dataDir = await mkdtemp(join(tmpdir(), 'meshca-bench-'));
  const results: BenchResult[] = [];
  try {
    const config = parseCaServeConfig({
      ...LOOPBACK_CA_OPTIONS,
      dataDir,
      ...(options.workers === undefined ? {} : { signingWorkers: String(options.workers) }),
    });
    const ca = await startCa(config, { logger: createLogger({ level: 'silent' }), clock: systemClock });
    const rootPem = await readFile(join(dataDir, 'root-cert.pem'), 'utf8');
    const { issuer } = await loadOrCreateDevIssuer(dataDir);
    const address = `localhost:${ca.grpcPort}`;
    // Steady state: 64 workloads (8 namespaces x 8 service accounts) re-using their tokens.
    const steadyTokens = await Promise.all(
      Array.from({ length: 64 }, (_, i) => issuer.mint({ namespace: `ns-${i % 8}`, serviceAccount: `sa-${i >> 3}`, now: new Date() })),
    );
    for (const concurrency of [1, 16, 64]) {
      progress(`grpc: concurrency ${concurrency} for ${options.durationMs} ms`);
      const r = await runLoad({ address, rootPem, concurrency, channels: Math.min(concurrency, 4), durationMs: options.durationMs, tokens: steadyTokens, csrCount: 256 });
      const errs = Object.values(r.errors).reduce((a, b) => a + b, 0);
      results.push({
        name: `gRPC issuance, concurrency ${concurrency} (p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms${errs ? `, ${errs} errors` : ''})`,
        value: r.rate,
        unit: 'certs/s',
        baselineName: 'in-process',
        baseline: options.inProcessRate,
        ratio: r.rate / options.inProcessRate,
        ...(concurrency === 64 ? { target: '>= 1500/s/core, p99 < 50 ms', met: r.rate >= 1500 && r.p99 < 50 && errs === 0 } : {}),
      });
    }
    // Cold start: every request is a different pod's first request (fresh token, no cache).
    progress(`grpc: cold-start burst of ${options.burstTotal} first issuances (minting tokens)`);
    const burstTokens = await Promise.all(
      Array.from({ length: options.burstTotal }, (_, i) =>
        issuer.mint({ namespace: `team-${i % 50}`, serviceAccount: `app-${(i >> 6) % 40}`, podName: `pod-${i}`, now: new Date() }),
      ),
    );
    const burst = await runLoad({ address, rootPem, concurrency: 256, channels: 16, total: options.burstTotal, tokens: burstTokens, csrCount: 1024 });
    const burstErrors = Object.values(burst.errors).reduce((a, b) => a + b, 0);
    results.push({
      name: `cold-start burst: ${options.burstTotal} first issuances, 256 concurrent (p99 ${burst.p99.toFixed(0)} ms, ${burstErrors} errors)`,
      value: burst.elapsedMs / 1000,
      unit: 's to drain',
      target: '< 10 s, 0 errors',
      met: burst.elapsedMs < 10_000 && burstErrors === 0,
    });
    if (burstErrors) progress(`burst errors: ${JSON.stringify(burst.errors)}`);
    await ca.close();
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
  return results;
}
