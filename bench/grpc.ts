import { generateKeyPairSync } from 'node:crypto';
import { availableParallelism, tmpdir } from 'node:os';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../src/clock.js';
import { startCa, type RunningCa } from '../src/cmd/ca-runtime.js';
import { LOOPBACK_CA_OPTIONS, parseCaServeConfig } from '../src/config/ca-serve-config.js';
import { loadOrCreateDevIssuer } from '../src/files/dev-issuer-store.js';
import { createLogger } from '../src/log.js';
import { createCsr } from '../src/pki/csr.js';
import { startCfssl } from './cfssl.js';
import { progress, type BenchResult } from './harness.js';
import { pinThisProcess, processCpu, runLoad, thisProcessCpu, type MeasuredLoad } from './load-process.js';

export interface GrpcBenchOptions {
  /** In-process issuance rate of this run: the ratio base. */
  readonly inProcessRate: number;
  readonly durationMs: number;
  /** Before each measured run: new connections, caches. */
  readonly warmupMs: number;
  /** Once per CA before anything is measured: V8 needs several seconds of this load to reach
   * its optimized code (2 s of warm-up measured ~0.6x of 8 s), and a CA runs for days. */
  readonly caWarmupMs: number;
  readonly burstTotal: number;
}

interface BenchCa {
  readonly ca: RunningCa;
  readonly address: string;
  readonly rootPem: string;
  /** 64 steady workloads (8 namespaces x 8 service accounts) re-using their tokens. */
  readonly tokens: readonly string[];
  mint(count: number): Promise<string[]>;
  close(): Promise<void>;
}

