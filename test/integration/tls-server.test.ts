import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import * as https from 'node:https';
import * as tls from 'node:tls';
import type { DetailedPeerCertificate } from 'node:tls';
import type { IdentityError } from '../../src/errors.js';
import { parseTrustDomain, X509Bundle, X509BundleSet } from '../../src/spiffe/index.js';
import type { SpiffeId } from '../../src/spiffe/index.js';
import {
  createHttpsServer,
  createMtlsAgent,
  createMtlsServerOptions,
  createServer,
  createStaticX509Source,
  enableMtls,
  getPeerIdentity,
  getPeerSpiffeId,
  isMtlsEnabled,
} from '../../src/tls/index.js';
import type { Authorizer, PeerIdentity } from '../../src/tls/index.js';
import { openssl, withPemFiles } from '../helpers/openssl.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { chainPem, createTestIntermediate, createTestLeaf } from '../helpers/test-ca.js';
import {
  allowId,
  bundleSet,
  closeServer,
  createTestDomain,
  createTestSvid,
  get,
  listen,
  rawRequest,
} from './tls-fixtures.js';

const HOUR = 3_600_000;
const domainA = await createTestDomain('a.test');
const domainB = await createTestDomain('b.test');
const strangers = await createTestDomain('a.test'); // same name, a root nobody trusts
const serverSvid = await createTestSvid(domainA, '/server');
const clientSvid = await createTestSvid(domainA, '/client');
const bundles = bundleSet(domainA, domainB);
const serverSource = createStaticX509Source({ svid: serverSvid.svid, bundles });
const clientSource = createStaticX509Source({ svid: clientSvid.svid, bundles });
const trustedCa = domainA.root.pem;

interface Seen {
  readonly id: string;
  readonly identity: PeerIdentity;
}

