/**
 * The sidecar's inbound half, the enforcement point: terminates mTLS (meshca/tls verifies the
 * peer's SVID at the handshake), frames each request (proxy/framing.ts), decides it against
 * policy with the peer's SPIFFE ID, and forwards allowed requests to the local app, re-framed,
 * with the identity in `x-forwarded-client-cert`. One request in, at most one request out:
 * what the app parses is exactly what the policy saw.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type * as https from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Pool } from 'undici';
import { systemClock, type Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { decisionFields, type AccessRecord } from '../proxy/access-log.js';
import { frameRequest } from '../proxy/framing.js';
import type { Decision, PolicyEngine } from '../policy/index.js';
import { normalizeRequestPath } from '../policy/request-path.js';
import type { ListenerLimits } from '../config/listener-limits.js';
import { createHttpsServer, type X509Source } from '../tls/index.js';
import { httpServerLimits } from '../transport/connection-limits.js';
import { PeerConnections, type PeerConnection } from './peer-connections.js';
import { isClosing, markClosing, parseErrorOf, sendError, sendParseError } from './respond.js';
import { relay } from './upstream.js';
import { formatXfcc, XFCC_HEADER } from './xfcc.js';

/** Where the inbound proxy reads the current policy; a reload swaps what `current()` returns. */
export interface PolicySource {
  /** Undefined: no policy configured, every verified peer is allowed. */
  current(): PolicyEngine | undefined;
}

export interface InboundProxyOptions {
  readonly source: X509Source;
  /** Plain HTTP upstream, e.g. http://127.0.0.1:8080. */
  readonly upstream: URL;
  /** Decides each request; without one, every client with a valid SVID is allowed. */
  readonly policy?: PolicySource;
  readonly logger: Logger;
  /**
   * The workload's port for `to.operation.ports` / `toPorts`: the app's, never the proxy's
   * listen port. Default: the upstream URL's port.
   */
  readonly appPort?: number;
  /** One log line per request (default on). */
  readonly accessLog?: boolean;
  /** Called once per request after it was answered, e.g. for metrics. Must not throw. */
  readonly onRequest?: (record: AccessRecord) => void;
  readonly clock?: Clock;
  /** Cap on a client connection's age; default the client certificate's remaining life. */
  readonly maxConnectionAgeMs?: number;
  /** Upper bound of kept-alive connections to the app. */
  readonly upstreamConnections?: number;
  /** Handshake, header and idle timeouts of the listener (its cap is applied by who listens). */
  readonly limits?: ListenerLimits;
}

export interface InboundProxy extends https.Server {
  /** Open client connections, for the open-connections gauge. */
  readonly openConnections: () => number;
}

const isReserved = (name: string): boolean => name === XFCC_HEADER;

