import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { frameRequest, responseHeaders, type FramedRequest, type FramingRefusal, type RawHeaders } from '../../../src/proxy/framing.js';

const NOTHING_RESERVED = (): boolean => false;

function frame(rawHeaders: RawHeaders, httpVersion = '1.1', isReserved: (name: string) => boolean = NOTHING_RESERVED) {
  return frameRequest(httpVersion, rawHeaders, isReserved);
}

function framed(rawHeaders: RawHeaders, httpVersion = '1.1', isReserved: (name: string) => boolean = NOTHING_RESERVED): FramedRequest {
  const result = frame(rawHeaders, httpVersion, isReserved);
  assert.ok(result.ok, `expected the request to be framed, got ${result.ok ? '' : `${result.code} ${result.rule}: ${result.message}`}`);
  return result;
}

function refused(rawHeaders: RawHeaders, httpVersion = '1.1'): FramingRefusal {
  const result = frame(rawHeaders, httpVersion);
  assert.ok(!result.ok, `expected a refusal, got body ${JSON.stringify(result.ok ? result.body : undefined)}`);
  return result;
}

describe('frameRequest refusals', () => {
  const cases: readonly {
    readonly name: string;
    readonly version?: string;
    readonly headers: RawHeaders;
    readonly code: FramingRefusal['code'];
    readonly rule: FramingRefusal['rule'];
  }[] = [
    {
      name: 'refuses Connection nominating content-length',
      headers: ['Host', 'a', 'Content-Length', '5', 'Connection', 'content-length'],
      code: 'ERR_FRAMING_INVALID',
      rule: 'connection-nominates-framing',
    },
    {
      name: 'refuses Connection nominating transfer-encoding among other options, in any case',
      headers: ['Host', 'a', 'Transfer-Encoding', 'chunked', 'Connection', 'keep-alive, Transfer-Encoding'],
      code: 'ERR_FRAMING_INVALID',
      rule: 'connection-nominates-framing',
    },
    {
      name: 'refuses Connection nominating host',
      headers: ['Host', 'a', 'Connection', 'host'],
      code: 'ERR_FRAMING_INVALID',
      rule: 'connection-nominates-framing',
    },
    {
      name: 'refuses a nomination of host in a second Connection header',
      headers: ['Host', 'a', 'Connection', 'keep-alive', 'connection', 'Host'],
      code: 'ERR_FRAMING_INVALID',
      rule: 'connection-nominates-framing',
    },
    {
      name: 'refuses a Connection option containing a space',
      headers: ['Host', 'a', 'Connection', 'x foo'],
      code: 'ERR_FRAMING_INVALID',
      rule: 'connection-token',
    },
    {
      name: 'refuses a Connection option containing a separator',
      headers: ['Host', 'a', 'Connection', 'close, x/foo'],
      code: 'ERR_FRAMING_INVALID',
      rule: 'connection-token',
    },
    {
      name: 'refuses a quoted Connection option',
      headers: ['Host', 'a', 'Connection', '"close"'],
      code: 'ERR_FRAMING_INVALID',
      rule: 'connection-token',
    },
    {
      name: 'refuses gzip before chunked',
      headers: ['Host', 'a', 'Transfer-Encoding', 'gzip, chunked'],
      code: 'ERR_TRANSFER_CODING_UNSUPPORTED',
      rule: 'transfer-coding',
    },
    {
      name: 'refuses identity before chunked',
      headers: ['Host', 'a', 'Transfer-Encoding', 'identity, chunked'],
      code: 'ERR_TRANSFER_CODING_UNSUPPORTED',
      rule: 'transfer-coding',
    },
    {
      name: 'refuses chunked applied twice in one header',
      headers: ['Host', 'a', 'Transfer-Encoding', 'chunked, chunked'],
      code: 'ERR_TRANSFER_CODING_UNSUPPORTED',
      rule: 'transfer-coding',
    },
    {
      name: 'refuses chunked applied twice across two Transfer-Encoding headers',
      headers: ['Host', 'a', 'Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked'],
      code: 'ERR_TRANSFER_CODING_UNSUPPORTED',
      rule: 'transfer-coding',
    },
    {
      name: 'refuses a coding other than chunked on its own',
      headers: ['Host', 'a', 'Transfer-Encoding', 'gzip'],
      code: 'ERR_TRANSFER_CODING_UNSUPPORTED',
      rule: 'transfer-coding',
    },
    {
      name: 'refuses Transfer-Encoding in an HTTP/1.0 request',
      version: '1.0',
      headers: ['Host', 'a', 'Transfer-Encoding', 'chunked'],
      code: 'ERR_FRAMING_INVALID',
      rule: 'transfer-encoding-http10',
    },
    {
      name: 'refuses Transfer-Encoding together with Content-Length',
      headers: ['Host', 'a', 'Transfer-Encoding', 'chunked', 'Content-Length', '5'],
      code: 'ERR_FRAMING_INVALID',
      rule: 'transfer-coding',
    },
    {
      name: 'refuses a Content-Length that is not a number of bytes',
      headers: ['Host', 'a', 'Content-Length', '0x10'],
      code: 'ERR_FRAMING_INVALID',
      rule: 'transfer-coding',
    },
    {
      name: 'refuses two Host headers',
      headers: ['Host', 'a', 'Host', 'b'],
      code: 'ERR_FRAMING_INVALID',
      rule: 'host-duplicate',
    },
    {
      name: 'refuses two Host headers even when they agree',
      headers: ['Host', 'a', 'host', 'a'],
      code: 'ERR_FRAMING_INVALID',
      rule: 'host-duplicate',
    },
    {
      name: 'refuses an expectation other than 100-continue',
      headers: ['Host', 'a', 'Expect', 'something-else'],
      code: 'ERR_EXPECTATION_UNSUPPORTED',
      rule: 'expect',
    },
    {
      name: 'refuses 100-continue listed with another expectation',
      headers: ['Host', 'a', 'Expect', '100-continue', 'Expect', 'x-other'],
      code: 'ERR_EXPECTATION_UNSUPPORTED',
      rule: 'expect',
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const result = refused(c.headers, c.version);
      assert.equal(result.code, c.code, result.message);
      assert.equal(result.rule, c.rule, result.message);
      assert.ok(result.message.length > 0);
    });
  }
});

