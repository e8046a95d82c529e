/**
 * Limits every meshca listener applies before a byte of a request is read: a cap on open
 * connections (below the process's file-descriptor limit, so a flood of idle sockets cannot take
 * the descriptors the CA needs to sign, log and answer), a deadline for the TLS handshake, and
 * (per listener, where the protocol allows) header, request and idle timeouts. A connection
 * refused by the cap is counted and logged, once per interval rather than once per socket.
 */
import type { Server as NetServer } from 'node:net';
import { readFileSync } from 'node:fs';
import type { ListenerLimits } from '../config/listener-limits.js';
import type { Logger } from '../log.js';
import { Counter, type Registry } from './prometheus.js';

/** Descriptors kept back for what is not a client connection: files, logs, upstreams, workers. */
const RESERVED_FDS = 128;
/** Default cap when the descriptor limit allows it. */
export const DEFAULT_MAX_CONNECTIONS = 16_384;

/** The soft RLIMIT_NOFILE, from /proc (Linux); undefined elsewhere. */
export function openFileLimit(): number | undefined {
  try {
    const soft = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
    return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}

/**
 * The connection cap for `share` of the descriptor limit (listeners split it), or `requested`
 * when given. Never more than the descriptors leave room for, so the cap bites before EMFILE.
 */
export function connectionCap(requested: number | undefined, share = 1, fdLimit = openFileLimit()): number {
  const room = fdLimit === undefined ? DEFAULT_MAX_CONNECTIONS : Math.max(16, Math.floor((fdLimit - RESERVED_FDS) * share));
  return Math.min(requested ?? DEFAULT_MAX_CONNECTIONS, room);
}

export class ConnectionMetrics {
  readonly dropped: Counter<'listener'>;

  constructor(registry: Registry) {
    this.dropped = new Counter({
      name: 'meshca_connections_dropped_total',
      help: 'Connections closed at accept because the listener was at its connection cap.',
      labelNames: ['listener'],
      registers: [registry],
    });
  }
}

/** How often a listener at its cap says so. */
const LOG_INTERVAL_MS = 10_000;

/**
 * Applies the cap to `server` (node closes connections over `maxConnections` at accept and emits
 * `drop`), counting each refusal and logging the first of each interval with how many followed.
 */
export function capConnections(
  server: NetServer,
  listener: string,
  limits: Pick<ListenerLimits, 'maxConnections' | 'connectionShare'>,
  options: { readonly logger: Logger; readonly metrics?: ConnectionMetrics | undefined },
): number {
  const maxConnections = connectionCap(limits.maxConnections, limits.connectionShare);
  server.maxConnections = maxConnections;
  let lastLog = 0;
  let quiet = 0;
  server.on('drop', () => {
    options.metrics?.dropped.inc({ listener });
    const now = Date.now();
    if (now - lastLog < LOG_INTERVAL_MS) {
      quiet++;
      return;
    }
    options.logger.warn(
      { listener, maxConnections, droppedSinceLastLine: quiet },
      'connection cap reached: closing new connections until some close (see --max-connections)',
    );
    lastLog = now;
    quiet = 0;
  });
  return maxConnections;
}

/**
 * `http.createServer`/`https.createServer` options for `limits`. Node checks the header and
 * request deadlines every `connectionsCheckingInterval` (30 s by default, which would let a
 * slow request live up to 30 s past its deadline), so the check runs every second.
 */
export function httpServerLimits(limits: ListenerLimits): {
  handshakeTimeout: number;
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  connectionsCheckingInterval: number;
} {
  return {
    handshakeTimeout: limits.handshakeTimeoutMs,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.idleTimeoutMs,
    connectionsCheckingInterval: 1000,
  };
}
