/**
 * Compromise drill: the old root is distrusted right after a rotation (prepare + activate), not
 * retired on schedule. Once the shrunken bundle reaches helloworld's source, a client still
 * holding an unexpired SVID signed by the old root is refused at the handshake, while a client
 * with a new-root SVID is served. The agents, whose SVIDs still chained to the old root, renew
 * on the bundle change itself instead of waiting out their 1 h lifetime.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuthorityRotation } from '../../src/ca/authority-rotation.js';
import type { RunningAgent } from '../../src/cmd/agent-command.js';
import { createFileAuthorityStore } from '../../src/files/authority-slots.js';
import { createCsr } from '../../src/pki/csr.js';
import { authorizeId } from '../../src/policy/index.js';
import { mustParseSpiffeId } from '../../src/spiffe/spiffe-id.js';
import { parseTrustDomain } from '../../src/spiffe/trust-domain.js';
import { parseX509BundlePem, X509Bundle, X509BundleSet } from '../../src/spiffe/x509-bundle.js';
import { parseX509Svid, verifyX509Svid, type X509Svid } from '../../src/spiffe/x509-svid.js';
import { createHttpsServer, createMtlsAgent, createStaticX509Source, getPeerSpiffeId } from '../../src/tls/index.js';
import { chainsTo, mtlsGet, startHelloAndSleep, stopAll, trusts, waitUntil } from '../helpers/agent-harness.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';

const TD = parseTrustDomain('cluster.local');
const SLEEP = mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
const HELLO = mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/helloworld');

describe('compromise drill: distrust the old root right after activation', () => {
  let dir: string;
  let ca: TestCa;
  let hello: RunningAgent;
  let sleep: RunningAgent;
  let server: Server;
  let port: number;
  const handled: string[] = [];

  /** An SVID for sleep straight from the CA, with a lifetime that outlasts the drill. */
  async function issueSleepSvid(ttlSeconds: number): Promise<X509Svid> {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const csr = createCsr(privateKey, { uris: [SLEEP.toString()] }).pem;
    const response = await ca.createCertificate({ csr, validity_duration: ttlSeconds }, await ca.mint({ serviceAccount: 'sleep' }));
    return parseX509Svid(response.cert_chain.join(''), privateKey);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-drill-'));
    ca = await startTestCa({ signingWorkers: '0' });
    // 1 h SVIDs: nothing renews on schedule during the drill.
    const agentOptions = { dir, trustDomain: TD.name, svidTtl: '1h', bundleRefresh: '1s' } as const;
    ({ hello, sleep } = await startHelloAndSleep(ca, agentOptions));
    server = createHttpsServer(hello.rotator, { authorizer: authorizeId(SLEEP) }, (req, res) => {
      handled.push(getPeerSpiffeId(req).toString());
      res.writeHead(200, { 'content-type': 'text/plain' }).end('hello\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(() => stopAll({ server, agents: [hello, sleep], ca, dir }));

  test('an old-root SVID is refused at the handshake once the new bundle reaches the server; a new-root SVID is served', async () => {
    const oldRoot = parseX509BundlePem(TD, ca.rootPem).authorities[0]!;
    const staleSvid = await issueSleepSvid(3600);
    verifyX509Svid(staleSvid.certificates, new X509Bundle(TD, [oldRoot]), { now: new Date() });
    const sleepSvidBefore = sleep.rotator.getX509Svid();
    const rotation = new AuthorityRotation({ store: createFileAuthorityStore(ca.dataDir), trustDomain: TD });

    const prepared = await rotation.prepare({ now: new Date() });
    const newFingerprint = prepared.added[0]!.fingerprint;
    await waitUntil([hello.rotator, sleep.rotator], () => trusts(hello.rotator, TD, newFingerprint) && trusts(sleep.rotator, TD, newFingerprint), 'both agents to trust the new root');
    const newRoot = hello.rotator.getX509BundleForTrustDomain(TD)!.authorities.find((c) => c.fingerprint256 === newFingerprint)!;
    await rotation.activate({ now: new Date() });

    // The stale client trusts both roots (it saw the prepared bundle) and holds an old-root SVID.
    const stale = createStaticX509Source({ svid: staleSvid, bundles: new X509BundleSet([sleep.rotator.getX509BundleForTrustDomain(TD)!]) });
    const staleAgent = createMtlsAgent(stale, { authorizer: authorizeId(HELLO), agentOptions: { keepAlive: false } });
    const currentAgent = createMtlsAgent(sleep.rotator, { authorizer: authorizeId(HELLO), agentOptions: { keepAlive: false } });
    try {
      assert.equal((await mtlsGet(staleAgent, port)).status, 200, 'before the distrust an old-root SVID is still good');

      const distrustedAt = new Date();
      const result = await rotation.distrust(oldRoot.fingerprint256, { now: distrustedAt });
      assert.deepEqual(result.removed.map((r) => r.fingerprint), [oldRoot.fingerprint256]);
      assert.deepEqual(result.bundle.map((r) => r.fingerprint), [newFingerprint]);

      // The agents re-read root-cert.pem every second; their old-root SVIDs no longer verify
      // against it, so they renew at once (from the new root, which the CA now signs with).
      await waitUntil(
        [hello.rotator, sleep.rotator],
        () =>
          !trusts(hello.rotator, TD, oldRoot.fingerprint256) &&
          !trusts(sleep.rotator, TD, oldRoot.fingerprint256) &&
          chainsTo(hello.rotator, TD, newRoot) &&
          chainsTo(sleep.rotator, TD, newRoot),
        'the shrunken bundle to reach both agents and both to renew from the new root',
      );
      const renewed = sleep.rotator.getX509Svid();
      assert.notEqual(renewed, sleepSvidBefore);
      assert.ok(renewed.notAfter.getTime() - distrustedAt.getTime() > 3500_000, 'renewed on the bundle change, not on schedule');

      // The stale SVID has most of its hour left: only the distrust can explain a refusal.
      assert.ok(staleSvid.notAfter.getTime() > Date.now() + 3000_000);
      const before = handled.length;
      await assert.rejects(mtlsGet(staleAgent, port), (err: NodeJS.ErrnoException) => {
        assert.match(err.code ?? '', /^(ECONNRESET|EPIPE|ERR_SSL_.*ALERT.*)$/, String(err));
        return true;
      });
      assert.equal(handled.length, before, 'no request from the stale client reached the handler');

      const ok = await mtlsGet(currentAgent, port);
      assert.equal(ok.status, 200);
      assert.equal(handled.at(-1), SLEEP.toString());
    } finally {
      staleAgent.destroy();
      currentAgent.destroy();
    }
  });
});
