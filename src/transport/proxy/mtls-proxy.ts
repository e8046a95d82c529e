import * as http from 'node:http';
import * as https from 'node:https';
import { URL } from 'node:url';
import type { Logger } from '../../log.js';
import type { Decision, PolicyEngine } from '../../policy/index.js';
import type { Authorizer } from '../../policy/authorizer.js';
import { createHttpsServer, createMtlsAgent, findPeerIdentity, type X509Source } from '../../tls/index.js';
import { normalizeRequestPath } from '../../policy/request-path.js';
import { formatXfcc, XFCC_HEADER } from './xfcc.js';

/** Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business, never forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);

function forwardHeaders(headers: http.IncomingHttpHeaders, extra: Record<string, string>): http.OutgoingHttpHeaders {
  const connectionTokens = new Set(String(headers.connection ?? '').toLowerCase().split(',').map((t) => t.trim()).filter(Boolean));
  const out: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || connectionTokens.has(name)) continue;
    // A client must never be able to claim an identity: drop any XFCC it sent.
    if (name === XFCC_HEADER) continue;
    out[name] = value;
  }
  return { ...out, ...extra };
}

function copyResponseHeaders(upstream: http.IncomingMessage): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(upstream.headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Streams a request to `target` and the answer back; 502 when the upstream fails. */
function relay(req: http.IncomingMessage, res: http.ServerResponse, target: URL, headers: http.OutgoingHttpHeaders, agent: http.Agent, log: Logger, transport: typeof http | typeof https): void {
  const upstream = transport.request(
    { protocol: target.protocol, hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent },
    (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, copyResponseHeaders(upRes));
      upRes.pipe(res);
      upRes.on('error', () => res.destroy());
    },
  );
  upstream.on('error', (err) => {
    log.warn({ err: err.message, upstream: target.origin }, 'upstream request failed');
    sendJson(res, 502, { error: { code: 'ERR_UPSTREAM', message: 'upstream unavailable' } });
  });
  req.on('aborted', () => upstream.destroy());
  req.pipe(upstream);
}

export interface InboundProxyOptions {
  readonly source: X509Source;
  /** Plain HTTP upstream, e.g. http://127.0.0.1:8080. */
  readonly upstream: URL;
  /** Decides each request; without one, every client with a valid SVID is allowed. */
  readonly engine?: PolicyEngine;
  readonly logger: Logger;
  /** Port clients connect to, for `to.operation.ports`. */
  readonly listenPort?: number;
}

/**
 * The sidecar's inbound half: terminates mTLS, authorizes each request against policy with the
 * peer's verified SPIFFE ID, and forwards allowed ones to the local app with the identity in
 * `x-forwarded-client-cert`. Bodies stream in both directions; upstream connections are kept alive.
 */
export function createInboundProxy(options: InboundProxyOptions): https.Server {
  const log = options.logger.child({ component: 'proxy-inbound' });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const server = createHttpsServer(options.source, {
    onPeerRejected: (err, socket) => log.warn({ err: err.message, remote: socket.remoteAddress }, 'mTLS peer refused'),
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const peer = findPeerIdentity(req);
    if (!peer) {
      sendJson(res, 403, { error: { code: 'ERR_AUTHZ_DENIED', message: 'no verified client identity' } });
      return;
    }
    // Authorize and forward the same normalized path, so the app cannot be reached by a
    // spelling of a path that policy did not see.
    const normalized = normalizeRequestPath(req.url ?? '/');
    if (!normalized.ok) {
      sendJson(res, 400, { error: { code: 'ERR_BAD_REQUEST', message: `bad request path: ${normalized.reason}` } });
      return;
    }
    const path = normalized.path;
    req.url = path + normalized.query;
    if (options.engine) {
      const decision: Decision = options.engine.decideFor(options.engine.peer(peer.id), {
        peer: peer.id,
        method: req.method ?? 'GET',
        path,
        host: req.headers.host,
        port: options.listenPort,
        headers: (name) => {
          const v = req.headers[name];
          return Array.isArray(v) ? v.join(',') : v;
        },
      });
      if (!decision.allowed) {
        log.info({ spiffeId: peer.id.toString(), method: req.method, path, policy: decision.policy, rule: decision.rule, reason: decision.reason }, 'request denied');
        sendJson(res, 403, { error: { code: 'ERR_AUTHZ_DENIED', message: `RBAC: access denied (${decision.reason})` } });
        return;
      }
    }
    const self = options.source.getX509Svid().id;
    const headers = forwardHeaders(req.headers, { [XFCC_HEADER]: formatXfcc(self, peer.id, peer.verifiedChain[0]) });
    relay(req, res, options.upstream, headers, agent, log, http);
  });
  server.on('close', () => agent.destroy());
  return server;
}

export interface OutboundProxyOptions {
  readonly source: X509Source;
  /** The mTLS service, e.g. https://helloworld.default.svc:5000. */
  readonly upstream: URL;
  /** Who the upstream must be (its SPIFFE ID is checked instead of its hostname). */
  readonly authorizer: Authorizer;
  readonly logger: Logger;
}

/**
 * The sidecar's outbound half: a plain HTTP listener for the local app; requests leave with the
 * workload's SVID and only reach a server whose SPIFFE ID the authorizer accepts.
 */
export function createOutboundProxy(options: OutboundProxyOptions): http.Server {
  const log = options.logger.child({ component: 'proxy-outbound' });
  const agent = createMtlsAgent(options.source, { authorizer: options.authorizer, agentOptions: { keepAlive: true, maxSockets: 256 } });
  const server = http.createServer((req, res) => {
    relay(req, res, options.upstream, forwardHeaders(req.headers, { host: options.upstream.host }), agent, log, https);
  });
  server.on('close', () => agent.destroy());
  return server;
}
