import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import {
  FederatedBundles,
  type FederatedBundleError,
  type FederatedBundlesOptions,
} from '../../../src/agent/federated-bundles.js';
import type { FederatedBundleSource, FetchedFederatedBundle } from '../../../src/agent/ports.js';
import { SvidRotator, type SvidRotatorEvents, type X509SvidUpdate } from '../../../src/agent/svid-rotator.js';
import { DevTokenIssuer } from '../../../src/authn/dev-issuer.js';
import { parseAgentConfig, type AgentOptionValues } from '../../../src/config/agent-config.js';
import { ConfigError, isIdentityError } from '../../../src/errors.js';
import { parseTrustDomain, type TrustDomain } from '../../../src/spiffe/trust-domain.js';
import { X509Bundle } from '../../../src/spiffe/x509-bundle.js';
import { createTestMeshCa } from '../../helpers/fake-ca-server.js';
import { ManualClock } from '../../helpers/manual-clock.js';
import { createTestRoot, type TestCertificate } from '../../helpers/test-ca.js';

const OWN = parseTrustDomain('cluster.local');
const TD_B = parseTrustDomain('td-b');
const TD_C = parseTrustDomain('td-c');

/** A scripted source: answers with `next` (a result or an error) on every fetch. */
class ScriptedSource implements FederatedBundleSource {
  readonly location: string;
  fetches = 0;
  next: FetchedFederatedBundle | Error;
  constructor(
    readonly trustDomain: TrustDomain,
    next: FetchedFederatedBundle | Error,
  ) {
    this.location = `https://${trustDomain.name}.example/.well-known/spiffe-bundle`;
    this.next = next;
  }
  async fetchBundle(): Promise<FetchedFederatedBundle> {
    this.fetches += 1;
    if (this.next instanceof Error) throw this.next;
    return this.next;
  }
}