describe('frameRequest body framing', () => {
  const cases: readonly {
    readonly name: string;
    readonly version?: string;
    readonly headers: RawHeaders;
    readonly body: FramedRequest['body'];
  }[] = [
    { name: 'frames a request without framing headers as having no body', headers: ['Host', 'a'], body: { kind: 'none' } },
    { name: 'frames a Content-Length request with that length', headers: ['Host', 'a', 'Content-Length', '42'], body: { kind: 'length', length: 42 } },
    { name: 'frames Content-Length 0 as an empty body of length 0', headers: ['Host', 'a', 'Content-Length', '0'], body: { kind: 'length', length: 0 } },
    {
      name: 'frames a Content-Length request in HTTP/1.0 with that length',
      version: '1.0',
      headers: ['Host', 'a', 'Content-Length', '7'],
      body: { kind: 'length', length: 7 },
    },
    { name: 'frames a chunked request as chunked', headers: ['Host', 'a', 'Transfer-Encoding', 'chunked'], body: { kind: 'chunked' } },
    {
      name: 'accepts Transfer-Encoding: Chunked regardless of case',
      headers: ['Host', 'a', 'transfer-encoding', 'Chunked'],
      body: { kind: 'chunked' },
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(framed(c.headers, c.version).body, c.body);
    });
  }
});

