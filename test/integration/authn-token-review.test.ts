import * as assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';

import { CoreV1Api, CoordinationV1Api } from '@kubernetes/client-node';

import { CachingAuthenticator } from '../../src/authn/authenticator.js';
import { createTokenReviewAuthenticator } from '../../src/authn/token-review.js';
import type { CreateTokenReviewAuthenticatorOptions } from '../../src/authn/token-review.js';
import { DevTokenIssuer } from '../../src/authn/dev-issuer.js';
import { AuthnError, AuthnUnavailableError } from '../../src/errors.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { DEFAULT_API_AUDIENCE, KubeApiServer } from '../fixtures/kube-api-server.js';

const AUDIENCE = 'istio-ca';

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

describe('TokenReview authenticator against the loopback API server', () => {
  let server: KubeApiServer;

  before(async () => {
    server = await KubeApiServer.start();
  });

  after(async () => {
    await server.close();
  });

  beforeEach(() => {
    server.delayMs = 0;
    server.clearRequests();
  });

  const authenticator = (overrides: Partial<CreateTokenReviewAuthenticatorOptions> = {}) =>
    createTokenReviewAuthenticator({ kubeConfig: server.kubeConfig(), audiences: [AUDIENCE], ...overrides });

  it('authenticates a pod-bound token and returns namespace, service account and pod', async () => {
    const token = await server.mintToken({ namespace: 'shop', serviceAccount: 'cart', podName: 'cart-7d9f-abcde', audience: AUDIENCE });
    const identity = await authenticator().authenticate(token);
    assert.equal(identity.namespace, 'shop');
    assert.equal(identity.serviceAccount, 'cart');
    assert.equal(identity.podName, 'cart-7d9f-abcde');
    assert.match(identity.podUid ?? '', /^[0-9a-f-]{36}$/);
    assert.ok(identity.expiresAt instanceof Date && identity.expiresAt.getTime() > Date.now());
    const [request] = server.requests;
    assert.equal(request?.method, 'POST');
    assert.equal(request?.path, '/apis/authentication.k8s.io/v1/tokenreviews');
    assert.deepEqual(request?.reviewAudiences, [AUDIENCE]);
  });

  it('rejects a token the API server does not authenticate, with the server reason for logs only', async () => {
    const expired = await server.mintToken({ namespace: 'shop', serviceAccount: 'cart', audience: AUDIENCE, now: new Date(Date.now() - 7200_000) });
    const err = await rejection(authenticator().authenticate(expired));
    assert.ok(err instanceof AuthnError);
    assert.equal(err.code, 'ERR_AUTHN_FAILED');
    assert.equal(err.rule, 'unauthenticated');
    assert.match(err.message, /has expired/);
    assert.ok(!err.message.includes(expired));
  });

  it('rejects a token signed by another issuer key', async () => {
    const stranger = await DevTokenIssuer.generate();
    const forged = await stranger.mint({ namespace: 'shop', serviceAccount: 'cart', audience: AUDIENCE, now: new Date() });
    const err = await rejection(authenticator().authenticate(forged));
    assert.ok(err instanceof AuthnError);
    assert.equal(err.rule, 'unauthenticated');
  });

  it('rejects a token minted for another audience (e.g. the API server itself)', async () => {
    const token = await server.mintToken({ namespace: 'shop', serviceAccount: 'cart', audience: DEFAULT_API_AUDIENCE });
    const err = await rejection(authenticator().authenticate(token));
    assert.ok(err instanceof AuthnError);
    assert.equal(err.code, 'ERR_AUTHN_FAILED');
    assert.equal(err.rule, 'unauthenticated');
    assert.match(err.message, /audiences/);
  });

  it('refuses the service account of an audience-aware server only for its implicit audience', async () => {
    // Static tokens are audience-agnostic: the server vouches for its own audience only.
    server.addStaticToken('c3RhdGlj.c3RhdGlj.c3RhdGlj', { username: 'system:serviceaccount:shop:cart' });
    const err = await rejection(authenticator().authenticate('c3RhdGlj.c3RhdGlj.c3RhdGlj'));
    assert.ok(err instanceof AuthnError);
    assert.equal(err.rule, 'unauthenticated');
  });

  it('rejects an authenticated review that does not confirm one of our audiences', async () => {
    server.addStaticToken('b2xk.b2xk.b2xk', { username: 'system:serviceaccount:shop:cart' });
    server.audienceAware = false;
    try {
      const err = await rejection(authenticator().authenticate('b2xk.b2xk.b2xk'));
      assert.ok(err instanceof AuthnError);
      assert.equal(err.code, 'ERR_AUTHN_FAILED');
      assert.equal(err.rule, 'audience');
    } finally {
      server.audienceAware = true;
    }
  });

  it('rejects a user that is not a service account', async () => {
    server.addStaticToken('dXNlcg.dXNlcg.dXNlcg', { username: 'alice@example.com', groups: ['developers'] });
    const err = await rejection(authenticator({ audiences: [DEFAULT_API_AUDIENCE] }).authenticate('dXNlcg.dXNlcg.dXNlcg'));
    assert.ok(err instanceof AuthnError);
    assert.equal(err.rule, 'not-service-account');
  });

  it('rejects a malformed token before calling the API server', async () => {
    const err = await rejection(authenticator().authenticate('not a token'));
    assert.ok(err instanceof AuthnError);
    assert.equal(err.rule, 'token-malformed');
    assert.equal(server.requests.length, 0);
  });

  it('reports a 500 from the API server as unavailable, not as a verdict', async () => {
    const token = await server.mintToken({ namespace: 'shop', serviceAccount: 'cart', audience: AUDIENCE });
    server.failNext(500);
    const err = await rejection(authenticator().authenticate(token));
    assert.ok(err instanceof AuthnUnavailableError);
    assert.equal(err.code, 'ERR_AUTHN_UNAVAILABLE');
    assert.match(err.message, /HTTP 500/);
    assert.ok(!err.message.includes(token));
  });

  it('reports a dropped connection as unavailable', async () => {
    const token = await server.mintToken({ namespace: 'shop', serviceAccount: 'cart', audience: AUDIENCE });
    server.failNext('reset');
    const err = await rejection(authenticator().authenticate(token));
    assert.ok(err instanceof AuthnUnavailableError);
    assert.equal(err.rule, 'unreachable');
  });

  it('reports a refused connection as unavailable', async () => {
    const gone = await KubeApiServer.start();
    const kubeConfig = gone.kubeConfig();
    await gone.close();
    const token = await server.mintToken({ namespace: 'shop', serviceAccount: 'cart', audience: AUDIENCE });
    const err = await rejection(createTokenReviewAuthenticator({ kubeConfig, audiences: [AUDIENCE] }).authenticate(token));
    assert.ok(err instanceof AuthnUnavailableError);
    assert.equal(err.code, 'ERR_AUTHN_UNAVAILABLE');
  });

  it('gives up on a slow API server after timeoutMs and reports unavailable', async () => {
    const clock = new ManualClock();
    const token = await server.mintToken({ namespace: 'shop', serviceAccount: 'cart', audience: AUDIENCE });
    server.delayMs = 60_000;
    const pending = rejection(authenticator({ clock, timeoutMs: 2000 }).authenticate(token));
    await clock.waitForTimers();
    clock.advance(2000);
    const err = await pending;
    assert.ok(err instanceof AuthnUnavailableError);
    assert.equal(err.rule, 'timeout');
    assert.equal(clock.pendingTimers, 0);
  });

  it('rejects with the caller reason when the caller aborts', async () => {
    const token = await server.mintToken({ namespace: 'shop', serviceAccount: 'cart', audience: AUDIENCE });
    server.delayMs = 60_000;
    const controller = new AbortController();
    const pending = rejection(authenticator().authenticate(token, { signal: controller.signal }));
    const reason = new Error('client went away');
    controller.abort(reason);
    assert.equal(await pending, reason);
  });

  it('reports its own rejected credentials (401) as unavailable with a configuration hint', async () => {
    const token = await server.mintToken({ namespace: 'shop', serviceAccount: 'cart', audience: AUDIENCE });
    const kubeConfig = server.kubeConfig({ token: 'wrong-credential' });
    const err = await rejection(createTokenReviewAuthenticator({ kubeConfig, audiences: [AUDIENCE] }).authenticate(token));
    assert.ok(err instanceof AuthnUnavailableError);
    assert.equal(err.rule, 'ca-credentials');
    assert.match(err.message, /HTTP 401.*CA's own credentials|CA's own credentials.*HTTP 401/);
  });

  it('reports missing RBAC (403) as unavailable with a configuration hint', async () => {
    const token = await server.mintToken({ namespace: 'shop', serviceAccount: 'cart', audience: AUDIENCE });
    server.failNext(403);
    const err = await rejection(authenticator().authenticate(token));
    assert.ok(err instanceof AuthnUnavailableError);
    assert.equal(err.rule, 'ca-credentials');
    assert.match(err.message, /HTTP 403: Forbidden/);
  });

  it('sees revocation: a token bound to a deleted pod stops authenticating', async () => {
    const token = await server.mintToken({ namespace: 'shop', serviceAccount: 'cart', podName: 'doomed', audience: AUDIENCE });
    await authenticator().authenticate(token);
    server.deletePod('shop', 'doomed');
    const err = await rejection(authenticator().authenticate(token));
    assert.ok(err instanceof AuthnError);
    assert.match(err.message, /pods "doomed" not found/);
  });

  it('is cached by CachingAuthenticator: one review per token', async () => {
    const caching = new CachingAuthenticator(authenticator());
    const token = await server.mintToken({ namespace: 'shop', serviceAccount: 'cart', audience: AUDIENCE });
    await caching.authenticate(token);
    await caching.authenticate(token);
    assert.equal(server.requests.length, 1);
  });
});

