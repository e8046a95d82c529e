import { strict as assert } from 'node:assert';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { AuthzDeniedError } from '../../src/errors.js';
import { fastifyMtls } from '../../src/transport/http/fastify-mtls.js';
import type { FastifyMtlsOptions } from '../../src/transport/http/fastify-mtls.js';
import { createHttpsServer, createMtlsAgent, createStaticX509Source } from '../../src/tls/index.js';
import { allowId, bundleSet, createTestDomain, createTestSvid, get } from './tls-fixtures.js';

const domain = await createTestDomain('a.test');
const bundles = bundleSet(domain);
const serverSource = createStaticX509Source({ svid: (await createTestSvid(domain, '/server')).svid, bundles });
const clientSource = createStaticX509Source({ svid: (await createTestSvid(domain, '/client')).svid, bundles });
const denied = createStaticX509Source({ svid: (await createTestSvid(domain, '/denied')).svid, bundles });
const refused = createStaticX509Source({ svid: (await createTestSvid(domain, '/refused')).svid, bundles });
const asyncDenied = createStaticX509Source({ svid: (await createTestSvid(domain, '/async-denied')).svid, bundles });

async function startApp(options: FastifyMtlsOptions): Promise<{ app: FastifyInstance; port: number }> {
  const app = Fastify({ serverFactory: (handler) => createHttpsServer(serverSource, {}, handler) });
  await app.register(fastifyMtls, options);
  app.get('/whoami', async (request) => ({ peer: request.peerSpiffeId.toString() }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, port: (app.server.address() as AddressInfo).port };
}

describe('fastifyMtls', () => {
  let authorizeCalls = 0;
  let app: FastifyInstance;
  let port = 0;
  before(async () => {
    ({ app, port } = await startApp({
      authorize: (request) => {
        authorizeCalls++;
        const peer = request.peerSpiffeId.toString();
        if (peer === 'spiffe://a.test/denied') throw new AuthzDeniedError(`${peer} may not call ${request.url}`);
        if (peer === 'spiffe://a.test/async-denied') return Promise.resolve(false);
        return peer !== 'spiffe://a.test/refused';
      },
    }));
  });
  after(() => app.close());

  const call = async (source: typeof clientSource): Promise<Awaited<ReturnType<typeof get>>> => {
    const agent = createMtlsAgent(source, { authorizer: allowId('spiffe://a.test/server') });
    try {
      return await get(port, agent, '/whoami');
    } finally {
      agent.destroy();
    }
  };

  it('sets request.peerSpiffeId from the verified connection', async () => {
    const outcome = await call(clientSource);
    assert.equal(outcome.status, 200);
    assert.deepEqual(JSON.parse(outcome.body!), { peer: 'spiffe://a.test/client' });
  });

  it('answers 403 ERR_AUTHZ_DENIED with the message when authorize throws AuthzDeniedError', async () => {
    const outcome = await call(denied);
    assert.equal(outcome.status, 403);
    assert.deepEqual(JSON.parse(outcome.body!), {
      error: { code: 'ERR_AUTHZ_DENIED', message: 'spiffe://a.test/denied may not call /whoami' },
    });
  });

  it('answers 403 ERR_AUTHZ_DENIED when authorize returns false, synchronously or not', async () => {
    for (const source of [refused, asyncDenied]) {
      const outcome = await call(source);
      assert.equal(outcome.status, 403);
      assert.equal(JSON.parse(outcome.body!).error.code, 'ERR_AUTHZ_DENIED');
    }
  });

  it('runs authorize on every request of a kept-alive connection', async () => {
    const agent = createMtlsAgent(clientSource, {
      authorizer: allowId('spiffe://a.test/server'),
      agentOptions: { keepAlive: true, maxSockets: 1 },
    });
    const before = authorizeCalls;
    for (let i = 0; i < 5; i++) assert.equal((await get(port, agent, '/whoami')).status, 200);
    agent.destroy();
    assert.equal(authorizeCalls - before, 5);
  });

  it('fails closed with 401 for a request that has no TLS peer (inject)', async () => {
    const response = await app.inject({ method: 'GET', url: '/whoami' });
    assert.equal(response.statusCode, 401);
    assert.equal(response.json().error.code, 'ERR_SVID_UNTRUSTED');
  });

  it('refuses to register on a server that is not guarded by meshca/tls', async () => {
    const plain = Fastify();
    await assert.rejects(async () => {
      await plain.register(fastifyMtls, {});
      await plain.ready();
    }, TypeError);
    await plain.close();
  });
});
