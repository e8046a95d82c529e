/**
 * Root rotation in Kubernetes mode, the way the manifests deploy the CA: two replicas against
 * the loopback API server, certificate requests to both the whole time, each client trusting
 * what a pod trusts (the root ConfigMap of its namespace, re-read as the kubelet would update
 * the mounted file) and reconnecting often, so every phase is crossed by fresh TLS handshakes.
 *
 * `meshca ca rotate --kubernetes` prepares, activates and retires through the CA Secret; no
 * replica restarts. Asserted: not one issuance or handshake fails; the new root reaches every
 * namespace before anything is signed under it; both replicas sign with the new authority after
 * activation; only the new root is left after retirement.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';

import { createCsr } from '../../src/pki/csr.js';
import { loadIstioCaProto } from '../../src/transport/grpc/protos.js';
import { KubeApiServer } from '../fixtures/kube-api-server.js';
import { runMeshca } from '../helpers/cli.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';
import { eventually } from '../helpers/eventually.js';

const CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const fingerprints = (pem: string): string[] => (pem.match(CERT) ?? []).map((p) => new X509Certificate(p).fingerprint256);

describe('ca rotate --kubernetes: a full root rotation with two replicas and traffic', () => {
  let api: KubeApiServer;
  let dir: string;
  const cas: TestCa[] = [];
  before(async () => {
    api = await KubeApiServer.start({ namespaces: ['default', 'bookinfo', 'meshca', 'kube-system'] });
    dir = await mkdtemp(join(tmpdir(), 'meshca-k8s-rotation-'));
    await writeFile(join(dir, 'kubeconfig.json'), api.kubeConfig().exportConfig(), { mode: 0o600 });
  });
  after(async () => {
    for (const ca of cas) await ca.close();
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  const configMapRoots = (namespace: string): string =>
    (api.getObject('configmaps', namespace, 'meshca-root-cert') as { data?: Record<string, string> } | undefined)?.data?.['root-cert.pem'] ?? '';
  const rotate = (...args: string[]) =>
    runMeshca(['ca', 'rotate', '--kubernetes', '--namespace', 'meshca', '--kubeconfig', join(dir, 'kubeconfig.json'), ...args], { env: { POD_NAMESPACE: '', MESHCA_KUBERNETES: '' } });

  test('prepare, activate, retire: 0 failed issuances and handshakes; every replica follows without a restart', async (t) => {
    const start = (pod: string) => startTestCa({ kubernetes: 'true', kubeconfig: join(dir, 'kubeconfig.json'), podNamespace: 'meshca', podName: pod, rateLimit: '0', rootResyncInterval: '2s' });
    cas.push(...(await Promise.all([start('meshca-a'), start('meshca-b')])));
    const oldRoot = fingerprints(cas[0]!.rootPem)[0]!;
    await eventually(() => fingerprints(configMapRoots('default')).includes(oldRoot), 'the root published in default');

    const { IstioCertificateService } = loadIstioCaProto().istio.v1.auth;
    const csr = createCsr(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey).pem;
    const failures: string[] = [];
    const issuers = new Map<number, string>(); // replica -> fingerprint of the last leaf's issuer
    let issued = 0;
    let stop = false;
    const loops = cas.map(async (ca, replica) => {
      const token = await ca.mint({ serviceAccount: `load-${replica}`, ttlSeconds: 600 });
      let trust = '';
      let client: InstanceType<typeof IstioCertificateService> | undefined;
      for (let n = 0; !stop; n++) {
        // What a pod in `default` trusts right now; a new connection (and handshake) every 10 calls.
        const roots = configMapRoots('default');
        if (roots !== trust || n % 10 === 0) {
          client?.close();
          trust = roots;
          client = new IstioCertificateService(ca.grpcAddress, credentials.createSsl(Buffer.from(trust)));
        }
        const metadata = new Metadata();
        metadata.set('authorization', `Bearer ${token}`);
        try {
          const chain = await new Promise<string[]>((resolve, reject) =>
            client!.CreateCertificate({ csr }, metadata, { deadline: Date.now() + 10_000 }, (err: ServiceError | null, r?: { cert_chain: string[] }) => (err ? reject(err) : resolve(r!.cert_chain))),
          );
          issued++;
          issuers.set(replica, fingerprints(chain.at(-1)!)[0]!);
        } catch (err) {
          failures.push(`replica ${replica}: ${(err as Error).message}`);
        }
      }
      client?.close();
    });

    let newRoot = '';
    try {
      await new Promise((r) => setTimeout(r, 1000));

      // prepare: the new root is published (both roots) in every namespace; nothing is signed under it yet.
      const prepared = await rotate('--prepare');
      assert.equal(prepared.code, 0, prepared.stderr);
      const stored = () => api.getObject('secrets', 'meshca', 'meshca-ca-secret') as unknown as { data: Record<string, string> };
      newRoot = new X509Certificate(Buffer.from(stored().data['next-root-cert.pem']!, 'base64').toString('utf8')).fingerprint256;
      await eventually(() => ['default', 'bookinfo', 'meshca'].every((ns) => fingerprints(configMapRoots(ns)).sort().join() === [oldRoot, newRoot].sort().join()), 'both roots in every namespace');
      assert.deepEqual([...new Set(issuers.values())], [oldRoot], 'still signing under the old root');

      // activate: refused while a namespace lacks the new root (a new one, where the leader
      // cannot write yet), then done once the leader has published it there.
      api.failNext(403, { path: '/api/v1/namespaces/late/configmaps', times: 100_000 });
      api.createNamespace('late');
      const early = await rotate('--activate');
      assert.equal(early.code, 1, early.stderr);
      assert.match(early.stderr, /not activating yet: the meshca-root-cert ConfigMap of 1 namespace\(s\) \(late\) does not hold the prepared root yet/);
      api.clearFailures();
      await eventually(() => fingerprints(configMapRoots('late')).includes(newRoot), 'the root published in the new namespace');
      const activated = await rotate('--activate');
      assert.equal(activated.code, 0, activated.stderr);
      await eventually(() => cas.every((_, i) => issuers.get(i) === newRoot), 'both replicas sign under the new root');

      // retire (forced: the SVIDs of the old root would otherwise keep it for --max-ttl).
      const retired = await rotate('--retire', '--force');
      assert.equal(retired.code, 0, retired.stderr);
      await eventually(() => ['default', 'bookinfo', 'meshca', 'late'].every((ns) => fingerprints(configMapRoots(ns)).join() === newRoot), 'only the new root published');
      const since = issued;
      await eventually(() => issued > since + 20, 'requests keep succeeding after retirement');
      // A replica that is not the leader learns of the retirement on its next Secret poll (5 s).
      const followed = async () => (await Promise.all(cas.map(async (ca) => fingerprints(await readFile(join(ca.dataDir, 'root-cert.pem'), 'utf8')).join()))).every((f) => f === newRoot);
      await eventually(followed, 'each replica followed the Secret to the new root alone');
    } finally {
      stop = true;
      await Promise.all(loops);
    }
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${issued + failures.length} requests failed`);
    assert.ok(issued > 100, `only ${issued} requests issued`);
    t.diagnostic(`${issued} certificates issued across the rotation, ${failures.length} failed`);
    // Status from the Secret, as an operator sees it.
    const status = await rotate();
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`active: +${newRoot.replace(/:/g, ':')}`));
  });
});
