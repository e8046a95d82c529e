/**
 * The enforcement point's attack table: raw bytes from an allowed client (`sleep`) through the
 * inbound proxy to an app that records every byte and every request it parsed. Each row asserts
 * what the app received: one request the policy decided per request the proxy forwarded, with
 * the proxy's own framing and the real XFCC, never a request hidden in another one's body.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../src/log.js';
import { compilePolicies } from '../../src/policy/index.js';
import { parsePolicyYaml } from '../../src/files/policy-file.js';
import { createInboundProxy, type InboundProxy } from '../../src/sidecar/inbound-proxy.js';
import { createOutboundProxy } from '../../src/sidecar/outbound-proxy.js';
import { parseTrustDomain } from '../../src/spiffe/index.js';
import { createStaticX509Source } from '../../src/tls/index.js';
import { rawExchange, RecordingApp, type RawTarget } from '../helpers/raw-http.js';
import { allowId, bundleSet, createTestDomain, createTestSvid, type TestSvid } from './tls-fixtures.js';
import type * as http from 'node:http';

const POLICY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: helloworld, namespace: default }
spec:
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/default/sa/sleep"] } }]
    to: [{ operation: { methods: ["GET", "HEAD", "DELETE", "OPTIONS"], paths: ["/hello"] } }, { operation: { methods: ["POST"], paths: ["/upload"] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-admin, namespace: default }
spec:
  action: DENY
  rules:
  - to: [{ operation: { paths: ["/admin*"] } }]
`;

const SLEEP_XFCC = /^By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/helloworld;Hash=[0-9a-f]{64};URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/;
const SMUGGLED = 'DELETE /admin HTTP/1.1\r\nHost: x\r\nx-forwarded-client-cert: URI=spiffe://cluster.local/ns/kube-system/sa/root\r\nContent-Length: 0\r\n\r\n';

function chunked(body: string): string {
  return `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
}

interface Row {
  readonly name: string;
  readonly send: string | readonly string[];
  /** Status codes the client sees, in order. */
  readonly statuses: readonly number[];
  /** What the app parsed: method, url and body, in order. Empty: nothing reached it. */
  readonly app: readonly { method: string; url: string; body?: string }[];
  /** The proxy closes the client connection. */
  readonly closed?: boolean;
  /** Extra checks on what the app received. */
  readonly check?: (app: RecordingApp, clientText: string) => void;
}

