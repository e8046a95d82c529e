/**
 * `meshca proxy` as an operator runs it (real processes, curl, openssl): which policies apply is
 * decided by the workload's own SVID, ports are the app's, a policy file that says nothing about
 * the workload refuses to start, and a changed file is re-read. Includes the mission's
 * CiliumNetworkPolicy, loaded exactly as written.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BLOG_POLICY } from '../helpers/mission-policy.js';
import { openssl } from '../helpers/openssl.js';
import { meshcaExit, startMeshca, startProcess, type RunningProcess } from '../helpers/processes.js';
import { createTestLeaf, createTestRoot, type TestCertificate } from '../helpers/test-ca.js';

/** The README tour's policy. */
const TOUR_POLICY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: helloworld, namespace: default }
spec:
  selector: { matchLabels: { app: helloworld } }
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/default/sa/sleep"] } }]
    to: [{ operation: { methods: ["GET"], paths: ["/hello"] } }]
`;

async function writeSvidDir(dir: string, leaf: TestCertificate, root: TestCertificate): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'cert-chain.pem'), leaf.pem);
  await writeFile(join(dir, 'key.pem'), leaf.keyPem, { mode: 0o600 });
  await writeFile(join(dir, 'root-cert.pem'), root.pem);
}

/** Runs curl with a workload's files; resolves with the HTTP status (0 when there was none) and the body. */
function curl(dir: string, who: string | undefined, url: string, extra: readonly string[] = []): Promise<{ status: number; body: string; stderr: string }> {
  const identity = who === undefined ? [] : ['--cert', join(dir, who, 'cert-chain.pem'), '--key', join(dir, who, 'key.pem')];
  return new Promise((resolve) => {
    const p = startProcess('curl', ['-sS', '-k', ...identity, ...extra, '-w', '\n%{http_code}', url]);
    p.child.once('exit', () => {
      const out = p.stdout();
      const cut = out.lastIndexOf('\n');
      resolve({ status: Number(out.slice(cut + 1)) || 0, body: out.slice(0, cut), stderr: p.stderr() });
    });
  });
}

/** Starts the proxy and waits until it is ready, or resolves with its exit code if it refused to start. */
async function startProxy(args: readonly string[]): Promise<{ proc: RunningProcess; port: number }> {
  const proc = startMeshca(['proxy', '--listen', '127.0.0.1:0', ...args]);
  const port = Number((await proc.waitFor(/meshca proxy ready: inbound on port (\d+)/, 30_000))[1]);
  return { proc, port };
}

const exitOf = (args: readonly string[]) => meshcaExit(['proxy', '--listen', '127.0.0.1:0', ...args]);

describe('meshca proxy: policy scoped by the workload SVID (real processes)', () => {
  let dir: string;
  let app: http.Server;
  let appPort: number;
  const seen: { url: string; xfcc: string | undefined }[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-proxy-scope-'));
    const root = await createTestRoot({ trustDomain: 'cluster.local' });
    for (const sa of ['helloworld', 'sleep', 'productpage']) {
      await writeSvidDir(join(dir, sa), await createTestLeaf(root, { uris: [`spiffe://cluster.local/ns/default/sa/${sa}`] }), root);
    }
    await writeFile(join(dir, 'blog.yaml'), BLOG_POLICY);
    await writeFile(join(dir, 'tour.yaml'), TOUR_POLICY);
    app = http.createServer((req, res) => {
      seen.push({ url: req.url ?? '', xfcc: req.headers['x-forwarded-client-cert'] as string | undefined });
      res.end(`Hello version: v1, instance: test\n`);
    });
    // The mission's app listens on 5000 and its policy names that port. Should 5000 be taken on
    // this machine, the app runs elsewhere and --app-port 5000 says which port the policy means.
    appPort = await new Promise<number>((resolve) => {
      app.once('error', () => app.listen(0, '127.0.0.1', () => resolve((app.address() as AddressInfo).port)));
      app.listen(5000, '127.0.0.1', () => resolve(5000));
    });
  });

  after(async () => {
    await new Promise<void>((r) => app.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  const appPortArgs = (): string[] => (appPort === 5000 ? [] : ['--app-port', '5000']);

  test('the mission scenario: the CiliumNetworkPolicy loads unchanged with no --namespace or --workload-labels', async () => {
    const { proc, port } = await startProxy(['--upstream', `http://127.0.0.1:${appPort}`, '--svid-dir', join(dir, 'helloworld'), '--policy', join(dir, 'blog.yaml'), ...appPortArgs()]);
    try {
      const base = `https://127.0.0.1:${port}`;
      seen.length = 0;
      const ok = await curl(dir, 'sleep', `${base}/hello`);
      assert.equal(ok.status, 200, ok.body + ok.stderr);
      assert.match(ok.body, /Hello version: v1/);
      for (const [who, path, method] of [['sleep', '/hello3', 'GET'], ['sleep', '/hello', 'POST'], ['productpage', '/hello', 'GET'], ['sleep', '/hello?q=1', 'GET']] as const) {
        const denied = await curl(dir, who, `${base}${path}`, ['-X', method]);
        assert.equal(denied.status, 403, `${who} ${method} ${path}: ${denied.body}`);
        assert.match(denied.body, /ERR_AUTHZ_DENIED/);
      }
      assert.deepEqual(seen.map((s) => s.url), ['/hello'], 'only the allowed request reached the app');
      assert.match(String(seen[0]!.xfcc), /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/);
      const noCert = await openssl(['s_client', '-connect', `127.0.0.1:${port}`, '-quiet'], 'GET /hello HTTP/1.0\r\n\r\n');
      assert.match(noCert.stderr, /certificate required/);
      // The policy was applied because of the SVID, and the access log says who was decided how.
      assert.match(proc.stderr(), /"applied":\["CiliumNetworkPolicy default\/service-account"\]/);
      assert.match(proc.stderr(), /"msg":"request"/);
      assert.match(proc.stderr(), /"spiffeId":"spiffe:\/\/cluster\.local\/ns\/default\/sa\/productpage"[^\n]*"status":403[^\n]*"verdict":"deny"/);
    } finally {
      await proc.stop();
    }
  });

  test("the README tour's AuthorizationPolicy, with the tour's flags, gives the same answers", async () => {
    const { proc, port } = await startProxy(['--upstream', `http://127.0.0.1:${appPort}`, '--svid-dir', join(dir, 'helloworld'), '--policy', join(dir, 'tour.yaml'), '--namespace', 'default', '--workload-labels', 'app=helloworld']);
    try {
      const base = `https://127.0.0.1:${port}`;
      assert.equal((await curl(dir, 'sleep', `${base}/hello`)).status, 200);
      assert.equal((await curl(dir, 'sleep', `${base}/hello3`)).status, 403);
      assert.equal((await curl(dir, 'sleep', `${base}/hello`, ['-X', 'POST'])).status, 403);
      assert.equal((await curl(dir, 'productpage', `${base}/hello`)).status, 403);
    } finally {
      await proc.stop();
    }
  });

  test("ports are the app's: a rule for the proxy's own listen port never matches", async () => {
    const listenPolicy = BLOG_POLICY.replace('port: "5000"', 'port: "15006"');
    await writeFile(join(dir, 'listen-port.yaml'), listenPolicy);
    const { proc } = await startProxy(['--upstream', `http://127.0.0.1:${appPort}`, '--svid-dir', join(dir, 'helloworld'), '--policy', join(dir, 'listen-port.yaml'), ...appPortArgs()]);
    try {
      const port = Number(/inbound on port (\d+)/.exec(proc.stdout())![1]);
      assert.equal((await curl(dir, 'sleep', `https://127.0.0.1:${port}/hello`)).status, 403);
    } finally {
      await proc.stop();
    }
  });

  test('fail closed: a policy file with nothing for this workload refuses to start, naming each policy and why', async () => {
    await writeFile(join(dir, 'other.yaml'), BLOG_POLICY.replace('serviceaccount: helloworld', 'serviceaccount: ratings'));
    const refused = await exitOf(['--upstream', `http://127.0.0.1:${appPort}`, '--svid-dir', join(dir, 'helloworld'), '--policy', join(dir, 'other.yaml')]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /no policy in .*other\.yaml applies to spiffe:\/\/cluster\.local\/ns\/default\/sa\/helloworld/);
    assert.match(refused.stderr, /CiliumNetworkPolicy default\/service-account: spec\.endpointSelector does not match the workload's labels/);
    assert.ok(refused.ms < 10_000, `exited after ${refused.ms} ms`);

    const meshWide = await startProxy(['--upstream', `http://127.0.0.1:${appPort}`, '--svid-dir', join(dir, 'helloworld'), '--policy', join(dir, 'other.yaml'), '--mesh-wide-policy']);
    try {
      assert.equal((await curl(dir, 'productpage', `https://127.0.0.1:${meshWide.port}/hello`)).status, 200, 'mesh-wide: no applicable policy is Istio allow');
    } finally {
      await meshWide.proc.stop();
    }
  });

  test('flags that contradict the SVID refuse to start instead of applying the wrong policies', async () => {
    const labels = await exitOf(['--upstream', `http://127.0.0.1:${appPort}`, '--svid-dir', join(dir, 'helloworld'), '--policy', join(dir, 'blog.yaml'), '--workload-labels', 'io.cilium.k8s.policy.serviceaccount=other']);
    assert.equal(labels.code, 2, labels.stderr);
    assert.match(labels.stderr, /--workload-labels io\.cilium\.k8s\.policy\.serviceaccount=other contradicts the workload's SVID spiffe:\/\/cluster\.local\/ns\/default\/sa\/helloworld/);
    const namespace = await exitOf(['--upstream', `http://127.0.0.1:${appPort}`, '--svid-dir', join(dir, 'helloworld'), '--policy', join(dir, 'blog.yaml'), '--namespace', 'prod']);
    assert.equal(namespace.code, 2, namespace.stderr);
    assert.match(namespace.stderr, /--namespace prod contradicts/);
  });

  test('the policy file is re-read when it changes; a broken change keeps the last good policy and says so', async () => {
    const path = join(dir, 'live.yaml');
    await writeFile(path, BLOG_POLICY);
    const { proc, port } = await startProxy(['--upstream', `http://127.0.0.1:${appPort}`, '--svid-dir', join(dir, 'helloworld'), '--policy', path, '--health-listen', '127.0.0.1:0', ...appPortArgs()]);
    try {
      const healthPort = Number((await proc.waitFor(/"listen":"127\.0\.0\.1:(\d+)","msg":"health and metrics listening"/))[1]);
      const base = `https://127.0.0.1:${port}`;
      assert.equal((await curl(dir, 'sleep', `${base}/hello3`)).status, 403);
      await writeFile(path, BLOG_POLICY.replace('path: "/hello"', 'path: "/hello[0-9]?"'));
      await proc.waitFor(/policy reloaded/, 15_000);
      assert.equal((await curl(dir, 'sleep', `${base}/hello3`)).status, 200, 'the new policy is in force');

      await writeFile(path, 'kind: [broken');
      await proc.waitFor(/policy change refused; the last good policy stays in force/, 15_000);
      assert.equal((await curl(dir, 'sleep', `${base}/hello3`)).status, 200, 'the last good policy stays');
      const ready = await curl(dir, undefined, `http://127.0.0.1:${healthPort}/ready`);
      assert.equal(ready.status, 200);
      assert.match(ready.body, /the last change to .*live\.yaml was refused/);
      const metrics = await curl(dir, undefined, `http://127.0.0.1:${healthPort}/metrics`);
      assert.match(metrics.body, /meshca_proxy_policy_reloads_total\{result="success"\} 1/);
      assert.match(metrics.body, /meshca_proxy_policy_reloads_total\{result="failure"\} 1/);
      assert.match(metrics.body, /meshca_proxy_requests_total\{direction="inbound",verdict="allow",response_code="200"\} 2/);
      assert.match(metrics.body, /meshca_proxy_requests_total\{direction="inbound",verdict="deny",response_code="403"\} 1/);
      assert.match(metrics.body, /meshca_proxy_request_duration_seconds_count\{direction="inbound"\} 3/);
      assert.match(metrics.body, /meshca_proxy_open_connections \d+/);
      const promtool = spawnSync('promtool', ['check', 'metrics'], { input: metrics.body, encoding: 'utf8' });
      if (promtool.error === undefined) assert.equal(promtool.status, 0, promtool.stdout + promtool.stderr);
    } finally {
      await proc.stop();
    }
  });

  test('start-up: a taken listen port is one line and exit 1, not a proxy listening on nothing', async () => {
    const blocker = http.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const taken = (blocker.address() as AddressInfo).port;
    try {
      const started = Date.now();
      const proc = startMeshca(['proxy', '--listen', `127.0.0.1:${taken}`, '--upstream', `http://127.0.0.1:${appPort}`, '--svid-dir', join(dir, 'helloworld'), '--policy', join(dir, 'blog.yaml')]);
      const code = await new Promise<number | null>((resolve) => proc.child.once('exit', resolve));
      assert.notEqual(code, 0);
      assert.ok(Date.now() - started < 10_000);
      assert.match(proc.stderr(), new RegExp(`meshca: .*proxy: cannot listen on 127\\.0\\.0\\.1:${taken}: EADDRINUSE`));
      assert.doesNotMatch(proc.stderr(), /\n\s+at /, 'no stack trace');
    } finally {
      blocker.close();
    }
  });
});
