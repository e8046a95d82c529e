import { strict as assert } from 'node:assert';
import { EventEmitter, once } from 'node:events';
import { describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { X509Bundle, X509BundleSet, parseTrustDomain } from '../../src/spiffe/index.js';
import { createHttpsServer, createMtlsAgent, createStaticX509Source, getPeerSpiffeId } from '../../src/tls/index.js';
import { createTestRoot } from '../helpers/test-ca.js';
import type { TestDomain } from './tls-fixtures.js';
import { allowId, closeServer, createTestSvid, get, listen, localCertificateFingerprint } from './tls-fixtures.js';

const td = parseTrustDomain('a.test');
const oldRoot = await createTestRoot({ trustDomain: 'a.test' });
const newRoot = await createTestRoot({ trustDomain: 'a.test' });
const oldDomain: TestDomain = { name: 'a.test', root: oldRoot, bundle: new X509Bundle(td, [oldRoot.cert]) };
const newDomain: TestDomain = { name: 'a.test', root: newRoot, bundle: new X509Bundle(td, [newRoot.cert]) };
const both = (): X509BundleSet => new X509BundleSet([new X509Bundle(td, [oldRoot.cert, newRoot.cert])]);
const only = (domain: TestDomain): X509BundleSet => new X509BundleSet([domain.bundle]);

const oldServer = await createTestSvid(oldDomain, '/server');
const newServer = await createTestSvid(newDomain, '/server');
const oldClient = await createTestSvid(oldDomain, '/client');
const newClient = await createTestSvid(newDomain, '/client');

interface Result {
  readonly worker: number;
  /** Rotation step in force when the request started. */
  readonly step: number;
  readonly ok: boolean;
  readonly serverCert?: string;
  readonly detail?: string;
}

describe('rotation under load', () => {
  it('rotates the server SVID and the bundles with zero failed kept-alive or fresh requests', async () => {
    const serverSource = createStaticX509Source({ svid: oldServer.svid, bundles: only(oldDomain) });
    const clientSource = createStaticX509Source({ svid: oldClient.svid, bundles: only(oldDomain) });
    const server = createHttpsServer(serverSource, {}, (request, response) => {
      response.setHeader('x-server-cert', localCertificateFingerprint(request.socket as TLSSocket));
      response.end(getPeerSpiffeId(request).toString());
    });
    let contextBuilds = 0;
    const setSecureContext = server.setSecureContext.bind(server);
    server.setSecureContext = (options) => {
      contextBuilds++;
      setSecureContext(options);
    };
    const port = await listen(server);

    const authorizer = allowId('spiffe://a.test/server');
    const keptAlive = createMtlsAgent(clientSource, { authorizer, agentOptions: { keepAlive: true, maxSockets: 2 } });
    const fresh = createMtlsAgent(clientSource, { authorizer, agentOptions: { keepAlive: false } });
    const workers = [keptAlive, keptAlive, fresh, fresh];
    const results: Result[] = [];
    const progress = new EventEmitter();
    let step = 0;
    let stopped = false;
    const MAX_PER_WORKER = 1_000; // a bound, so a bug cannot spin forever

    const work = async (worker: number): Promise<void> => {
      for (let i = 0; i < MAX_PER_WORKER && !stopped; i++) {
        const startedAt = step;
        const outcome = await get(port, workers[worker]!);
        const ok = outcome.status === 200 && outcome.body === 'spiffe://a.test/client';
        results.push({
          worker,
          step: startedAt,
          ok,
          serverCert: String(outcome.headers?.['x-server-cert'] ?? ''),
          ...(ok ? {} : { detail: outcome.error?.message ?? `${outcome.status} ${outcome.body}` }),
        });
        progress.emit('result');
      }
    };

    /** Resolves once every worker finished `count` requests that started at the current step. */
    const settle = async (count: number): Promise<void> => {
      const done = (): boolean =>
        workers.every((_, w) => results.filter((r) => r.worker === w && r.step === step).length >= count);
      while (!done()) await once(progress, 'result');
    };

    const load = Promise.all(workers.map((_, w) => work(w)));
    const steps: ReadonlyArray<() => void> = [
      // 1. Both sides learn the new root before anything is signed by it.
      () => {
        serverSource.set({ bundles: both() });
        clientSource.set({ bundles: both() });
      },
      // 2. Both SVIDs switch to the new root.
      () => {
        serverSource.set({ svid: newServer.svid });
        clientSource.set({ svid: newClient.svid });
      },
      // 3. The old root is withdrawn.
      () => {
        serverSource.set({ bundles: only(newDomain) });
        clientSource.set({ bundles: only(newDomain) });
      },
    ];
    try {
      await settle(10);
      for (const apply of steps) {
        apply();
        step++;
        await settle(10);
      }
      stopped = true;
      await load;
    } finally {
      stopped = true;
      keptAlive.destroy();
      fresh.destroy();
      await closeServer(server);
    }

    const failures = results.filter((r) => !r.ok);
    assert.deepEqual(failures, [], `${failures.length} of ${results.length} requests failed`);
    assert.ok(results.length >= 4 * 10 * 4);
    assert.equal(contextBuilds, 3, 'one secure context per server-side update, none per connection');
    const oldFp = oldServer.leaf.cert.fingerprint256;
    const newFp = newServer.leaf.cert.fingerprint256;
    const freshAfter = results.filter((r) => r.worker >= 2 && r.step >= 2);
    assert.ok(freshAfter.every((r) => r.serverCert === newFp), 'fresh connections get the rotated certificate');
    const keptAfter = results.filter((r) => r.worker < 2 && r.step === 3);
    assert.ok(
      keptAfter.some((r) => r.serverCert === oldFp),
      'connections opened before the rotation keep working on their old certificate',
    );
  });
});
