import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { AdmissionregistrationV1Api } from '@kubernetes/client-node';

import { KubeApiError } from '../../src/k8s/kube-api.js';
import { WebhookCaBundlePublisher } from '../../src/k8s/webhook-ca-bundle.js';
import { KubeApiServer } from '../fixtures/kube-api-server.js';
import { createTestRoot } from '../helpers/test-ca.js';

const NAME = 'meshca-sidecar-injector';
const PATH = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${NAME}`;

function configuration(caBundle?: string) {
  const webhook = (name: string) => ({
    name,
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    failurePolicy: 'Fail',
    clientConfig: { service: { name: 'meshca', namespace: 'meshca', path: '/inject', port: 15014 }, ...(caBundle ? { caBundle } : {}) },
    rules: [{ apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], operations: ['CREATE'], scope: 'Namespaced' }],
  });
  return { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: NAME, labels: { team: 'platform' } }, webhooks: [webhook('a.meshca.io'), webhook('b.meshca.io')] };
}

describe('WebhookCaBundlePublisher (against the loopback API server)', () => {
  let api: KubeApiServer;
  let client: AdmissionregistrationV1Api;
  let publisher: WebhookCaBundlePublisher;
  let rootsPem: string;
  before(async () => {
    api = await KubeApiServer.start({ namespaces: ['meshca'] });
    client = api.kubeConfig().makeApiClient(AdmissionregistrationV1Api);
    publisher = new WebhookCaBundlePublisher({ kubeConfig: api.kubeConfig() });
    const [one, two] = await Promise.all([createTestRoot(), createTestRoot()]);
    rootsPem = `${one.pem}${two.pem}`;
  });
  after(async () => api.close());

  const stored = () => api.getObject('mutatingwebhookconfigurations', '', NAME) as unknown as ReturnType<typeof configuration> & { metadata: { resourceVersion: string } } | undefined;

  test('without the configuration (injection not installed) it reports missing and writes nothing', async () => {
    assert.equal(await publisher.publish(rootsPem), 'missing');
    assert.deepEqual(api.requests.filter((r) => r.method !== 'GET'), []);
  });

  test('sets every webhook caBundle to the roots, base64 as the API stores it, keeping the rest of the object', async () => {
    await client.createMutatingWebhookConfiguration({ body: configuration() as never });
    assert.equal(await publisher.publish(rootsPem), 'updated');
    const after = stored()!;
    const expected = Buffer.from(rootsPem).toString('base64');
    assert.deepEqual(after.webhooks.map((w) => w.clientConfig.caBundle), [expected, expected]);
    assert.deepEqual(after.metadata.labels, { team: 'platform' });
    assert.deepEqual(after.webhooks[0]!.clientConfig.service, configuration().webhooks[0]!.clientConfig.service);
  });

  test('an up-to-date configuration is left alone: no write', async () => {
    api.clearRequests();
    assert.equal(await publisher.publish(rootsPem), 'unchanged');
    assert.deepEqual(api.requests.map((r) => r.method), ['GET']);
  });

  test('a root rotation or a hand edit is written over, with the resourceVersion it read', async () => {
    const current = await client.readMutatingWebhookConfiguration({ name: NAME });
    await client.replaceMutatingWebhookConfiguration({ name: NAME, body: { ...current, webhooks: current.webhooks!.map((w, i) => (i === 1 ? { ...w, clientConfig: { ...w.clientConfig, caBundle: undefined } } : w)) } });
    const before = stored()!.metadata.resourceVersion;
    api.clearRequests();
    assert.equal(await publisher.publish(rootsPem), 'updated');
    assert.deepEqual(api.requests.map((r) => `${r.method} ${r.path}`), [`GET ${PATH}`, `PUT ${PATH}`]);
    assert.notEqual(stored()!.metadata.resourceVersion, before);
    assert.ok(stored()!.webhooks.every((w) => w.clientConfig.caBundle === Buffer.from(rootsPem).toString('base64')));
  });

  test('an API failure is a KubeApiError naming the action, not a silent success', async () => {
    api.failNext(403, { path: PATH });
    await assert.rejects(publisher.publish('-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n'), (err: unknown) => err instanceof KubeApiError && /MutatingWebhookConfiguration meshca-sidecar-injector/.test(err.message));
  });
});
