/**
 * Lets a running CA follow its data directory: `meshca ca rotate` run beside it, or plug-in CA
 * files replaced by an operator or a mounted Secret, take effect without a restart.
 *
 * Change detection is fs.watch (fast, but it can miss events on network filesystems and on the
 * symlink swaps Kubernetes uses for Secret volumes) plus a poll of size/mtime/inode of every
 * relevant file (cheap: a dozen stat calls). Either one only triggers a check; a check loads
 * and validates the whole directory and delivers a snapshot only when it is valid and differs
 * from the one in force. A half-written or broken directory is reported through `onError` and
 * ignored: the previous snapshot stays in force until the files are valid again.
 */
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuthoritySnapshot } from '../ca/authority-rotation.js';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import { loadAuthoritySnapshot, NEXT_AUTHORITY_DIR, ROTATION_STAGING_DIR, WATCHED_AUTHORITY_FILES } from './authority-slots.js';

export const DEFAULT_AUTHORITY_POLL_MS = 2000;
export const DEFAULT_AUTHORITY_DEBOUNCE_MS = 100;

export interface WatchAuthorityDirOptions {
  readonly trustDomain: TrustDomain;
  readonly clock?: Clock;
  /** Fallback poll interval. Default 2 s. */
  readonly pollMs?: number;
  /** Quiet time after a file event before checking, so a burst of writes is read once. Default 100 ms. */
  readonly debounceMs?: number;
  /** The snapshot already in force (e.g. loaded at start-up). Without it the first valid load is delivered. */
  readonly initial?: AuthoritySnapshot;
  /** A new, valid snapshot that differs from the previous one. */
  onChange(snapshot: AuthoritySnapshot): void;
  /** The directory changed but cannot be used (yet); the previous snapshot stays in force. */
  onError?(err: Error): void;
}

export interface AuthorityWatcher {
  /** The snapshot in force, if any. */
  readonly current: AuthoritySnapshot | undefined;
  /** Re-reads now, even if no file looks changed (e.g. on SIGHUP). */
  check(): Promise<void>;
  close(): void;
}

/** What distinguishes two snapshots for a running CA. Key material is compared in memory only. */
function contentKey(s: AuthoritySnapshot): string {
  return JSON.stringify([
    s.authorityPem.certPem,
    s.authorityPem.keyPem,
    s.authorityPem.chainPem ?? '',
    s.bundle.fingerprints,
    s.bundle.sequence,
    s.next?.authority.certificate.fingerprint256 ?? '',
    s.next?.publishedAt?.getTime() ?? 0,
    s.state.retiring.map((r) => [r.fingerprint, r.trustUntil.getTime()]),
    s.state.distrusted.map((d) => d.fingerprint),
  ]);
}

/**
 * A bundle served by this process never repeats a sequence for different roots, nor goes
 * backwards: a root-cert.pem edited by hand (no state update) still gets a fresh number.
 */
function keepSequenceMonotonic(previous: AuthoritySnapshot | undefined, next: AuthoritySnapshot): AuthoritySnapshot {
  if (!previous || next.bundle.sequence > previous.bundle.sequence) return next;
  const sequence = next.bundle.sameRoots(previous.bundle) ? previous.bundle.sequence : previous.bundle.sequence + 1;
  if (sequence === next.bundle.sequence) return next;
  return Object.freeze({ ...next, bundle: next.bundle.withSequence(sequence), state: Object.freeze({ ...next.state, sequence }) });
}

export function watchAuthorityDir(dataDir: string, options: WatchAuthorityDirOptions): AuthorityWatcher {
  const clock = options.clock ?? systemClock;
  const pollMs = options.pollMs ?? DEFAULT_AUTHORITY_POLL_MS;
  const debounceMs = options.debounceMs ?? DEFAULT_AUTHORITY_DEBOUNCE_MS;
  if (!(pollMs > 0) || !(debounceMs >= 0)) throw new TypeError('pollMs must be positive and debounceMs non-negative');

  let current = options.initial;
  let currentKey = current ? contentKey(current) : undefined;
  let lastSignature: string | undefined;
  let closed = false;
  let running: Promise<void> | undefined;
  let again = false;
  let forceNext = false;
  let debounceTimer: TimerHandle | undefined;
  let pollTimer: TimerHandle | undefined;
  const watchers = new Map<string, FSWatcher>();

  const report = (err: unknown): void => {
    const error = err instanceof Error ? err : new Error(String(err));
    try {
      options.onError?.(error);
    } catch {
      // A failing reporter must not stop the watcher.
    }
  };

  const schedule = (): void => {
    if (closed) return;
    if (debounceTimer) clock.clearTimeout(debounceTimer);
    debounceTimer = clock.setTimeout(() => {
      debounceTimer = undefined;
      void check(false);
    }, debounceMs);
  };

  const ensureWatchers = (): void => {
    for (const dir of [dataDir, join(dataDir, NEXT_AUTHORITY_DIR), join(dataDir, ROTATION_STAGING_DIR)]) {
      if (watchers.has(dir)) continue;
      try {
        const watcher = watch(dir, { persistent: false }, schedule);
        // The directory went away (next/ after activation): forget it; the poll still covers it.
        watcher.on('error', () => {
          watcher.close();
          watchers.delete(dir);
        });
        watchers.set(dir, watcher);
      } catch {
        // Not there (yet): the poll notices when it appears.
      }
    }
  };

  const signature = async (): Promise<string> => {
    const parts = await Promise.all(
      WATCHED_AUTHORITY_FILES.map(async (file) => {
        try {
          const s = await stat(join(dataDir, file));
          return `${s.ino}:${s.size}:${s.mtimeMs}`;
        } catch {
          return '-';
        }
      }),
    );
    return parts.join('|');
  };

  const checkOnce = async (force: boolean): Promise<void> => {
    ensureWatchers();
    const sig = await signature();
    if (!force && sig === lastSignature) return;
    // Remember it even when the load fails: the same broken files are reported once, and any
    // further change to them triggers a new attempt.
    lastSignature = sig;
    let snapshot: AuthoritySnapshot;
    try {
      snapshot = keepSequenceMonotonic(current, await loadAuthoritySnapshot(dataDir, { trustDomain: options.trustDomain, now: clock.now() }));
    } catch (err) {
      report(err);
      return;
    }
    const key = contentKey(snapshot);
    if (key === currentKey || closed) return;
    current = snapshot;
    currentKey = key;
    try {
      options.onChange(snapshot);
    } catch (err) {
      report(err);
    }
  };

  const check = (force: boolean): Promise<void> => {
    if (closed) return Promise.resolve();
    forceNext ||= force;
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        const forced = forceNext;
        forceNext = false;
        try {
          await checkOnce(forced);
        } catch (err) {
          report(err);
        }
      } while (again && !closed);
    })().finally(() => {
      running = undefined;
    });
    return running;
  };

  const poll = (): void => {
    if (closed) return;
    pollTimer = clock.setTimeout(() => {
      pollTimer = undefined;
      void check(false).finally(poll);
    }, pollMs);
  };

  void check(false);
  poll();

  return {
    get current() {
      return current;
    },
    check: () => check(true),
    close() {
      closed = true;
      if (debounceTimer) clock.clearTimeout(debounceTimer);
      if (pollTimer) clock.clearTimeout(pollTimer);
      for (const watcher of watchers.values()) watcher.close();
      watchers.clear();
    },
  };
}
