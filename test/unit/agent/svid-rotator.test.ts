import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { BundleSource, CaClient, CreateCertificateRequest, CreateCertificateResult, TokenSource } from '../../../src/agent/ports.js';
import { SvidRotator, SvidUnavailableError, type SvidRotatorEvents, type SvidRotatorOptions } from '../../../src/agent/svid-rotator.js';
import { DevTokenIssuer } from '../../../src/authn/dev-issuer.js';
import { CaNotReadyError, isIdentityError, type IdentityError } from '../../../src/errors.js';
import { createFileTokenSource } from '../../../src/files/token-file.js';
import { createCsr } from '../../../src/pki/csr.js';
import { parseTrustDomain } from '../../../src/spiffe/trust-domain.js';
import { X509Bundle } from '../../../src/spiffe/x509-bundle.js';
import { verifyX509Svid } from '../../../src/spiffe/x509-svid.js';
import { createTestMeshCa, signBypassingChecks, type TestMeshCa } from '../../helpers/fake-ca-server.js';
import { ManualClock } from '../../helpers/manual-clock.js';

const HOUR = 3_600_000;
const TD = parseTrustDomain('cluster.local');
const SLEEP = 'spiffe://cluster.local/ns/default/sa/sleep';

type Mode = 'ok' | 'down' | 'wrong-identity' | 'other-key';

/** The CA as the agent sees it: a real CertificateAuthority + token check, plus failure modes. */
class FakeCaClient implements CaClient {
  mode: Mode = 'ok';
  mesh: TestMeshCa;
  readonly tokens: string[] = [];
  calls = 0;

  constructor(
    mesh: TestMeshCa,
    private readonly clock: ManualClock,
  ) {
    this.mesh = mesh;
  }

  async createCertificate(request: CreateCertificateRequest): Promise<CreateCertificateResult> {
    this.calls += 1;
    this.tokens.push(request.token);
    switch (this.mode) {
      case 'down':
        throw new CaNotReadyError('CA unavailable (test outage)', { rule: 'unavailable' });
      case 'wrong-identity':
        return { certChainPem: await signBypassingChecks(this.mesh.authority, request.csrPem, 'spiffe://cluster.local/ns/kube-system/sa/admin', this.clock.now()) };
      case 'other-key': {
        // A perfectly valid SVID for the right identity, but not for the key the agent holds.
        const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
        const issued = await this.mesh.issuance.issue({ token: request.token, csr: createCsr(privateKey, { uris: [SLEEP] }).pem });
        return { certChainPem: issued.certChainPem };
      }
      case 'ok': {
        const issued = await this.mesh.issuance.issue({
          token: request.token,
          csr: request.csrPem,
          ...(request.ttlSeconds === undefined ? {} : { ttlSeconds: request.ttlSeconds }),
        });
        return { certChainPem: issued.certChainPem };
      }
    }
  }
}

class FakeBundleSource implements BundleSource {
  fetches = 0;
  failure: Error | undefined;
  constructor(public bundle: X509Bundle) {}
  async fetchBundle(): Promise<X509Bundle> {
    this.fetches += 1;
    if (this.failure) throw this.failure;
    return this.bundle;
  }
}

/** A kubelet stand-in: a fresh token for default/sleep on every read, minted at the clock's time. */
function kubeletTokens(issuer: DevTokenIssuer, clock: ManualClock): TokenSource & { reads: number } {
  const source = {
    reads: 0,
    readToken: async () => {
      source.reads += 1;
      return issuer.mint({ namespace: 'default', serviceAccount: 'sleep', now: clock.now() });
    },
  };
  return source;
}

function nextEvent<E extends keyof SvidRotatorEvents>(
  rotator: SvidRotator,
  event: E,
  predicate: (payload: SvidRotatorEvents[E]) => boolean = () => true,
): Promise<SvidRotatorEvents[E]> {
  return new Promise((resolve) => {
    const listener = (payload: SvidRotatorEvents[E]): void => {
      if (!predicate(payload)) return;
      rotator.off(event, listener);
      resolve(payload);
    };
    rotator.on(event, listener);
  });
}

