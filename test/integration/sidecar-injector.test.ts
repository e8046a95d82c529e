/**
 * The injection webhook as the API server uses it: real AdmissionReview JSON POSTed over HTTPS to
 * `ca serve --sidecar-injector`, the CA's serving certificate verified for meshca.meshca.svc
 * against the caBundle the CA leader itself keeps in the MutatingWebhookConfiguration.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import { Pod } from 'kubernetes-models/v1';

import { KubeApiServer } from '../fixtures/kube-api-server.js';
import { admittedPod, review } from '../helpers/admission-review.js';
import { httpsRequest } from '../helpers/https-request.js';
import { applyJsonPatch } from '../helpers/json-patch.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';
import { eventually } from '../helpers/eventually.js';

const WEBHOOK_CONFIGURATION = {
  apiVersion: 'admissionregistration.k8s.io/v1',
  kind: 'MutatingWebhookConfiguration',
  metadata: { name: 'meshca-sidecar-injector' },
  webhooks: [
    {
      name: 'sidecar-injector.meshca.io',
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      failurePolicy: 'Fail',
      clientConfig: { service: { name: 'meshca', namespace: 'meshca', path: '/inject', port: 15014 } },
      rules: [{ apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], operations: ['CREATE'], scope: 'Namespaced' }],
    },
  ],
};

describe('ca serve --sidecar-injector: POST /inject', () => {
  let ca: TestCa;
  before(async () => {
    ca = await startTestCa({ sidecarInjector: 'true', sidecarImage: 'registry.example/meshca:0.1.0' });
  });
  after(async () => ca.close());

  const post = (body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
    httpsRequest(`${ca.httpUrl}/inject`, { ca: ca.rootPem, method: 'POST', headers, body, servername: 'meshca.meshca.svc' });

  test('answers an AdmissionReview with a patch that gives the pod its sidecar, still a valid Pod', async () => {
    const pod = admittedPod();
    const res = await post(JSON.stringify(review(pod)));
    assert.equal(res.status, 200, res.body);
    const answer = res.json<{ apiVersion: string; kind: string; response: { uid: string; allowed: boolean; patchType: string; patch: string } }>();
    assert.equal(answer.apiVersion, 'admission.k8s.io/v1');
    assert.equal(answer.response.uid, '705ab4f5-6393-11e8-b7cc-42010a800002');
    assert.equal(answer.response.allowed, true);
    const patched = applyJsonPatch(pod, JSON.parse(Buffer.from(answer.response.patch, 'base64').toString('utf8')) as unknown[]) as {
      metadata: Record<string, unknown>;
      spec: { initContainers: { name: string; image: string; args: string[] }[] };
    };
    new Pod({ ...patched, metadata: { ...patched.metadata, name: 'helloworld-abcde' } } as never).validate();
    const sidecar = patched.spec.initContainers[0]!;
    assert.equal(sidecar.name, 'meshca-sidecar');
    assert.equal(sidecar.image, 'registry.example/meshca:0.1.0');
    assert.equal(sidecar.args[sidecar.args.indexOf('--ca-address') + 1], 'meshca.meshca.svc:15012');
  });

  test('denies a pod it cannot inject with the reason; refuses what is not an AdmissionReview with 400 ERR_REQUEST_INVALID', async () => {
    const denied = await post(JSON.stringify(review(admittedPod({ ports: [{ containerPort: 1 }, { containerPort: 2 }] }))));
    assert.equal(denied.status, 200);
    const response = denied.json<{ response: { allowed: boolean; status: { code: number; message: string } } }>().response;
    assert.equal(response.allowed, false);
    assert.match(response.status.message, /sidecar\.meshca\.io\/app-port/);

    for (const body of ['{"kind":"AdmissionReview"}', '[]', '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}']) {
      const res = await post(body);
      assert.equal(res.status, 400, body);
      assert.equal(res.json<{ error: { code: string } }>().error.code, 'ERR_REQUEST_INVALID');
    }
    const notJson = await post('<x/>', { 'content-type': 'application/xml' });
    assert.equal(notJson.status, 415);
  });

  test('--monitoring-listen serves /metrics, /healthz and /readyz over plain HTTP, and nothing else', async () => {
    const monitored = await startTestCa({ monitoringListen: '127.0.0.1:0' });
    try {
      const base = `http://127.0.0.1:${monitored.running.monitoringPort}`;
      const metrics = await fetch(`${base}/metrics`);
      assert.equal(metrics.status, 200);
      const text = await metrics.text();
      assert.match(text, /^meshca_ca_certificate_expiration_timestamp_seconds\{serial="[0-9a-f]+"\} \d+/m);
      const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      if (promtool.error === undefined) assert.equal(promtool.status, 0, promtool.stdout + promtool.stderr);
      assert.equal((await fetch(`${base}/readyz`)).status, 200);
      assert.equal((await fetch(`${base}/v1/bundle`)).status, 404, 'the CA API is not on the monitoring port');
      assert.equal((await fetch(`${base}/metrics`, { method: 'POST' })).status, 405);
    } finally {
      await monitored.close();
    }
  });

  test('a CA without --sidecar-injector has no /inject', async () => {
    const plain = await startTestCa();
    try {
      const res = await httpsRequest(`${plain.httpUrl}/inject`, { ca: plain.rootPem, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(review(admittedPod())) });
      assert.equal(res.status, 404);
    } finally {
      await plain.close();
    }
  });
});

describe('ca serve --kubernetes --sidecar-injector: the webhook caBundle follows the roots', () => {
  let api: KubeApiServer;
  let dir: string;
  let ca: TestCa | undefined;
  before(async () => {
    api = await KubeApiServer.start({ namespaces: ['default', 'meshca'] });
    dir = await mkdtemp(join(tmpdir(), 'meshca-injector-'));
    await writeFile(join(dir, 'kubeconfig.json'), api.kubeConfig().exportConfig(), { mode: 0o600 });
  });
  after(async () => {
    await ca?.close();
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('the leader sets caBundle to the mesh root, and the API server can then verify the webhook', async () => {
    const admin = api.kubeConfig();
    const { AdmissionregistrationV1Api } = await import('@kubernetes/client-node');
    const client = admin.makeApiClient(AdmissionregistrationV1Api);
    await client.createMutatingWebhookConfiguration({ body: WEBHOOK_CONFIGURATION as never });

    ca = await startTestCa({ kubernetes: 'true', kubeconfig: join(dir, 'kubeconfig.json'), podNamespace: 'meshca', podName: 'meshca-a', sidecarInjector: 'true' });
    const caBundle = () => (api.getObject('mutatingwebhookconfigurations', '', 'meshca-sidecar-injector') as { webhooks: { clientConfig: { caBundle?: string } }[] } | undefined)?.webhooks[0]?.clientConfig.caBundle;
    await eventually(() => caBundle() !== undefined, 'caBundle set');
    const bundlePem = Buffer.from(caBundle()!, 'base64').toString('utf8');
    assert.equal(bundlePem, ca.rootPem);
    // As kube-apiserver calls the webhook: trusting only caBundle, for the Service's DNS name.
    const res = await httpsRequest(`${ca.httpUrl}/inject`, { ca: bundlePem, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(review(admittedPod())), servername: 'meshca.meshca.svc' });
    assert.equal(res.status, 200, res.body);
  });
});
