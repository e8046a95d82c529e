import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  AuthorityRotation,
  autoRotationStateOf,
  checkAuthorityLifetime,
  planAutoRotation,
  resolveAuthoritySnapshot,
  type AuthorityChange,
  type AuthorityStore,
  type StoredAuthority,
} from '../../../src/ca/authority-rotation.js';
import { normalizeFingerprint, TrustBundle } from '../../../src/ca/trust-bundle.js';
import { BundleError, CaInvalidError, CaNotReadyError, type IdentityError } from '../../../src/errors.js';
import { createSelfSignedRoot, type AuthorityPem } from '../../../src/pki/authority.js';
import { parseTrustDomain } from '../../../src/spiffe/trust-domain.js';
import { ManualClock } from '../../helpers/manual-clock.js';
import { createTestIntermediate, createTestLeaf, createTestRoot } from '../../helpers/test-ca.js';

const td = parseTrustDomain('example.org');
const HOUR = 3600_000;
const DAY = 24 * HOUR;
const WEEK_S = 7 * 86400;

/** The AuthorityStore port in memory: applies changes exactly as the file store lays them out. */
class MemoryStore implements AuthorityStore {
  stored: StoredAuthority;
  readonly changes: AuthorityChange[] = [];

  constructor(stored: StoredAuthority) {
    this.stored = stored;
  }

  async read(): Promise<StoredAuthority> {
    return this.stored;
  }

  async update<T>(decide: (current: StoredAuthority) => Promise<{ change?: AuthorityChange; result: T }>): Promise<T> {
    const { change, result } = await decide(this.stored);
    if (change) {
      this.changes.push(change);
      const active = change.active ?? this.stored.active;
      this.stored = {
        active: { ...active, rootPem: change.bundlePem ?? this.stored.active.rootPem },
        next: change.next === null ? undefined : (change.next ?? this.stored.next),
        nextError: undefined,
        state: change.state,
        warnings: [],
      };
    }
    return result;
  }
}

async function selfSignedPem(now: Date, validityDays = 3650): Promise<AuthorityPem> {
  const root = await createSelfSignedRoot({ trustDomain: td.name, now, validityDays });
  return { certPem: root.certPem, keyPem: root.keyPem, chainPem: root.certPem, rootPem: root.certPem };
}

/** A data directory as `meshca ca init` leaves it: one self-signed root, no state file. */
async function initStore(now: Date): Promise<MemoryStore> {
  return new MemoryStore({ active: await selfSignedPem(now), next: undefined, nextError: undefined, state: undefined, warnings: [] });
}

function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