describe('frameRequest Host, Expect and Upgrade', () => {
  it('returns the one Host value', () => {
    assert.equal(framed(['Host', 'app.example:8080']).host, 'app.example:8080');
  });

  it('returns no host for a request without one', () => {
    assert.equal(framed(['Accept', '*/*']).host, undefined);
  });

  const expectCases: readonly { readonly name: string; readonly version?: string; readonly value: string; readonly expectContinue: boolean }[] = [
    { name: 'answers Expect: 100-continue itself and does not forward it', value: '100-continue', expectContinue: true },
    { name: 'accepts 100-continue in any case', value: '100-Continue', expectContinue: true },
    // RFC 9110 §10.1.1: a server that receives a 100-continue expectation in an HTTP/1.0 request
    // MUST ignore it (and §15.2: a server must not send a 1xx response to an HTTP/1.0 client).
    { name: 'ignores a 100-continue expectation in an HTTP/1.0 request', version: '1.0', value: '100-continue', expectContinue: false },
  ];
  for (const c of expectCases) {
    it(c.name, () => {
      const result = framed(['Host', 'a', 'Expect', c.value, 'Content-Length', '3'], c.version);
      assert.equal(result.expectContinue, c.expectContinue);
      assert.deepEqual(result.headers, ['host', 'a']);
    });
  }

  it('does not expect continue when no Expect header is sent', () => {
    assert.equal(framed(['Host', 'a']).expectContinue, false);
  });

  const upgradeCases: readonly { readonly name: string; readonly headers: RawHeaders; readonly closeAfter: boolean }[] = [
    {
      name: 'ignores an h2c upgrade, forwarding neither Upgrade nor HTTP2-Settings, and closes after the answer',
      headers: ['Host', 'a', 'Connection', 'Upgrade, HTTP2-Settings', 'Upgrade', 'h2c', 'HTTP2-Settings', 'AAMAAABkAAQAAP__', 'Accept', '*/*'],
      closeAfter: true,
    },
    {
      name: 'ignores a websocket upgrade and closes after the answer',
      headers: ['Host', 'a', 'Upgrade', 'websocket', 'Connection', 'upgrade', 'Sec-WebSocket-Key', 'k', 'Accept', '*/*'],
      closeAfter: true,
    },
    { name: 'closes after an Upgrade header without a Connection option', headers: ['Host', 'a', 'Upgrade', 'h2c', 'Accept', '*/*'], closeAfter: true },
    { name: 'closes after Connection: upgrade without an Upgrade header', headers: ['Host', 'a', 'Connection', 'Upgrade', 'Accept', '*/*'], closeAfter: true },
    { name: 'keeps the connection open for a request that does not ask to upgrade', headers: ['Host', 'a', 'Connection', 'keep-alive', 'Accept', '*/*'], closeAfter: false },
  ];
  for (const c of upgradeCases) {
    it(c.name, () => {
      const result = framed(c.headers);
      assert.equal(result.closeAfter, c.closeAfter);
      const names = result.headers.filter((_, i) => i % 2 === 0);
      assert.ok(!names.includes('upgrade'), `upgrade forwarded: ${names.join(', ')}`);
      assert.ok(!names.includes('http2-settings'), `http2-settings forwarded: ${names.join(', ')}`);
      assert.ok(!names.includes('connection'), `connection forwarded: ${names.join(', ')}`);
      assert.equal(names.at(-1), 'accept');
    });
  }
});

