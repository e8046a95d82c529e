/**
 * The proxy's health endpoint: `/healthz` (the process answers), `/ready` (503 with the reason
 * until it can serve: an SVID and, with `--policy`, a policy), `/metrics` (Prometheus text).
 * `/readyz` answers like `/ready`, the name the CA uses.
 */
import { createServer, type Server } from 'node:http';
import type { Registry } from './prometheus.js';

export interface HealthServerOptions {
  /** Undefined when ready; otherwise why not, one line. */
  readonly notReady: () => string | undefined;
  /** Lines worth showing while ready (a policy change that was refused). */
  readonly notes?: () => readonly string[];
  readonly registry: Registry;
}

export function createHealthServer(options: HealthServerOptions): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const text = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' };
    if (path === '/healthz') {
      res.writeHead(200, text).end('ok\n');
      return;
    }
    if (path === '/ready' || path === '/readyz') {
      const reason = options.notReady();
      const notes = options.notes?.() ?? [];
      res.writeHead(reason === undefined ? 200 : 503, text).end([reason ?? 'ok', ...notes].join('\n') + '\n');
      return;
    }
    if (path === '/metrics') {
      options.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': options.registry.contentType }).end(body),
        () => res.writeHead(500).end(),
      );
      return;
    }
    res.writeHead(404, text).end('not found\n');
  });
}
