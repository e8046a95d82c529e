/**
 * The limits a listener applies to its connections, as the flags give them; the listeners apply
 * them in transport/connection-limits.ts.
 */
import { parseDurationSeconds } from './duration.js';

export interface ListenerLimits {
  /**
   * Open connections accepted at most (more are closed at accept); undefined: `auto`, this
   * listener's `connectionShare` of the file-descriptor limit (transport/connection-limits.ts).
   */
  readonly maxConnections: number | undefined;
  readonly connectionShare: number;
  /** A TLS handshake not finished by then closes the connection. */
  readonly handshakeTimeoutMs: number;
  /** HTTP: request headers must arrive within this. */
  readonly headersTimeoutMs: number;
  /** HTTP: the whole request, body included. 0: none (a proxy streams). */
  readonly requestTimeoutMs: number;
  /** A kept-alive connection with nothing in flight closes after this. */
  readonly idleTimeoutMs: number;
}

/** What `--max-connections` and `--idle-timeout` of `meshca proxy` and `meshca sidecar` give. */
export interface ProxyLimitValues {
  readonly maxConnections?: string | undefined;
  readonly idleTimeout?: string | undefined;
}

/**
 * The proxies' listener limits. No request timeout: a proxy streams, and the app decides how
 * long a request may take; headers must still arrive within 10 s and a handshake finish within
 * 10 s. Each proxy listener gets 40 % of the descriptor room: its clients, and as many upstream
 * connections again.
 */
export function parseProxyLimits(values: ProxyLimitValues, problems: string[]): ListenerLimits {
  const capRaw = values.maxConnections ?? 'auto';
  const requested = capRaw === 'auto' ? undefined : Number(capRaw);
  if (requested !== undefined && (!Number.isInteger(requested) || requested < 1)) problems.push(`--max-connections ${JSON.stringify(capRaw)} must be auto or a whole number >= 1`);
  let idleSeconds = 60;
  if (values.idleTimeout !== undefined) {
    try {
      idleSeconds = parseDurationSeconds(values.idleTimeout, '--idle-timeout');
      if (idleSeconds < 1) problems.push('--idle-timeout must be at least 1s');
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  return {
    maxConnections: requested === undefined || !(requested >= 1) ? undefined : requested,
    connectionShare: 0.4,
    handshakeTimeoutMs: 10_000,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 0,
    idleTimeoutMs: idleSeconds * 1000,
  };
}