function assertCode(err: unknown, code: IdentityError['code'], rule?: string): void {
  assert.ok(isIdentityError(err), `expected an IdentityError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (rule !== undefined) assert.equal(err.rule, rule, err.message);
}

function serialOf(rotator: SvidRotator): string {
  return rotator.getX509Svid().certificates[0]!.serialNumber.toLowerCase();
}

describe('SvidRotator', () => {
  let tokenIssuer: DevTokenIssuer;
  let clock: ManualClock;
  let mesh: TestMeshCa;
  let ca: FakeCaClient;
  let bundles: FakeBundleSource;
  let tokens: ReturnType<typeof kubeletTokens>;
  const running: SvidRotator[] = [];

  before(async () => {
    tokenIssuer = await DevTokenIssuer.generate();
  });

  beforeEach(async () => {
    clock = new ManualClock();
    mesh = await createTestMeshCa({ clock, tokenIssuer });
    ca = new FakeCaClient(mesh, clock);
    bundles = new FakeBundleSource(mesh.bundle);
    tokens = kubeletTokens(tokenIssuer, clock);
  });

  after(async () => {
    await Promise.all(running.map((r) => r.close()));
  });

  /** Jitter centred (random 0.5) so rotation lands exactly at half-life; no bundle polling. */
  function start(overrides: Partial<SvidRotatorOptions> = {}): { rotator: SvidRotator; done: Promise<void> } {
    const rotator = new SvidRotator({
      trustDomain: TD,
      caClient: ca,
      tokenSource: tokens,
      bundleSource: bundles,
      clock,
      random: () => 0.5,
      bundleRefreshMs: 0,
      ...overrides,
    });
    running.push(rotator);
    return { rotator, done: rotator.run() };
  }

  test('has no SVID before the first fetch: getX509Svid throws ERR_CA_NOT_READY / not-fetched', () => {
    const rotator = new SvidRotator({ trustDomain: TD, caClient: ca, tokenSource: tokens, bundleSource: bundles, clock });
    assert.throws(() => rotator.getX509Svid(), (err: unknown) => {
      assert.ok(err instanceof SvidUnavailableError);
      assertCode(err, 'ERR_CA_NOT_READY', 'not-fetched');
      return true;
    });
    assert.equal(rotator.getX509BundleForTrustDomain(TD), undefined);
  });

  test('fetches an SVID for the identity in its token at once, with a fresh key and a verified chain', async () => {
    const { rotator } = start();
    const update = await nextEvent(rotator, 'update');
    const svid = rotator.getX509Svid();
    assert.equal(update.reason, 'svid');
    assert.equal(update.svid, svid);
    assert.equal(svid.id.toString(), SLEEP);
    assert.equal(svid.certificates.length, 1, 'the root travels in the bundle, not in the chain');
    assert.ok(svid.privateKey, 'the SVID carries its private key');
    assert.ok(svid.certificates[0]!.checkPrivateKey(svid.privateKey));
    verifyX509Svid(svid.certificates, mesh.bundle, { now: clock.now() });
    assert.equal(update.serial, serialOf(rotator));
    assert.equal(rotator.getX509BundleForTrustDomain(TD)?.authorities.length, 1);
    assert.equal(rotator.getX509BundleForTrustDomain(parseTrustDomain('example.org')), undefined);
    assert.deepEqual(rotator.getX509Bundles(), [rotator.getX509BundleForTrustDomain(TD)]);
    assert.equal(rotator.getX509Bundles(), rotator.getX509Bundles(), 'the same array until the bundle changes');
    assert.equal(rotator.hasValidSvid(), true);
    assert.equal(await rotator.waitForSvid(), svid);
    // Valid 24 h from issuance, notBefore backdated 10 s by the CA; renewal at half the lifetime.
    assert.equal(svid.notAfter.getTime() - svid.notBefore.getTime(), 24 * HOUR + 10_000);
    assert.equal(rotator.nextRotationAt?.getTime(), svid.notBefore.getTime() + 12 * HOUR + 5_000);
    assert.equal(update.nextRotationAt?.getTime(), rotator.nextRotationAt?.getTime());
  });

  test('requests the configured TTL and schedules by the lifetime it actually got', async () => {
    const { rotator } = start({ ttlSeconds: 3600 });
    const { svid } = await nextEvent(rotator, 'update');
    assert.equal(svid.notAfter.getTime() - svid.notBefore.getTime(), HOUR + 10_000);
    assert.equal(rotator.nextRotationAt!.getTime() - svid.notBefore.getTime(), 30 * 60_000 + 5_000);
  });

  test('rotates at 12 h, not a millisecond earlier, with a new key and serial', async () => {
    const { rotator } = start();
    const first = (await nextEvent(rotator, 'update')).svid;
    const due = rotator.nextRotationAt!;
    clock.advanceTo(new Date(due.getTime() - 1));
    assert.equal(ca.calls, 1, 'no renewal before the scheduled time');
    const renewed = nextEvent(rotator, 'update');
    clock.advance(1);
    const second = (await renewed).svid;
    assert.equal(ca.calls, 2);
    assert.notEqual(second.certificates[0]!.serialNumber, first.certificates[0]!.serialNumber);
    assert.ok(!second.privateKey!.equals(first.privateKey!), 'every rotation generates a new key');
    assert.equal(second.notBefore.getTime(), due.getTime() - 10_000);
    assert.equal(rotator.getX509Svid(), second);
  });

  test('keeps a 24 h SVID fresh for days: one renewal every 12 h, never expired (simulated in ms)', async () => {
    const { rotator } = start();
    await nextEvent(rotator, 'update');
    const renewedAt: number[] = [];
    for (let i = 0; i < 6; i++) {
      const renewed = nextEvent(rotator, 'update');
      clock.advanceTo(rotator.nextRotationAt!);
      const { svid } = await renewed;
      renewedAt.push(svid.notBefore.getTime() + 10_000 - clock.now().getTime());
      assert.ok(rotator.hasValidSvid());
      assert.ok(svid.notAfter.getTime() - clock.now().getTime() > 23 * HOUR);
    }
    assert.deepEqual(renewedAt, [0, 0, 0, 0, 0, 0], 'each SVID starts when its rotation ran');
    assert.equal(ca.calls, 7);
    assert.equal(clock.now().getTime() - new ManualClock().now().getTime(), 6 * 12 * HOUR - 6 * 5_000);
  });

  test('spreads renewals with jitter inside 10.8 h .. 13.2 h of a 24 h lifetime', async () => {
    let r = 0;
    const randoms = [0, 1, 0.2, 0.8];
    const { rotator } = start({ random: () => randoms[r++ % randoms.length]! });
    const halfLife = (24 * HOUR + 10_000) / 2;
    for (const factor of [0.9, 1.1, 0.94, 1.06]) {
      const { svid } = await nextEvent(rotator, 'update');
      assert.ok(Math.abs(rotator.nextRotationAt!.getTime() - svid.notBefore.getTime() - halfLife * factor) <= 1);
      clock.advanceTo(rotator.nextRotationAt!);
    }
  });

  test('keeps serving the SVID through a CA outage, retrying with backoff, until it expires; then reports the error state', async () => {
    const { rotator } = start();
    const { svid } = await nextEvent(rotator, 'update');
    ca.mode = 'down';
    const notAfter = svid.notAfter.getTime();
    const delays: number[] = [];
    let last = clock.now().getTime();
    while (rotator.nextRotationAt!.getTime() <= notAfter) {
      const failed = nextEvent(rotator, 'error', (e) => e.kind === 'rotation');
      clock.advanceTo(rotator.nextRotationAt!);
      const event = await failed;
      assertCode(event.error, 'ERR_CA_NOT_READY', 'unavailable');
      assert.equal(event.svidValid, true);
      assert.equal(rotator.getX509Svid(), svid, 'the current SVID is still served');
      delays.push(event.nextAttemptAt!.getTime() - clock.now().getTime());
      last = clock.now().getTime();
    }
    assert.ok(last > notAfter - 5 * 60_000, 'retries continue up to the end of the lifetime');
    assert.deepEqual(delays.slice(0, 5), [1000, 2000, 4000, 8000, 16000].map((d) => d * 0.75), 'exponential (equal jitter, r = 0.5)');
    assert.ok(delays.every((d) => d <= 5 * 60_000), 'capped at 5 min');
    assert.equal(rotator.getX509Svid(), svid);

    clock.advanceTo(svid.notAfter);
    assert.equal(rotator.getX509Svid(), svid, 'valid up to and including notAfter');
    const expired = nextEvent(rotator, 'error', (e) => e.kind === 'expired');
    clock.advance(1);
    const event = await expired;
    assert.equal(event.svidValid, false);
    assertCode(event.error, 'ERR_CA_NOT_READY', 'expired');
    assert.equal(rotator.hasValidSvid(), false);
    assert.throws(
      () => rotator.getX509Svid(),
      (err: unknown) => {
        assertCode(err, 'ERR_CA_NOT_READY', 'expired');
        assertCode((err as Error).cause, 'ERR_CA_NOT_READY', 'unavailable');
        assert.match((err as Error).message, /expired at .* last failure: CA unavailable/);
        return true;
      },
    );

    // Recovery: the CA comes back, the next retry installs a new SVID.
    ca.mode = 'ok';
    const recovered = nextEvent(rotator, 'update');
    clock.advanceTo(rotator.nextRotationAt!);
    const fresh = (await recovered).svid;
    assert.equal(rotator.getX509Svid(), fresh);
    assert.equal(rotator.lastError, undefined);
    assert.equal(rotator.nextRotationAt!.getTime(), fresh.notBefore.getTime() + 12 * HOUR + 5_000, 'back on the normal schedule');
  });

  test('retries the first fetch with backoff while the CA is down, then recovers', async () => {
    ca.mode = 'down';
    const { rotator } = start();
    const first = await nextEvent(rotator, 'error');
    assert.equal(first.attempt, 1);
    assert.equal(first.svidValid, false);
    assert.throws(() => rotator.getX509Svid(), (err: unknown) => {
      assertCode(err, 'ERR_CA_NOT_READY', 'not-fetched');
      assertCode((err as Error).cause, 'ERR_CA_NOT_READY');
      return true;
    });
    const second = nextEvent(rotator, 'error');
    clock.advanceTo(first.nextAttemptAt!);
    assert.equal((await second).attempt, 2);
    ca.mode = 'ok';
    const waiting = rotator.waitForSvid();
    clock.advanceTo(rotator.nextRotationAt!);
    assert.equal((await waiting).id.toString(), SLEEP);
  });

  test('without any SVID the retries never wait more than 4 s: the SVID is back within that of the CA answering', async () => {
    ca.mode = 'down';
    const { rotator } = start();
    const delays: number[] = [];
    let event = await nextEvent(rotator, 'error');
    for (let i = 0; i < 10; i++) {
      delays.push(event.nextAttemptAt!.getTime() - clock.now().getTime());
      const next = nextEvent(rotator, 'error');
      clock.advanceTo(event.nextAttemptAt!);
      event = await next;
    }
    assert.deepEqual(delays.slice(0, 3), [750, 1500, 3000], 'exponential at first (equal jitter, r = 0.5)');
    assert.ok(delays.every((d) => d <= 4000), `capped at 4 s: ${delays.join(', ')}`);
    assert.equal(delays.at(-1), 3000, 'the cap, with jitter');
    ca.mode = 'ok';
    const waiting = rotator.waitForSvid();
    const back = clock.now().getTime();
    clock.advanceTo(rotator.nextRotationAt!);
    await waiting;
    assert.ok(clock.now().getTime() - back <= 4000);
  });

  test('uses the token file as it is at each rotation (the kubelet replaced it in between)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshca-token-'));
    try {
      const path = join(dir, 'istio-token');
      const firstToken = await tokenIssuer.mint({ namespace: 'default', serviceAccount: 'sleep', now: clock.now(), ttlSeconds: 3600 });
      await writeFile(path, firstToken);
      const { rotator } = start({ tokenSource: createFileTokenSource(path, { clock }) });
      await nextEvent(rotator, 'update');
      assert.deepEqual(ca.tokens, [firstToken]);

      clock.advanceTo(new Date(rotator.nextRotationAt!.getTime() - HOUR));
      // The kubelet writes a new file and renames it into place.
      const secondToken = await tokenIssuer.mint({ namespace: 'default', serviceAccount: 'sleep', now: clock.now(), ttlSeconds: 3 * HOUR });
      await writeFile(join(dir, 'tmp'), secondToken);
      await rename(join(dir, 'tmp'), path);
      const renewed = nextEvent(rotator, 'update');
      clock.advance(HOUR);
      await renewed;
      assert.deepEqual(ca.tokens, [firstToken, secondToken]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('refuses a chain the CA issued for a different identity and keeps the current SVID', async () => {
    const { rotator } = start();
    const { svid } = await nextEvent(rotator, 'update');
    ca.mode = 'wrong-identity';
    const refused = nextEvent(rotator, 'error');
    clock.advanceTo(rotator.nextRotationAt!);
    const event = await refused;
    assertCode(event.error, 'ERR_IDENTITY_MISMATCH', 'issued-identity');
    assert.match(event.error.message, /ns\/kube-system\/sa\/admin.*ns\/default\/sa\/sleep/);
    assert.equal(rotator.getX509Svid(), svid, 'nothing was installed');
    assert.equal(rotator.getX509Svid().id.toString(), SLEEP);
  });

  test('never installs a wrong-identity chain, even when it holds no SVID yet', async () => {
    ca.mode = 'wrong-identity';
    const { rotator } = start();
    assertCode((await nextEvent(rotator, 'error')).error, 'ERR_IDENTITY_MISMATCH', 'issued-identity');
    assert.throws(() => rotator.getX509Svid(), (err: unknown) => {
      assertCode(err, 'ERR_CA_NOT_READY', 'not-fetched');
      return true;
    });
  });

  test('refuses a certificate for a key it did not generate', async () => {
    ca.mode = 'other-key';
    const { rotator } = start();
    assertCode((await nextEvent(rotator, 'error')).error, 'ERR_SVID_INVALID', 'key-mismatch');
    assert.equal(rotator.hasValidSvid(), false);
  });

  test('refuses a chain from a root outside the trust bundle, even though the CA appends that root', async () => {
    const { rotator } = start();
    const { svid } = await nextEvent(rotator, 'update');
    ca.mesh = await createTestMeshCa({ clock, tokenIssuer });
    const fetchesBefore = bundles.fetches;
    const refused = nextEvent(rotator, 'error');
    clock.advanceTo(rotator.nextRotationAt!);
    const event = await refused;
    assertCode(event.error, 'ERR_SVID_UNTRUSTED', 'no-path');
    assert.equal(bundles.fetches - fetchesBefore, 2, 'the bundle was re-read once before refusing');
    assert.equal(rotator.getX509Svid(), svid);
    assert.equal(rotator.getX509BundleForTrustDomain(TD)!.authorities.length, 1, 'the offered root was not added');
  });

  test('propagates a new root from the bundle source without a restart (overlap, then switch)', async () => {
    const { rotator } = start({ bundleRefreshMs: 60_000 });
    const first = await nextEvent(rotator, 'update');
    const scheduled = rotator.nextRotationAt!.getTime();

    // Phase 1: the control plane publishes old + new root. Consumers get the bigger bundle; the
    // current SVID still chains to a published root, so the schedule is unchanged.
    const next = await createTestMeshCa({ clock, tokenIssuer });
    const both = new X509Bundle(TD, [...mesh.bundle.authorities, ...next.bundle.authorities]);
    bundles.bundle = both;
    const bundleEvent = nextEvent(rotator, 'bundle');
    const bundleUpdate = nextEvent(rotator, 'update', (u) => u.reason === 'bundle');
    clock.advance(60_000);
    assert.equal((await bundleEvent).authorities.length, 2);
    const update = await bundleUpdate;
    assert.equal(update.svid, first.svid);
    assert.equal(rotator.getX509BundleForTrustDomain(TD), both);
    assert.equal(rotator.nextRotationAt!.getTime(), scheduled);

    // Phase 2: the CA signs with the new root; the regular rotation picks it up.
    ca.mesh = next;
    const rotated = nextEvent(rotator, 'update', (u) => u.reason === 'svid');
    clock.advanceTo(new Date(scheduled));
    const { svid } = await rotated;
    verifyX509Svid(svid.certificates, next.bundle, { now: clock.now() });

    // Phase 3: the old root is withdrawn; nothing to do, the SVID already chains to the new one.
    bundles.bundle = next.bundle;
    const withdrawn = nextEvent(rotator, 'bundle');
    clock.advance(60_000);
    assert.equal((await withdrawn).authorities.length, 1);
    assert.equal(rotator.getX509Svid(), svid);
    assert.ok(rotator.nextRotationAt!.getTime() > clock.now().getTime() + HOUR);
  });

  test('renews at once when the bundle withdraws the root of the current SVID', async () => {
    const { rotator } = start({ bundleRefreshMs: 60_000 });
    await nextEvent(rotator, 'update');
    const next = await createTestMeshCa({ clock, tokenIssuer });
    ca.mesh = next;
    bundles.bundle = next.bundle;
    const renewed = nextEvent(rotator, 'update', (u) => u.reason === 'svid');
    clock.advance(60_000);
    const { svid } = await renewed;
    assert.equal(svid.notBefore.getTime(), clock.now().getTime() - 10_000, 'renewed at the poll, not at half-life');
    verifyX509Svid(svid.certificates, next.bundle, { now: clock.now() });
    assert.equal(ca.calls, 2);
  });

  test('keeps the last good bundle when the bundle source fails, and reports it', async () => {
    const { rotator } = start({ bundleRefreshMs: 60_000 });
    await nextEvent(rotator, 'update');
    bundles.failure = new Error('root-cert.pem vanished');
    const reported = nextEvent(rotator, 'error', (e) => e.kind === 'bundle');
    clock.advance(60_000);
    assert.match((await reported).error.message, /vanished/);
    assert.equal(rotator.getX509BundleForTrustDomain(TD), mesh.bundle);
    // A rotation still succeeds against the last good bundle.
    const rotated = nextEvent(rotator, 'update');
    clock.advanceTo(rotator.nextRotationAt!);
    await rotated;
  });

  test('refuses a bundle for another trust domain', async () => {
    const foreign = await createTestMeshCa({ clock, tokenIssuer, trustDomain: 'example.org' });
    bundles.bundle = foreign.bundle;
    const { rotator } = start();
    assertCode((await nextEvent(rotator, 'error')).error, 'ERR_BUNDLE_INVALID', 'trust-domain');
    assert.equal(rotator.getX509BundleForTrustDomain(TD), undefined);
  });

  test('stops on abort and on close; a closed source hands out nothing', async () => {
    const controller = new AbortController();
    const rotator = new SvidRotator({ trustDomain: TD, caClient: ca, tokenSource: tokens, bundleSource: bundles, clock, bundleRefreshMs: 0 });
    const done = rotator.run(controller.signal);
    await nextEvent(rotator, 'update');
    await assert.rejects(rotator.run(), TypeError, 'a second run() is refused');
    controller.abort();
    await done;
    assert.equal(clock.pendingTimers, 0, 'no timers left behind');
    assert.ok(rotator.getX509Svid(), 'stopping is not closing');
    await rotator.close();
    assert.throws(() => rotator.getX509Svid(), (err: unknown) => {
      assertCode(err, 'ERR_CA_NOT_READY', 'closed');
      return true;
    });
    await assert.rejects(rotator.waitForSvid(), (err: unknown) => {
      assertCode(err, 'ERR_CA_NOT_READY', 'closed');
      return true;
    });
  });

  test('close() during a CA call aborts it and resolves run()', async () => {
    let called: () => void = () => undefined;
    const calledOnce = new Promise<void>((resolve) => (called = resolve));
    const hanging: CaClient = {
      createCertificate: (request) =>
        new Promise((_resolve, reject) => {
          called();
          request.signal?.addEventListener('abort', () => reject(request.signal?.reason));
        }),
    };
    const { rotator, done } = start({ caClient: hanging });
    const errors: unknown[] = [];
    rotator.on('error', (e) => errors.push(e));
    await calledOnce;
    await rotator.close();
    await done;
    assert.deepEqual(errors, [], 'an abort is not a rotation failure');
  });

  test('drops a CA answer that arrives after close()', async () => {
    let release: () => void = () => undefined;
    const calledOnce = new Promise<void>((resolve) => {
      release = resolve;
    });
    let answer: () => void = () => undefined;
    const late: CaClient = {
      createCertificate: (request) =>
        new Promise((resolve, reject) => {
          answer = () => void ca.createCertificate(request).then(resolve, reject);
          release();
        }),
    };
    const { rotator, done } = start({ caClient: late });
    const updates: unknown[] = [];
    rotator.on('update', (u) => updates.push(u));
    await calledOnce;
    const closing = rotator.close();
    answer();
    await closing;
    await done;
    assert.deepEqual(updates, []);
  });

  test('one throwing listener does not stop others or the rotation', async () => {
    const { rotator } = start();
    rotator.on('update', () => {
      throw new Error('consumer bug');
    });
    const seen = nextEvent(rotator, 'update');
    await seen;
    assert.ok(rotator.nextRotationAt, 'the next rotation is scheduled');
    const renewed = nextEvent(rotator, 'update');
    clock.advanceTo(rotator.nextRotationAt);
    await renewed;
    assert.equal(ca.calls, 2);
  });
});
