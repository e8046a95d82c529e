import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { createCsr } from '../../src/pki/csr.js';
import { KubeApiServer } from '../fixtures/kube-api-server.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';

const csr = (): string => createCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey).pem;

describe('CA with --auth tokenreview, through @kubernetes/client-node against the loopback API server', () => {
  let api: KubeApiServer;
  let ca: TestCa;
  let dir: string;
  before(async () => {
    api = await KubeApiServer.start();
    dir = await mkdtemp(join(tmpdir(), 'meshca-kubeconfig-'));
    const kubeconfig = join(dir, 'kubeconfig.json');
    await writeFile(kubeconfig, api.kubeConfig().exportConfig(), { mode: 0o600 });
    ca = await startTestCa({ auth: 'tokenreview', kubeconfig, authTimeout: '1s' });
  });
  after(async () => {
    await ca.close();
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  const mint = (options: { namespace?: string; serviceAccount?: string; audience?: string } = {}) =>
    api.issuer.mint({ namespace: options.namespace ?? 'bookinfo', serviceAccount: options.serviceAccount ?? 'productpage', audience: options.audience ?? 'istio-ca', now: new Date() });

  test('a token the API server authenticates gets an SVID for its service account', async () => {
    const response = await ca.createCertificate({ csr: csr() }, await mint());
    assert.equal(new X509Certificate(response.cert_chain[0]!).subjectAltName, 'URI:spiffe://cluster.local/ns/bookinfo/sa/productpage');
    const review = api.requests.find((r) => r.path.endsWith('/tokenreviews'));
    assert.ok(review, 'the CA sent a TokenReview');
  });

  test('a token the API server rejects → UNAUTHENTICATED', async () => {
    const { DevTokenIssuer } = await import('../../src/authn/dev-issuer.js');
    const stranger = await DevTokenIssuer.generate({ issuer: api.issuer.issuer });
    const token = await stranger.mint({ namespace: 'bookinfo', serviceAccount: 'productpage', now: new Date() });
    await assert.rejects(ca.createCertificate({ csr: csr() }, token), (err: ServiceError) => err.code === status.UNAUTHENTICATED);
  });

  test('a token for the API server audience, not istio-ca → UNAUTHENTICATED', async () => {
    await assert.rejects(
      ca.createCertificate({ csr: csr() }, await mint({ audience: 'https://kubernetes.default.svc.cluster.local' })),
      (err: ServiceError) => err.code === status.UNAUTHENTICATED,
    );
  });

  test('API server errors → UNAVAILABLE (retryable), never UNAUTHENTICATED', async () => {
    api.failNext(500);
    await assert.rejects(ca.createCertificate({ csr: csr() }, await mint({ serviceAccount: 'ratings' })), (err: ServiceError) => {
      assert.equal(err.code, status.UNAVAILABLE, err.details);
      assert.match(err.details, /retry/);
      return true;
    });
  });

  test('a slow API server → UNAVAILABLE within the auth timeout; the CA stays responsive', async () => {
    api.delayMs = 3000;
    try {
      const started = Date.now();
      await assert.rejects(ca.createCertificate({ csr: csr() }, await mint({ serviceAccount: 'details' })), (err: ServiceError) => err.code === status.UNAVAILABLE);
      assert.ok(Date.now() - started < 2900, 'answered before the API server did');
    } finally {
      api.delayMs = 0;
    }
    const response = await ca.createCertificate({ csr: csr() }, await mint({ serviceAccount: 'reviews' }));
    assert.equal(response.cert_chain.length, 2);
  });
});

describe('CA with --auth tokenreview and no reachable API server', () => {
  test('is not ready, saying why (what /readyz answers), and logs it once; with the API server reachable it is ready', async () => {
    const api = await KubeApiServer.start();
    const dir = await mkdtemp(join(tmpdir(), 'meshca-kubeconfig-'));
    const live = join(dir, 'live.json');
    const dead = join(dir, 'dead.json');
    await writeFile(live, api.kubeConfig().exportConfig(), { mode: 0o600 });
    // The same kubeconfig, aimed at a port nothing listens on.
    const { freePort } = await import('../helpers/processes.js');
    await writeFile(dead, api.kubeConfig().exportConfig().replace(/127\.0\.0\.1:\d+/g, `127.0.0.1:${await freePort()}`), { mode: 0o600 });
    const unreachable = await startTestCa({ auth: 'tokenreview', kubeconfig: dead, authTimeout: '1s' });
    const reachable = await startTestCa({ auth: 'tokenreview', kubeconfig: live, authTimeout: '1s' });
    try {
      assert.match(unreachable.running.readiness() ?? 'ready', /^authentication backend unavailable: cannot reach the API server for TokenReview: ECONNREFUSED/);
      assert.ok(unreachable.logs.lines.some((l) => l['msg'] === 'not ready: the TokenReview backend cannot give verdicts'), 'said once in the log');
      assert.equal(reachable.running.readiness(), undefined);
    } finally {
      await unreachable.close();
      await reachable.close();
      await api.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