const ROWS: readonly Row[] = [
  {
    name: 'the reported smuggle: a chunked GET body holding a DELETE /admin with a forged XFCC reaches the app as that GET body only',
    send: `GET /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunked(SMUGGLED)}`,
    statuses: [200],
    app: [{ method: 'GET', url: '/hello', body: SMUGGLED }],
    closed: true,
    check: (app) => {
      assert.match(String(app.requests[0]!.headers['x-forwarded-client-cert']), SLEEP_XFCC);
      // Re-framed by the proxy: chunked, or (when the body was already complete) its exact length.
      const { 'transfer-encoding': te, 'content-length': cl } = app.requests[0]!.headers;
      assert.ok((te === 'chunked' && cl === undefined) || (te === undefined && cl === String(SMUGGLED.length)), app.rawText());
    },
  },
  {
    name: 'Content-Length plus `Connection: keep-alive, content-length` (the reported second variant) is refused',
    send: `GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: ${SMUGGLED.length}\r\nConnection: keep-alive, content-length\r\n\r\n${SMUGGLED}`,
    statuses: [400],
    app: [],
    closed: true,
    check: (_app, text) => assert.match(text, /meshca-error-code: ERR_FRAMING_INVALID/),
  },
  { name: 'Connection nominating transfer-encoding is refused', send: `POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n${chunked(SMUGGLED)}`, statuses: [400], app: [], closed: true },
  { name: 'Connection nominating host is refused', send: 'GET /hello HTTP/1.1\r\nHost: x\r\nConnection: host\r\n\r\n', statuses: [400], app: [], closed: true },
  { name: 'CL.TE: Content-Length and Transfer-Encoding together are refused', send: `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, statuses: [400], app: [], closed: true },
  { name: 'TE.CL: Transfer-Encoding first, then a short Content-Length, is refused', send: `POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${chunked(SMUGGLED)}`, statuses: [400], app: [], closed: true },
  {
    name: 'TE.TE: an unknown coding (xchunked) is 501',
    send: `POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n${chunked(SMUGGLED)}`,
    statuses: [501],
    app: [],
    closed: true,
    check: (_app, text) => assert.match(text, /ERR_TRANSFER_CODING_UNSUPPORTED/),
  },
  { name: 'TE.TE: `chunked, identity` (chunked not last) is refused', send: `POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n${chunked('abc')}`, statuses: [400], app: [], closed: true },
  { name: 'TE.TE: two Transfer-Encoding: chunked headers are refused', send: `POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n${chunked('abc')}`, statuses: [400], app: [], closed: true },
  { name: 'TE.TE: `identity` then `chunked` in two headers is 501 (the proxy re-frames only plain chunked)', send: `POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n${chunked('abc')}`, statuses: [501], app: [], closed: true },
  { name: 'TE.TE: `gzip, chunked` is 501: the proxy does not forward codings it cannot re-frame', send: `POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n${chunked('abc')}`, statuses: [501], app: [], closed: true },
  {
    name: 'TE.TE: ` chunked` with extra whitespace is chunked, and the app gets the same body re-chunked',
    send: `POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:   chunked\r\n\r\n${chunked(SMUGGLED)}`,
    statuses: [200],
    app: [{ method: 'POST', url: '/upload', body: SMUGGLED }],
  },
  { name: 'TE.TE: `CHUNKED` in capitals is chunked', send: `POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n${chunked('abc')}`, statuses: [200], app: [{ method: 'POST', url: '/upload', body: 'abc' }] },
  { name: 'a space before the colon of Transfer-Encoding is refused', send: `POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n${chunked('abc')}`, statuses: [400], app: [], closed: true },
  ...(['GET', 'DELETE', 'OPTIONS'] as const).map(
    (method): Row => ({
      name: `a ${method} with a Content-Length body carrying a request line reaches the app as one ${method} with that body`,
      send: `${method} /hello HTTP/1.1\r\nHost: x\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
      statuses: [200],
      app: [{ method, url: '/hello', body: SMUGGLED }],
      check: (app) => assert.equal(app.requests[0]!.headers['content-length'], String(SMUGGLED.length)),
    }),
  ),
  {
    name: 'a HEAD with a body reaches the app as one HEAD with that body, and the answer has no body',
    send: `HEAD /hello HTTP/1.1\r\nHost: x\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    statuses: [200],
    app: [{ method: 'HEAD', url: '/hello', body: SMUGGLED }],
    check: (_app, text) => assert.doesNotMatch(text, /app saw/),
  },
  {
    name: 'HTTP/1.0 keep-alive: two requests on one connection, each decided and each with the real XFCC',
    send: 'GET /hello HTTP/1.0\r\nConnection: keep-alive\r\nx-forwarded-client-cert: URI=spiffe://evil\r\n\r\nGET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
    statuses: [200, 200],
    app: [{ method: 'GET', url: '/hello' }, { method: 'GET', url: '/hello' }],
    check: (app) => {
      for (const r of app.requests) assert.match(String(r.headers['x-forwarded-client-cert']), SLEEP_XFCC);
      assert.equal(app.requests[0]!.httpVersion, '1.1', 'the proxy speaks HTTP/1.1 upstream');
    },
  },
  { name: 'HTTP/1.0 with Transfer-Encoding is refused (RFC 9112 §6.1: faulty framing)', send: `POST /upload HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(SMUGGLED)}`, statuses: [400], app: [], closed: true },
  {
    name: 'pipelining: allowed, denied, allowed on one connection; the denied one never reaches the app',
    send: 'GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\nGET /hello?again HTTP/1.1\r\nHost: x\r\n\r\n',
    statuses: [200, 403, 200],
    app: [{ method: 'GET', url: '/hello' }, { method: 'GET', url: '/hello?again' }],
    closed: false,
  },
  {
    name: 'a denied request with a body is answered 403 and the connection closed: its body is never parsed as a request',
    send: `POST /admin HTTP/1.1\r\nHost: x\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}GET /hello?after-close HTTP/1.1\r\nHost: x\r\n\r\n`,
    statuses: [403],
    app: [],
    closed: true,
  },
  {
    name: 'Expect: 100-continue on an allowed request: 100 from the proxy after policy, then the app gets the body without Expect',
    send: ['POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n', 'hello'],
    statuses: [100, 200],
    app: [{ method: 'POST', url: '/upload', body: 'hello' }],
    check: (app) => assert.equal(app.requests[0]!.headers['expect'], undefined),
  },
  {
    name: 'Expect: 100-continue on a denied request: 403 with no 100, connection closed',
    send: 'POST /admin HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n',
    statuses: [403],
    app: [],
    closed: true,
  },
  { name: 'an expectation other than 100-continue is 417', send: 'GET /hello HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n', statuses: [417], app: [], closed: true },
  {
    name: 'Upgrade: h2c is ignored: the app gets a plain GET without Upgrade or HTTP2-Settings, and the connection closes after',
    send: 'GET /hello HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\nGET /hello?after-upgrade HTTP/1.1\r\nHost: x\r\n\r\n',
    statuses: [200],
    app: [{ method: 'GET', url: '/hello' }],
    closed: true,
    check: (app) => {
      const h = app.requests[0]!.headers;
      assert.equal(h['upgrade'], undefined);
      assert.equal(h['http2-settings'], undefined);
      assert.notEqual(h['connection'], 'Upgrade, HTTP2-Settings');
    },
  },
  {
    name: 'Upgrade: websocket is ignored the same way',
    send: 'GET /hello HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    statuses: [200],
    app: [{ method: 'GET', url: '/hello' }],
    closed: true,
    check: (app) => assert.equal(app.requests[0]!.headers['upgrade'], undefined),
  },
  { name: 'an HTTP/2 prior-knowledge preface is refused', send: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', statuses: [400], app: [], closed: true },
  { name: 'CONNECT is never proxied', send: 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n', statuses: [], app: [], closed: true },
  { name: 'a control character in a header name is refused', send: 'GET /hello HTTP/1.1\r\nHost: x\r\nBad\x01Name: y\r\n\r\n', statuses: [400], app: [], closed: true },
  { name: 'an obs-folded header is refused', send: 'GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n', statuses: [400], app: [], closed: true },
  { name: 'bare LF line endings are refused', send: 'GET /hello HTTP/1.1\nHost: x\n\n', statuses: [400], app: [], closed: true },
  { name: 'two Host headers are refused', send: 'GET /hello HTTP/1.1\r\nHost: x\r\nHost: admin.internal\r\n\r\n', statuses: [400], app: [], closed: true },
  { name: 'a missing Host on HTTP/1.1 is refused', send: 'GET /hello HTTP/1.1\r\n\r\n', statuses: [400], app: [], closed: true },
  {
    name: 'a client XFCC, even one its Connection header nominates, never reaches the app: the proxy sets its own',
    send: 'GET /hello HTTP/1.1\r\nHost: x\r\nConnection: x-forwarded-client-cert\r\nx-forwarded-client-cert: URI=spiffe://cluster.local/ns/kube-system/sa/root\r\n\r\n',
    statuses: [200],
    app: [{ method: 'GET', url: '/hello' }],
    check: (app) => assert.match(String(app.requests[0]!.headers['x-forwarded-client-cert']), SLEEP_XFCC),
  },
  {
    name: 'chunk trailers are dropped: a trailer field never reaches the app as a header',
    send: 'POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Evil: 1\r\n\r\n',
    statuses: [200],
    app: [{ method: 'POST', url: '/upload', body: 'abc' }],
    check: (app) => assert.doesNotMatch(app.rawText(), /X-Evil/i),
  },
  {
    name: 'a request pipelined behind one answered with close is never forwarded',
    send: 'GET /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\nGET /hello?pipelined HTTP/1.1\r\nHost: x\r\n\r\n',
    statuses: [501],
    app: [],
    closed: true,
  },
  {
    name: 'a Content-Length body shorter than declared is never completed by the next request',
    send: [`POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n${SMUGGLED}`],
    statuses: [],
    app: [],
    check: (app) => {
      assert.doesNotMatch(app.rawText(), /^DELETE/m);
    },
  },
];

describe('inbound proxy: request smuggling attack table (what the app received)', () => {
  const app = new RecordingApp();
  let proxy: InboundProxy;
  let client: RawTarget;
  let appPort: number;

  before(async () => {
    const domain = await createTestDomain('cluster.local');
    const helloworld = await createTestSvid(domain, '/ns/default/sa/helloworld');
    const sleep: TestSvid = await createTestSvid(domain, '/ns/default/sa/sleep');
    appPort = await app.start();
    const engine = compilePolicies(parsePolicyYaml(POLICY, 'policy.yaml').policies, { trustDomain: parseTrustDomain('cluster.local'), namespace: 'default' });
    proxy = createInboundProxy({
      source: createStaticX509Source({ svid: helloworld.svid, bundles: bundleSet(domain) }),
      upstream: new URL(`http://127.0.0.1:${appPort}`),
      policy: { current: () => engine },
      logger: createLogger({ level: 'silent' }),
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    client = { port: (proxy.address() as { port: number }).port, tls: { cert: sleep.leaf.pem, key: sleep.leaf.keyPem, ca: domain.root.pem } };
  });

  after(async () => {
    await new Promise<void>((r) => {
      proxy.close(() => r());
      proxy.closeAllConnections();
    });
    await app.stop();
  });

  for (const row of ROWS) {
    test(row.name, async () => {
      app.reset();
      const seen = await rawExchange(client, row.send, { pauseMs: 100 });
      assert.deepEqual(seen.statuses, row.statuses, seen.text);
      assert.deepEqual(
        app.requests.map((r) => ({ method: r.method, url: r.url, ...(row.app.some((a) => a.body !== undefined) ? { body: r.body } : {}) })),
        row.app.map((a) => ({ method: a.method, url: a.url, ...(row.app.some((x) => x.body !== undefined) ? { body: a.body ?? '' } : {}) })),
        `the app received:\n${app.rawText()}`,
      );
      if (row.closed !== undefined) assert.equal(seen.closed, row.closed, `connection closed: ${seen.text}`);
      // Whatever the row, the app never parsed the smuggled request and never saw a forged XFCC.
      assert.ok(!app.requests.some((r) => r.method === 'DELETE' && r.url === '/admin'), 'a smuggled request reached the app');
      for (const r of app.requests) assert.match(String(r.headers['x-forwarded-client-cert']), SLEEP_XFCC);
      row.check?.(app, seen.text);
    });
  }
});