describe('createHttpsServer', () => {
  const seen: Seen[] = [];
  const rejected: IdentityError[] = [];
  let authorizerCalls = 0;
  // Denies one ID so the server-side authorizer path is covered, allows the rest.
  const notBanned: Authorizer = (peer) => {
    authorizerCalls++;
    if (peer.toString() === 'spiffe://a.test/banned') allowId('spiffe://a.test/someone-else')(peer);
  };
  const server = createHttpsServer(
    serverSource,
    { authorizer: notBanned, onPeerRejected: (err) => rejected.push(err as IdentityError) },
    (request, response) => {
      seen.push({ id: getPeerSpiffeId(request).toString(), identity: getPeerIdentity(request) });
      response.end(getPeerSpiffeId(request).toString());
    },
  );
  let port = 0;
  before(async () => {
    port = await listen(server);
  });
  after(() => closeServer(server));

  const requestsBefore = (): number => seen.length;

  it('serves an allowed client and shows the handler its SPIFFE ID', async () => {
    const agent = createMtlsAgent(clientSource, { authorizer: allowId('spiffe://a.test/server') });
    const outcome = await get(port, agent);
    agent.destroy();
    assert.equal(outcome.error, undefined, outcome.error?.message);
    assert.equal(outcome.status, 200);
    assert.equal(outcome.body, 'spiffe://a.test/client');
    assert.equal(seen.at(-1)!.identity.verifiedChain.at(-1)!.fingerprint256, domainA.root.cert.fingerprint256);
  });

  it('prefers TLS 1.3', async () => {
    const outcome = await rawRequest(port, { cert: clientSvid.leaf.pem, key: clientSvid.leaf.keyPem, ca: trustedCa });
    assert.equal(outcome.protocol, 'TLSv1.3');
    assert.match(outcome.response, /^HTTP\/1\.1 200/);
  });

  it('accepts a client forced to TLS 1.2', async () => {
    const outcome = await rawRequest(port, {
      cert: clientSvid.leaf.pem,
      key: clientSvid.leaf.keyPem,
      ca: trustedCa,
      maxVersion: 'TLSv1.2',
    });
    assert.equal(outcome.protocol, 'TLSv1.2');
    assert.match(outcome.response, /^HTTP\/1\.1 200[\s\S]*spiffe:\/\/a\.test\/client$/);
  });

  it('refuses a TLS 1.1 client during the handshake', async () => {
    const outcome = await rawRequest(port, {
      cert: clientSvid.leaf.pem,
      key: clientSvid.leaf.keyPem,
      minVersion: 'TLSv1',
      maxVersion: 'TLSv1.1',
    });
    assert.equal(outcome.secureConnected, false);
    assert.equal(outcome.response, '');
    assert.ok(outcome.error, 'expected a handshake error');
  });

  it('sends the TLS 1.3 certificate_required alert to a client without a certificate', async () => {
    const count = requestsBefore();
    const outcome = await rawRequest(port, { ca: trustedCa });
    assert.equal(outcome.error?.code, 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
    assert.equal(outcome.response, '');
    assert.equal(seen.length, count);
  });

  it('fails the TLS 1.2 handshake of a client without a certificate', async () => {
    const outcome = await rawRequest(port, { ca: trustedCa, maxVersion: 'TLSv1.2' });
    assert.equal(outcome.secureConnected, false);
    assert.equal(outcome.error?.code, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE');
  });

  it('drops a client whose certificate comes from an untrusted CA before any request', async () => {
    const stranger = await createTestSvid(strangers, '/client');
    const count = requestsBefore();
    const outcome = await rawRequest(port, { cert: stranger.leaf.pem, key: stranger.leaf.keyPem });
    assert.equal(outcome.response, '');
    assert.equal(seen.length, count);
  });

  it('drops a client with an expired certificate before any request', async () => {
    const now = Date.now();
    const expired = await createTestLeaf(domainA.root, {
      uris: ['spiffe://a.test/client'],
      notBefore: new Date(now - 2 * HOUR),
      notAfter: new Date(now - HOUR),
    });
    const count = requestsBefore();
    const outcome = await rawRequest(port, { cert: expired.pem, key: expired.keyPem });
    assert.equal(outcome.response, '');
    assert.equal(seen.length, count);
  });

  // Node's own chain check passes these; only the SPIFFE re-check catches them.
  const spiffeRejections: ReadonlyArray<readonly [string, () => Promise<{ pem: string; keyPem: string }>, string, string]> = [
    [
      'a certificate without a URI SAN',
      () => createTestLeaf(domainA.root, { uris: null, dnsNames: ['client.a.test'] }),
      'ERR_SVID_UNTRUSTED',
      'uri-san-count',
    ],
    [
      'a certificate whose URI SAN is not a SPIFFE ID',
      () => createTestLeaf(domainA.root, { uris: ['https://a.test/client'] }),
      'ERR_SVID_UNTRUSTED',
      'spiffe-id',
    ],
    [
      "an ID of trust domain a.test issued by b.test's root (cross-domain forgery)",
      () => createTestLeaf(domainB.root, { uris: ['spiffe://a.test/admin'] }),
      'ERR_SVID_UNTRUSTED',
      'no-path',
    ],
    [
      'an ID the authorizer denies',
      () => createTestLeaf(domainA.root, { uris: ['spiffe://a.test/banned'] }),
      'ERR_AUTHZ_DENIED',
      '',
    ],
  ];
  for (const [what, make, code, rule] of spiffeRejections) {
    it(`drops a client presenting ${what} before any request (${code}${rule ? ` ${rule}` : ''})`, async () => {
      const leaf = await make();
      const count = requestsBefore();
      const rejections = rejected.length;
      const outcome = await rawRequest(port, { cert: leaf.pem, key: leaf.keyPem, ca: trustedCa });
      assert.equal(outcome.response, '');
      assert.equal(seen.length, count);
      assert.equal(rejected.length, rejections + 1);
      assert.equal(rejected.at(-1)!.code, code);
      if (rule) assert.equal(rejected.at(-1)!.rule, rule);
    });
  }

  it('accepts a client of a federated trust domain, verified against its own bundle', async () => {
    const foreign = await createTestSvid(domainB, '/client');
    const outcome = await rawRequest(port, { cert: foreign.leaf.pem, key: foreign.leaf.keyPem, ca: trustedCa });
    assert.match(outcome.response, /spiffe:\/\/b\.test\/client$/);
  });

  it('verifies and authorizes the peer once per connection, not per request', async () => {
    const agent = createMtlsAgent(clientSource, {
      authorizer: allowId('spiffe://a.test/server'),
      agentOptions: { keepAlive: true, maxSockets: 1 },
    });
    const calls = authorizerCalls;
    const first = seen.length;
    for (let i = 0; i < 20; i++) assert.equal((await get(port, agent)).status, 200);
    agent.destroy();
    assert.equal(authorizerCalls - calls, 1);
    const identities = new Set(seen.slice(first).map((s) => s.identity));
    assert.equal(identities.size, 1, 'every request of the connection reads the same cached identity');
  });

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    it(`never resumes a ${version} session, so every connection is verified afresh`, async () => {
      const options = { cert: clientSvid.leaf.pem, key: clientSvid.leaf.keyPem, ca: trustedCa, maxVersion: version, minVersion: version };
      /** One request; resolves after the server closed, by when any session ticket has arrived. */
      const exchange = (session?: Buffer): Promise<{ session: Buffer | undefined; reused: boolean }> =>
        new Promise((resolve, reject) => {
          let latest: Buffer | undefined;
          let reused = false;
          const socket = tls.connect(
            { host: '127.0.0.1', port, rejectUnauthorized: false, ...options, ...(session ? { session } : {}) },
            () => {
              reused = socket.isSessionReused();
              socket.write('GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n');
            },
          );
          socket.on('session', (value: Buffer) => (latest = value));
          socket.on('error', reject);
          socket.resume();
          socket.on('close', () => resolve({ session: latest ?? socket.getSession(), reused }));
        });
      const first = await exchange();
      const second = await exchange(first.session);
      assert.equal(first.reused, false);
      assert.equal(second.reused, false);
    });
  }

  it('serves openssl s_client presenting the SVID, and alerts it without one', async () => {
    await withPemFiles(
      { cert: clientSvid.leaf.pem, key: clientSvid.leaf.keyPem, ca: trustedCa },
      async (p) => {
        const common = ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', p['ca']!, '-verify_return_error', '-ign_eof'];
        const request = 'GET / HTTP/1.0\r\nhost: test\r\n\r\n';
        const ok = await openssl([...common, '-cert', p['cert']!, '-key', p['key']!], request);
        assert.match(ok.stdout, /HTTP\/1\.1 200 OK/);
        assert.match(ok.stdout, /spiffe:\/\/a\.test\/client/);
        const refused = await openssl(common, request);
        assert.doesNotMatch(refused.stdout, /HTTP\/1\.1 200/);
        assert.match(refused.stdout + refused.stderr, /certificate required/);
      },
    );
  });
});

describe('verification reuse across connections', () => {
  it('verifies a reconnecting SVID again once its trust domain bundle changes', async () => {
    const source = createStaticX509Source({ svid: serverSvid.svid, bundles: bundleSet(domainA, domainB) });
    const rejections: IdentityError[] = [];
    const server = createServer(source, { onPeerRejected: (err) => rejections.push(err as IdentityError) }, (socket) =>
      socket.resume().end(getPeerSpiffeId(socket).toString()),
    );
    const port = await listen(server);
    const client = await createTestSvid(domainA, '/reconnecting');
    const attempt = (): ReturnType<typeof rawRequest> =>
      rawRequest(port, { cert: client.leaf.pem, key: client.leaf.keyPem, ca: trustedCa });
    try {
      assert.equal((await attempt()).response, 'spiffe://a.test/reconnecting');
      assert.equal((await attempt()).response, 'spiffe://a.test/reconnecting');
      // a.test's root now only vouches for b.test: node still trusts the chain (same CA list),
      // but the a.test ID no longer has a path in the a.test bundle.
      source.set({
        bundles: new X509BundleSet([
          new X509Bundle(parseTrustDomain('a.test'), [domainB.root.cert]),
          new X509Bundle(parseTrustDomain('b.test'), [domainA.root.cert]),
        ]),
      });
      assert.equal((await attempt()).response, '');
      assert.equal(rejections.at(-1)?.code, 'ERR_SVID_UNTRUSTED');
    } finally {
      await closeServer(server);
    }
  });

  it('verifies a reconnecting SVID again once it has expired by the server clock', async () => {
    const clock = new ManualClock(new Date());
    const rejections: IdentityError[] = [];
    const server = createServer(
      serverSource,
      { clock, onPeerRejected: (err) => rejections.push(err as IdentityError) },
      (socket) => socket.resume().end('ok'),
    );
    const port = await listen(server);
    const client = await createTestSvid(domainA, '/short-lived');
    const attempt = (): ReturnType<typeof rawRequest> =>
      rawRequest(port, { cert: client.leaf.pem, key: client.leaf.keyPem, ca: trustedCa });
    try {
      assert.equal((await attempt()).response, 'ok');
      clock.advance(2 * HOUR); // past the leaf's notAfter; OpenSSL's wall clock still accepts it
      assert.equal((await attempt()).response, '');
      assert.equal(rejections.at(-1)?.rule, 'expired');
    } finally {
      await closeServer(server);
    }
  });
});

describe('createServer', () => {
  it('hands verified sockets to the connection listener, with the peer ID already cached', async () => {
    const ids: SpiffeId[] = [];
    const server = createServer(serverSource, {}, (socket) => {
      ids.push(getPeerSpiffeId(socket));
      socket.resume(); // drain the client's request so the socket can see its end and close
      socket.end('hello');
    });
    const port = await listen(server);
    try {
      const outcome = await rawRequest(port, { cert: clientSvid.leaf.pem, key: clientSvid.leaf.keyPem, ca: trustedCa });
      assert.equal(outcome.response, 'hello');
      assert.deepEqual(ids.map(String), ['spiffe://a.test/client']);
    } finally {
      await closeServer(server);
    }
  });

  it('never emits secureConnection for a refused peer, whoever listens', async () => {
    const server = createServer(serverSource, { authorizer: allowId('spiffe://a.test/nobody') });
    let emitted = 0;
    server.on('secureConnection', () => emitted++);
    const port = await listen(server);
    try {
      const outcome = await rawRequest(port, { cert: clientSvid.leaf.pem, key: clientSvid.leaf.keyPem, ca: trustedCa });
      assert.equal(outcome.response, '');
      assert.equal(emitted, 0);
    } finally {
      await closeServer(server);
    }
  });

  it("leaves the application's view of the peer chain intact", async () => {
    const intermediate = await createTestIntermediate(domainA.root);
    const viaIntermediate = await createTestLeaf(intermediate, { uris: ['spiffe://a.test/deep'] });
    const depths: number[] = [];
    const server = createServer(serverSource, {}, (socket) => {
      let depth = 0;
      const seen = new Set<object>();
      for (let c: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true); c?.raw && !seen.has(c); c = c.issuerCertificate) {
        seen.add(c);
        depth++;
      }
      depths.push(depth);
      socket.resume().end(getPeerSpiffeId(socket).toString());
    });
    const port = await listen(server);
    try {
      const outcome = await rawRequest(port, {
        cert: chainPem(viaIntermediate, intermediate),
        key: viaIntermediate.keyPem,
        ca: trustedCa,
      });
      assert.equal(outcome.response, 'spiffe://a.test/deep');
      assert.deepEqual(depths, [3], 'leaf, intermediate and root');
    } finally {
      await closeServer(server);
    }
  });

  it('serves RSA SVIDs on both sides', async () => {
    const rsa = await createTestDomain('rsa.test', 'rsa-2048');
    const rsaServer = await createTestSvid(rsa, '/server', { keyAlg: 'rsa-2048' });
    const rsaClient = await createTestSvid(rsa, '/client', { keyAlg: 'rsa-2048' });
    const source = createStaticX509Source({ svid: rsaServer.svid, bundles: bundleSet(rsa) });
    const server = createServer(source, {}, (socket) => socket.resume().end(getPeerSpiffeId(socket).toString()));
    const port = await listen(server);
    try {
      const outcome = await rawRequest(port, { cert: rsaClient.leaf.pem, key: rsaClient.leaf.keyPem, ca: rsa.root.pem });
      assert.equal(outcome.error, undefined);
      assert.equal(outcome.response, 'spiffe://rsa.test/client');
    } finally {
      await closeServer(server);
    }
  });

  it('enableMtls guards a server built elsewhere from createMtlsServerOptions', async () => {
    const server = https.createServer(createMtlsServerOptions(serverSource), (request, response) =>
      response.end(getPeerSpiffeId(request).toString()),
    );
    enableMtls(server, serverSource, { authorizer: allowId('spiffe://a.test/client') });
    assert.ok(isMtlsEnabled(server));
    assert.throws(() => enableMtls(server, serverSource), TypeError);
    const port = await listen(server);
    try {
      const allowed = await rawRequest(port, { cert: clientSvid.leaf.pem, key: clientSvid.leaf.keyPem, ca: trustedCa });
      assert.match(allowed.response, /spiffe:\/\/a\.test\/client$/);
      const other = await createTestSvid(domainA, '/other');
      const refused = await rawRequest(port, { cert: other.leaf.pem, key: other.leaf.keyPem, ca: trustedCa });
      assert.equal(refused.response, '');
    } finally {
      await closeServer(server);
    }
  });

  it('throws TypeError for a TLS floor below 1.2 or a non-source', () => {
    assert.throws(() => createServer(serverSource, { minVersion: 'TLSv1.1' as never }), TypeError);
    assert.throws(() => createServer({} as never), TypeError);
  });
});
