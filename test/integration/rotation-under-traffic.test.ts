/**
 * A full CA rotation (prepare → activate → retire) while sleep calls helloworld over mTLS without
 * pause, on fresh connections and on a kept-alive one. Everything is real: the CA runtime
 * (startTestCa) follows its data directory, two agents (startAgent) re-read root-cert.pem every
 * second and renew 30 s SVIDs about every 10 s, and the TLS endpoints take their material
 * straight from the agents' rotators. Not one request or handshake may fail.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile } from 'node:fs/promises';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuthorityRotation } from '../../src/ca/authority-rotation.js';
import type { RunningAgent } from '../../src/cmd/agent-command.js';
import { createFileAuthorityStore } from '../../src/files/authority-slots.js';
import { authorizeId } from '../../src/policy/index.js';
import { mustParseSpiffeId } from '../../src/spiffe/spiffe-id.js';
import { parseTrustDomain } from '../../src/spiffe/trust-domain.js';
import { parseX509BundlePem } from '../../src/spiffe/x509-bundle.js';
import { verifyX509Svid } from '../../src/spiffe/x509-svid.js';
import { createHttpsServer, createMtlsAgent, getPeerIdentity } from '../../src/tls/index.js';
import { chainsTo, mtlsGet, startHelloAndSleep, stopAll, trusts, waitUntil } from '../helpers/agent-harness.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';

const TD = parseTrustDomain('cluster.local');
const SLEEP = mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
const HELLO = mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/helloworld');
/** Pacing between requests of one lane, so two cores can also run the CA and two agents. */
const PACE_MS = 20;
/** Hard bound on the traffic, whatever happens to the rotation. */
const MAX_TRAFFIC_MS = 50_000;

interface LaneStats {
  ok: number;
  reused: number;
  readonly failures: string[];
  /** Root fingerprint each successful request's client SVID chained to, as helloworld saw it. */
  readonly anchors: string[];
}

