/**
 * The inbound proxy's open mTLS connections and what each one's peer is still worth. A peer is
 * verified once, at the handshake (meshca/tls); this keeps that verdict honest for the life of
 * a kept-alive connection:
 * - at the earliest `notAfter` of the peer's chain (or the maximum connection age), an idle
 *   connection is closed and a busy one closes after its current response;
 * - when a bundle update drops the authority the peer chained to, the same happens at once;
 * - before each request `refusal(state, now)` says whether the request may be served at all.
 * Everything per connection (the XFCC value, the deadline) is computed here once, not per request.
 */
import type { TLSSocket } from 'node:tls';
import type { Clock, TimerHandle } from '../clock.js';
import type { PeerContext, PolicyEngine } from '../policy/index.js';
import { anchorStillTrusted, connectionDeadline } from '../proxy/peer-validity.js';
import type { SpiffeId } from '../spiffe/spiffe-id.js';
import { findPeerIdentity, type PeerIdentity, type X509Source } from '../tls/index.js';

export interface PeerConnection {
  readonly socket: TLSSocket;
  readonly peer: PeerIdentity;
  readonly deadlineMs: number;
  /** The XFCC value for this peer, made on the first request. */
  xfcc: string | undefined;
  /** The policy engine's view of this peer, for the engine it was made by (policies reload). */
  policyPeer: { readonly engine: PolicyEngine; readonly context: PeerContext } | undefined;
  distrusted: boolean;
  inFlight: number;
  /** Close once the request in flight has been answered. */
  closeWhenIdle: boolean;
  timer: TimerHandle | undefined;
}

export type PeerRefusal = 'peer-expired' | 'trust-anchor-removed' | undefined;

export interface PeerConnectionsOptions {
  readonly source: X509Source;
  readonly clock: Clock;
  /** Cap on a connection's age; the default is the peer certificate's remaining life. */
  readonly maxConnectionAgeMs?: number | undefined;
  /** Called when a connection is closed for its peer's sake; must not throw. */
  readonly onClosed?: (peer: SpiffeId, why: Exclude<PeerRefusal, undefined>) => void;
}

export class PeerConnections {
  readonly #open = new Map<TLSSocket, PeerConnection>();
  readonly #options: PeerConnectionsOptions;
  readonly #onUpdate = (): void => this.#recheckAnchors();

  constructor(options: PeerConnectionsOptions) {
    this.#options = options;
    options.source.on('update', this.#onUpdate);
  }

  get size(): number {
    return this.#open.size;
  }

  /** Tracks a connection that meshca/tls verified; returns undefined for any other socket. */
  add(socket: TLSSocket): PeerConnection | undefined {
    const peer = findPeerIdentity(socket);
    if (peer === undefined) return undefined;
    const { clock, maxConnectionAgeMs } = this.#options;
    const nowMs = clock.now().getTime();
    const state: PeerConnection = {
      socket,
      peer,
      deadlineMs: connectionDeadline(peer, nowMs, maxConnectionAgeMs),
      xfcc: undefined,
      policyPeer: undefined,
      distrusted: false,
      inFlight: 0,
      closeWhenIdle: false,
      timer: undefined,
    };
    this.#open.set(socket, state);
    if (Number.isFinite(state.deadlineMs)) {
      state.timer = clock.setTimeout(() => this.#retire(state, 'peer-expired'), Math.max(0, state.deadlineMs - nowMs));
    }
    socket.once('close', () => {
      if (state.timer !== undefined) clock.clearTimeout(state.timer);
      this.#open.delete(socket);
    });
    return state;
  }

  get(socket: TLSSocket): PeerConnection | undefined {
    return this.#open.get(socket);
  }

  /** Why the next request on this connection must be refused, if it must. */
  refusal(state: PeerConnection, nowMs: number): PeerRefusal {
    if (state.distrusted) return 'trust-anchor-removed';
    if (nowMs >= state.deadlineMs) return 'peer-expired';
    return undefined;
  }

  /** Marks the start and end of a request, closing a retired connection once it is idle. */
  begin(state: PeerConnection): void {
    state.inFlight++;
  }

  end(state: PeerConnection): void {
    state.inFlight--;
    // end(), not destroy(): the last response may still be in the socket's buffer.
    if (state.closeWhenIdle && state.inFlight === 0) state.socket.end();
  }

  close(): void {
    this.#options.source.off('update', this.#onUpdate);
    for (const state of this.#open.values()) if (state.timer !== undefined) this.#options.clock.clearTimeout(state.timer);
  }

  #recheckAnchors(): void {
    for (const state of this.#open.values()) {
      if (!state.distrusted && !anchorStillTrusted(state.peer, this.#options.source)) {
        state.distrusted = true;
        this.#retire(state, 'trust-anchor-removed');
      }
    }
  }

  #retire(state: PeerConnection, why: Exclude<PeerRefusal, undefined>): void {
    // Retired once: a distrusted connection's expiry timer must not retire (and log) it again.
    if (state.timer !== undefined) this.#options.clock.clearTimeout(state.timer);
    state.timer = undefined;
    this.#options.onClosed?.(state.peer.id, why);
    if (state.inFlight === 0) state.socket.destroy();
    else state.closeWhenIdle = true;
  }
}
