import * as assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';

import { CoreV1Api } from '@kubernetes/client-node';

import { loadAuthorityFromKubernetes } from '../../src/cmd/ca-kubernetes.js';
import { CaInvalidError, CaNotReadyError } from '../../src/errors.js';
import { loadOrCreateAuthoritySecret } from '../../src/k8s/authority-secret.js';
import type { LoadOrCreateAuthoritySecretOptions } from '../../src/k8s/authority-secret.js';
import { KubeApiError } from '../../src/k8s/kube-api.js';
import type { Logger } from '../../src/log.js';
import { createSelfSignedRoot, loadAuthority } from '../../src/pki/authority.js';
import type { AuthorityPem } from '../../src/pki/authority.js';
import { KubeApiServer } from '../fixtures/kube-api-server.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { createTestIntermediate, createTestRoot } from '../helpers/test-ca.js';

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

/** A Logger that keeps every record as JSON text, to check what reaches the logs. */
function recordingLogger(lines: string[], bindings: Record<string, unknown> = {}): Logger {
  const record = (level: string) => (obj: object | string, msg?: string) => {
    lines.push(JSON.stringify({ level, ...bindings, ...(typeof obj === 'string' ? { msg: obj } : { ...obj, msg }) }, (_k, v: unknown) => (v instanceof Error ? { message: v.message } : v)));
  };
  return {
    child: (more) => recordingLogger(lines, { ...bindings, ...more }),
    debug: record('debug'),
    info: record('info'),
    warn: record('warn'),
    error: record('error'),
  };
}