function rejectsWith(promise: Promise<unknown>, type: new (...args: never[]) => IdentityError, rule: string, message?: RegExp): Promise<void> {
  return assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    assert.equal(err.rule, rule, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe('TrustBundle', async () => {
  const a = await createTestRoot({ trustDomain: 'example.org' });
  const b = await createTestRoot({ trustDomain: 'example.org', keyAlg: 'ed25519' });

  it('adds and removes roots by fingerprint without touching the sequence', () => {
    const bundle = new TrustBundle(td, [a.cert], 4);
    const both = bundle.withRoot(b.cert);
    assert.deepEqual(both.fingerprints, [a.cert.fingerprint256, b.cert.fingerprint256]);
    assert.equal(both.sequence, 4);
    assert.equal(both.withRoot(b.cert), both, 'adding a present root is a no-op');
    const onlyB = both.withoutRoot(a.cert.fingerprint256.replace(/:/g, '').toLowerCase());
    assert.deepEqual(onlyB.fingerprints, [b.cert.fingerprint256]);
    assert.equal(onlyB.withoutRoot(a.cert.fingerprint256), onlyB, 'removing an absent root is a no-op');
    assert.equal(bundle.roots.length, 1, 'the original is unchanged');
  });

  it('only lets the sequence grow', () => {
    const bundle = new TrustBundle(td, [a.cert], 4);
    assert.equal(bundle.withSequence(5).sequence, 5);
    assert.throws(() => bundle.withSequence(4), TypeError);
    assert.throws(() => bundle.withSequence(3), TypeError);
  });

  it('serializes to root-cert.pem and parses back', () => {
    const bundle = new TrustBundle(td, [a.cert, b.cert], 9);
    const again = TrustBundle.fromPem(td, bundle.toPem(), 9);
    assert.ok(again.sameRoots(bundle));
    assert.equal(again.toX509Bundle().sequenceNumber, 9);
    assert.ok(again.toX509Bundle().getX509BundleForTrustDomain(td));
    assert.equal(again.toX509Bundle().getX509BundleForTrustDomain(parseTrustDomain('example.net')), undefined);
  });

  it('refuses a root that names another trust domain: bundles never merge domains', async () => {
    const foreign = await createTestRoot({ trustDomain: 'example.net' });
    assert.throws(
      () => new TrustBundle(td, [a.cert], 1).withRoot(foreign.cert),
      (err: unknown) => err instanceof BundleError && err.rule === 'trust-domain',
    );
  });

  it('refuses a leaf as a root', async () => {
    const leaf = await createTestLeaf(a);
    assert.throws(
      () => new TrustBundle(td, [leaf.cert], 1),
      (err: unknown) => err instanceof BundleError && err.rule === 'authority-not-ca',
    );
  });

  it('normalizes fingerprints as openssl prints them', () => {
    const fp = a.cert.fingerprint256;
    assert.equal(normalizeFingerprint(`sha256 Fingerprint=${fp}`), fp);
    assert.equal(normalizeFingerprint(fp.replace(/:/g, '').toLowerCase()), fp);
    assert.throws(() => normalizeFingerprint('AB:CD'), TypeError);
  });
});

describe('AuthorityRotation', () => {
  it('prepare publishes a new root in the bundle before it signs anything (sequence + 1)', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    const oldRoot = fingerprintOf(store.stored.active.certPem);
    const rotation = new AuthorityRotation({ store, trustDomain: td });

    const result = await rotation.prepare({ now: clock.now() });
    assert.equal(result.operation, 'prepare');
    assert.equal(result.sequence, 2, 'a fresh data directory is sequence 1');
    assert.equal(result.added.length, 1);
    assert.equal(result.active.fingerprint, oldRoot, 'the old root still signs');
    assert.equal(result.next?.fingerprint, result.added[0]!.fingerprint);

    const snap = await rotation.status(clock.now());
    assert.deepEqual(snap.bundle.fingerprints, [oldRoot, result.added[0]!.fingerprint]);
    assert.equal(snap.authority.certificate.fingerprint256, oldRoot);
    assert.equal(snap.next?.publishedAt?.getTime(), clock.now().getTime());
    const change = store.changes[0]!;
    assert.ok(change.next && change.bundlePem && !change.active, 'writes next/ and the bundle, never the active files');
  });

  it('refuses a second prepare while one is pending', async () => {
    const clock = new ManualClock();
    const rotation = new AuthorityRotation({ store: await initStore(clock.now()), trustDomain: td });
    await rotation.prepare({ now: clock.now() });
    await rejectsWith(rotation.prepare({ now: clock.now() }), CaInvalidError, 'already-prepared', /already prepared/);
  });

  it('activate without a prepared authority says what to run', async () => {
    const clock = new ManualClock();
    const rotation = new AuthorityRotation({ store: await initStore(clock.now()), trustDomain: td });
    await rejectsWith(rotation.activate({ now: clock.now() }), CaNotReadyError, 'no-next', /meshca ca rotate --prepare/);
  });

  it('activate switches signing and keeps the old root until activation + max SVID TTL', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    const oldRoot = fingerprintOf(store.stored.active.certPem);
    const rotation = new AuthorityRotation({ store, trustDomain: td, maxSvidTtlSeconds: WEEK_S });
    const prepared = await rotation.prepare({ now: clock.now() });
    clock.advance(2 * HOUR);

    const result = await rotation.activate({ now: clock.now() });
    assert.equal(result.sequence, 3);
    assert.equal(result.active.fingerprint, prepared.next!.fingerprint);
    assert.equal(result.next, undefined);
    assert.deepEqual(result.removed, [], 'nothing leaves the bundle on activation');
    assert.deepEqual(result.retiring, [{ fingerprint: oldRoot, trustUntil: new Date(clock.now().getTime() + WEEK_S * 1000) }]);
    assert.deepEqual(result.warnings, [], 'published for longer than the propagation delay');

    const snap = await rotation.status(clock.now());
    assert.equal(snap.authority.certificate.fingerprint256, prepared.next!.fingerprint);
    assert.deepEqual(snap.bundle.fingerprints, [oldRoot, prepared.next!.fingerprint]);
    assert.equal(snap.state.active?.activatedAt?.getTime(), clock.now().getTime());
    assert.equal(snap.next, undefined);
    assert.equal(store.changes[1]!.next, null, 'next/ is removed');
  });

  it('activate waits for the activation gate (relying parties lack the root), changing nothing; force goes ahead', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    const missing = 'namespace late lacks it';
    const asked: string[] = [];
    const rotation = new AuthorityRotation({
      store,
      trustDomain: td,
      maxSvidTtlSeconds: WEEK_S,
      activationGate: async (next) => {
        asked.push(next.anchor.fingerprint256);
        return missing;
      },
    });
    const prepared = await rotation.prepare({ now: clock.now() });
    clock.advance(2 * HOUR);
    await rejectsWith(rotation.activate({ now: clock.now() }), CaNotReadyError, 'not-propagated', /^not activating yet: namespace late lacks it \(activate anyway with --force\)$/);
    assert.deepEqual(asked, [prepared.next!.fingerprint], 'asked about the prepared root');
    assert.equal(store.changes.length, 1, 'nothing written');

    // Automatic rotation does not fail on it: it looks again a minute later.
    const auto = await rotation.autoRotate({ now: clock.now() });
    assert.equal(auto.performed, undefined);
    assert.equal(auto.plan.action, 'activate');
    assert.equal(auto.plan.at?.getTime(), clock.now().getTime() + 60_000);
    assert.match(auto.plan.reason, /namespace late lacks it/);

    const forced = await rotation.activate({ now: clock.now(), force: true });
    assert.equal(forced.active.fingerprint, prepared.next!.fingerprint);
    assert.equal(asked.length, 2, 'force does not ask');
  });

  it('activate goes ahead once the gate is satisfied', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    const rotation = new AuthorityRotation({ store, trustDomain: td, maxSvidTtlSeconds: WEEK_S, activationGate: async () => undefined });
    const prepared = await rotation.prepare({ now: clock.now() });
    clock.advance(2 * HOUR);
    const auto = await rotation.autoRotate({ now: clock.now() });
    assert.equal(auto.performed?.operation, 'activate');
    assert.equal(auto.performed?.active.fingerprint, prepared.next!.fingerprint);
  });

  it('activate warns when the prepared root has been published for less than the propagation delay', async () => {
    const clock = new ManualClock();
    const rotation = new AuthorityRotation({ store: await initStore(clock.now()), trustDomain: td });
    await rotation.prepare({ now: clock.now() });
    clock.advance(60_000);
    const result = await rotation.activate({ now: clock.now() });
    assert.match(result.warnings.join('\n'), /published only 60s ago, less than the propagation delay \(3600s\)/);
  });

  it('retire refuses before trustUntil, naming the time; succeeds after it; --force drops early', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    const oldRoot = fingerprintOf(store.stored.active.certPem);
    const rotation = new AuthorityRotation({ store, trustDomain: td, maxSvidTtlSeconds: WEEK_S });
    await rotation.prepare({ now: clock.now() });
    clock.advance(HOUR);
    await rotation.activate({ now: clock.now() });
    const trustUntil = new Date(clock.now().getTime() + WEEK_S * 1000);

    clock.advance(WEEK_S * 1000 - 1);
    await rejectsWith(rotation.retire({ now: clock.now() }), CaInvalidError, 'too-early', new RegExp(`trusted until ${trustUntil.toISOString()}`));
    assert.equal(store.changes.length, 2, 'a refusal writes nothing');

    clock.advance(1);
    const result = await rotation.retire({ now: clock.now() });
    assert.equal(result.sequence, 4);
    assert.deepEqual(result.removed.map((r) => r.fingerprint), [oldRoot]);
    assert.deepEqual(result.retiring, []);
    assert.equal((await rotation.status(clock.now())).bundle.roots.length, 1);

    const idle = await rotation.retire({ now: clock.now() });
    assert.equal(idle.changed, false);
    assert.equal(idle.sequence, 4, 'nothing to do: the sequence stays');
    assert.equal(store.changes.length, 3);
  });

  it('retire --force drops a retiring root early and warns that its SVIDs stop verifying', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    const oldRoot = fingerprintOf(store.stored.active.certPem);
    const rotation = new AuthorityRotation({ store, trustDomain: td });
    await rotation.prepare({ now: clock.now() });
    await rotation.activate({ now: clock.now() });
    const result = await rotation.retire({ now: clock.now(), force: true });
    assert.deepEqual(result.removed.map((r) => r.fingerprint), [oldRoot]);
    assert.match(result.warnings.join('\n'), /no longer verify/);
  });

  it('distrust removes a retiring root at once and records it; a bundle holding it again is refused', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    const oldPem = store.stored.active.certPem;
    const oldRoot = fingerprintOf(oldPem);
    const rotation = new AuthorityRotation({ store, trustDomain: td });
    await rotation.prepare({ now: clock.now() });
    await rotation.activate({ now: clock.now() });

    const result = await rotation.distrust(oldRoot.replace(/:/g, ''), { now: clock.now() });
    assert.equal(result.sequence, 4);
    assert.deepEqual(result.removed.map((r) => r.fingerprint), [oldRoot]);
    assert.deepEqual(result.retiring, []);
    const snap = await rotation.status(clock.now());
    assert.deepEqual(snap.state.distrusted.map((d) => d.fingerprint), [oldRoot]);

    const again = await rotation.distrust(oldRoot, { now: clock.now() });
    assert.equal(again.changed, false, 'distrusting twice is harmless');

    store.stored = { ...store.stored, active: { ...store.stored.active, rootPem: store.stored.active.rootPem + oldPem } };
    assert.throws(
      () => resolveAuthoritySnapshot(store.stored, { trustDomain: td, now: clock.now() }),
      (err: unknown) => err instanceof CaInvalidError && err.rule === 'distrusted',
    );
  });

  it('distrust of the active root is refused without a prepared authority', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    const rotation = new AuthorityRotation({ store, trustDomain: td });
    await rejectsWith(
      rotation.distrust(fingerprintOf(store.stored.active.certPem), { now: clock.now() }),
      CaInvalidError,
      'no-next',
      /nothing to sign with.*--prepare/s,
    );
  });

  it('distrust of the active root activates the prepared authority at once; the old root is not kept', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    const oldRoot = fingerprintOf(store.stored.active.certPem);
    const rotation = new AuthorityRotation({ store, trustDomain: td });
    const prepared = await rotation.prepare({ now: clock.now() });

    const result = await rotation.distrust(oldRoot, { now: clock.now() });
    assert.equal(result.sequence, 3);
    assert.equal(result.active.fingerprint, prepared.next!.fingerprint);
    assert.deepEqual(result.bundle.map((r) => r.fingerprint), [prepared.next!.fingerprint]);
    assert.deepEqual(result.retiring, [], 'a distrusted root does not retire gracefully');
    assert.match(result.warnings.join('\n'), /activated the prepared authority/);
    const snap = await rotation.status(clock.now());
    assert.equal(snap.authority.certificate.fingerprint256, prepared.next!.fingerprint);
    assert.equal(snap.next, undefined);
  });

  it('distrust of the prepared root discards the prepared authority', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    const rotation = new AuthorityRotation({ store, trustDomain: td });
    const prepared = await rotation.prepare({ now: clock.now() });
    const result = await rotation.distrust(prepared.next!.fingerprint, { now: clock.now() });
    assert.equal(result.next, undefined);
    assert.equal(result.bundle.length, 1);
    assert.equal((await rotation.status(clock.now())).next, undefined);
  });

  it('distrust of a root outside the bundle is refused; a malformed fingerprint is a TypeError', async () => {
    const clock = new ManualClock();
    const rotation = new AuthorityRotation({ store: await initStore(clock.now()), trustDomain: td });
    const stranger = await createTestRoot({ trustDomain: 'example.org' });
    await rejectsWith(rotation.distrust(stranger.cert.fingerprint256, { now: clock.now() }), CaInvalidError, 'unknown-root');
    assert.throws(() => rotation.distrust('not-a-fingerprint', { now: clock.now() }), TypeError);
  });

  it('rotates a plug-in intermediate staged by hand under the same root without retiring anything', async () => {
    const clock = new ManualClock();
    const now = clock.now();
    const validity = { notBefore: new Date(now.getTime() - HOUR), notAfter: new Date(now.getTime() + 365 * DAY) };
    const root = await createTestRoot({ trustDomain: 'example.org', ...validity });
    const [mid1, mid2] = [await createTestIntermediate(root, validity), await createTestIntermediate(root, validity)];
    const store = new MemoryStore({
      active: { certPem: mid1.pem, keyPem: mid1.keyPem, chainPem: mid1.pem + root.pem, rootPem: root.pem },
      next: { certPem: mid2.pem, keyPem: mid2.keyPem, chainPem: mid2.pem + root.pem, rootPem: root.pem },
      nextError: undefined,
      state: undefined,
      warnings: [],
    });
    const rotation = new AuthorityRotation({ store, trustDomain: td });
    const before = await rotation.status(now);
    assert.equal(before.next?.publishedAt, undefined, 'staged by hand: not published by meshca');
    assert.equal(planAutoRotation(autoRotationStateOf(before), now).action, 'prepare');

    const prepared = await rotation.prepare({ now });
    assert.deepEqual(prepared.added, [], 'its root is already trusted');
    assert.equal(prepared.sequence, 2);
    const activated = await rotation.activate({ now: new Date(now.getTime() + HOUR) });
    assert.equal(activated.active.fingerprint, mid2.cert.fingerprint256);
    assert.deepEqual(activated.retiring, [], 'same root: nothing to retire');
    assert.deepEqual(activated.bundle.map((r) => r.fingerprint), [root.cert.fingerprint256]);
  });

  it('activate refuses an authority whose root is not in the bundle', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    store.stored = { ...store.stored, next: await selfSignedPem(clock.now()) };
    const rotation = new AuthorityRotation({ store, trustDomain: td });
    await rejectsWith(rotation.activate({ now: clock.now() }), CaInvalidError, 'not-published', /--prepare/);
  });

  it('refuses a data directory recorded for another trust domain', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    await new AuthorityRotation({ store, trustDomain: td }).prepare({ now: clock.now() });
    const other = new AuthorityRotation({ store, trustDomain: parseTrustDomain('example.net') });
    await assert.rejects(other.status(clock.now()), (err: unknown) => err instanceof CaInvalidError && err.rule === 'trust-domain');
  });

  it('gives a root-cert.pem edited outside meshca a new sequence number and says so', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    const rotation = new AuthorityRotation({ store, trustDomain: td });
    await rotation.prepare({ now: clock.now() });
    const extra = await selfSignedPem(clock.now());
    store.stored = { ...store.stored, active: { ...store.stored.active, rootPem: store.stored.active.rootPem + extra.certPem } };
    const snap = await rotation.status(clock.now());
    assert.equal(snap.bundle.sequence, 3);
    assert.equal(snap.bundle.roots.length, 3);
    assert.match(snap.notes.join('\n'), /changed outside meshca since bundle sequence 2/);
  });
});

