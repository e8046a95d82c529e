/**
 * A `Clock` whose time only moves when a test says so.
 *
 * Typical use with code that arms a timer asynchronously (rotation loops, request timeouts):
 *
 * ```ts
 * const clock = new ManualClock(new Date('2030-01-01T00:00:00Z'));
 * const pending = service.doSomething();   // arms clock.setTimeout(...) at some later await
 * await clock.waitForTimers();             // until the timer is actually armed
 * clock.advance(5_000);                    // fire it, deterministically
 * ```
 *
 * Timers fire in due-time order (ties in the order they were armed), and `now()` reads each
 * timer's due time while its callback runs, so code that re-arms from inside a callback sees a
 * consistent time. Timers armed during `advance` that fall due within the advanced window fire in
 * the same call.
 */
import type { Clock, TimerHandle } from '../../src/clock.js';

interface PendingTimer {
  readonly seq: number;
  readonly dueMs: number;
  readonly callback: () => void;
}

interface TimerWaiter {
  readonly count: number;
  readonly resolve: () => void;
}

/** The default start: fixed so tests that print times are stable. */
export const MANUAL_CLOCK_EPOCH = new Date('2030-01-01T00:00:00.000Z');

export class ManualClock implements Clock {
  #nowMs: number;
  #seq = 0;
  readonly #timers = new Map<number, PendingTimer>();
  #waiters: TimerWaiter[] = [];

  constructor(start: Date | number = MANUAL_CLOCK_EPOCH) {
    this.#nowMs = typeof start === 'number' ? start : start.getTime();
    if (!Number.isFinite(this.#nowMs)) throw new TypeError('ManualClock start must be a valid time');
  }

  now(): Date {
    return new Date(this.#nowMs);
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    // Mirror Node: negative or non-finite delays mean "as soon as possible".
    const delay = Number.isFinite(delayMs) && delayMs > 0 ? delayMs : 0;
    const seq = ++this.#seq;
    this.#timers.set(seq, { seq, dueMs: this.#nowMs + delay, callback });
    this.#notifyWaiters();
    return { id: seq };
  }

  clearTimeout(handle: TimerHandle): void {
    if (typeof handle.id === 'number') this.#timers.delete(handle.id);
  }

  /** Number of armed timers that have neither fired nor been cleared. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** Due time of the earliest pending timer, or undefined when none is armed. */
  nextTimerAt(): Date | undefined {
    const next = this.#earliest();
    return next === undefined ? undefined : new Date(next.dueMs);
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due on the way, in order.
   * A callback that throws propagates out of `advance` (the remaining timers stay armed), so a
   * test sees the failure instead of it being swallowed.
   */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new TypeError(`advance needs a non-negative duration, got ${ms}`);
    const targetMs = this.#nowMs + ms;
    for (;;) {
      const next = this.#earliest();
      if (next === undefined || next.dueMs > targetMs) break;
      this.#timers.delete(next.seq);
      this.#nowMs = Math.max(this.#nowMs, next.dueMs);
      next.callback();
    }
    this.#nowMs = targetMs;
  }

  /** Jumps to `date` (forwards only), firing due timers like `advance`. */
  advanceTo(date: Date): void {
    this.advance(Math.max(0, date.getTime() - this.#nowMs));
  }

  /**
   * Resolves once at least `count` timers are pending. Code under test usually arms its timer
   * after one or more `await`s, so a test must wait for it before calling `advance`; otherwise
   * the advance happens too early and the timer never fires. Never resolves if the code under
   * test never arms the timers: rely on the test runner's timeout for that failure.
   */
  waitForTimers(count = 1): Promise<void> {
    if (!Number.isInteger(count) || count < 1) throw new TypeError(`waitForTimers needs a positive integer, got ${count}`);
    if (this.#timers.size >= count) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiters.push({ count, resolve });
    });
  }

  #earliest(): PendingTimer | undefined {
    let best: PendingTimer | undefined;
    for (const timer of this.#timers.values()) {
      if (best === undefined || timer.dueMs < best.dueMs || (timer.dueMs === best.dueMs && timer.seq < best.seq)) {
        best = timer;
      }
    }
    return best;
  }

  #notifyWaiters(): void {
    const size = this.#timers.size;
    const ready = this.#waiters.filter((w) => w.count <= size);
    if (ready.length === 0) return;
    this.#waiters = this.#waiters.filter((w) => w.count > size);
    for (const waiter of ready) waiter.resolve();
  }
}
