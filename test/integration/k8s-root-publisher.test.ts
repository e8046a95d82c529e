import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import { afterEach, beforeEach, describe, it } from 'node:test';

import { CoreV1Api } from '@kubernetes/client-node';

import { startKubernetesIntegration } from '../../src/cmd/ca-kubernetes.js';
import { RootCertPublisher } from '../../src/k8s/root-publisher.js';
import type { PublishResult, RootCertPublisherOptions } from '../../src/k8s/root-publisher.js';
import { silentLogger } from '../../src/log.js';
import { KubeApiServer } from '../fixtures/kube-api-server.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { createTestRoot } from '../helpers/test-ca.js';

const RESYNC_MS = 60_000;
const NAMESPACES = ['default', 'kube-system', 'kube-public', 'meshca', 'shop'];
const PUBLISHED = ['default', 'meshca', 'shop'];

describe('root certificate publisher against the loopback API server', () => {
  let server: KubeApiServer;
  let clock: ManualClock;
  let rootA: string;
  let rootB: string;
  let stop: AbortController;
  let running: Promise<void> | undefined;

  beforeEach(async () => {
    server = await KubeApiServer.start({ namespaces: NAMESPACES });
    clock = new ManualClock();
    rootA = (await createTestRoot({ trustDomain: 'cluster.local' })).pem;
    rootB = rootA + (await createTestRoot({ trustDomain: 'cluster.local' })).pem;
    stop = new AbortController();
    running = undefined;
  });

  afterEach(async () => {
    stop.abort();
    await running;
    await server.close();
  });

  const publisher = (overrides: Partial<RootCertPublisherOptions> = {}): RootCertPublisher =>
    new RootCertPublisher({ kubeConfig: server.kubeConfig(), rootsPem: rootA, clock, resyncIntervalMs: RESYNC_MS, ...overrides });

  /** Starts `run` and resolves with the first pass's result. */
  const startAndSync = async (p: RootCertPublisher): Promise<PublishResult> => {
    const synced = once(p, 'synced');
    running = p.run(stop.signal);
    const [result] = (await synced) as [PublishResult];
    return result;
  };

  /** Lets the next pass happen (a timer is armed after each pass) and returns its result. */
  const nextPass = async (p: RootCertPublisher, advanceMs: number): Promise<PublishResult> => {
    await clock.waitForTimers();
    const synced = once(p, 'synced');
    clock.advance(advanceMs);
    const [result] = (await synced) as [PublishResult];
    return result;
  };

  const configMap = (namespace: string) => server.getObject('configmaps', namespace, 'meshca-root-cert');
  const published = (namespace: string) => (configMap(namespace)?.['data'] as Record<string, string> | undefined)?.['root-cert.pem'];
  const writes = () => server.requests.filter((r) => r.method === 'POST' || r.method === 'PUT');

  it('publishes root-cert.pem in every namespace except the excluded system ones', async () => {
    const result = await startAndSync(publisher());

    assert.deepEqual(result.namespaces, PUBLISHED);
    assert.deepEqual(result.created, PUBLISHED);
    assert.deepEqual(result.failed, []);
    for (const ns of PUBLISHED) {
      assert.equal(published(ns), rootA, ns);
      assert.equal(configMap(ns)?.metadata.labels?.['app.kubernetes.io/name'], 'meshca');
    }
    assert.equal(configMap('kube-system'), undefined);
    assert.equal(configMap('kube-public'), undefined);
  });

  it('writes nothing on a resync when every ConfigMap is up to date', async () => {
    const p = publisher();
    await startAndSync(p);
    server.clearRequests();

    const result = await nextPass(p, RESYNC_MS);

    assert.deepEqual(result.unchanged, PUBLISHED);
    assert.deepEqual(writes(), []);
  });

  it('republishes at once when the bundle changes, keeping other keys and labels', async () => {
    const core = server.kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespacedConfigMap({
      namespace: 'shop',
      body: { metadata: { name: 'meshca-root-cert', labels: { team: 'payments' } }, data: { 'root-cert.pem': 'stale', 'extra.txt': 'kept' } },
    });
    const p = publisher();
    const first = await startAndSync(p);
    assert.deepEqual(first.updated, ['shop']);
    await clock.waitForTimers();

    const synced = once(p, 'synced');
    p.update(rootB);
    const [result] = (await synced) as [PublishResult];

    assert.equal(clock.now().getTime(), new ManualClock().now().getTime(), 'no time had to pass');
    assert.deepEqual(result.updated, PUBLISHED);
    for (const ns of PUBLISHED) assert.equal(published(ns), rootB);
    const shop = configMap('shop');
    assert.equal((shop?.['data'] as Record<string, string>)['extra.txt'], 'kept');
    assert.equal(shop?.metadata.labels?.['team'], 'payments');
    assert.equal(shop?.metadata.labels?.['app.kubernetes.io/name'], 'meshca');
  });

  it('ignores an update with the bundle it already publishes', async () => {
    const p = publisher();
    await startAndSync(p);
    await clock.waitForTimers();
    server.clearRequests();

    p.update(rootA);

    assert.equal(clock.pendingTimers, 1, 'still waiting for the resync');
    assert.deepEqual(server.requests, []);
  });

  it('covers namespaces created later and restores deleted or edited ConfigMaps at the next resync', async () => {
    const core = server.kubeConfig().makeApiClient(CoreV1Api);
    const p = publisher();
    await startAndSync(p);
    server.createNamespace('orders');
    await core.deleteNamespacedConfigMap({ name: 'meshca-root-cert', namespace: 'default' });
    const edited = await core.readNamespacedConfigMap({ name: 'meshca-root-cert', namespace: 'shop' });
    await core.replaceNamespacedConfigMap({ name: 'meshca-root-cert', namespace: 'shop', body: { ...edited, data: { 'root-cert.pem': 'tampered' } } });

    const result = await nextPass(p, RESYNC_MS);

    assert.deepEqual(result.created, ['default', 'orders']);
    assert.deepEqual(result.updated, ['shop']);
    assert.deepEqual(result.unchanged, ['meshca']);
    for (const ns of ['default', 'meshca', 'orders', 'shop']) assert.equal(published(ns), rootA);
  });

  it('retries a failed namespace listing with doubling backoff', async () => {
    server.failNext(503, { times: 2 });
    const p = publisher({ retryBaseMs: 1000 });
    const failures: string[] = [];
    p.on('sync-failed', (err) => failures.push(`${err.code}:${err.rule}:${err.status}`));
    running = p.run(stop.signal);

    await clock.waitForTimers();
    assert.equal(clock.nextTimerAt()?.getTime(), clock.now().getTime() + 1000);
    clock.advance(1000);
    await clock.waitForTimers();
    assert.equal(clock.nextTimerAt()?.getTime(), clock.now().getTime() + 2000, 'the second retry waits twice as long');
    const synced = once(p, 'synced');
    clock.advance(2000);
    const [result] = (await synced) as [PublishResult];

    assert.deepEqual(failures, ['ERR_CA_NOT_READY:unavailable:503', 'ERR_CA_NOT_READY:unavailable:503']);
    assert.deepEqual(result.created, PUBLISHED);
  });

  it('publishes to the other namespaces when one fails, and retries that one soon', async () => {
    server.failNext(500, { path: '/api/v1/namespaces/meshca/configmaps/meshca-root-cert' });
    const p = publisher({ retryBaseMs: 1000 });

    const first = await startAndSync(p);
    assert.deepEqual(first.created, ['default', 'shop']);
    assert.deepEqual(first.failed.map((f) => [f.namespace, f.error.code, f.error.status]), [['meshca', 'ERR_CA_NOT_READY', 500]]);
    assert.equal(published('meshca'), undefined);

    const retry = await nextPass(p, 1000);
    assert.deepEqual(retry.created, ['meshca']);
    assert.equal(published('meshca'), rootA);
    await clock.waitForTimers();
    assert.equal(clock.nextTimerAt()?.getTime(), clock.now().getTime() + RESYNC_MS, 'back to the normal interval');
  });

  it('honours a custom ConfigMap name and exclusion list', async () => {
    const result = await startAndSync(publisher({ configMapName: 'istio-ca-root-cert', excludeNamespaces: ['shop'] }));

    assert.deepEqual(result.created, ['default', 'kube-public', 'kube-system', 'meshca']);
    assert.equal(server.getObject('configmaps', 'default', 'istio-ca-root-cert')?.['data'] !== undefined, true);
    assert.equal(server.getObject('configmaps', 'shop', 'istio-ca-root-cert'), undefined);
  });

  it('rejects a bundle without a certificate as caller misuse', () => {
    assert.throws(() => publisher({ rootsPem: 'not a certificate' }), TypeError);
    const p = publisher();
    assert.throws(() => p.update(''), TypeError);
    assert.equal(p.rootsPem, rootA);
  });

  it('startKubernetesIntegration publishes only from the leading replica, and the next leader takes over', async () => {
    let current = rootA;
    const start = (identity: string) =>
      startKubernetesIntegration({
        kubeConfig: server.kubeConfig(),
        namespace: 'meshca',
        rootsPem: () => current,
        logger: silentLogger,
        clock,
        identity,
        election: { random: () => 0 },
      });
    const first = await start('meshca-0');
    const firstSynced = once(first.publisher, 'synced');
    const second = await start('meshca-1');
    let secondPasses = 0;
    second.publisher.on('synced', () => secondPasses++);
    try {
      await firstSynced;
      // Both electors and the leader's resync timer are armed: everyone has had their turn.
      await clock.waitForTimers(3);
      assert.ok(first.elector.isLeader);
      assert.ok(!second.elector.isLeader);
      assert.equal(secondPasses, 0, 'a follower never writes');
      for (const ns of PUBLISHED) assert.equal(published(ns), rootA);

      const refreshed = once(first.publisher, 'synced');
      current = rootB;
      first.refreshRoots();
      await refreshed;
      for (const ns of PUBLISHED) assert.equal(published(ns), rootB);

      await first.close();
      assert.equal((server.getObject('leases', 'meshca', 'meshca-leader')?.['spec'] as Record<string, unknown>)['holderIdentity'], undefined, 'released on close');
      const takeover = once(second.publisher, 'synced');
      clock.advance(2000);
      const [result] = (await takeover) as [PublishResult];
      assert.ok(second.elector.isLeader);
      assert.deepEqual(result.unchanged, PUBLISHED, 'the new leader finds everything already current');
    } finally {
      await first.close();
      await second.close();
    }
    assert.equal(clock.pendingTimers, 0, 'nothing left running');
  });
});
