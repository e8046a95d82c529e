/**
 * `meshca sidecar` as a pod runs it: one process per workload, the agent getting the SVID from a
 * real CA over gRPC and the inbound and outbound proxies using it from memory. The mission's
 * scenario end to end: sleep's app calls helloworld in plain HTTP through sleep's sidecar, the
 * request crosses mTLS, helloworld's sidecar enforces the CiliumNetworkPolicy as written, and the
 * app records what reached it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { generateKeyPairSync } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createCsr } from '../../src/pki/csr.js';
import { BLOG_POLICY } from '../helpers/mission-policy.js';
import { openssl } from '../helpers/openssl.js';
import { freePort, meshcaExit, startMeshca, type RunningProcess } from '../helpers/processes.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';

function get(port: number, path: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      })
      .on('error', reject);
  });
}

interface Sidecar {
  readonly proc: RunningProcess;
  readonly inbound?: number;
  readonly outbound?: number;
  readonly health?: number;
}

const portOf = (line: string, what: string): number | undefined => {
  const m = new RegExp(`${what} on port (\\d+)`).exec(line);
  return m === null ? undefined : Number(m[1]);
};

async function startSidecar(ca: TestCa, dir: string, sa: string, args: readonly string[]): Promise<Sidecar> {
  const proc = startMeshca(['sidecar', ...agentArgs(ca, dir, sa), '--health-listen', '127.0.0.1:0', ...args]);
  const line = (await proc.waitFor(/meshca sidecar ready: .*\n/, 30_000))[0];
  return { proc, inbound: portOf(line, 'inbound'), outbound: portOf(line, 'outbound'), health: portOf(line, 'health') };
}

function agentArgs(ca: TestCa, dir: string, sa: string): string[] {
  return ['--ca-address', ca.grpcAddress, '--ca-root', join(ca.dataDir, 'root-cert.pem'), '--token-file', join(dir, `${sa}.token`)];
}

const exitOf = (args: readonly string[]) => meshcaExit(['sidecar', ...args]);

describe('meshca sidecar: agent, inbound and outbound proxy in one process', () => {
  let dir: string;
  let ca: TestCa;
  let app: http.Server;
  let appPort: number;
  const seen: { method: string; url: string; xfcc: string | undefined }[] = [];
  let helloworld: Sidecar;
  let sleep: Sidecar;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-sidecar-'));
    ca = await startTestCa();
    for (const sa of ['helloworld', 'sleep']) await writeFile(join(dir, `${sa}.token`), await ca.mint({ serviceAccount: sa, ttlSeconds: 3600 }), { mode: 0o600 });
    await writeFile(join(dir, 'blog.yaml'), BLOG_POLICY);
    app = http.createServer((req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', xfcc: req.headers['x-forwarded-client-cert'] as string | undefined });
      res.end('Hello version: v1, instance: sidecar-test\n');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    appPort = (app.address() as AddressInfo).port;
    // The policy names the app's port, 5000; the test app runs wherever the OS put it.
    [helloworld, sleep] = await Promise.all([
      startSidecar(ca, dir, 'helloworld', ['--inbound-listen', '127.0.0.1:0', '--inbound-upstream', `http://127.0.0.1:${appPort}`, '--app-port', '5000', '--policy', join(dir, 'blog.yaml')]),
      startSidecar(ca, dir, 'sleep', ['--outbound-listen', '127.0.0.1:0', '--outbound-upstream', 'https://127.0.0.1:1', '--outbound-spiffe-id', 'spiffe://cluster.local/ns/default/sa/helloworld']),
    ]);
  });

  after(async () => {
    await Promise.all([helloworld?.proc.stop(), sleep?.proc.stop()]);
    await new Promise<void>((r) => app.close(() => r()));
    await ca.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('sleep → helloworld through both sidecars: the policy as written allows GET /hello and nothing else', async () => {
    // sleep's outbound was started before helloworld's port was known: run a second outbound
    // sidecar aimed at it (the first one shows a wrong upstream is a clean 502, below).
    const caller = await startSidecar(ca, dir, 'sleep', [
      '--outbound-listen',
      '127.0.0.1:0',
      '--outbound-upstream',
      `https://127.0.0.1:${helloworld.inbound}`,
      '--outbound-spiffe-id',
      'spiffe://cluster.local/ns/default/sa/helloworld',
    ]);
    try {
      seen.length = 0;
      const ok = await get(caller.outbound!, '/hello');
      assert.equal(ok.status, 200, ok.body);
      assert.match(ok.body, /Hello version: v1/);
      const denied = await get(caller.outbound!, '/hello3');
      assert.equal(denied.status, 403, denied.body);
      assert.equal(denied.headers['meshca-error-code'], 'ERR_AUTHZ_DENIED');
      assert.deepEqual(
        seen.map((s) => `${s.method} ${s.url}`),
        ['GET /hello'],
        'only the allowed request reached the app',
      );
      // The identity the app was told is the one the CA issued to sleep, not a header sleep sent.
      assert.match(String(seen[0]!.xfcc), /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/);
    } finally {
      await caller.proc.stop();
    }
  });

  test('a certless client gets "certificate required" from the inbound proxy; the app sees nothing', async () => {
    seen.length = 0;
    const noCert = await openssl(['s_client', '-connect', `127.0.0.1:${helloworld.inbound}`, '-quiet'], 'GET /hello HTTP/1.0\r\n\r\n');
    assert.match(noCert.stderr, /certificate required/);
    assert.deepEqual(seen, []);
    await helloworld.proc.waitFor(/"msg":"TLS handshake refused"/, 5000);
  });

  test('the outbound proxy refuses an upstream it cannot reach with a coded 502', async () => {
    const res = await get(sleep.outbound!, '/hello');
    assert.equal(res.status, 502, res.body);
    assert.equal(res.headers['meshca-error-code'], 'ERR_UPSTREAM_UNAVAILABLE');
  });

  test('one /healthz, /ready and /metrics for every part, and the metrics pass promtool', async () => {
    const port = helloworld.health!;
    assert.equal((await get(port, '/healthz')).status, 200);
    const ready = await get(port, '/ready');
    assert.equal(ready.status, 200, ready.body);
    const metrics = (await get(port, '/metrics')).body;
    assert.match(metrics, /^meshca_agent_svid_valid 1$/m, 'the agent part');
    assert.match(metrics, /^meshca_agent_rotations_total 1$/m);
    assert.match(metrics, /^meshca_proxy_requests_total\{direction="inbound",verdict="allow",response_code="200"\} 1$/m, 'the inbound part');
    assert.match(metrics, /^meshca_proxy_requests_total\{direction="inbound",verdict="deny",response_code="403"\} 1$/m);
    assert.equal(metrics.match(/^process_resident_memory_bytes /gm)?.length, 1, 'process metrics once, not per part');
    const outMetrics = (await get(sleep.health!, '/metrics')).body;
    assert.match(outMetrics, /^meshca_proxy_upstream_errors_total\{direction="outbound",code="ERR_UPSTREAM_UNAVAILABLE"\} 1$/m, 'the outbound part');
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: metrics, encoding: 'utf8' });
    if (promtool.error === undefined) assert.equal(promtool.status, 0, promtool.stdout + promtool.stderr);
  });

  test('with the CA unreachable: alive, not ready (saying why), no proxy listening, and SIGTERM stops it at once', async () => {
    const [health, inbound] = await Promise.all([freePort(), freePort()]);
    const proc = startMeshca([
      'sidecar',
      '--ca-address',
      '127.0.0.1:1',
      '--ca-root',
      join(ca.dataDir, 'root-cert.pem'),
      '--token-file',
      join(dir, 'helloworld.token'),
      '--health-listen',
      `127.0.0.1:${health}`,
      '--inbound-listen',
      `127.0.0.1:${inbound}`,
      '--inbound-upstream',
      `http://127.0.0.1:${appPort}`,
    ]);
    try {
      await proc.waitFor(/health and metrics listening/, 20_000);
      assert.equal((await get(health, '/healthz')).status, 200, 'a CA outage is no reason to restart the pod');
      const ready = await get(health, '/ready');
      assert.equal(ready.status, 503);
      assert.match(ready.body, /SVID/);
      await assert.rejects(get(inbound, '/'), /ECONNREFUSED/, 'no inbound listener without an identity');
      const started = Date.now();
      assert.equal(await proc.stop(), 0);
      assert.ok(Date.now() - started < 5000, `stopped after ${Date.now() - started} ms`);
      assert.doesNotMatch(proc.stdout(), /ready/);
    } finally {
      await proc.stop();
    }
  });

  test('fail closed: a policy that says nothing about this workload stops the start once the SVID names it', async () => {
    await writeFile(join(dir, 'other.yaml'), BLOG_POLICY.replace('serviceaccount: helloworld', 'serviceaccount: ratings'));
    const refused = await exitOf([...agentArgs(ca, dir, 'helloworld'), '--inbound-listen', '127.0.0.1:0', '--inbound-upstream', `http://127.0.0.1:${appPort}`, '--policy', join(dir, 'other.yaml')]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /no policy in .*other\.yaml applies to spiffe:\/\/cluster\.local\/ns\/default\/sa\/helloworld/);
  });

  test('flags that would do nothing, or nothing safe, are refused before anything starts', async () => {
    const base = agentArgs(ca, dir, 'helloworld');
    for (const [args, message] of [
      [[], /nothing to proxy: give --inbound-listen/],
      [['--outbound-listen', '127.0.0.1:0', '--outbound-upstream', 'https://127.0.0.1:1'], /--outbound-listen needs exactly one of --outbound-spiffe-id and --outbound-trust-domain/],
      [['--outbound-listen', '127.0.0.1:0', '--outbound-upstream', 'https://127.0.0.1:1', '--outbound-spiffe-id', 'spiffe://cluster.local/ns/default/sa/'], /--outbound-spiffe-id: /],
      [['--inbound-listen', '127.0.0.1:0', '--inbound-upstream', 'https://127.0.0.1:1'], /--inbound-upstream must be an http:\/\/ URL/],
      [['--inbound-listen', '127.0.0.1:0'], /--inbound-listen needs --inbound-upstream/],
      [['--outbound-listen', '127.0.0.1:0', '--outbound-upstream', 'https://127.0.0.1:1', '--outbound-trust-domain', 'cluster.local', '--policy', 'p.yaml'], /--policy applies to the inbound proxy/],
    ] as const) {
      const { code, stderr } = await exitOf([...base, ...args]);
      assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
      assert.match(stderr, message);
      assert.doesNotMatch(stderr, /unexpected error|\n\s+at /, 'a usage error, not a crash');
    }
  });

  test('a taken port stops the start with one line naming it, exit 1', async () => {
    const taken = http.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (taken.address() as AddressInfo).port;
      const { code, stderr } = await exitOf([...agentArgs(ca, dir, 'helloworld'), '--inbound-listen', `127.0.0.1:${port}`, '--inbound-upstream', `http://127.0.0.1:${appPort}`]);
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`inbound proxy: cannot listen on 127\\.0\\.0\\.1:${port}: EADDRINUSE`));
    } finally {
      taken.close();
    }
  });

  test('floods: the inbound cap refuses what does not fit (log line, metric), the handshake deadline frees the rest, a real client then gets through', async () => {
    const capped = await startSidecar(ca, dir, 'helloworld', [
      '--inbound-listen', '127.0.0.1:0', '--inbound-upstream', `http://127.0.0.1:${appPort}`, '--app-port', '5000', '--policy', join(dir, 'blog.yaml'),
      '--max-connections', '4', '--idle-timeout', '1s',
    ]);
    const idle: net.Socket[] = [];
    let closed = 0;
    const seenBefore = seen.length;
    try {
      const openedAt = Date.now();
      for (let i = 0; i < 10; i++) {
        const socket = net.connect(capped.inbound!, '127.0.0.1');
        socket.on('error', () => undefined).on('close', () => closed++);
        idle.push(socket);
      }
      // Six are refused at accept; the four accepted never start a handshake and are closed at its 10 s deadline.
      while (closed < 10 && Date.now() - openedAt < 15_000) await new Promise((r) => setTimeout(r, 100));
      assert.equal(closed, 10, `${closed} of 10 idle connections closed after ${Date.now() - openedAt} ms`);
      assert.ok(Date.now() - openedAt >= 9000, 'the accepted ones were held until the handshake deadline, not dropped at once');
      const metrics = (await get(capped.health!, '/metrics')).body;
      assert.match(metrics, /^meshca_connections_dropped_total\{listener="inbound"\} 6$/m);
      assert.equal(capped.proc.stderr().split('\n').filter((l) => l.includes('connection cap reached')).length, 1, capped.proc.stderr());
      // A real mTLS client (sleep's SVID from the CA) is served once the flood is gone.
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const chain = (await ca.createCertificate({ csr: createCsr(privateKey).pem }, await ca.mint({ serviceAccount: 'sleep', ttlSeconds: 600 }))).cert_chain;
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        https
          .get(
            {
              host: '127.0.0.1',
              port: capped.inbound!,
              path: '/hello',
              agent: false,
              cert: chain.slice(0, -1).join(''),
              key: privateKey.export({ format: 'pem', type: 'pkcs8' }),
              ca: chain.at(-1)!,
              checkServerIdentity: () => undefined,
            },
            (r) => {
              let body = '';
              r.on('data', (c: Buffer) => (body += c.toString()));
              r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
            },
          )
          .on('error', reject);
      });
      assert.equal(res.status, 200, res.body);
      // What the app received: the one real request, with sleep's identity, and nothing of the flood.
      assert.deepEqual(seen.slice(seenBefore).map((r) => `${r.method} ${r.url} ${/URI=([^;,]+)/.exec(r.xfcc ?? '')?.[1] ?? ''}`), ['GET /hello spiffe://cluster.local/ns/default/sa/sleep']);
    } finally {
      for (const s of idle) s.destroy();
      await capped.proc.stop();
    }
  });
});