function portOf(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

export function createInboundProxy(options: InboundProxyOptions): InboundProxy {
  const log = options.logger.child({ component: 'proxy-inbound' });
  const clock = options.clock ?? systemClock;
  const appPort = options.appPort ?? portOf(options.upstream);
  const accessLog = options.accessLog ?? true;
  const pool = new Pool(options.upstream.origin, { connections: options.upstreamConnections ?? 256, pipelining: 1 });
  const connections = new PeerConnections({
    source: options.source,
    clock,
    maxConnectionAgeMs: options.maxConnectionAgeMs,
    onClosed: (peer, why) => log.info({ spiffeId: peer.toString(), reason: why }, 'closing a client connection: its identity no longer holds'),
  });
  const server = createHttpsServer(options.source, {
    ...(options.limits === undefined ? {} : { serverOptions: httpServerLimits(options.limits) }),
    clock,
    onPeerRejected: (err, socket) => log.warn({ err: err.message, remote: socket.remoteAddress }, 'mTLS peer refused'),
  }) as InboundProxy;
  Object.defineProperty(server, 'openConnections', { value: () => connections.size });

  const finish = (record: Omit<AccessRecord, 'direction' | 'durationMs'>, startedMs: number): void => {
    const full: AccessRecord = { direction: 'inbound', durationMs: Math.round((performance.now() - startedMs) * 1000) / 1000, ...record };
    if (accessLog) log.info(full, 'request');
    options.onRequest?.(full);
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    // Queued behind an answer that closes the connection: never forwarded, never answered.
    if (isClosing(req.socket)) return;
    const started = performance.now();
    const method = req.method ?? 'GET';
    const state = connections.get(req.socket as TLSSocket);
    const spiffeId = state?.peer.id.toString();
    const refuse = (code: Parameters<typeof sendError>[1], message: string, close: boolean, path: string): void => {
      sendError(res, code, message, close);
      finish({ spiffeId, method, path, status: res.statusCode, verdict: 'refused', code, bytesSent: 0 }, started);
    };
    if (state === undefined) {
      refuse('ERR_AUTHZ_DENIED', 'no verified client identity', true, req.url ?? '');
      return;
    }
    // Every answer counts, refusals too: a retiring connection closes only once all are written.
    connections.begin(state);
    res.once('close', () => connections.end(state));
    const stale = connections.refusal(state, clock.now().getTime());
    if (stale !== undefined) {
      refuse('ERR_SVID_UNTRUSTED', stale === 'peer-expired' ? 'the client certificate has expired' : 'the client certificate is no longer trusted', true, req.url ?? '');
      return;
    }
    const framed = frameRequest(req.httpVersion, req.rawHeaders, isReserved);
    if (!framed.ok) {
      refuse(framed.code, framed.message, true, req.url ?? '');
      return;
    }
    const hasBody = framed.body.kind !== 'none';
    // Authorize and forward the same normalized path, so the app cannot be reached by a
    // spelling of a path that policy did not see.
    const normalized = normalizeRequestPath(req.url ?? '/');
    if (!normalized.ok) {
      refuse('ERR_REQUEST_INVALID', `bad request path: ${normalized.reason}`, hasBody, req.url ?? '');
      return;
    }
    const { path, query } = normalized;
    const engine = options.policy?.current();
    let decision: Decision | undefined;
    if (engine !== undefined) {
      if (state.policyPeer?.engine !== engine) state.policyPeer = { engine, context: engine.peer(state.peer.id) };
      const headers = framed.headers;
      decision = engine.decideFor(state.policyPeer.context, {
        peer: state.peer.id,
        method,
        path,
        query,
        host: framed.host,
        port: appPort,
        // The policy reads the headers the app will get: none the proxy drops.
        headers: (name) => {
          let value: string | undefined;
          for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) value = value === undefined ? headers[i + 1] : `${value},${headers[i + 1]}`;
          return value;
        },
      });
      if (!decision.allowed) {
        // An unread body is not worth draining for a request that will not be served.
        sendError(res, 'ERR_AUTHZ_DENIED', `RBAC: access denied (${decision.reason})`, hasBody || framed.closeAfter);
        finish({ spiffeId, method, path, status: 403, ...decisionFields(decision), code: 'ERR_AUTHZ_DENIED', bytesSent: 0 }, started);
        return;
      }
    }
    if (framed.expectContinue) res.writeContinue();
    if (framed.closeAfter) markClosing(req.socket);
    state.xfcc ??= formatXfcc(options.source.getX509Svid().id, state.peer.id, state.peer.verifiedChain[0]);
    framed.headers.push(XFCC_HEADER, state.xfcc);
    relay(pool, req, res, { method, path: path + query, headers: framed.headers, body: framed.body, closeAfter: framed.closeAfter || state.closeWhenIdle }, (outcome) => {
      if (outcome.upstreamError !== undefined) {
        log.warn({ err: outcome.upstreamError.message, upstream: options.upstream.origin }, 'upstream request failed');
        // The body may be half sent: this connection cannot be trusted to stay in step.
        sendError(res, 'ERR_UPSTREAM_UNAVAILABLE', 'upstream unavailable', true);
        finish({ spiffeId, method, path, status: 502, ...decisionFields(decision), code: 'ERR_UPSTREAM_UNAVAILABLE', bytesSent: 0 }, started);
        return;
      }
      finish({ spiffeId, method, path, status: outcome.status, ...decisionFields(decision), bytesSent: outcome.bytesSent }, started);
    });
  };

  server.on('secureConnection', (socket: TLSSocket) => connections.add(socket));
  server.on('request', handle);
  // Without these node would answer `100 Continue` before policy has seen the request, and
  // other expectations with a 417 of its own that keeps the connection open.
  server.on('checkContinue', handle);
  server.on('checkExpectation', handle);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'ECONNRESET' || err.code === 'ERR_SSL_WRONG_VERSION_NUMBER') {
      socket.destroy();
      return;
    }
    // No TLS session to write an HTTP answer on: a handshake that missed its deadline.
    if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') {
      log.debug({ remote: socket.remoteAddress }, 'TLS handshake timed out');
      socket.destroy();
      return;
    }
    // A TLS refusal (no client certificate, an untrusted one) is not a framing error: the TLS
    // alert already told the client; an HTTP answer cannot be written on a failed session.
    if (err.code?.startsWith('ERR_SSL_')) {
      log.info({ err: err.code, remote: socket.remoteAddress }, 'TLS handshake refused');
      socket.destroy();
      return;
    }
    const { code, message } = parseErrorOf(err);
    log.info({ errCode: code, err: err.code, remote: socket.remoteAddress }, 'request refused by the parser');
    sendParseError(socket, code, message);
  });
  // CONNECT is never proxied; node closes the connection when nobody listens for it.
  server.on('close', () => {
    connections.close();
    void pool.close();
  });
  return server;
}
