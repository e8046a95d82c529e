import { compilePolicies, parseIstioAuthorizationPolicy, type PolicyEngine, type RequestAttributes } from '../src/policy/index.js';
import { mustParseSpiffeId, parseTrustDomain } from '../src/spiffe/index.js';
import { median, progress, type BenchResult } from './harness.js';

/**
 * Cost of one authorization decision (`engine.decide(req)`, including the per-peer cache
 * lookup) as the number of rules grows, in nanoseconds per decision. The request always
 * matches the last rule.
 *
 * - "by principal": every rule names a different principal, as per-client rules do, so the
 *   per-peer precomputation leaves one candidate rule whatever the total;
 * - "by path": every rule admits the peer's namespace and differs in its exact / prefix paths,
 *   so the path index picks the candidates;
 * - "by path suffix": as above with suffix paths, which the index cannot use, so every rule's
 *   matcher runs: the worst case, reported without a target.
 *
 * The baseline is a decision with no policies at all (the engine's fixed cost).
 */
export async function benchPolicy(options: { rounds?: number; durationMs?: number } = {}): Promise<BenchResult[]> {
  const rounds = options.rounds ?? 5;
  const durationMs = options.durationMs ?? 300;
  const trustDomain = parseTrustDomain('cluster.local');
  const peer = mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/client-0');

  const build = (rules: readonly unknown[]): PolicyEngine =>
    compilePolicies(
      [
        parseIstioAuthorizationPolicy({
          apiVersion: 'security.istio.io/v1',
          kind: 'AuthorizationPolicy',
          metadata: { name: 'bench', namespace: 'default' },
          spec: { action: 'ALLOW', rules },
        }),
      ],
      { trustDomain, namespace: 'default' },
    );
  const indexedRules = (n: number): unknown[] =>
    Array.from({ length: n }, (_, i) => ({
      from: [{ source: { principals: [`cluster.local/ns/default/sa/client-${n - 1 - i}`] } }],
      to: [{ operation: { methods: ['GET', 'HEAD'], paths: ['/api/*'] } }],
    }));
  const pathRules = (n: number): unknown[] =>
    Array.from({ length: n }, (_, i) => ({
      from: [{ source: { namespaces: ['default'] } }],
      to: [{ operation: { methods: ['GET'], paths: [`/api/v1/resource-${i}`, `/api/v1/resource-${i}/*`] } }],
    }));
  const suffixRules = (n: number): unknown[] =>
    Array.from({ length: n }, (_, i) => ({
      from: [{ source: { namespaces: ['default'] } }],
      to: [{ operation: { methods: ['GET'], paths: [`*/resource-${i}`] } }],
    }));

  const headers = (name: string): string | undefined => (name === 'x-request-id' ? 'abc' : undefined);
  const indexedRequest: RequestAttributes = { peer, method: 'GET', path: '/api/items', host: 'api.default', port: 8080, headers };

  progress('policy: compiling engines for 1, 100 and 1000 rules');
  const compileStart = process.hrtime.bigint();
  const big = build(pathRules(1000));
  const compileMs = Number(process.hrtime.bigint() - compileStart) / 1e6;

  const cases: Array<{ name: string; engine: PolicyEngine; req: RequestAttributes; rules: number; target: boolean }> = [
    { name: 'no policies', engine: compilePolicies([], { trustDomain, namespace: 'default' }), req: indexedRequest, rules: 0, target: false },
  ];
  for (const n of [1, 100, 1000]) {
    const target = n <= 100;
    cases.push({ name: `${n} rules by principal`, engine: build(indexedRules(n)), req: indexedRequest, rules: n, target });
    const pathRequest: RequestAttributes = { ...indexedRequest, path: `/api/v1/resource-${n - 1}/x` };
    cases.push({ name: `${n} rules by path`, engine: n === 1000 ? big : build(pathRules(n)), req: pathRequest, rules: n, target });
    const suffixRequest: RequestAttributes = { ...indexedRequest, path: `/api/v1/resource-${n - 1}` };
    cases.push({ name: `${n} rules by path suffix`, engine: build(suffixRules(n)), req: suffixRequest, rules: n, target: false });
  }
  for (const c of cases) {
    const decision = c.engine.decide(c.req);
    if (c.rules > 0 && decision.action !== 'ALLOW') throw new Error(`bench setup: ${c.name} decided ${decision.action}`);
  }

  progress(`policy: ${rounds} interleaved rounds of ${durationMs} ms per case`);
  const samples = new Map<string, number[]>();
  let sink = 0;
  for (let r = 0; r < rounds; r++) {
    for (const c of cases) {
      const { ns, allowed } = nsPerDecision(c.engine, c.req, durationMs);
      sink += allowed;
      (samples.get(c.name) ?? samples.set(c.name, []).get(c.name)!).push(ns);
    }
  }
  if (sink < 0) progress('unreachable'); // keeps the decisions observable

  const baseline = median(samples.get('no policies')!);
  const results: BenchResult[] = [{ name: 'policy decide, no policies', value: baseline, unit: 'ns/decision' }];
  for (const c of cases.slice(1)) {
    const value = median(samples.get(c.name)!);
    const target = c.target ? 1000 : undefined;
    results.push({
      name: `policy decide, ${c.name}`,
      value,
      unit: 'ns/decision',
      baselineName: 'no policies',
      baseline,
      ratio: value / baseline,
      ...(target === undefined ? {} : { target: `< ${target} ns`, met: value < target }),
    });
  }
  results.push({ name: 'policy compile, 1000 rules', value: compileMs, unit: 'ms' });
  return results;
}

/** Average nanoseconds per decision over batches run for about `durationMs`. */
function nsPerDecision(engine: PolicyEngine, req: RequestAttributes, durationMs: number): { ns: number; allowed: number } {
  const batch = 1_000;
  let allowed = 0;
  // Warm up so the JIT has compiled the matchers before measuring.
  for (let i = 0; i < batch; i++) if (engine.decide(req).allowed) allowed++;
  const budget = BigInt(durationMs) * 1_000_000n;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  let count = 0;
  while (elapsed < budget) {
    for (let i = 0; i < batch; i++) if (engine.decide(req).allowed) allowed++;
    count += batch;
    elapsed = process.hrtime.bigint() - start;
  }
  return { ns: Number(elapsed) / count, allowed };
}