/** The real CA runtime (TLS, dev-token authentication through JWKS, rate limit, info logs to /dev/null). */
async function startBenchCa(signingWorkers: 'auto' | '0'): Promise<BenchCa> {
  const dataDir = await mkdtemp(join(tmpdir(), 'meshca-bench-'));
  const config = parseCaServeConfig({ ...LOOPBACK_CA_OPTIONS, dataDir, signingWorkers });
  // API servers sign service-account tokens with RS256 (kubeadm's sa.key is RSA): so do these.
  await loadOrCreateDevIssuer(dataDir, { alg: 'RS256' });
  const logSink = createWriteStream('/dev/null');
  const ca = await startCa(config, { logger: createLogger({ level: 'info', destination: logSink }), clock: systemClock });
  const { issuer } = await loadOrCreateDevIssuer(dataDir);
  const tokens = await Promise.all(
    Array.from({ length: 64 }, (_, i) => issuer.mint({ namespace: `ns-${i % 8}`, serviceAccount: `sa-${i >> 3}`, now: new Date() })),
  );
  return {
    ca,
    address: `localhost:${ca.grpcPort}`,
    rootPem: await readFile(join(dataDir, 'root-cert.pem'), 'utf8'),
    tokens,
    // Cold start: every token is a different pod's, so nothing is cached.
    mint: (count) =>
      Promise.all(
        Array.from({ length: count }, (_, i) =>
          issuer.mint({ namespace: `team-${i % 50}`, serviceAccount: `app-${(i >> 6) % 40}`, podName: `pod-${i}`, now: new Date() }),
        ),
      ),
    async close() {
      await ca.close();
      logSink.end();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

function timing(options: GrpcBenchOptions): { durationMs: number; warmupMs: number } {
  return { durationMs: options.durationMs, warmupMs: options.warmupMs };
}

/** JSON bodies with fresh P-256 CSRs for the HTTP APIs: meshca's `{csr}`, cfssl's `{certificate_request}`. */
function csrBodies(api: 'meshca' | 'cfssl' = 'meshca'): string[] {
  return Array.from({ length: 256 }, () => {
    const csr = createCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey).pem;
    return JSON.stringify(api === 'cfssl' ? { certificate_request: csr } : { csr });
  });
}

function describe(r: MeasuredLoad): string {
  const errors = r.errorCount ? `, ${r.errorCount} errors` : '';
  return `p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, server ${r.serverCores.toFixed(2)} cores${errors}`;
}

function steadyJob(ca: BenchCa, concurrency: number, timing: { durationMs: number; warmupMs: number }): object {
  return {
    address: ca.address,
    rootPem: ca.rootPem,
    concurrency,
    channels: Math.min(concurrency, 4),
    durationMs: timing.durationMs,
    warmupMs: timing.warmupMs,
    tokens: ca.tokens,
    csrCount: 256,
  };
}

async function warmUp(ca: BenchCa, options: GrpcBenchOptions, cpu?: number): Promise<void> {
  progress(`grpc: warming the CA up for ${options.caWarmupMs} ms (not measured)`);
  await runLoad('grpc-load.ts', steadyJob(ca, 64, { durationMs: options.caWarmupMs, warmupMs: 0 }), { serverCpu: thisProcessCpu, ...(cpu === undefined ? {} : { cpu }) });
}

/**
 * gRPC issuance through the real CA runtime, loaded from a separate process that speaks gRPC
 * over HTTP/2. "One core": this process (the CA) pinned to CPU 0, signing on its event loop,
 * the load generator on CPU 1: the per-core figure, as cfssl's is measured. "Whole machine":
 * no pinning, signing workers on, everything sharing the two cores. With `cfssl` on the PATH
 * (Debian golang-cfssl), the same two runs against `cfssl serve` give the ratios.
 */
export async function benchGrpc(options: GrpcBenchOptions): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  const cpus = availableParallelism();
  const base = { baselineName: 'in-process', baseline: options.inProcessRate };

  let oneCore64: MeasuredLoad | undefined;
  let oneCoreHttp: MeasuredLoad | undefined;
  if (cpus >= 2 && (await pinThisProcess('0'))) {
    const ca = await startBenchCa('0');
    try {
      await warmUp(ca, options, 1);
      for (const concurrency of [1, 16, 64]) {
        progress(`grpc: one core, concurrency ${concurrency}, ${options.warmupMs} ms warm-up + ${options.durationMs} ms`);
        const r = await runLoad('grpc-load.ts', steadyJob(ca, concurrency, options), { serverCpu: thisProcessCpu, cpu: 1 });
        if (concurrency === 64) oneCore64 = r;
        results.push({
          name: `gRPC issuance, one core, concurrency ${concurrency} (${describe(r)})`,
          value: r.rate,
          unit: 'certs/s',
          ...base,
          ratio: r.rate / options.inProcessRate,
          ...(concurrency === 64 ? { target: '>= 1500/s per core, p99 < 50 ms', met: r.rate >= 1500 && r.p99 < 50 && r.errorCount === 0 } : {}),
        });
      }
      // The same CA over its HTTPS/JSON API, the protocol cfssl speaks.
      progress(`grpc: one core, meshca HTTPS API, concurrency 64, ${options.caWarmupMs} ms warm-up + ${options.durationMs} ms`);
      const http = await runLoad(
        'http-load.ts',
        // Its own code paths were not part of the gRPC warm-up: give them the same.
        { url: `https://localhost:${ca.ca.httpPort}/v1/certificates`, rootPem: ca.rootPem, concurrency: 64, connections: 32, durationMs: options.durationMs, warmupMs: options.caWarmupMs, bodies: csrBodies(), tokens: ca.tokens, expect: 'meshca' },
        { serverCpu: thisProcessCpu, cpu: 1 },
      );
      oneCoreHttp = http;
      results.push({
        name: `HTTPS API issuance, one core, concurrency 64 (${describe(http)})`,
        value: http.rate,
        unit: 'certs/s',
        ...base,
        ratio: http.rate / options.inProcessRate,
      });
    } finally {
      await ca.close();
      await pinThisProcess(`0-${cpus - 1}`);
    }
  } else {
    progress('grpc: cannot pin to one core (taskset missing or one CPU); per-core figures come from CPU accounting');
  }

  const ca = await startBenchCa('auto');
  let whole: MeasuredLoad;
  try {
    await warmUp(ca, options);
    progress(`grpc: whole machine, concurrency 64, ${options.warmupMs} ms warm-up + ${options.durationMs} ms`);
    whole = await runLoad('grpc-load.ts', steadyJob(ca, 64, options), { serverCpu: thisProcessCpu });
    results.push({
      name: `gRPC issuance, whole machine (signing workers), concurrency 64 (${describe(whole)}; load generator ${whole.cpuCores.toFixed(2)} cores)`,
      value: whole.rate,
      unit: 'certs/s',
      ...base,
      ratio: whole.rate / options.inProcessRate,
    });
    results.push({
      name: 'gRPC issuance per second of CA CPU, whole machine, concurrency 64',
      value: whole.perServerCore,
      unit: 'certs/CPU-s',
      ...(oneCore64 ? {} : { target: '>= 1500/s per core', met: whole.perServerCore >= 1500 }),
    });

    progress(`grpc: cold-start burst of ${options.burstTotal} first issuances (minting tokens)`);
    const burstTokens = await ca.mint(options.burstTotal);
    const burst = await runLoad(
      'grpc-load.ts',
      { address: ca.address, rootPem: ca.rootPem, concurrency: 256, channels: 16, total: options.burstTotal, tokens: burstTokens, csrCount: 1024 },
      { serverCpu: thisProcessCpu },
    );
    results.push({
      name: `cold-start burst: ${options.burstTotal} first issuances, 256 concurrent (p99 ${burst.p99.toFixed(0)} ms, ${burst.errorCount} errors)`,
      value: burst.elapsedMs / 1000,
      unit: 's to drain',
      target: '< 10 s, 0 errors',
      met: burst.elapsedMs < 10_000 && burst.errorCount === 0,
    });
    if (burst.errorCount) progress(`burst errors: ${JSON.stringify(burst.errors)}`);
  } finally {
    await ca.close();
  }

  results.push(...(await benchCfssl(options, { oneCore: oneCore64, oneCoreHttp, whole: whole })));
  return results;
}

/** cfssl side by side: same CSRs, same concurrency, its HTTP API over TLS. */
async function benchCfssl(
  options: GrpcBenchOptions,
  meshca: { oneCore: MeasuredLoad | undefined; oneCoreHttp: MeasuredLoad | undefined; whole: MeasuredLoad },
): Promise<BenchResult[]> {
  const probe = await startCfssl();
  if (!probe) {
    progress('grpc: cfssl is not on the PATH (Debian: apt-get install golang-cfssl); no side-by-side run');
    return [];
  }
  await probe.close();
  const bodies = csrBodies('cfssl');
  const results: BenchResult[] = [];
  const runs: { label: string; pin: boolean; meshca: MeasuredLoad | undefined }[] = [
    { label: 'one core', pin: true, meshca: meshca.oneCore },
    { label: 'whole machine', pin: false, meshca: meshca.whole },
  ];
  for (const run of runs) {
    if (run.pin && !run.meshca) continue;
    // Go sizes GOMAXPROCS from the affinity mask it starts with: pinned, cfssl runs on one core.
    const cfssl = (await startCfssl(run.pin ? { cpus: '0' } : {}))!;
    try {
      progress(`grpc: cfssl ${cfssl.version} serve, ${run.label}, concurrency 64 over HTTPS`);
      const r = await runLoad(
        'http-load.ts',
        { url: cfssl.url, rootPem: cfssl.rootPem, concurrency: 64, connections: 32, ...timing(options), bodies, expect: 'cfssl' },
        { serverCpu: processCpu(cfssl.pid), ...(run.pin ? { cpu: 1 } : {}) },
      );
      const ratio = run.meshca!.rate / r.rate;
      results.push({
        name: `cfssl ${cfssl.version} (Go) HTTPS issuance, ${run.label}, concurrency 64 (${describe(r)})`,
        value: r.rate,
        unit: 'certs/s',
      });
      results.push({
        name: `meshca gRPC / cfssl, ${run.label}`,
        value: ratio,
        unit: 'x',
        baselineName: 'cfssl',
        baseline: r.rate,
        ratio,
        ...(run.pin ? {} : { target: '>= 1.0x cfssl on the whole machine', met: ratio >= 1 }),
      });
      if (run.pin && meshca.oneCoreHttp) {
        results.push({
          name: 'meshca HTTPS API / cfssl, one core (same protocol)',
          value: meshca.oneCoreHttp.rate / r.rate,
          unit: 'x',
          baselineName: 'cfssl',
          baseline: r.rate,
          ratio: meshca.oneCoreHttp.rate / r.rate,
        });
      }
    } finally {
      await cfssl.close();
    }
  }
  return results;
}
