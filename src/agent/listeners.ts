type Listener<T> = (payload: T) => void;

/**
 * Typed listeners for the agent's sources. Unlike EventEmitter, an 'error' event with no
 * listener does not throw, and a listener that throws cannot stop delivery to the others or the
 * loop that emitted: a consumer's bug must not stop rotation for everyone.
 */
export class Listeners<Events extends object> {
  readonly #sets = new Map<keyof Events, Set<Listener<never>>>();

  constructor(events: readonly (keyof Events)[]) {
    for (const event of events) this.#sets.set(event, new Set());
  }

  on<E extends keyof Events>(event: E, listener: Listener<Events[E]>): void {
    const set = this.#sets.get(event);
    if (set === undefined) throw new TypeError(`unknown event ${String(event)}`);
    set.add(listener as Listener<never>);
  }

  off<E extends keyof Events>(event: E, listener: Listener<Events[E]>): void {
    this.#sets.get(event)?.delete(listener as Listener<never>);
  }

  emit<E extends keyof Events>(event: E, payload: Events[E]): void {
    for (const listener of [...(this.#sets.get(event) ?? [])] as Listener<Events[E]>[]) {
      try {
        listener(payload);
      } catch {
        // Ignored on purpose; see the class comment.
      }
    }
  }
}
