import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KubeApiServer } from '../fixtures/kube-api-server.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';
import { httpsRequest } from '../helpers/https-request.js';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { eventually } from '../helpers/eventually.js';

describe('meshca ca serve --kubernetes (two replicas against the loopback API server)', () => {
  let api: KubeApiServer;
  let dir: string;
  const cas: TestCa[] = [];
  before(async () => {
    api = await KubeApiServer.start({ namespaces: ['default', 'bookinfo', 'meshca', 'kube-system'] });
    dir = await mkdtemp(join(tmpdir(), 'meshca-k8s-mode-'));
    await writeFile(join(dir, 'kubeconfig.json'), api.kubeConfig().exportConfig(), { mode: 0o600 });
  });
  after(async () => {
    for (const ca of cas) await ca.close();
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('replicas starting together share one root from one Secret, and the root reaches every namespace', async () => {
    const start = (pod: string) =>
      startTestCa({ kubernetes: 'true', kubeconfig: join(dir, 'kubeconfig.json'), podNamespace: 'meshca', podName: pod });
    cas.push(...(await Promise.all([start('meshca-a'), start('meshca-b')])));
    const [a, b] = cas;
    assert.equal(new X509Certificate(a!.rootPem).fingerprint256, new X509Certificate(b!.rootPem).fingerprint256, 'one root for both replicas');
    // Two shared Secrets (the CA and the JWT-SVID key), each created once and at most raced once.
    const secretCreates = api.requests.filter((r) => r.method === 'POST' && r.path.includes('/secrets'));
    assert.ok(secretCreates.length >= 2 && secretCreates.length <= 4, `secret creates: ${secretCreates.length}`);
    assert.ok(api.getObject('secrets', 'meshca', 'meshca-ca-secret'));

    await eventually(async () => {
      const cm = api.getObject('configmaps', 'bookinfo', 'meshca-root-cert') as { data?: Record<string, string> } | undefined;
      return cm?.data?.['root-cert.pem'] === a!.rootPem;
    }, 'root ConfigMap in namespace bookinfo');
    assert.equal(api.getObject('configmaps', 'kube-system', 'meshca-root-cert'), undefined, 'system namespaces are skipped');
  });

  test("replicas sign JWT-SVIDs with one key from one Secret: one replica's token verifies against the other's bundle", async () => {
    const [a, b] = cas;
    const stored = api.getObject('secrets', 'meshca', 'meshca-jwt-signing-key') as { data?: Record<string, string> } | undefined;
    const jwk = JSON.parse(Buffer.from(stored?.data?.['jwt-signing-key.json'] ?? '', 'base64').toString('utf8')) as { kty?: string; d?: string };
    assert.equal(jwk.kty, 'EC');
    assert.equal(typeof jwk.d, 'string');

    const audience = 'spiffe://cluster.local/ns/default/sa/backend';
    const res = await httpsRequest(`${a!.httpUrl}/v1/jwtsvids`, {
      ca: a!.rootPem,
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${await a!.mint({ namespace: 'default', serviceAccount: 'jwt-user' })}` },
      body: JSON.stringify({ audience: [audience] }),
    });
    assert.equal(res.status, 200, res.body);
    const bundle = (await httpsRequest(`${b!.httpUrl}/.well-known/spiffe-bundle`, { ca: b!.rootPem })).json<{ keys: { use: string }[] }>();
    const keys = bundle.keys.filter((k) => k.use === 'jwt-svid').map(({ use: _use, ...k }) => k);
    assert.equal(keys.length, 1);
    const { payload } = await jwtVerify(res.json<{ token: string }>().token, createLocalJWKSet({ keys: keys as never }), { audience, algorithms: ['ES256'] });
    assert.equal(payload.sub, 'spiffe://cluster.local/ns/default/sa/jwt-user');
  });
});
