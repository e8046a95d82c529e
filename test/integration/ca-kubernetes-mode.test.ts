import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KubeApiServer } from '../fixtures/kube-api-server.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';

/** Polls with a bounded number of tries: leader election and publication run on timers. */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

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
    const secretCreates = api.requests.filter((r) => r.method === 'POST' && r.path.includes('/secrets'));
    assert.ok(secretCreates.length >= 1 && secretCreates.length <= 2, `secret creates: ${secretCreates.length}`);

    await eventually(async () => {
      const cm = api.getObject('configmaps', 'bookinfo', 'meshca-root-cert') as { data?: Record<string, string> } | undefined;
      return cm?.data?.['root-cert.pem'] === a!.rootPem;
    }, 'root ConfigMap in namespace bookinfo');
    assert.equal(api.getObject('configmaps', 'kube-system', 'meshca-root-cert'), undefined, 'system namespaces are skipped');
  });
});