describe('checkAuthorityLifetime', () => {
  const now = new Date('2030-01-01T00:00:00Z');
  it('accepts a CA with exactly 3 x the max SVID TTL left', () => {
    checkAuthorityLifetime({ authorityNotAfter: new Date(now.getTime() + 3 * WEEK_S * 1000), maxSvidTtlSeconds: WEEK_S, now });
  });

  it('refuses a CA with less than 3 x the max SVID TTL left (rule lifetime)', () => {
    assert.throws(
      () => checkAuthorityLifetime({ authorityNotAfter: new Date(now.getTime() + 3 * WEEK_S * 1000 - 1000), maxSvidTtlSeconds: WEEK_S, now }),
      (err: unknown) => err instanceof CaInvalidError && err.code === 'ERR_CA_INVALID' && err.rule === 'lifetime' && /3 x the max SVID TTL/.test(err.message),
    );
  });

  it('refuses to prepare a root that would not outlive 3 SVIDs', async () => {
    const clock = new ManualClock();
    const rotation = new AuthorityRotation({ store: await initStore(clock.now()), trustDomain: td, maxSvidTtlSeconds: WEEK_S });
    await rejectsWith(rotation.prepare({ now: clock.now(), validityDays: 20 }), CaInvalidError, 'lifetime');
  });
});

