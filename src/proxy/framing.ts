/**
 * Request framing at the enforcement point, decided before policy (RFC 9112 §6–7, RFC 9110 §7.6).
 *
 * The proxy never relays a client's framing: node's parser (llhttp, strict mode) has already
 * split the byte stream into one request and refused what it cannot frame (CL with TE, duplicate
 * or malformed Content-Length, a Transfer-Encoding that does not end in chunked, bad header names,
 * obs-fold). What it lets through is judged here, and the request that goes upstream carries
 * framing of the proxy's own making: the same Content-Length, or the body re-encoded chunked, or
 * no body at all. So the app parses exactly one request, the one the policy decided.
 *
 * Refused, each with the connection closed afterwards (any framing doubt closes it):
 * - `Connection` nominating `content-length`, `transfer-encoding` or `host`: a hop-by-hop
 *   removal of the very headers that frame or route the request (400);
 * - a transfer coding other than a single `chunked` (`gzip, chunked`, `identity, chunked`):
 *   the proxy cannot re-frame what it does not decode (501, RFC 9112 §6.1);
 * - Transfer-Encoding in an HTTP/1.0 request, whose framing RFC 9112 §6.1 calls faulty (400);
 * - more than one Host (400, RFC 9112 §3.2); a `Connection` token that is not a token (400);
 * - an expectation other than `100-continue` (417).
 *
 * `Expect: 100-continue` is answered by the proxy once policy allows the request, and `Upgrade`
 * (h2c, websocket) is ignored as RFC 9110 §7.8 allows: neither header reaches the app, and a
 * connection that asked to upgrade is closed after its one answer.
 */

/** A header list as node's `rawHeaders` gives it: name, value, name, value... */
export type RawHeaders = readonly string[];

export type BodyFraming =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' };

export interface FramedRequest {
  readonly ok: true;
  readonly body: BodyFraming;
  /**
   * The end-to-end headers to forward, flat, lower-case names, in the client's order: without
   * hop-by-hop headers, headers named in `Connection`, framing headers (the upstream client
   * writes its own), `Expect`, and any header `isReserved` names (the proxy sets those itself).
   */
  readonly headers: string[];
  /** The one Host value, if any. */
  readonly host: string | undefined;
  /** The client sent `Expect: 100-continue`: answer 100 only once the request is allowed. */
  readonly expectContinue: boolean;
  /** Close the client connection after the response (the client asked for an upgrade). */
  readonly closeAfter: boolean;
}

export type FramingRule =
  | 'connection-nominates-framing'
  | 'connection-token'
  | 'transfer-coding'
  | 'transfer-encoding-http10'
  | 'host-duplicate'
  | 'expect';

export interface FramingRefusal {
  readonly ok: false;
  readonly code: 'ERR_FRAMING_INVALID' | 'ERR_TRANSFER_CODING_UNSUPPORTED' | 'ERR_EXPECTATION_UNSUPPORTED';
  readonly rule: FramingRule;
  readonly message: string;
}

/** RFC 9110 §7.6.1 and the de-facto ones (`proxy-connection`); never forwarded by a proxy. */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
  'http2-settings',
]);

/** Headers whose removal by a `Connection` option would change how the request is framed or routed. */
const UNNOMINABLE: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding', 'host']);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function refuse(code: FramingRefusal['code'], rule: FramingRule, message: string): FramingRefusal {
  return { ok: false, code, rule, message };
}

/** Splits a comma-separated field value (RFC 9110 §5.6.1) into trimmed, lower-case members. */
function listMembers(value: string, into: string[]): void {
  for (const member of value.split(',')) {
    const trimmed = member.trim();
    if (trimmed !== '') into.push(trimmed.toLowerCase());
  }
}

/**
 * Frames one parsed request. `httpVersion` is node's `req.httpVersion`; `isReserved(name)` (name
 * lower-case) drops headers the proxy sets itself, such as `x-forwarded-client-cert`.
 */
