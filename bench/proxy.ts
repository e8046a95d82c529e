import { execFile } from 'node:child_process';
import * as http from 'node:http';
import { join } from 'node:path';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createLogger } from '../src/log.js';
import { parseTrustDomain } from '../src/spiffe/trust-domain.js';
import { createX509SourceFromFiles } from '../src/tls/index.js';
import { createInboundProxy } from '../src/sidecar/inbound-proxy.js';
import { createTestLeaf, createTestRoot } from '../test/helpers/test-ca.js';
import { progress, type BenchResult } from './harness.js';

// Load from a child process (plain JS, no loader): keep-alive requests at a given concurrency.
const LOAD_SCRIPT = `
const http = require('node:http'); const https = require('node:https');
let job = ''; process.stdin.on('data', (d) => (job += d)); process.stdin.on('end', async () => {
  const j = JSON.parse(job); const url = new URL(j.url); const mod = url.protocol === 'https:' ? https : http;
  const agent = new mod.Agent({ keepAlive: true, maxSockets: j.concurrency, ...(j.tls || {}), checkServerIdentity: () => undefined });
  const once = () => new Promise((resolve, reject) => { const req = mod.request(url, { agent }, (res) => { res.resume(); res.on('end', resolve); }); req.on('error', reject); req.end(); });
  for (let i = 0; i < j.concurrency * 4; i++) await once();
  const lat = []; let errors = 0; const end = Date.now() + j.durationMs; const t0 = performance.now();
  await Promise.all(Array.from({ length: j.concurrency }, async () => { while (Date.now() < end) { const s = performance.now(); try { await once(); lat.push(performance.now() - s); } catch { errors++; } } }));
  const secs = (performance.now() - t0) / 1000; lat.sort((a, b) => a - b);
  process.stdout.write(JSON.stringify({ rate: lat.length / secs, p50: lat[Math.floor(lat.length / 2)], p99: lat[Math.floor(lat.length * 0.99)], errors }));
  agent.destroy();
});`;

interface Load {
  rate: number;
  p50: number;
  p99: number;
  errors: number;
}

export function load(job: Record<string, unknown>): Promise<Load> {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, ['-e', LOAD_SCRIPT], { timeout: 120_000 }, (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(JSON.parse(stdout) as Load)));
    child.stdin?.end(JSON.stringify(job));
  });
}

/**
 * `meshca proxy` (inbound: mTLS termination + policy-free forwarding with XFCC) against hitting
 * the same upstream directly over plain HTTP, same run, same load generator.
 */
export async function benchProxy(options: { durationMs?: number } = {}): Promise<BenchResult[]> {
  const durationMs = options.durationMs ?? 2000;
  const dir = await mkdtemp(join(tmpdir(), 'meshca-bench-proxy-'));
  const root = await createTestRoot({ trustDomain: 'cluster.local' });
  const server = await createTestLeaf(root, { uris: ['spiffe://cluster.local/ns/default/sa/helloworld'] });
  const client = await createTestLeaf(root, { uris: ['spiffe://cluster.local/ns/default/sa/sleep'] });
  await writeFile(join(dir, 'cert-chain.pem'), server.pem);
  await writeFile(join(dir, 'key.pem'), server.keyPem, { mode: 0o600 });
  await writeFile(join(dir, 'root-cert.pem'), root.pem);
  const app = http.createServer((_req, res) => res.end('Hello version: v1\n'));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const appPort = (app.address() as { port: number }).port;
  const source = await createX509SourceFromFiles({ certChainPath: join(dir, 'cert-chain.pem'), keyPath: join(dir, 'key.pem'), bundlePath: join(dir, 'root-cert.pem'), trustDomain: parseTrustDomain('cluster.local'), watch: false });
  const proxy = createInboundProxy({ source, upstream: new URL(`http://127.0.0.1:${appPort}`), logger: createLogger({ level: 'silent' }) });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  const proxyPort = (proxy.address() as { port: number }).port;
  const tls = { cert: client.pem, key: client.keyPem, ca: root.pem };
  const results: BenchResult[] = [];
  try {
    for (const concurrency of [1, 16]) {
      progress(`proxy: direct vs through meshca proxy, concurrency ${concurrency}`);
      const direct = await load({ url: `http://127.0.0.1:${appPort}/hello`, concurrency, durationMs });
      const proxied = await load({ url: `https://127.0.0.1:${proxyPort}/hello`, concurrency, durationMs, tls });
      results.push({
        name: `proxy, concurrency ${concurrency}: kept-alive req/s (direct p50 ${direct.p50.toFixed(3)} ms, proxied p50 ${proxied.p50.toFixed(3)} ms${proxied.errors ? `, ${proxied.errors} errors` : ''})`,
        value: proxied.rate,
        unit: 'req/s',
        baselineName: 'direct HTTP',
        baseline: direct.rate,
        ratio: proxied.rate / direct.rate,
      });
      if (concurrency === 1) {
        const added = proxied.p50 - direct.p50;
        results.push({ name: 'proxy added latency, p50 at concurrency 1', value: added, unit: 'ms', target: '< 1 ms', met: added < 1 && proxied.errors === 0 });
      }
    }
  } finally {
    proxy.close();
    app.close();
    await source.close();
    await rm(dir, { recursive: true, force: true });
  }
  return results;
}