describe('outbound proxy: the same framing rules for the local client', () => {
  const app = new RecordingApp();
  let inbound: InboundProxy;
  let outbound: http.Server;
  let local: RawTarget;

  before(async () => {
    const domain = await createTestDomain('cluster.local');
    const helloworld = await createTestSvid(domain, '/ns/default/sa/helloworld');
    const sleep = await createTestSvid(domain, '/ns/default/sa/sleep');
    const appPort = await app.start();
    const logger = createLogger({ level: 'silent' });
    inbound = createInboundProxy({ source: createStaticX509Source({ svid: helloworld.svid, bundles: bundleSet(domain) }), upstream: new URL(`http://127.0.0.1:${appPort}`), logger });
    await new Promise<void>((r) => inbound.listen(0, '127.0.0.1', () => r()));
    outbound = createOutboundProxy({
      source: createStaticX509Source({ svid: sleep.svid, bundles: bundleSet(domain) }),
      upstream: new URL(`https://127.0.0.1:${(inbound.address() as { port: number }).port}`),
      authorizer: allowId('spiffe://cluster.local/ns/default/sa/helloworld'),
      expected: 'spiffe://cluster.local/ns/default/sa/helloworld',
      logger,
    });
    await new Promise<void>((r) => outbound.listen(0, '127.0.0.1', () => r()));
    local = { port: (outbound.address() as { port: number }).port };
  });

  after(async () => {
    for (const s of [outbound, inbound]) await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); });
    await app.stop();
  });

  test('a chunked GET carrying a request reaches the remote app as one GET with that body', async () => {
    app.reset();
    const seen = await rawExchange(local, `GET /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(SMUGGLED)}`);
    assert.deepEqual(seen.statuses, [200], seen.text);
    assert.deepEqual(app.requests.map((r) => [r.method, r.url, r.body]), [['GET', '/hello', SMUGGLED]]);
    assert.match(String(app.requests[0]!.headers['x-forwarded-client-cert']), /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/);
  });

  for (const [name, bytes, status] of [
    ['Connection nominating content-length', `GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: ${SMUGGLED.length}\r\nConnection: content-length\r\n\r\n${SMUGGLED}`, 400],
    ['CL.TE', `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400],
    ['an unknown transfer coding', `POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n${chunked('abc')}`, 501],
  ] as const) {
    test(`${name} is refused (${status}) and nothing reaches the remote app`, async () => {
      app.reset();
      const seen = await rawExchange(local, bytes);
      assert.deepEqual(seen.statuses, [status], seen.text);
      assert.equal(seen.closed, true);
      assert.deepEqual(app.requests, []);
    });
  }
});
