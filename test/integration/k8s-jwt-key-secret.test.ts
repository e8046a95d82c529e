import * as assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';

import { CoreV1Api } from '@kubernetes/client-node';
import { generateKeyPair, exportJWK, type JWK } from 'jose';

import { CaInvalidError } from '../../src/errors.js';
import { loadOrCreateJwtKeySecret } from '../../src/k8s/jwt-key-secret.js';
import { KubeApiError } from '../../src/k8s/kube-api.js';
import { KubeApiServer } from '../fixtures/kube-api-server.js';

async function newJwk(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  return exportJWK(privateKey);
}

describe('JWT-SVID key Secret: loadOrCreateJwtKeySecret against the loopback API server', () => {
  let server: KubeApiServer;
  let namespace: string;
  let counter = 0;

  before(async () => {
    server = await KubeApiServer.start();
  });

  after(async () => {
    await server.close();
  });

  beforeEach(() => {
    namespace = `meshca-jwt-${++counter}`;
    server.createNamespace(namespace);
    server.clearRequests();
  });

  const load = (generate: () => Promise<JWK> = newJwk) => loadOrCreateJwtKeySecret({ kubeConfig: server.kubeConfig(), namespace, generate });

  it('creates the Secret on first start and returns the same key afterwards', async () => {
    const first = await load();
    assert.equal(first.created, true);
    assert.equal(first.secretName, 'meshca-jwt-signing-key');
    assert.equal(first.jwk.kty, 'EC');
    assert.equal(typeof first.jwk.d, 'string');
    let generated = 0;
    const again = await load(async () => (generated++, newJwk()));
    assert.equal(again.created, false);
    assert.equal(generated, 0);
    assert.deepEqual(again.jwk, first.jwk);
    const stored = server.getObject('secrets', namespace, 'meshca-jwt-signing-key') as { metadata?: { labels?: Record<string, string> } };
    assert.equal(stored.metadata?.labels?.['app.kubernetes.io/component'], 'ca');
  });

  it('replicas starting together end up with one key', async () => {
    const results = await Promise.all([load(), load(), load()]);
    assert.ok(results.filter((r) => r.created).length === 1, 'exactly one replica created the Secret');
    for (const r of results) assert.deepEqual(r.jwk, results[0]!.jwk);
  });

  it('refuses a Secret without a private JWK instead of replacing it', async () => {
    await server
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .createNamespacedSecret({ namespace, body: { metadata: { name: 'meshca-jwt-signing-key' }, data: { 'jwt-signing-key.json': Buffer.from('{"kty":"EC"}').toString('base64') } } });
    const err = await load().then(
      () => assert.fail('expected a rejection'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof CaInvalidError, String(err));
    assert.match((err as Error).message, /no private JWK under jwt-signing-key\.json/);
  });

  it('an unreadable Secret (403) stops start-up and creates nothing', async () => {
    server.failNext(403);
    const err = await load().then(
      () => assert.fail('expected a rejection'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof KubeApiError, String(err));
    assert.equal(server.requests.filter((r) => r.method === 'POST').length, 0);
  });
});