export function frameRequest(httpVersion: string, rawHeaders: RawHeaders, isReserved: (name: string) => boolean): FramedRequest | FramingRefusal {
  const connection: string[] = [];
  const codings: string[] = [];
  let contentLength: string | undefined;
  let host: string | undefined;
  let hosts = 0;
  let expect: string | undefined;
  let upgrade = false;
  const names: string[] = new Array<string>(rawHeaders.length >> 1);
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    names[i >> 1] = name;
    const value = rawHeaders[i + 1]!;
    switch (name) {
      case 'connection':
        listMembers(value, connection);
        break;
      case 'transfer-encoding':
        listMembers(value, codings);
        break;
      case 'content-length':
        contentLength = value.trim();
        break;
      case 'host':
        hosts++;
        host = value;
        break;
      case 'expect':
        expect = expect === undefined ? value.trim().toLowerCase() : `${expect},${value.trim().toLowerCase()}`;
        break;
      case 'upgrade':
        upgrade = true;
        break;
      default:
        break;
    }
  }

  for (const option of connection) {
    if (!TOKEN.test(option)) return refuse('ERR_FRAMING_INVALID', 'connection-token', `Connection option ${JSON.stringify(option)} is not a token`);
    if (UNNOMINABLE.has(option)) {
      return refuse('ERR_FRAMING_INVALID', 'connection-nominates-framing', `Connection must not nominate ${option}: it frames or routes the request`);
    }
  }
  if (hosts > 1) return refuse('ERR_FRAMING_INVALID', 'host-duplicate', 'more than one Host header');

  let body: BodyFraming;
  if (codings.length > 0) {
    if (httpVersion === '1.0') {
      return refuse('ERR_FRAMING_INVALID', 'transfer-encoding-http10', 'Transfer-Encoding in an HTTP/1.0 request: its framing cannot be trusted');
    }
    if (codings.length !== 1 || codings[0] !== 'chunked') {
      return refuse('ERR_TRANSFER_CODING_UNSUPPORTED', 'transfer-coding', `transfer coding ${JSON.stringify(codings.join(', '))} is not supported: only chunked`);
    }
    // llhttp refuses Content-Length next to Transfer-Encoding; this stays true if it ever did not.
    if (contentLength !== undefined) return refuse('ERR_FRAMING_INVALID', 'transfer-coding', 'Transfer-Encoding and Content-Length together');
    body = CHUNKED;
  } else if (contentLength !== undefined) {
    // llhttp accepts only digits here; anything else is refused before this point.
    const length = Number(contentLength);
    if (!/^\d+$/.test(contentLength) || !Number.isSafeInteger(length)) {
      return refuse('ERR_FRAMING_INVALID', 'transfer-coding', `Content-Length ${JSON.stringify(contentLength)} is not a length`);
    }
    body = length === 0 ? ZERO_LENGTH : { kind: 'length', length };
  } else {
    body = NO_BODY;
  }

  let expectContinue = false;
  if (expect !== undefined) {
    if (expect !== '100-continue') return refuse('ERR_EXPECTATION_UNSUPPORTED', 'expect', `expectation ${JSON.stringify(expect)} is not supported`);
    // RFC 9110 §10.1.1: ignored in HTTP/1.0, whose clients must never get a 1xx (§15.2).
    expectContinue = httpVersion !== '1.0';
  }

  const headers: string[] = [];
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    if (HOP_BY_HOP.has(name) || name === 'content-length' || name === 'expect' || isReserved(name)) continue;
    if (connection.length > 0 && connection.includes(name)) continue;
    headers.push(name, rawHeaders[2 * i + 1]!);
  }
  return { ok: true, body, headers, host, expectContinue, closeAfter: upgrade || connection.includes('upgrade') };
}

const NO_BODY: BodyFraming = Object.freeze({ kind: 'none' });
const CHUNKED: BodyFraming = Object.freeze({ kind: 'chunked' });
const ZERO_LENGTH: BodyFraming = Object.freeze({ kind: 'length', length: 0 });

/**
 * The response headers to relay to the client: without hop-by-hop headers and those the
 * upstream's `Connection` names. Content-Length is kept (node frames the response from it);
 * a chunked upstream response is re-chunked by node's response writer.
 */
export function responseHeaders(rawHeaders: RawHeaders): string[] {
  let nominated: string[] | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length === 10 && rawHeaders[i]!.toLowerCase() === 'connection') listMembers(rawHeaders[i + 1]!, (nominated ??= []));
  }
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || (nominated !== undefined && nominated.includes(name))) continue;
    out.push(name, rawHeaders[i + 1]!);
  }
  return out;
}
