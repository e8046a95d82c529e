import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openssl } from '../helpers/openssl.js';
import { startMeshca, startProcess, type RunningProcess } from '../helpers/processes.js';
import { createTestLeaf, createTestRoot, type TestCertificate } from '../helpers/test-ca.js';

const POLICY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: helloworld, namespace: default }
spec:
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/default/sa/sleep"] } }]
    to: [{ operation: { methods: ["GET", "POST"], paths: ["/hello", "/upload"] } }]
`;

async function writeSvidDir(dir: string, leaf: TestCertificate, root: TestCertificate): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'cert-chain.pem'), leaf.pem);
  await writeFile(join(dir, 'key.pem'), leaf.keyPem, { mode: 0o600 });
  await writeFile(join(dir, 'root-cert.pem'), root.pem);
}

describe('meshca proxy (real process): mTLS + policy in front of a plain HTTP app', () => {
  let dir: string;
  let app: http.Server;
  let appPort: number;
  const seen: { xfcc?: string | string[]; length: number }[] = [];
  let inbound: RunningProcess;
  let port: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-proxy-'));
    const root = await createTestRoot({ trustDomain: 'cluster.local' });
    const other = await createTestRoot({ trustDomain: 'cluster.local' });
    await writeSvidDir(join(dir, 'helloworld'), await createTestLeaf(root, { uris: ['spiffe://cluster.local/ns/default/sa/helloworld'] }), root);
    await writeSvidDir(join(dir, 'sleep'), await createTestLeaf(root, { uris: ['spiffe://cluster.local/ns/default/sa/sleep'] }), root);
    await writeSvidDir(join(dir, 'productpage'), await createTestLeaf(root, { uris: ['spiffe://cluster.local/ns/default/sa/productpage'] }), root);
    await writeSvidDir(join(dir, 'rogue'), await createTestLeaf(other, { uris: ['spiffe://cluster.local/ns/default/sa/sleep'] }), other);
    await writeFile(join(dir, 'policy.yaml'), POLICY);

    app = http.createServer((req, res) => {
      let length = 0;
      req.on('data', (c: Buffer) => (length += c.length));
      req.on('end', () => {
        seen.push({ xfcc: req.headers['x-forwarded-client-cert'], length });
        res.writeHead(200, { 'content-type': 'text/plain' }).end(`Hello version: v1, instance: test, received ${length} bytes\n`);
      });
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    appPort = (app.address() as { port: number }).port;
    inbound = startMeshca(['proxy', '--listen', '127.0.0.1:0', '--upstream', `http://127.0.0.1:${appPort}`, '--svid-dir', join(dir, 'helloworld'), '--policy', join(dir, 'policy.yaml'), '--log-level', 'warn']);
    port = Number((await inbound.waitFor(/meshca proxy ready: inbound on port (\d+)/, 30_000))[1]);
  });

  after(async () => {
    await inbound.stop();
    await new Promise<void>((r) => app.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  const sClient = (who: string, request: string) =>
    openssl(['s_client', '-connect', `127.0.0.1:${port}`, '-cert', join(dir, who, 'cert-chain.pem'), '-key', join(dir, who, 'key.pem'), '-CAfile', join(dir, who, 'root-cert.pem'), '-quiet'], request);

  test('an allowed principal gets 200 through openssl s_client, and the app sees its identity in XFCC', async () => {
    const result = await sClient('sleep', 'GET /hello HTTP/1.1\r\nHost: helloworld\r\nx-forwarded-client-cert: URI=spiffe://cluster.local/ns/kube-system/sa/admin\r\nConnection: close\r\n\r\n');
    assert.match(result.stdout, /HTTP\/1\.1 200/);
    assert.match(result.stdout, /Hello version: v1/);
    const xfcc = String(seen.at(-1)!.xfcc);
    assert.match(xfcc, /^By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/helloworld;Hash=[0-9a-f]{64};URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/);
    assert.ok(!xfcc.includes('admin'), 'a client-supplied XFCC header never reaches the app');
  });

  test('curl with the same files gets the answer; request bodies stream through', async () => {
    const body = join(dir, 'body.bin');
    await writeFile(body, Buffer.alloc(2 * 1024 * 1024, 7));
    const out = await new Promise<string>((resolve) => {
      const p = startProcess('curl', ['-sS', '-k', '--cert', join(dir, 'sleep', 'cert-chain.pem'), '--key', join(dir, 'sleep', 'key.pem'), '--data-binary', `@${body}`, `https://127.0.0.1:${port}/upload`]);
      p.child.once('exit', () => resolve(p.stdout() + p.stderr()));
    });
    assert.match(out, /received 2097152 bytes/);
  });

  test('a denied path cannot be reached by another spelling of it', async () => {
    for (const spelling of ['/x/../hello3', '//hello3', '/%68ello3', '/./hello3']) {
      const res = await sClient('sleep', `GET ${spelling} HTTP/1.0\r\n\r\n`);
      assert.match(res.stdout, /HTTP\/1\.1 403/, spelling);
    }
    assert.match((await sClient('sleep', 'GET /x/../hello HTTP/1.0\r\n\r\n')).stdout, /HTTP\/1\.1 200/, 'normalized to an allowed path');
    assert.match((await sClient('sleep', 'GET /a%2Fhello HTTP/1.0\r\n\r\n')).stdout, /HTTP\/1\.1 400/);
  });

  test('a valid identity outside the policy gets 403; a wrong path too', async () => {
    assert.match((await sClient('productpage', 'GET /hello HTTP/1.0\r\n\r\n')).stdout, /HTTP\/1\.1 403[\s\S]*ERR_AUTHZ_DENIED/);
    assert.match((await sClient('sleep', 'GET /hello3 HTTP/1.0\r\n\r\n')).stdout, /HTTP\/1\.1 403/);
  });

  test('no client certificate: the handshake is refused (certificate required); an untrusted CA is refused', async () => {
    const noCert = await openssl(['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', join(dir, 'sleep', 'root-cert.pem'), '-quiet'], 'GET /hello HTTP/1.0\r\n\r\n');
    assert.match(noCert.stderr, /certificate required/);
    assert.doesNotMatch(noCert.stdout, /HTTP\/1\.1 200/);
    const rogue = await sClient('rogue', 'GET /hello HTTP/1.0\r\n\r\n');
    assert.doesNotMatch(rogue.stdout, /HTTP\/1\.1/);
  });

  test('outbound mode: a plain client reaches the mTLS service with its own SVID; a wrong server identity is refused', async () => {
    const outbound = startMeshca(['proxy', '--outbound', '--listen', '127.0.0.1:0', '--upstream', `https://127.0.0.1:${port}`, '--svid-dir', join(dir, 'sleep'), '--upstream-spiffe-id', 'spiffe://cluster.local/ns/default/sa/helloworld', '--log-level', 'warn']);
    const wrong = startMeshca(['proxy', '--outbound', '--listen', '127.0.0.1:0', '--upstream', `https://127.0.0.1:${port}`, '--svid-dir', join(dir, 'sleep'), '--upstream-spiffe-id', 'spiffe://cluster.local/ns/default/sa/ratings', '--log-level', 'warn']);
    try {
      const outPort = Number((await outbound.waitFor(/outbound on port (\d+)/, 30_000))[1]);
      const wrongPort = Number((await wrong.waitFor(/outbound on port (\d+)/, 30_000))[1]);
      const fetchText = async (p: number) => {
        const res = await fetch(`http://127.0.0.1:${p}/hello`);
        return { status: res.status, body: await res.text() };
      };
      const ok = await fetchText(outPort);
      assert.equal(ok.status, 200, ok.body);
      assert.match(ok.body, /Hello version: v1/);
      const refused = await fetchText(wrongPort);
      assert.equal(refused.status, 502);
      // The client learns why: who answered and who was expected, not "upstream unavailable".
      assert.match(refused.body, /"code":"ERR_UPSTREAM_IDENTITY"/);
      assert.match(refused.body, /upstream is spiffe:\/\/cluster\.local\/ns\/default\/sa\/helloworld, expected spiffe:\/\/cluster\.local\/ns\/default\/sa\/ratings/);
    } finally {
      await outbound.stop();
      await wrong.stop();
    }
  });
});
