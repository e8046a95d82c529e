import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import * as https from 'node:https';
import { after, before, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import type { IdentityError } from '../../src/errors.js';
import { parseX509Svid } from '../../src/spiffe/index.js';
import type { SpiffeId } from '../../src/spiffe/index.js';
import {
  connect,
  createHttpsServer,
  createMtlsAgent,
  createMtlsClientOptions,
  createStaticX509Source,
  getPeerSpiffeId,
} from '../../src/tls/index.js';
import type { Authorizer, X509Source } from '../../src/tls/index.js';
import { createTestLeaf } from '../helpers/test-ca.js';
import { allowId, bundleSet, closeServer, createTestDomain, createTestSvid, get, listen } from './tls-fixtures.js';

const HOUR = 3_600_000;
const domainA = await createTestDomain('a.test');
const domainB = await createTestDomain('b.test');
const strangers = await createTestDomain('a.test');
const bundles = bundleSet(domainA, domainB);
const clientSvid = await createTestSvid(domainA, '/client');
const clientSource = createStaticX509Source({ svid: clientSvid.svid, bundles });

/** An echo server presenting `svid`, accepting any client verified against `bundles`. */
function echoServer(source: X509Source): https.Server {
  return createHttpsServer(source, {}, (request, response) => {
    response.setHeader('x-tls-protocol', String((request.socket as TLSSocket).getProtocol()));
    response.end(getPeerSpiffeId(request).toString());
  });
}

async function serverPresenting(leafPem: string, keyPem: string): Promise<{ server: https.Server; port: number }> {
  const server = echoServer(createStaticX509Source({ svid: parseX509Svid(leafPem, keyPem), bundles }));
  return { server, port: await listen(server) };
}

/** Counts calls, then allows only `expected`. */
function countingAllow(expected: string): Authorizer & { calls: number } {
  const authorizer = Object.assign((peer: SpiffeId) => {
    authorizer.calls++;
    allowId(expected)(peer);
  }, { calls: 0 });
  return authorizer;
}

interface ConnectOutcome {
  readonly socket: TLSSocket;
  readonly error?: IdentityError & NodeJS.ErrnoException;
}

function connectOutcome(socket: TLSSocket): Promise<ConnectOutcome> {
  return new Promise((resolve) => {
    socket.once('secureConnect', () => resolve({ socket }));
    socket.once('error', (error: IdentityError & NodeJS.ErrnoException) => resolve({ socket, error }));
  });
}

const serverSvid = await createTestSvid(domainA, '/server');

describe('mTLS clients', () => {
  const serverSource = createStaticX509Source({ svid: serverSvid.svid, bundles });
  const server = echoServer(serverSource);
  let port = 0;
  before(async () => {
    port = await listen(server);
  });
  after(() => closeServer(server));

  it('connect() verifies the server by SPIFFE ID and exposes it on the socket', async () => {
    const { socket, error } = await connectOutcome(connect(clientSource, { host: '127.0.0.1', port, authorizer: allowId('spiffe://a.test/server') }));
    assert.equal(error, undefined);
    assert.equal(getPeerSpiffeId(socket).toString(), 'spiffe://a.test/server');
    socket.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    socket.setEncoding('utf8');
    let response = '';
    socket.on('data', (chunk: string) => (response += chunk));
    await once(socket, 'end');
    assert.match(response, /spiffe:\/\/a\.test\/client$/);
  });

  it('connect() fails with ERR_AUTHZ_DENIED when the server is not the expected identity', async () => {
    const { error } = await connectOutcome(connect(clientSource, { host: '127.0.0.1', port, authorizer: allowId('spiffe://a.test/billing') }));
    assert.equal(error?.code, 'ERR_AUTHZ_DENIED');
  });

  it('the agent refuses a server whose identity the authorizer rejects', async () => {
    const agent = createMtlsAgent(clientSource, { authorizer: allowId('spiffe://a.test/billing') });
    const outcome = await get(port, agent);
    agent.destroy();
    assert.equal(outcome.status, undefined);
    assert.equal(outcome.error?.code, 'ERR_AUTHZ_DENIED');
  });

  it('the agent works over TLS 1.2 when told to', async () => {
    const agent = createMtlsAgent(clientSource, { authorizer: allowId('spiffe://a.test/server'), maxVersion: 'TLSv1.2' });
    const outcome = await get(port, agent);
    agent.destroy();
    assert.equal(outcome.status, 200);
    assert.equal(outcome.headers?.['x-tls-protocol'], 'TLSv1.2');
    assert.equal(outcome.body, 'spiffe://a.test/client');
  });

  it('refuses a server certificate from an untrusted CA, even if the request asks not to verify', async () => {
    const stranger = await createTestSvid(strangers, '/server');
    const { server: bad, port: badPort } = await serverPresenting(stranger.leaf.pem, stranger.leaf.keyPem);
    const authorizer = countingAllow('spiffe://a.test/server');
    const agent = createMtlsAgent(clientSource, { authorizer });
    try {
      const outcome = await new Promise<{ error?: NodeJS.ErrnoException; status?: number }>((resolve) => {
        const request = https.get({ host: '127.0.0.1', port: badPort, agent, rejectUnauthorized: false }, (response) => {
          response.resume();
          resolve({ status: response.statusCode! });
        });
        request.on('error', (error: NodeJS.ErrnoException) => resolve({ error }));
      });
      assert.equal(outcome.status, undefined);
      assert.ok(outcome.error?.code, 'expected a verification error');
      assert.equal(authorizer.calls, 0);
    } finally {
      agent.destroy();
      await closeServer(bad);
    }
  });

  it('refuses an expired server certificate', async () => {
    const now = Date.now();
    const expired = await createTestLeaf(domainA.root, {
      uris: ['spiffe://a.test/server'],
      notBefore: new Date(now - 2 * HOUR),
      notAfter: new Date(now - HOUR),
    });
    const { server: bad, port: badPort } = await serverPresenting(expired.pem, expired.keyPem);
    const agent = createMtlsAgent(clientSource, { authorizer: allowId('spiffe://a.test/server') });
    try {
      const outcome = await get(badPort, agent);
      assert.equal(outcome.error?.code, 'CERT_HAS_EXPIRED');
    } finally {
      agent.destroy();
      await closeServer(bad);
    }
  });

  it("refuses a server whose a.test ID was issued by b.test's root (cross-domain forgery)", async () => {
    const forged = await createTestLeaf(domainB.root, { uris: ['spiffe://a.test/server'] });
    const { server: bad, port: badPort } = await serverPresenting(forged.pem, forged.keyPem);
    const authorizer = countingAllow('spiffe://a.test/server');
    const agent = createMtlsAgent(clientSource, { authorizer });
    try {
      const outcome = await get(badPort, agent);
      assert.equal(outcome.error?.code, 'ERR_SVID_UNTRUSTED');
      assert.equal(outcome.error?.rule, 'no-path');
      assert.equal(authorizer.calls, 0);
    } finally {
      agent.destroy();
      await closeServer(bad);
    }
  });

  it('the agent presents the rotated SVID on new connections without being rebuilt', async () => {
    const source = createStaticX509Source({ svid: clientSvid.svid, bundles });
    const agent = createMtlsAgent(source, { authorizer: allowId('spiffe://a.test/server') });
    try {
      assert.equal((await get(port, agent)).body, 'spiffe://a.test/client');
      const rotated = await createTestSvid(domainA, '/client-v2');
      source.set({ svid: rotated.svid });
      assert.equal((await get(port, agent)).body, 'spiffe://a.test/client-v2');
    } finally {
      agent.destroy();
    }
  });
});

describe('createMtlsClientOptions', () => {
  it('shares one secure context until the source rotates', async () => {
    const source = createStaticX509Source({ svid: clientSvid.svid, bundles });
    const authorizer = allowId('spiffe://a.test/server');
    const first = createMtlsClientOptions(source, { authorizer });
    assert.equal(createMtlsClientOptions(source, { authorizer }).secureContext, first.secureContext);
    source.set({ bundles: bundleSet(domainA) });
    assert.notEqual(createMtlsClientOptions(source, { authorizer }).secureContext, first.secureContext);
    assert.equal(first.rejectUnauthorized, true);
  });

  it('throws TypeError without an authorizer or with a TLS version below 1.2', () => {
    assert.throws(() => createMtlsClientOptions(clientSource, {} as never), TypeError);
    assert.throws(
      () => createMtlsClientOptions(clientSource, { authorizer: () => undefined, minVersion: 'TLSv1.1' as never }),
      TypeError,
    );
  });
});