describe('frameRequest forwarded headers', () => {
  const cases: readonly {
    readonly name: string;
    readonly headers: RawHeaders;
    readonly isReserved?: (name: string) => boolean;
    readonly forwarded: readonly string[];
  }[] = [
    ...(['Connection', 'Keep-Alive', 'Proxy-Connection', 'TE', 'Trailer', 'Transfer-Encoding', 'Upgrade', 'Proxy-Authorization'] as const).map(
      (name) => ({
        name: `does not forward the hop-by-hop header ${name}`,
        headers: ['Host', 'a', name, name === 'Transfer-Encoding' ? 'chunked' : name === 'Connection' ? 'keep-alive' : 'v', 'Accept', '*/*'],
        forwarded: ['host', 'a', 'accept', '*/*'],
      }),
    ),
    {
      name: 'does not forward the headers Connection nominates',
      headers: ['Host', 'a', 'X-Foo', 'secret', 'Connection', 'x-foo', 'Accept', '*/*'],
      forwarded: ['host', 'a', 'accept', '*/*'],
    },
    {
      name: 'matches Connection options to header names regardless of case',
      headers: ['Host', 'a', 'Connection', 'close, X-Foo', 'x-foo', '1', 'X-FOO', '2', 'X-Bar', '3'],
      forwarded: ['host', 'a', 'x-bar', '3'],
    },
    {
      name: 'never forwards Content-Length, which the upstream client writes itself',
      headers: ['Host', 'a', 'Content-Length', '5', 'Accept', '*/*'],
      forwarded: ['host', 'a', 'accept', '*/*'],
    },
    {
      name: 'drops the headers isReserved names, asking with the lower-case name',
      headers: ['Host', 'a', 'X-Forwarded-Client-Cert', 'By=spiffe://evil', 'Accept', '*/*', 'x-forwarded-client-cert', 'again'],
      isReserved: (name) => name === 'x-forwarded-client-cert',
      forwarded: ['host', 'a', 'accept', '*/*'],
    },
    {
      name: 'keeps the order and duplicates of other headers and lower-cases their names',
      headers: ['Accept', 'text/html', 'Host', 'a', 'X-Trace', '1', 'ACCEPT', 'application/json', 'Cookie', 'a=1', 'cookie', 'b=2'],
      forwarded: ['accept', 'text/html', 'host', 'a', 'x-trace', '1', 'accept', 'application/json', 'cookie', 'a=1', 'cookie', 'b=2'],
    },
    {
      name: 'forwards header values unchanged',
      headers: ['Host', 'a', 'X-Value', '  Mixed Case, with commas  '],
      forwarded: ['host', 'a', 'x-value', '  Mixed Case, with commas  '],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(framed(c.headers, '1.1', c.isReserved).headers, c.forwarded);
    });
  }
});

describe('responseHeaders', () => {
  const cases: readonly { readonly name: string; readonly headers: RawHeaders; readonly relayed: readonly string[] }[] = [
    ...(['Connection', 'Keep-Alive', 'Proxy-Connection', 'Transfer-Encoding', 'Trailer', 'Upgrade', 'Proxy-Authenticate', 'TE'] as const).map((name) => ({
      name: `does not relay the hop-by-hop response header ${name}`,
      headers: ['Content-Type', 'text/plain', name, name === 'Connection' ? 'close' : 'v', 'Content-Length', '2'],
      relayed: ['content-type', 'text/plain', 'content-length', '2'],
    })),
    {
      name: 'does not relay the response headers the upstream Connection nominates',
      headers: ['Connection', 'keep-alive, X-Internal', 'X-Internal', 'secret', 'x-internal', 'again', 'X-Public', 'ok'],
      relayed: ['x-public', 'ok'],
    },
    {
      name: 'reads nominations from every Connection header',
      headers: ['Connection', 'x-a', 'X-A', '1', 'connection', 'X-B', 'X-B', '2', 'X-C', '3'],
      relayed: ['x-c', '3'],
    },
    {
      name: 'keeps Content-Length, from which node frames the response',
      headers: ['Content-Length', '11', 'Content-Type', 'text/plain'],
      relayed: ['content-length', '11', 'content-type', 'text/plain'],
    },
    {
      name: 'keeps the order and duplicates of end-to-end headers and lower-cases their names',
      headers: ['Set-Cookie', 'a=1', 'Date', 'now', 'SET-COOKIE', 'b=2'],
      relayed: ['set-cookie', 'a=1', 'date', 'now', 'set-cookie', 'b=2'],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(responseHeaders(c.headers), c.relayed);
    });
  }
});