describe('loopback API server fixture', () => {
  let server: KubeApiServer;

  before(async () => {
    server = await KubeApiServer.start();
  });

  after(async () => {
    await server.close();
  });

  it('serves configmaps with AlreadyExists and resourceVersion conflicts as Status objects', async () => {
    const core = server.kubeConfig().makeApiClient(CoreV1Api);
    const created = await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'trust-bundle', labels: { app: 'meshca' } }, data: { 'root.pem': 'x' } },
    });
    assert.ok(created.metadata?.resourceVersion);
    await assert.rejects(
      core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'trust-bundle' } } }),
      (err: { code?: number; body?: string }) => err.code === 409 && JSON.parse(err.body ?? '{}').reason === 'AlreadyExists',
    );
    const replaced = await core.replaceNamespacedConfigMap({
      namespace: 'default',
      name: 'trust-bundle',
      body: { ...created, data: { 'root.pem': 'y' } },
    });
    assert.notEqual(replaced.metadata?.resourceVersion, created.metadata?.resourceVersion);
    await assert.rejects(
      core.replaceNamespacedConfigMap({ namespace: 'default', name: 'trust-bundle', body: { ...created, data: { 'root.pem': 'z' } } }),
      (err: { code?: number; body?: string }) => err.code === 409 && JSON.parse(err.body ?? '{}').reason === 'Conflict',
    );
    const list = await core.listNamespacedConfigMap({ namespace: 'default', labelSelector: 'app=meshca' });
    assert.deepEqual(
      list.items.map((i) => i.data?.['root.pem']),
      ['y'],
    );
    await assert.rejects(core.readNamespacedConfigMap({ namespace: 'default', name: 'missing' }), (err: { code?: number }) => err.code === 404);
  });

  it('serves secrets and leases, and lists namespaces', async () => {
    const kc = server.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const coordination = kc.makeApiClient(CoordinationV1Api);
    await core.createNamespacedSecret({ namespace: 'meshca-system', body: { metadata: { name: 'ca-key' }, data: { k: Buffer.from('s').toString('base64') } } });
    const secret = await core.readNamespacedSecret({ namespace: 'meshca-system', name: 'ca-key' });
    assert.equal(secret.type, 'Opaque');
    const lease = await coordination.createNamespacedLease({
      namespace: 'meshca-system',
      body: { metadata: { name: 'meshca-leader' }, spec: { holderIdentity: 'ca-0', leaseDurationSeconds: 15 } },
    });
    assert.equal(lease.spec?.holderIdentity, 'ca-0');
    const namespaces = await core.listNamespace();
    assert.ok(namespaces.items.some((n) => n.metadata?.name === 'meshca-system'));
    await assert.rejects(
      core.createNamespacedSecret({ namespace: 'nope', body: { metadata: { name: 'x' } } }),
      (err: { code?: number }) => err.code === 404,
    );
  });

  it('requires a bearer credential and answers 401 with a Status body', async () => {
    const core = server.kubeConfig({ token: 'bogus' }).makeApiClient(CoreV1Api);
    await assert.rejects(core.listNamespace(), (err: { code?: number }) => err.code === 401);
    assert.equal(server.requests.at(-1)?.authenticated, false);
  });
});
