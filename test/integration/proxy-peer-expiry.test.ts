/**
 * A client's identity must hold for the whole of a kept-alive connection, not only for its
 * handshake: the inbound proxy closes a connection when the client's certificate expires or
 * its root leaves the bundle, and refuses the request that would come after.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../src/log.js';
import { createInboundProxy, type InboundProxy } from '../../src/sidecar/inbound-proxy.js';
import { createStaticX509Source, type StaticX509Source } from '../../src/tls/index.js';
import { X509BundleSet } from '../../src/spiffe/index.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { bundleSet, createTestDomain, createTestSvid, type TestDomain, type TestSvid } from './tls-fixtures.js';

const MINUTE = 60_000;

interface Client {
  readonly socket: tls.TLSSocket;
  /** Sends one keep-alive GET and resolves with the response head and body text. */
  get(path: string): Promise<string>;
  readonly closed: Promise<void>;
}

async function openClient(port: number, svid: TestSvid, domain: TestDomain): Promise<Client> {
  const socket = tls.connect({ port, host: '127.0.0.1', cert: svid.leaf.pem, key: svid.leaf.keyPem, ca: domain.root.pem, checkServerIdentity: () => undefined });
  await once(socket, 'secureConnect');
  let buffer = '';
  let waiting: ((text: string) => void) | undefined;
  socket.on('data', (d: Buffer) => {
    buffer += d.toString('latin1');
    const end = buffer.indexOf('\r\n\r\n');
    const length = Number(/content-length: (\d+)/i.exec(buffer)?.[1] ?? NaN);
    if (end !== -1 && buffer.length >= end + 4 + length && waiting) {
      const text = buffer.slice(0, end + 4 + length);
      buffer = buffer.slice(end + 4 + length);
      const w = waiting;
      waiting = undefined;
      w(text);
    }
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined);
  return {
    socket,
    closed,
    get: (path) =>
      new Promise((resolve, reject) => {
        waiting = resolve;
        socket.once('close', () => reject(new Error('connection closed')));
        socket.write(`GET ${path} HTTP/1.1\r\nHost: helloworld\r\n\r\n`);
      }),
  };
}

describe('inbound proxy: a peer is re-judged for the life of its connection', () => {
  let domain: TestDomain;
  let app: http.Server;
  let appPort: number;
  const seen: string[] = [];

  before(async () => {
    domain = await createTestDomain('cluster.local');
    app = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      if (req.url === '/slow') setTimeout(() => res.end('slow\n'), 300);
      else res.end('hello\n');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    appPort = (app.address() as AddressInfo).port;
  });

  after(() => new Promise<void>((r) => app.close(() => r())));

  async function startProxy(source: StaticX509Source, clock?: ManualClock, maxConnectionAgeMs?: number): Promise<{ proxy: InboundProxy; port: number }> {
    const proxy = createInboundProxy({
      source,
      upstream: new URL(`http://127.0.0.1:${appPort}`),
      logger: createLogger({ level: 'silent' }),
      ...(clock ? { clock } : {}),
      ...(maxConnectionAgeMs === undefined ? {} : { maxConnectionAgeMs }),
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    return { proxy, port: (proxy.address() as AddressInfo).port };
  }

  const stop = (proxy: InboundProxy): Promise<void> =>
    new Promise((r) => {
      proxy.close(() => r());
      proxy.closeAllConnections();
    });

  test('manual clock: at the client certificate expiry the idle connection is closed', async () => {
    // Real TLS judges the certificate by the real clock, so it is valid now; the proxy's clock starts there too.
    const clock = new ManualClock(new Date());
    const client = await createTestSvid(domain, '/ns/default/sa/sleep', { notBefore: new Date(Date.now() - MINUTE), notAfter: new Date(Date.now() + 30 * MINUTE) });
    const server = await createTestSvid(domain, '/ns/default/sa/helloworld');
    const { proxy, port } = await startProxy(createStaticX509Source({ svid: server.svid, bundles: bundleSet(domain) }), clock);
    try {
      const c = await openClient(port, client, domain);
      assert.match(await c.get('/hello'), /^HTTP\/1\.1 200/);
      await clock.waitForTimers();
      clock.advance(29 * MINUTE);
      assert.match(await c.get('/hello?still-valid'), /^HTTP\/1\.1 200/, 'still valid a minute before expiry');
      clock.advance(2 * MINUTE);
      await c.closed;
      assert.equal(c.socket.destroyed, true);
    } finally {
      await stop(proxy);
    }
  });

  test('manual clock: a request in flight at expiry is answered, the one pipelined behind it is refused and never forwarded', async () => {
    const clock = new ManualClock(new Date());
    const client = await createTestSvid(domain, '/ns/default/sa/sleep', { notBefore: new Date(Date.now() - MINUTE), notAfter: new Date(Date.now() + 30 * MINUTE) });
    const server = await createTestSvid(domain, '/ns/default/sa/helloworld');
    const { proxy, port } = await startProxy(createStaticX509Source({ svid: server.svid, bundles: bundleSet(domain) }), clock);
    try {
      const socket = tls.connect({ port, host: '127.0.0.1', cert: client.leaf.pem, key: client.leaf.keyPem, ca: domain.root.pem, checkServerIdentity: () => undefined });
      await once(socket, 'secureConnect');
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      const closed = once(socket, 'close');
      seen.length = 0;
      socket.write('GET /slow HTTP/1.1\r\nHost: helloworld\r\n\r\n');
      while (!seen.includes('/slow')) await new Promise((r) => setTimeout(r, 10));
      await clock.waitForTimers();
      clock.advance(31 * MINUTE);
      socket.write('GET /hello HTTP/1.1\r\nHost: helloworld\r\n\r\n');
      await closed;
      assert.deepEqual([...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]), ['200', '401'], text);
      assert.match(text, /ERR_SVID_UNTRUSTED/);
      assert.deepEqual(seen, ['/slow'], 'the request after expiry never reached the app');
    } finally {
      await stop(proxy);
    }
  });

  test('manual clock: --max-connection-age closes a connection before its certificate expires', async () => {
    const clock = new ManualClock(new Date());
    const client = await createTestSvid(domain, '/ns/default/sa/sleep');
    const server = await createTestSvid(domain, '/ns/default/sa/helloworld');
    const { proxy, port } = await startProxy(createStaticX509Source({ svid: server.svid, bundles: bundleSet(domain) }), clock, 10 * MINUTE);
    try {
      const c = await openClient(port, client, domain);
      assert.match(await c.get('/hello'), /^HTTP\/1\.1 200/);
      await clock.waitForTimers();
      clock.advance(10 * MINUTE);
      await c.closed;
    } finally {
      await stop(proxy);
    }
  });

  test('a bundle update without the client root closes its open connection, and it cannot reconnect', async () => {
    const other = await createTestDomain('cluster.local');
    const client = await createTestSvid(domain, '/ns/default/sa/sleep');
    const server = await createTestSvid(domain, '/ns/default/sa/helloworld');
    const source = createStaticX509Source({ svid: server.svid, bundles: new X509BundleSet([domain.bundle]) });
    const { proxy, port } = await startProxy(source);
    try {
      const c = await openClient(port, client, domain);
      assert.match(await c.get('/hello'), /^HTTP\/1\.1 200/);
      seen.length = 0;
      // The root is distrusted: the bundle now holds only another root of the same trust domain.
      source.set({ svid: (await createTestSvid(other, '/ns/default/sa/helloworld')).svid, bundles: new X509BundleSet([other.bundle]) });
      await c.closed;
      await assert.rejects(openClient(port, client, domain).then((again) => again.get('/hello')));
      assert.deepEqual(seen, [], 'nothing from the distrusted client reached the app');
    } finally {
      await stop(proxy);
    }
  });

  test('real clock: a 3-second client SVID loses its kept-alive connection when it expires', async () => {
    const client = await createTestSvid(domain, '/ns/default/sa/sleep', { notBefore: new Date(Date.now() - 10_000), notAfter: new Date(Date.now() + 3_000) });
    const server = await createTestSvid(domain, '/ns/default/sa/helloworld');
    const { proxy, port } = await startProxy(createStaticX509Source({ svid: server.svid, bundles: bundleSet(domain) }));
    try {
      const c = await openClient(port, client, domain);
      assert.match(await c.get('/hello'), /^HTTP\/1\.1 200/);
      const started = Date.now();
      await c.closed;
      assert.ok(Date.now() - started < 6_000, 'closed at expiry, not much later');
    } finally {
      await stop(proxy);
    }
  });
});
