/**
 * The sidecar's outbound half: a plain HTTP listener for the local app. Requests are framed by
 * the same rules as inbound (proxy/framing.ts) and leave over mTLS with the workload's SVID,
 * only to a server whose SPIFFE ID the authorizer accepts. A server with the wrong identity is
 * a 502 that says who it was and who was expected, not "upstream unavailable".
 */
import type { ListenerLimits } from '../config/listener-limits.js';
import { httpServerLimits } from '../transport/connection-limits.js';

/** Node's own defaults, for a proxy built without limits (tests, library use). */
const PLAIN_DEFAULTS: ListenerLimits = { maxConnections: undefined, connectionShare: 1, handshakeTimeoutMs: 0, headersTimeoutMs: 60_000, requestTimeoutMs: 300_000, idleTimeoutMs: 5_000 };
import * as http from 'node:http';
import type { Socket } from 'node:net';
import { Pool, type buildConnector } from 'undici';
import { isIdentityError, UpstreamError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Authorizer } from '../policy/authorizer.js';
import { frameRequest } from '../proxy/framing.js';
import type { AccessRecord } from '../proxy/access-log.js';
import { connect, type X509Source } from '../tls/index.js';
import { isClosing, markClosing, parseErrorOf, sendError, sendParseError } from './respond.js';
import { relay } from './upstream.js';

export interface OutboundProxyOptions {
  readonly source: X509Source;
  /** The mTLS service, e.g. https://helloworld.default.svc:5000. */
  readonly upstream: URL;
  /** Who the upstream must be (its SPIFFE ID is checked instead of its hostname). */
  readonly authorizer: Authorizer;
  /** The identity the authorizer expects, in words, for the 502 a wrong one gets. */
  readonly expected: string;
  readonly logger: Logger;
  readonly accessLog?: boolean;
  readonly onRequest?: (record: AccessRecord) => void;
  readonly upstreamConnections?: number;
  readonly connectTimeoutMs?: number;
  /** Header and idle timeouts of the listener (its cap is applied by who listens). */
  readonly limits?: ListenerLimits;
}

/** The host header the upstream gets: its own authority, as a client would have sent it. */
const isReserved = (name: string): boolean => name === 'host';

export function createOutboundProxy(options: OutboundProxyOptions): http.Server {
  const log = options.logger.child({ component: 'proxy-outbound' });
  const accessLog = options.accessLog ?? true;
  const { authorizer, expected } = options;
  // The authorizer's verdict becomes a coded upstream error naming both identities.
  const checked: Authorizer = (peer, chain) => {
    try {
      authorizer(peer, chain);
    } catch (err) {
      throw new UpstreamError('ERR_UPSTREAM_IDENTITY', `upstream is ${peer.toString()}, expected ${expected}`, { cause: err, rule: 'upstream-identity' });
    }
  };
  const timeoutMs = options.connectTimeoutMs ?? 10_000;
  const connector: buildConnector.connector = (opts, callback) => {
    const socket = connect(options.source, { host: opts.hostname, port: Number(opts.port) || 443, authorizer: checked, ...(isIpLiteral(opts.hostname) ? {} : { servername: opts.hostname }) });
    const timer = setTimeout(() => socket.destroy(new UpstreamError('ERR_UPSTREAM_UNAVAILABLE', `connect timed out after ${timeoutMs} ms`)), timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      callback(null, socket);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      callback(err, null);
    };
    socket.once('error', onError);
    return socket;
  };
  const pool = new Pool(options.upstream.origin, { connections: options.upstreamConnections ?? 256, pipelining: 1, connect: connector });
  const authority = options.upstream.host;

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    // Queued behind an answer that closes the connection: never forwarded, never answered.
    if (isClosing(req.socket)) return;
    const started = performance.now();
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const finish = (record: Omit<AccessRecord, 'direction' | 'durationMs' | 'method' | 'path'>): void => {
      const full: AccessRecord = { direction: 'outbound', method, path, durationMs: Math.round((performance.now() - started) * 1000) / 1000, ...record };
      if (accessLog) log.info(full, 'request');
      options.onRequest?.(full);
    };
    const framed = frameRequest(req.httpVersion, req.rawHeaders, isReserved);
    if (!framed.ok) {
      sendError(res, framed.code, framed.message, true);
      finish({ spiffeId: undefined, status: res.statusCode, verdict: 'refused', code: framed.code, bytesSent: 0 });
      return;
    }
    if (framed.expectContinue) res.writeContinue();
    if (framed.closeAfter) markClosing(req.socket);
    framed.headers.push('host', authority);
    relay(pool, req, res, { method, path, headers: framed.headers, body: framed.body, closeAfter: framed.closeAfter }, (outcome) => {
      if (outcome.upstreamError !== undefined) {
        const err = outcome.upstreamError;
        const identity = isIdentityError(err) && (err.code === 'ERR_UPSTREAM_IDENTITY' || err.code.startsWith('ERR_SVID')) || isTlsVerifyError(err);
        const code = identity ? 'ERR_UPSTREAM_IDENTITY' : 'ERR_UPSTREAM_UNAVAILABLE';
        const message = identity ? (err.message.startsWith('upstream is ') ? err.message : `upstream identity refused: ${err.message}`) : `upstream unavailable: ${err.message}`;
        log.warn({ errCode: code, err: err.message, upstream: options.upstream.origin }, 'upstream request failed');
        sendError(res, code, message, true);
        finish({ spiffeId: undefined, status: 502, verdict: 'refused', code, bytesSent: 0 });
        return;
      }
      // Every pooled connection passed the authorizer; which one served this request undici does not say.
      finish({ spiffeId: undefined, status: outcome.status, verdict: 'allow', bytesSent: outcome.bytesSent });
    });
  };
  // Plain HTTP from the app on loopback: no handshake to time.
  const { handshakeTimeout: _none, ...limits } = httpServerLimits(options.limits ?? PLAIN_DEFAULTS);
  const server = http.createServer(limits, handle);
  server.on('checkContinue', handle);
  server.on('checkExpectation', handle);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const { code, message } = parseErrorOf(err);
    sendParseError(socket, code, message);
  });
  server.on('close', () => void pool.close());
  return server;
}

function isIpLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

/** node's own chain-verification failures (an upstream outside the trust bundle). */
function isTlsVerifyError(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return /^(UNABLE_TO_|SELF_SIGNED|CERT_|DEPTH_ZERO|ERR_TLS_CERT)/.test(code);
}