describe('planAutoRotation', () => {
  const notBefore = new Date('2030-01-01T00:00:00Z');
  const tenYears = new Date(notBefore.getTime() + 3650 * DAY);
  const selfSigned = { notBefore, notAfter: tenYears, selfSigned: true };

  it('prepares a self-signed root when 20% of its life is left', () => {
    const plan = planAutoRotation({ active: selfSigned, next: undefined, retiring: [] }, notBefore);
    assert.equal(plan.action, 'prepare');
    assert.equal(plan.at?.getTime(), tenYears.getTime() - 730 * DAY);
  });

  it('prepares at 30 days left when 20% is less than that', () => {
    const short = { notBefore, notAfter: new Date(notBefore.getTime() + 100 * DAY), selfSigned: true };
    const plan = planAutoRotation({ active: short, next: undefined, retiring: [] }, notBefore);
    assert.equal(plan.at?.getTime(), short.notAfter.getTime() - 30 * DAY);
  });

  it('never plans a preparation a plug-in intermediate cannot do itself', () => {
    const plan = planAutoRotation({ active: { ...selfSigned, selfSigned: false }, next: undefined, retiring: [] }, notBefore);
    assert.equal(plan.action, 'none');
    assert.equal(plan.at, undefined);
  });

  it('activates once the prepared root has been published for the propagation delay, never less than the refresh hint', () => {
    const publishedAt = new Date(notBefore.getTime() + DAY);
    const state = { active: selfSigned, next: { publishedAt }, retiring: [] };
    assert.deepEqual(
      [planAutoRotation(state, publishedAt).action, planAutoRotation(state, publishedAt).at?.getTime()],
      ['activate', publishedAt.getTime() + HOUR],
    );
    assert.equal(planAutoRotation(state, publishedAt, { propagationDelaySeconds: 60, refreshHintSeconds: 7200 }).at?.getTime(), publishedAt.getTime() + 2 * HOUR);
  });

  it('retires at the earliest trustUntil, before anything else due at the same time', () => {
    const at = new Date(notBefore.getTime() + 2 * DAY);
    const plan = planAutoRotation(
      {
        active: selfSigned,
        next: { publishedAt: new Date(at.getTime() - HOUR) },
        retiring: [
          { fingerprint: 'B', trustUntil: new Date(at.getTime() + DAY) },
          { fingerprint: 'A', trustUntil: at },
        ],
      },
      notBefore,
    );
    assert.deepEqual([plan.action, plan.at?.getTime()], ['retire', at.getTime()]);
  });

  it('drives a 10-year root through prepare, activate and retire, twice, on a manual clock', async () => {
    const clock = new ManualClock();
    const store = await initStore(clock.now());
    const rotation = new AuthorityRotation({ store, trustDomain: td, maxSvidTtlSeconds: WEEK_S });
    const firstNotAfter = new X509Certificate(store.stored.active.certPem).validTo;
    const events: { action: string; at: number; sequence: number; roots: number }[] = [];

    for (let step = 0; step < 7; step++) {
      const { performed, plan } = await rotation.autoRotate({ now: clock.now() });
      if (performed) {
        const snap = await rotation.status(clock.now());
        events.push({ action: performed.operation, at: clock.now().getTime(), sequence: performed.sequence, roots: snap.bundle.roots.length });
      }
      assert.ok(plan.at, 'a self-signed root always has a next step');
      clock.advanceTo(plan.at);
    }

    const prepareAt = new Date(firstNotAfter).getTime() - Math.max(0.2 * (3650 * DAY + 60_000), 30 * DAY);
    assert.deepEqual(
      events.slice(0, 3).map((e) => [e.action, e.at, e.sequence, e.roots]),
      [
        ['prepare', prepareAt, 2, 2],
        ['activate', prepareAt + HOUR, 3, 2],
        ['retire', prepareAt + HOUR + WEEK_S * 1000, 4, 1],
      ],
    );
    assert.deepEqual(events.slice(3).map((e) => e.action), ['prepare', 'activate', 'retire']);
    const secondPrepare = events[3]!.at;
    // The second root was created at the first prepare and lives ten years from then.
    assert.equal(secondPrepare, prepareAt + Math.round(0.8 * (3650 * DAY + 60_000)) - 60_000);
    assert.ok(events.every((e, i) => i === 0 || e.sequence === events[i - 1]!.sequence + 1), 'one sequence step per change');
  });
});