function decode(data: Record<string, string> | undefined, key: string): string | undefined {
  const value = data?.[key];
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

async function newRoot(): Promise<AuthorityPem> {
  const root = await createSelfSignedRoot({ trustDomain: 'cluster.local', now: new Date() });
  return { ...root, rootPem: root.certPem };
}

describe('CA Secret: loadOrCreateAuthoritySecret against the loopback API server', () => {
  let server: KubeApiServer;
  let core: CoreV1Api;
  let namespace: string;
  let counter = 0;

  before(async () => {
    server = await KubeApiServer.start();
    core = server.kubeConfig().makeApiClient(CoreV1Api);
  });

  after(async () => {
    await server.close();
  });

  beforeEach(() => {
    // A namespace per test: no test sees another's Secrets.
    namespace = `meshca-${++counter}`;
    server.createNamespace(namespace);
    server.clearRequests();
  });

  const load = (overrides: Partial<LoadOrCreateAuthoritySecretOptions> = {}) =>
    loadOrCreateAuthoritySecret({ kubeConfig: server.kubeConfig(), namespace, create: newRoot, ...overrides });

  const writes = () => server.requests.filter((r) => r.method !== 'GET');

  it('uses the plug-in cacerts Secret as-is and writes nothing', async () => {
    const root = await createTestRoot({ trustDomain: 'cluster.local' });
    const intermediate = await createTestIntermediate(root);
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: 'cacerts' },
        data: {
          'ca-cert.pem': b64(intermediate.pem),
          'ca-key.pem': b64(intermediate.keyPem),
          'cert-chain.pem': b64(intermediate.pem + root.pem),
          'root-cert.pem': b64(root.pem),
        },
      },
    });
    server.clearRequests();
    let created = 0;

    const result = await load({ create: async () => (created++, newRoot()) });

    assert.equal(result.source, 'plugin');
    assert.equal(result.secretName, 'cacerts');
    assert.equal(result.certPem, intermediate.pem);
    assert.equal(result.keyPem, intermediate.keyPem);
    assert.equal(result.chainPem, intermediate.pem + root.pem);
    assert.equal(result.rootPem, root.pem);
    assert.equal(created, 0);
    assert.deepEqual(writes(), []);
    assert.equal(server.getObject('secrets', namespace, 'meshca-ca-secret'), undefined);
    const authority = loadAuthority(result, new Date());
    assert.equal(authority.intermediates.length, 0);
    assert.equal(authority.roots[0]?.fingerprint256, root.cert.fingerprint256);
  });

  it('creates the self-signed Secret on first start and reuses it afterwards', async () => {
    let created = 0;
    const create = async () => (created++, newRoot());

    const first = await load({ create });
    const second = await load({ create });

    assert.equal(first.source, 'created');
    assert.equal(second.source, 'self-signed');
    assert.equal(created, 1);
    assert.equal(second.certPem, first.certPem);
    assert.equal(second.keyPem, first.keyPem);
    const stored = server.getObject('secrets', namespace, 'meshca-ca-secret');
    assert.ok(stored);
    assert.equal(stored['type'], 'Opaque');
    assert.equal(stored.metadata.labels?.['app.kubernetes.io/name'], 'meshca');
    const data = stored['data'] as Record<string, string>;
    assert.deepEqual(Object.keys(data).sort(), ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    assert.equal(decode(data, 'ca-cert.pem'), first.certPem);
    assert.equal(decode(data, 'root-cert.pem'), first.rootPem);
    assert.equal(writes().filter((r) => r.method === 'POST').length, 1);
  });

  it('two replicas starting at once create exactly one Secret and both use its root', async () => {
    // Hold both create callbacks until both replicas have found no Secret: the race is then certain.
    let arrived = 0;
    let release!: () => void;
    const bothArrived = new Promise<void>((resolve) => (release = resolve));
    const create = async () => {
      if (++arrived === 2) release();
      await bothArrived;
      return newRoot();
    };

    const [a, b] = await Promise.all([load({ create }), load({ create })]);

    assert.equal(arrived, 2);
    assert.equal(a.certPem, b.certPem);
    assert.equal(a.keyPem, b.keyPem);
    assert.equal(a.rootPem, b.rootPem);
    assert.deepEqual([a.source, b.source].sort(), ['created', 'self-signed']);
    const posts = server.requests.filter((r) => r.method === 'POST');
    assert.deepEqual(posts.map((r) => r.status).sort(), [201, 409]);
    assert.equal(server.requests.filter((r) => r.method === 'PUT').length, 0, 'the winner is never overwritten');
    const stored = server.getObject('secrets', namespace, 'meshca-ca-secret');
    assert.equal(decode(stored?.['data'] as Record<string, string>, 'ca-cert.pem'), a.certPem);
  });

  it('stops instead of creating a new root when the plug-in Secret cannot be read', async () => {
    server.failNext(403);
    let created = 0;

    const err = await rejection(load({ create: async () => (created++, newRoot()) }));

    assert.ok(err instanceof KubeApiError);
    assert.equal(err.code, 'ERR_CA_NOT_READY');
    assert.equal(err.rule, 'forbidden');
    assert.equal(err.status, 403);
    assert.equal(created, 0);
    assert.deepEqual(writes(), []);
  });

  it('reports an unreachable API server as a retryable coded error', async () => {
    server.failNext('reset');

    const err = await rejection(load());

    assert.ok(err instanceof KubeApiError);
    assert.equal(err.code, 'ERR_CA_NOT_READY');
    assert.equal(err.rule, 'unavailable');
  });

  it('refuses to start without a CA when creating a self-signed root is disabled', async () => {
    const err = await rejection(load({ create: undefined }));

    assert.ok(err instanceof CaNotReadyError);
    assert.equal(err.code, 'ERR_CA_NOT_READY');
    assert.equal(err.rule, 'missing');
    assert.deepEqual(writes(), []);
  });

  it('rejects a plug-in Secret without ca-key.pem', async () => {
    const root = await newRoot();
    await core.createNamespacedSecret({ namespace, body: { metadata: { name: 'cacerts' }, data: { 'ca-cert.pem': Buffer.from(root.certPem).toString('base64') } } });

    const err = await rejection(load());

    assert.ok(err instanceof CaInvalidError);
    assert.equal(err.code, 'ERR_CA_INVALID');
    assert.equal(err.rule, 'missing');
    assert.match(err.message, /ca-key\.pem/);
  });

  it('honours custom Secret names', async () => {
    const result = await load({ secretName: 'my-plugin', selfSignedSecretName: 'my-root' });

    assert.equal(result.secretName, 'my-root');
    assert.ok(server.getObject('secrets', namespace, 'my-root'));
    assert.deepEqual(
      server.requests.filter((r) => r.method === 'GET').map((r) => r.path.split('/').pop()),
      ['my-plugin', 'my-root'],
    );
  });

  it('loadAuthorityFromKubernetes returns a validated authority and never logs the key', async () => {
    const lines: string[] = [];
    const clock = new ManualClock(new Date());

    const authority = await loadAuthorityFromKubernetes({
      kubeConfig: server.kubeConfig(),
      namespace,
      trustDomain: 'cluster.local',
      clock,
      logger: recordingLogger(lines),
    });

    const stored = server.getObject('secrets', namespace, 'meshca-ca-secret');
    const storedCert = new X509Certificate(decode(stored?.['data'] as Record<string, string>, 'ca-cert.pem') ?? '');
    assert.equal(authority.certificate.fingerprint256, storedCert.fingerprint256);
    assert.ok(lines.some((l) => l.includes('created a self-signed root CA')));
    assert.ok(lines.every((l) => !l.includes('PRIVATE KEY')));
  });

  it('loadAuthorityFromKubernetes without self-signing fails when the cluster has no CA', async () => {
    const err = await rejection(
      loadAuthorityFromKubernetes({
        kubeConfig: server.kubeConfig(),
        namespace,
        trustDomain: 'cluster.local',
        clock: new ManualClock(new Date()),
        logger: recordingLogger([]),
        selfSigned: false,
      }),
    );

    assert.ok(err instanceof CaNotReadyError);
    assert.equal(err.rule, 'missing');
  });
});