/** Lets the fetch promises and their continuations run (no timers involved). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('FederatedBundles', () => {
  let rootB1: TestCertificate;
  let rootB2: TestCertificate;
  let rootC: TestCertificate;
  let clock: ManualClock;
  const open: FederatedBundles[] = [];

  before(async () => {
    [rootB1, rootB2, rootC] = await Promise.all([
      createTestRoot({ trustDomain: 'td-b' }),
      createTestRoot({ trustDomain: 'td-b' }),
      createTestRoot({ trustDomain: 'td-c' }),
    ]);
  });
  beforeEach(() => {
    clock = new ManualClock(new Date());
  });
  after(async () => {
    await Promise.all(open.map((f) => f.close()));
  });

  const bundleB = (seq?: number, roots = [rootB1]): X509Bundle => new X509Bundle(TD_B, roots.map((r) => r.cert), seq);

  function start(sources: FederatedBundleSource[], overrides: Partial<FederatedBundlesOptions> = {}): FederatedBundles {
    const federation = new FederatedBundles({ trustDomain: OWN, sources, clock, random: () => 0.5, ...overrides });
    open.push(federation);
    void federation.run();
    return federation;
  }

  test('refuses the own trust domain and a trust domain configured twice (never merged)', () => {
    assert.throws(() => new FederatedBundles({ trustDomain: OWN, sources: [new ScriptedSource(OWN, { bundle: bundleB() })] }), /own trust domain/);
    assert.throws(
      () => new FederatedBundles({ trustDomain: OWN, sources: [new ScriptedSource(TD_B, { bundle: bundleB() }), new ScriptedSource(TD_B, { bundle: bundleB() })] }),
      /federated twice/,
    );
  });

  test('fetches every trust domain at once and answers per trust domain, never for the own one', async () => {
    const b = new ScriptedSource(TD_B, { bundle: bundleB(3), refreshHintSeconds: 300 });
    const c = new ScriptedSource(TD_C, { bundle: new X509Bundle(TD_C, [rootC.cert]) });
    const federation = start([b, c]);
    const changes: X509Bundle[] = [];
    federation.on('change', (bundle) => changes.push(bundle));
    await settle();
    assert.equal(federation.getX509BundleForTrustDomain(TD_B), b.next instanceof Error ? undefined : b.next.bundle);
    assert.equal(federation.getX509BundleForTrustDomain(TD_C)?.authorities[0]?.fingerprint256, rootC.cert.fingerprint256);
    assert.equal(federation.getX509BundleForTrustDomain(OWN), undefined);
    assert.deepEqual(federation.getX509Bundles().map((x) => x.trustDomain.name), ['td-b', 'td-c']);
    assert.equal(federation.getX509Bundles(), federation.getX509Bundles(), 'the same array until a bundle changes');
    assert.deepEqual(changes.map((x) => x.trustDomain.name).sort(), ['td-b', 'td-c']);
  });

  test('polls at the document refresh hint, the default without one, clamped to [min, max]', async () => {
    const hinted = new ScriptedSource(TD_B, { bundle: bundleB(1), refreshHintSeconds: 300 });
    const plain = new ScriptedSource(TD_C, { bundle: new X509Bundle(TD_C, [rootC.cert]) });
    const federation = start([hinted, plain], { defaultRefreshMs: 120_000 });
    await settle();
    const [statusB, statusC] = federation.status();
    assert.equal(statusB!.nextFetchAt!.getTime() - clock.now().getTime(), 300_000);
    assert.equal(statusC!.nextFetchAt!.getTime() - clock.now().getTime(), 120_000);
    clock.advance(120_000);
    await settle();
    assert.deepEqual([hinted.fetches, plain.fetches], [1, 2]);
    clock.advance(180_000);
    await settle();
    assert.deepEqual([hinted.fetches, plain.fetches], [2, 3]);

    const zero = new ScriptedSource(TD_B, { bundle: bundleB(1), refreshHintSeconds: 0 });
    const huge = new ScriptedSource(TD_C, { bundle: new X509Bundle(TD_C, [rootC.cert]), refreshHintSeconds: 7 * 86400 });
    const clamped = start([zero, huge], { minRefreshMs: 5000, maxRefreshMs: 3_600_000 });
    await settle();
    const [z, h] = clamped.status();
    assert.equal(z!.nextFetchAt!.getTime() - clock.now().getTime(), 5000, 'a zero hint is no hot loop');
    assert.equal(h!.nextFetchAt!.getTime() - clock.now().getTime(), 3_600_000, 'a week-long hint cannot delay a distrust for a week');
  });

  test('replaces a bundle wholesale when the peer removes a root, and emits change once per new bundle', async () => {
    const source = new ScriptedSource(TD_B, { bundle: bundleB(1, [rootB1, rootB2]), refreshHintSeconds: 10 });
    const federation = start([source]);
    await settle();
    const changes: X509Bundle[] = [];
    federation.on('change', (bundle) => changes.push(bundle));
    const list = federation.getX509Bundles();
    clock.advance(10_000); // same document again: nothing changes
    await settle();
    assert.equal(changes.length, 0);
    assert.equal(federation.getX509Bundles(), list);
    source.next = { bundle: bundleB(2, [rootB2]), refreshHintSeconds: 10 };
    clock.advance(10_000);
    await settle();
    assert.equal(changes.length, 1);
    assert.deepEqual(federation.getX509BundleForTrustDomain(TD_B)!.authorities.map((c) => c.fingerprint256), [rootB2.cert.fingerprint256]);
    assert.notEqual(federation.getX509Bundles(), list);
  });

  test('keeps the last good bundle when a fetch fails, is for another trust domain, is empty or older; retries with backoff', async () => {
    const good = bundleB(5);
    const source = new ScriptedSource(TD_B, { bundle: good, refreshHintSeconds: 60 });
    const federation = start([source], { retryBaseMs: 1000 });
    await settle();
    const errors: FederatedBundleError[] = [];
    federation.on('error', (e) => errors.push(e));

    const cases: [FetchedFederatedBundle | Error, string][] = [
      [new Error('connection refused'), ''],
      [{ bundle: new X509Bundle(TD_C, [rootC.cert]) }, 'trust-domain'],
      [{ bundle: new X509Bundle(TD_B, []) }, 'empty'],
      [{ bundle: bundleB(4, [rootB2]) }, 'sequence'],
    ];
    for (const [answer, rule] of cases) {
      source.next = answer;
      const due = federation.status()[0]!.nextFetchAt!;
      clock.advanceTo(due);
      await settle();
      const last = errors.at(-1)!;
      if (rule !== '') {
        assert.ok(isIdentityError(last.error), String(last.error));
        assert.equal(last.error.code, 'ERR_BUNDLE_INVALID');
        assert.equal(last.error.rule, rule);
      }
      assert.equal(last.bundleKept, true);
      assert.equal(federation.getX509BundleForTrustDomain(TD_B), good, `kept the good bundle after a ${rule || 'failed'} fetch`);
    }
    assert.deepEqual(errors.map((e) => e.attempt), [1, 2, 3, 4]);
    // Backoff with centred jitter: 0.75 x 1 s, 2 s, 4 s, 8 s.
    const delays = errors.map((e) => e.nextFetchAt!.getTime());
    assert.ok(delays.every((d, i) => i === 0 || d > delays[i - 1]!));
    assert.equal(federation.status()[0]!.failures, 4);

    source.next = { bundle: bundleB(6, [rootB2]), refreshHintSeconds: 60 };
    clock.advanceTo(federation.status()[0]!.nextFetchAt!);
    await settle();
    assert.equal(federation.status()[0]!.failures, 0);
    assert.equal(federation.getX509BundleForTrustDomain(TD_B)!.sequenceNumber, 6);
  });

  test('stops polling on close and answers nothing afterwards', async () => {
    const source = new ScriptedSource(TD_B, { bundle: bundleB(1), refreshHintSeconds: 1 });
    const federation = start([source]);
    await settle();
    await federation.close();
    clock.advance(60_000);
    await settle();
    assert.equal(source.fetches, 1);
    assert.equal(federation.getX509BundleForTrustDomain(TD_B), undefined);
    assert.deepEqual(federation.getX509Bundles(), []);
  });
});

describe('SvidRotator with federated bundles', () => {
  test('serves federated bundles beside the own one, never in place of it, and pushes an update when one changes', async () => {
    const clock = new ManualClock(new Date());
    const tokenIssuer = await DevTokenIssuer.generate();
    const mesh = await createTestMeshCa({ clock, tokenIssuer });
    const [rootB, rootB2, rogueOwn] = await Promise.all([
      createTestRoot({ trustDomain: 'td-b' }),
      createTestRoot({ trustDomain: 'td-b' }),
      createTestRoot({ trustDomain: 'cluster.local' }),
    ]);
    let federated: X509Bundle[] = [new X509Bundle(TD_B, [rootB.cert]), new X509Bundle(OWN, [rogueOwn.cert])];
    const listeners = new Set<(b: X509Bundle) => void>();
    const provider = {
      getX509Bundles: () => federated,
      getX509BundleForTrustDomain: (td: TrustDomain) => federated.find((b) => b.trustDomain.equals(td)),
      onBundlesChange(listener: (b: X509Bundle) => void) {
        listeners.add(listener);
        return () => void listeners.delete(listener);
      },
    };
    const rotator = new SvidRotator({
      trustDomain: OWN,
      caClient: {
        createCertificate: async (r) => ({ certChainPem: (await mesh.issuance.issue({ token: r.token, csr: r.csrPem })).certChainPem }),
      },
      tokenSource: { readToken: () => tokenIssuer.mint({ namespace: 'default', serviceAccount: 'sleep', now: clock.now() }) },
      bundleSource: { fetchBundle: async () => mesh.bundle },
      clock,
      bundleRefreshMs: 0,
      federatedBundles: provider,
    });
    const events: { [E in keyof SvidRotatorEvents]: SvidRotatorEvents[E][] } = { update: [], bundle: [], error: [] };
    rotator.on('update', (u) => events.update.push(u)).on('bundle', (b) => events.bundle.push(b));
    const done = rotator.run();
    try {
      await rotator.waitForSvid();
      const own = rotator.getX509BundleForTrustDomain(OWN)!;
      assert.equal(own.authorities[0]!.fingerprint256, mesh.bundle.authorities[0]!.fingerprint256, 'the own bundle comes from the BundleSource only');
      assert.equal(rotator.getX509BundleForTrustDomain(TD_B), federated[0]);
      assert.deepEqual(
        rotator.getX509Bundles().map((b) => [b.trustDomain.name, b.authorities[0]!.fingerprint256]),
        [
          ['cluster.local', mesh.bundle.authorities[0]!.fingerprint256],
          ['td-b', rootB.cert.fingerprint256],
        ],
        'own first; a federated bundle claiming the own trust domain is ignored',
      );

      federated = [new X509Bundle(TD_B, [rootB2.cert])];
      const updatesBefore = events.update.length;
      for (const listener of listeners) listener(federated[0]!);
      assert.equal(events.bundle.at(-1), federated[0]);
      const update = events.update.at(-1) as X509SvidUpdate;
      assert.equal(events.update.length, updatesBefore + 1);
      assert.equal(update.reason, 'bundle');
      assert.equal(update.bundle, own, 'the update carries the own bundle');
      assert.equal(rotator.getX509BundleForTrustDomain(TD_B)?.authorities[0]?.fingerprint256, rootB2.cert.fingerprint256);
      assert.equal(rotator.getX509Bundles()[1], federated[0]);
    } finally {
      await rotator.close();
      await done;
    }
    assert.equal(listeners.size, 0, 'close unsubscribes from the provider');
  });
});

describe('meshca agent --federated-bundle', () => {
  const base: AgentOptionValues = {
    caAddress: '127.0.0.1:15012',
    caRoot: '/etc/root-cert.pem',
    tokenFile: '/tokens/t',
    trustDomain: 'td-a',
    out: '/etc/certs',
    svidTtl: '24h',
    key: 'ec-p256',
    hookTimeout: '30s',
    insecure: false,
    caTimeout: '10s',
    bundleRefresh: '5m',
  };

  test('parses <trust-domain>=<https-url-or-file> values, bare or spiffe:// trust domains', () => {
    const config = parseAgentConfig({
      ...base,
      federatedBundle: ['td-b=https://meshca.td-b.example:15014/.well-known/spiffe-bundle', 'spiffe://td-c=/etc/federation/td-c.pem'],
      federatedBundleCa: '/etc/federation/web-ca.pem',
    });
    assert.deepEqual(
      config.federatedBundles!.map((f) => [f.trustDomain.name, f.location]),
      [
        ['td-b', 'https://meshca.td-b.example:15014/.well-known/spiffe-bundle'],
        ['td-c', '/etc/federation/td-c.pem'],
      ],
    );
    assert.equal(config.federatedBundleCaPath, '/etc/federation/web-ca.pem');
    assert.deepEqual(parseAgentConfig(base).federatedBundles, []);
  });

  test('refuses the own trust domain, repeats, plain http, and malformed values, all in one ERR_CONFIG_INVALID', () => {
    assert.throws(
      () =>
        parseAgentConfig({
          ...base,
          federatedBundle: ['td-a=/etc/a.pem', 'td-b=/etc/b.pem', 'td-b=/etc/b2.pem', 'td-c=http://insecure/bundle', 'no-equals-sign', 'Bad Domain=/x'],
        }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.code, 'ERR_CONFIG_INVALID');
        const text = err.problems.join('\n');
        for (const expected of ["own trust domain", 'more than once', 'not http:', 'must be <trust-domain>=', '"Bad Domain=/x"']) {
          assert.ok(text.includes(expected), `missing a problem about ${expected}:\n${text}`);
        }
        assert.equal(err.problems.length, 5);
        return true;
      },
    );
  });
});
