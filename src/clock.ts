/**
 * Time as a dependency. Services take a Clock so rotation and expiry logic is tested with a
 * manual clock in milliseconds instead of real sleeps.
 */
export interface TimerHandle {
  readonly id: unknown;
}

export interface Clock {
  now(): Date;
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

// Node clamps delays above 2^31-1 ms to 1 ms; chain shorter timers instead.
const MAX_TIMER_MS = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => new Date(),
  setTimeout(callback, delayMs) {
    const box: { timer: NodeJS.Timeout | undefined } = { timer: undefined };
    const due = Date.now() + Math.max(0, delayMs);
    const arm = (): void => {
      const remaining = due - Date.now();
      if (remaining <= 0) {
        box.timer = undefined;
        callback();
        return;
      }
      box.timer = globalThis.setTimeout(arm, Math.min(remaining, MAX_TIMER_MS));
      box.timer.unref?.();
    };
    box.timer = globalThis.setTimeout(arm, Math.min(Math.max(0, delayMs), MAX_TIMER_MS));
    box.timer.unref?.();
    return { id: box };
  },
  clearTimeout(handle) {
    const box = handle.id as { timer: NodeJS.Timeout | undefined };
    if (box.timer !== undefined) globalThis.clearTimeout(box.timer);
    box.timer = undefined;
  },
};

/** Resolves after `delayMs` on `clock`, or rejects with the signal's reason when aborted. */
export function sleep(clock: Clock, delayMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clock.clearTimeout(handle);
      reject(signal?.reason);
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, delayMs);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