describe('CA rotation under continuous mTLS traffic', () => {
  let dir: string;
  let ca: TestCa;
  let hello: RunningAgent;
  let sleep: RunningAgent;
  let server: Server;
  let port: number;
  const serverRejections: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-rotation-'));
    ca = await startTestCa({ signingWorkers: '0' });
    const agentOptions = { dir, trustDomain: TD.name, svidTtl: '30s', bundleRefresh: '1s' } as const;
    ({ hello, sleep } = await startHelloAndSleep(ca, agentOptions));
    server = createHttpsServer(
      hello.rotator,
      {
        authorizer: authorizeId(SLEEP),
        onPeerRejected: (err) => serverRejections.push(`SPIFFE check: ${err.message}`),
        serverOptions: { keepAliveTimeout: 30_000 },
      },
      (req, res) => {
        // Reply with the root the client's SVID chained to, so the test sees the switch-over.
        const anchor = getPeerIdentity(req).verifiedChain.at(-1)!.fingerprint256;
        res.writeHead(200, { 'content-type': 'text/plain' }).end(anchor);
      },
    );
    server.on('tlsClientError', (err) => serverRejections.push(`TLS: ${err.message}`));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(() => stopAll({ server, agents: [hello, sleep], ca, dir }));

  test('prepare → activate → retire with zero failed requests or handshakes; the final SVIDs chain to the new root', async () => {
    const oldRoot = parseX509BundlePem(TD, ca.rootPem).authorities[0]!;
    const fresh = createMtlsAgent(sleep.rotator, { authorizer: authorizeId(HELLO), agentOptions: { keepAlive: false } });
    const kept = createMtlsAgent(sleep.rotator, { authorizer: authorizeId(HELLO), agentOptions: { keepAlive: true, maxSockets: 1 } });
    const lanes: Record<'fresh' | 'kept', LaneStats> = {
      fresh: { ok: 0, reused: 0, failures: [], anchors: [] },
      kept: { ok: 0, reused: 0, failures: [], anchors: [] },
    };
    let stop = false;
    const deadline = Date.now() + MAX_TRAFFIC_MS;
    const drive = async (agent: typeof fresh, stats: LaneStats): Promise<void> => {
      while (!stop && Date.now() < deadline) {
        try {
          const res = await mtlsGet(agent, port, '/hello');
          if (res.status === 200) {
            stats.ok += 1;
            if (res.reused) stats.reused += 1;
            stats.anchors.push(res.body);
          } else {
            stats.failures.push(`HTTP ${res.status}: ${res.body}`);
          }
        } catch (err) {
          stats.failures.push(`${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`);
        }
        await new Promise((resolve) => setTimeout(resolve, PACE_MS));
      }
    };
    /** Resolves once each lane has completed `n` more successful requests. */
    const moreTraffic = async (n: number): Promise<void> => {
      const target = { fresh: lanes.fresh.ok + n, kept: lanes.kept.ok + n };
      while (!(lanes.fresh.ok >= target.fresh && lanes.kept.ok >= target.kept)) {
        if (Date.now() > deadline) throw new Error('traffic bound reached');
        await new Promise((resolve) => setTimeout(resolve, PACE_MS));
      }
    };
    const traffic = Promise.all([drive(fresh, lanes.fresh), drive(kept, lanes.kept)]);
    const timings: Record<string, number> = {};
    const started = Date.now();
    try {
      await moreTraffic(5);
      const rotation = new AuthorityRotation({ store: createFileAuthorityStore(ca.dataDir), trustDomain: TD });

      // 1. prepare: the new root enters the bundle and signs nothing yet.
      const prepared = await rotation.prepare({ now: new Date() });
      assert.equal(prepared.added.length, 1);
      const newFingerprint = prepared.added[0]!.fingerprint;
      await waitUntil([hello.rotator, sleep.rotator], () => trusts(hello.rotator, TD, newFingerprint) && trusts(sleep.rotator, TD, newFingerprint), 'both agents to trust the new root');
      timings['prepared→propagated'] = Date.now() - started;
      const newRoot = hello.rotator.getX509BundleForTrustDomain(TD)!.authorities.find((c) => c.fingerprint256 === newFingerprint)!;
      await moreTraffic(5);

      // 2. activate: the CA (following its data directory) signs with the new authority; the
      // agents pick it up at their next renewal (30 s SVIDs renew about every 10 s).
      const activated = await rotation.activate({ now: new Date() });
      assert.equal(activated.activeRoot.fingerprint, newFingerprint);
      await waitUntil(
        [hello.rotator, sleep.rotator],
        () => chainsTo(hello.rotator, TD, newRoot) && chainsTo(sleep.rotator, TD, newRoot),
        'both agents to hold SVIDs from the new root',
        35_000,
      );
      timings['activated→renewed'] = Date.now() - started;
      await moreTraffic(5);

      // 3. retire: no SVID from the old root is left in use, so drop it now (force: its
      // trustUntil, activation + max TTL, is days away).
      const retired = await rotation.retire({ now: new Date(), force: true });
      assert.deepEqual(retired.removed.map((r) => r.fingerprint), [oldRoot.fingerprint256]);
      await waitUntil(
        [hello.rotator, sleep.rotator],
        () => !trusts(hello.rotator, TD, oldRoot.fingerprint256) && !trusts(sleep.rotator, TD, oldRoot.fingerprint256),
        'both agents to drop the old root',
      );
      timings['retired→propagated'] = Date.now() - started;
      const freshBeforeTail = lanes.fresh.anchors.length;
      await moreTraffic(10);

      stop = true;
      await traffic;
      const total = lanes.fresh.ok + lanes.kept.ok;
      const failures = [...lanes.fresh.failures, ...lanes.kept.failures];
      const elapsed = Date.now() - started;
      console.log(`rotation under traffic: ${total} requests (${lanes.fresh.ok} fresh, ${lanes.kept.ok} kept-alive, ${lanes.kept.reused} reused) in ${elapsed} ms; ${JSON.stringify(timings)}`);

      assert.deepEqual(failures, [], 'no request failed');
      assert.deepEqual(serverRejections, [], 'no handshake was refused by helloworld');
      assert.ok(lanes.kept.reused > 0, 'the kept-alive lane reused its connection');
      // Traffic ran on both sides of the switch: client SVIDs from the old root, then the new.
      assert.ok(lanes.fresh.anchors.includes(oldRoot.fingerprint256));
      assert.ok(lanes.fresh.anchors.includes(newFingerprint));
      assert.ok(lanes.fresh.anchors.slice(freshBeforeTail).every((a) => a === newFingerprint), 'after retire every new connection is new-root');

      // The end state: one root, and both agents' SVIDs chain to it.
      for (const rotator of [hello.rotator, sleep.rotator]) {
        const bundle = rotator.getX509BundleForTrustDomain(TD)!;
        assert.deepEqual(bundle.authorities.map((c) => c.fingerprint256), [newFingerprint]);
        verifyX509Svid(rotator.getX509Svid().certificates, bundle, { now: new Date() });
      }
      const published = parseX509BundlePem(TD, await readFile(join(ca.dataDir, 'root-cert.pem'), 'utf8'));
      assert.deepEqual(published.authorities.map((c) => c.fingerprint256), [newFingerprint], 'root-cert.pem holds the new root alone');
    } finally {
      stop = true;
      await traffic;
      fresh.destroy();
      kept.destroy();
    }
  });
});
