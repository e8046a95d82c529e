import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import { CoordinationV1Api, V1MicroTime } from '@kubernetes/client-node';

import { ConfigError } from '../../src/errors.js';
import { LeaseLeaderElector } from '../../src/k8s/leader-election.js';
import type { LeaseLeaderElectorOptions } from '../../src/k8s/leader-election.js';
import { KubeApiServer } from '../fixtures/kube-api-server.js';
import type { StoredObject } from '../fixtures/kube-api-server.js';
import { ManualClock } from '../helpers/manual-clock.js';

const RETRY_MS = 2_000;
const RENEW_DEADLINE_MS = 10_000;
const LEASE_SECONDS = 15;

interface Candidate {
  readonly elector: LeaseLeaderElector;
  readonly token: string;
  readonly events: string[];
  readonly controller: AbortController;
  done: Promise<void> | undefined;
}

describe('Lease leader election against the loopback API server', () => {
  let server: KubeApiServer;
  let clock: ManualClock;
  let namespace: string;
  let counter = 0;
  let candidates: Candidate[];

  before(async () => {
    server = await KubeApiServer.start();
  });

  after(async () => {
    await server.close();
  });

  beforeEach(() => {
    clock = new ManualClock();
    namespace = `election-${++counter}`;
    server.createNamespace(namespace);
    server.clearRequests();
    server.delayMs = 0;
    candidates = [];
  });

  afterEach(async () => {
    for (const c of candidates) c.controller.abort();
    await Promise.all(candidates.map((c) => c.done));
  });

  /** A replica with its own API credential, so a test can cut one replica off from the API server. */
  const candidate = (identity: string, overrides: Partial<LeaseLeaderElectorOptions> = {}): Candidate => {
    const token = `replica-${identity}-${randomBytes(8).toString('hex')}`;
    server.addCredential(token);
    const elector = new LeaseLeaderElector({
      kubeConfig: server.kubeConfig({ token }),
      namespace,
      identity,
      clock,
      leaseDurationSeconds: LEASE_SECONDS,
      renewDeadlineMs: RENEW_DEADLINE_MS,
      retryPeriodMs: RETRY_MS,
      random: () => 0,
      ...overrides,
    });
    const events: string[] = [];
    elector.on('started-leading', () => events.push('started'));
    elector.on('stopped-leading', () => events.push('stopped'));
    const c: Candidate = { elector, token, events, controller: new AbortController(), done: undefined };
    candidates.push(c);
    return c;
  };

  const start = (...cs: Candidate[]): void => {
    for (const c of cs) c.done = c.elector.run(c.controller.signal);
  };

  const lease = (): StoredObject | undefined => server.getObject('leases', namespace, 'meshca-leader');
  const spec = (): Record<string, unknown> => (lease()?.['spec'] ?? {}) as Record<string, unknown>;

  /** Moves time by one retry period and waits until every running elector is asleep again. */
  const tick = async (running: number): Promise<void> => {
    clock.advance(RETRY_MS);
    await clock.waitForTimers(running);
  };

  const leaderAndFollower = (a: Candidate, b: Candidate): [Candidate, Candidate] => {
    assert.notEqual(a.elector.isLeader, b.elector.isLeader, 'exactly one replica leads');
    return a.elector.isLeader ? [a, b] : [b, a];
  };

  it('of two replicas starting together exactly one leads and the lease names it', async () => {
    const a = candidate('meshca-a');
    const b = candidate('meshca-b');
    const t0 = clock.now();

    start(a, b);
    await clock.waitForTimers(2);

    const [leader, follower] = leaderAndFollower(a, b);
    assert.deepEqual(leader.events, ['started']);
    assert.deepEqual(follower.events, []);
    assert.equal(spec()['holderIdentity'], leader.elector.identity);
    assert.equal(spec()['leaseDurationSeconds'], LEASE_SECONDS);
    assert.equal(spec()['leaseTransitions'], 0);
    assert.equal(new Date(String(spec()['acquireTime'])).getTime(), t0.getTime());
    assert.match(String(spec()['renewTime']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'MicroTime precision, as client-go writes it');
    assert.equal(follower.elector.observedLeader, leader.elector.identity);
    assert.equal(lease()?.metadata.labels?.['app.kubernetes.io/name'], 'meshca');
  });

  it('the leader renews every retry period and keeps its acquire time', async () => {
    const a = candidate('meshca-a');
    const b = candidate('meshca-b');
    const t0 = clock.now();
    start(a, b);
    await clock.waitForTimers(2);
    const [leader, follower] = leaderAndFollower(a, b);

    for (let i = 0; i < 10; i++) await tick(2);

    assert.ok(leader.elector.isLeader);
    assert.ok(!follower.elector.isLeader);
    assert.deepEqual(leader.events, ['started']);
    assert.equal(new Date(String(spec()['renewTime'])).getTime(), t0.getTime() + 10 * RETRY_MS);
    assert.equal(new Date(String(spec()['acquireTime'])).getTime(), t0.getTime());
    assert.equal(spec()['leaseTransitions'], 0);
  });

  it('a leader cut off from the API server steps down at the renew deadline and the other takes over after the lease expires', async () => {
    const a = candidate('meshca-a');
    const b = candidate('meshca-b');
    const t0 = clock.now().getTime();
    start(a, b);
    await clock.waitForTimers(2);
    const [leader, follower] = leaderAndFollower(a, b);

    server.revokeCredential(leader.token);
    let steppedDownAt: number | undefined;
    let takenOverAt: number | undefined;
    for (let i = 0; i < 12 && takenOverAt === undefined; i++) {
      await tick(2);
      const now = clock.now().getTime();
      if (steppedDownAt === undefined && !leader.elector.isLeader) steppedDownAt = now;
      if (follower.elector.isLeader) takenOverAt = now;
      assert.ok(!(leader.elector.isLeader && follower.elector.isLeader), 'never two leaders');
    }

    assert.equal(steppedDownAt, t0 + RENEW_DEADLINE_MS, 'the old leader gives up at its renew deadline');
    // The lease was last renewed at t0: it is free once t0 + 15 s has passed, i.e. at the 16 s retry.
    assert.equal(takenOverAt, t0 + 16_000);
    assert.deepEqual(leader.events, ['started', 'stopped']);
    assert.deepEqual(follower.events, ['started']);
    assert.equal(spec()['holderIdentity'], follower.elector.identity);
    assert.equal(spec()['leaseTransitions'], 1);
    assert.equal(new Date(String(spec()['acquireTime'])).getTime(), t0 + 16_000);

    // Reconnected, the old leader sees a live holder and stays a follower.
    server.addCredential(leader.token);
    await tick(2);
    assert.ok(!leader.elector.isLeader);
    assert.equal(leader.elector.observedLeader, follower.elector.identity);
  });

  it('a leader that stops without releasing keeps others out until its lease expires', async () => {
    const a = candidate('meshca-a', { releaseOnStop: false });
    const b = candidate('meshca-b', { releaseOnStop: false });
    const t0 = clock.now().getTime();
    start(a, b);
    await clock.waitForTimers(2);
    const [leader, follower] = leaderAndFollower(a, b);

    leader.controller.abort();
    await leader.done;
    assert.ok(!leader.elector.isLeader);
    assert.deepEqual(leader.events, ['started', 'stopped']);
    assert.equal(spec()['holderIdentity'], leader.elector.identity, 'the lease is left as it was');

    for (let i = 0; i < 7; i++) {
      await tick(1);
      assert.ok(!follower.elector.isLeader, `still waiting at +${clock.now().getTime() - t0} ms`);
    }
    await tick(1);
    assert.equal(clock.now().getTime(), t0 + 16_000);
    assert.ok(follower.elector.isLeader);
    assert.equal(spec()['leaseTransitions'], 1);
  });

  it('a leader that stops cleanly steps down, then releases the lease, and the other takes over at its next retry', async () => {
    const a = candidate('meshca-a');
    const b = candidate('meshca-b');
    start(a, b);
    await clock.waitForTimers(2);
    const [leader, follower] = leaderAndFollower(a, b);
    let holderWhenStopped: unknown;
    leader.elector.on('stopped-leading', () => {
      holderWhenStopped = spec()['holderIdentity'];
    });

    leader.controller.abort();
    await leader.done;

    assert.equal(holderWhenStopped, leader.elector.identity, 'work stops before the lease is given up');
    assert.equal(spec()['holderIdentity'], undefined);
    assert.equal(spec()['leaseTransitions'], 0);
    await tick(1);
    assert.ok(follower.elector.isLeader);
    assert.equal(spec()['holderIdentity'], follower.elector.identity);
    assert.equal(spec()['leaseTransitions'], 1);
  });

  it('a failed renewal inside the renew deadline does not cost leadership', async () => {
    const a = candidate('meshca-a');
    const b = candidate('meshca-b');
    start(a, b);
    await clock.waitForTimers(2);
    const [leader] = leaderAndFollower(a, b);

    server.revokeCredential(leader.token);
    await tick(2);
    await tick(2);
    server.addCredential(leader.token);
    await tick(2);

    assert.ok(leader.elector.isLeader);
    assert.deepEqual(leader.events, ['started']);
    assert.equal(new Date(String(spec()['renewTime'])).getTime(), clock.now().getTime());
  });

  it('two replicas racing for an expired lease: the stale write gets 409 Conflict and only one holds it', async () => {
    const coordination = server.kubeConfig().makeApiClient(CoordinationV1Api);
    const longAgo = new V1MicroTime(clock.now().getTime() - 60_000);
    await coordination.createNamespacedLease({
      namespace,
      body: {
        metadata: { name: 'meshca-leader' },
        spec: { holderIdentity: 'meshca-crashed', leaseDurationSeconds: LEASE_SECONDS, acquireTime: longAgo, renewTime: longAgo, leaseTransitions: 4 },
      },
    });
    const a = candidate('meshca-a');
    const b = candidate('meshca-b');
    // Line both reads up before either write (each request waits the same time in the fixture).
    server.delayMs = 100;
    server.clearRequests();

    start(a, b);
    await clock.waitForTimers(2);
    server.delayMs = 0;

    const [leader, follower] = leaderAndFollower(a, b);
    assert.ok(server.requests.some((r) => r.method === 'PUT' && r.status === 409), 'one replica lost a compare-and-swap');
    assert.equal(spec()['holderIdentity'], leader.elector.identity);
    assert.equal(spec()['leaseTransitions'], 5);
    assert.equal(follower.elector.observedLeader, leader.elector.identity);
  });

  it('rejects timings where the renew deadline does not fit inside the lease', () => {
    const err = (() => {
      try {
        new LeaseLeaderElector({ kubeConfig: server.kubeConfig(), namespace, identity: 'x', leaseDurationSeconds: 10, renewDeadlineMs: 10_000, retryPeriodMs: 9_000 });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(err instanceof ConfigError);
    assert.equal(err.code, 'ERR_CONFIG_INVALID');
    assert.equal(err.problems.length, 2);
  });
});
