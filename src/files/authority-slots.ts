/**
 * The CA data directory as rotation slots. Layout (the active authority keeps Istio's plug-in
 * file names so `cacerts` material and existing tooling keep working):
 *
 *   ca-cert.pem ca-key.pem cert-chain.pem   the ACTIVE authority (signs SVIDs)
 *   root-cert.pem                           the trust bundle: EVERY trusted root (active, prepared, retiring)
 *   next/{ca-cert,ca-key,cert-chain,root-cert}.pem
 *                                           the PREPARED authority; its root-cert.pem holds only its own root(s)
 *   authority-state.json                    schema-versioned: bundle sequence, activation time,
 *                                           prepared/publication time, retiring roots + trustUntil, distrusted roots
 *   .rotation.lock                          held (O_EXCL) by the one process changing the directory
 *   .rotation/                              staging area and journal of a change in progress
 *
 * Write order of a change (a redo log, so an interruption at any point is either invisible or
 * completed by the next writer):
 *   1. take .rotation.lock; if .rotation/commit.json exists, finish that earlier change first;
 *      if only .rotation/ exists, an earlier change never committed: discard it
 *   2. write every new file into .rotation/ (temp + fsync + rename, keys 0600)
 *   3. write .rotation/commit.json, the ordered list of moves and removals   <- commit point
 *   4. apply it in this order, each step one atomic rename or unlink:
 *        next/*  ->  active ca-key, ca-cert, cert-chain  ->  root-cert.pem  ->  removals (next/)
 *        ->  authority-state.json (always last)
 *      so roots enter the bundle no later than an authority that chains to them can be read,
 *      and a reader of the plain files sees at worst a key/cert pair that does not match (refused)
 *   5. delete commit.json and .rotation/, release the lock
 * Readers (`read()`, the watcher) treat a present commit.json as "in progress" and retry later,
 * and detect a change that both started and finished during their read by comparing
 * authority-state.json before and after (every change rewrites it with a new sequence).
 */
import { hostname } from 'node:os';
import { mkdir, open, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  AUTHORITY_STATE_SCHEMA_VERSION,
  resolveAuthoritySnapshot,
  type AuthorityChange,
  type AuthoritySnapshot,
  type AuthorityState,
  type AuthorityStore,
  type StoredAuthority,
} from '../ca/authority-rotation.js';
import { CaInvalidError, CaNotReadyError, isIdentityError } from '../errors.js';
import type { AuthorityPem } from '../pki/authority.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import { writeFileAtomic } from './atomic-write.js';
import { readTextIfExists } from './read-if-exists.js';
import { AUTHORITY_FILES, AUTHORITY_STATE_FILE, NEXT_AUTHORITY_DIR, readAuthorityFiles, writeAuthorityFiles } from './authority-files.js';

export { AUTHORITY_STATE_FILE, NEXT_AUTHORITY_DIR };
export const ROTATION_STAGING_DIR = '.rotation';
export const ROTATION_COMMIT_FILE = 'commit.json';
export const ROTATION_LOCK_FILE = '.rotation.lock';

/** Every file whose change can change a snapshot, relative to the data directory. */
export const WATCHED_AUTHORITY_FILES: readonly string[] = Object.freeze([
  AUTHORITY_FILES.cert,
  AUTHORITY_FILES.key,
  AUTHORITY_FILES.chain,
  AUTHORITY_FILES.root,
  AUTHORITY_STATE_FILE,
  ...Object.values(AUTHORITY_FILES).map((f) => `${NEXT_AUTHORITY_DIR}/${f}`),
  `${ROTATION_STAGING_DIR}/${ROTATION_COMMIT_FILE}`,
]);

// ---------------------------------------------------------------------------------------------
// authority-state.json

interface StateJson {
  schemaVersion: number;
  trustDomain: string;
  bundle: { sequence: number; roots: string[] };
  active?: { certificate: string; activatedAt?: string };
  next?: { certificate: string; publishedAt: string };
  retiring: { root: string; trustUntil: string }[];
  distrusted: { root: string; at: string }[];
}

export function formatAuthorityState(state: AuthorityState): string {
  const json: StateJson = {
    schemaVersion: state.schemaVersion,
    trustDomain: state.trustDomain,
    bundle: { sequence: state.sequence, roots: [...state.bundleFingerprints] },
    ...(state.active
      ? {
          active: {
            certificate: state.active.fingerprint,
            ...(state.active.activatedAt ? { activatedAt: state.active.activatedAt.toISOString() } : {}),
          },
        }
      : {}),
    ...(state.next ? { next: { certificate: state.next.fingerprint, publishedAt: state.next.publishedAt.toISOString() } } : {}),
    retiring: state.retiring.map((r) => ({ root: r.fingerprint, trustUntil: r.trustUntil.toISOString() })),
    distrusted: state.distrusted.map((d) => ({ root: d.fingerprint, at: d.at.toISOString() })),
  };
  return `${JSON.stringify(json, null, 2)}\n`;
}

/** Parses authority-state.json; anything unexpected is `CaInvalidError` rule `state` (or `state-version`). */
export function parseAuthorityState(text: string, where = AUTHORITY_STATE_FILE): AuthorityState {
  const bad = (why: string, cause?: unknown): CaInvalidError =>
    new CaInvalidError(`${where}: ${why}`, cause === undefined ? { rule: 'state' } : { rule: 'state', cause });
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw bad('not valid JSON', err);
  }
  const obj = (v: unknown, what: string): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${what} must be an object`);
    return v as Record<string, unknown>;
  };
  const str = (v: unknown, what: string): string => {
    if (typeof v !== 'string' || v.length === 0) throw bad(`${what} must be a non-empty string`);
    return v;
  };
  const fingerprint = (v: unknown, what: string): string => {
    const s = str(v, what);
    if (!/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/.test(s)) throw bad(`${what} must be a SHA-256 fingerprint (AB:CD:...)`);
    return s;
  };
  const date = (v: unknown, what: string): Date => {
    const d = new Date(str(v, what));
    if (Number.isNaN(d.getTime())) throw bad(`${what} must be an ISO 8601 time`);
    return d;
  };
  const list = (v: unknown, what: string): unknown[] => {
    if (!Array.isArray(v)) throw bad(`${what} must be an array`);
    return v;
  };
  const root = obj(raw, 'the document');
  if (root['schemaVersion'] !== AUTHORITY_STATE_SCHEMA_VERSION) {
    if (typeof root['schemaVersion'] === 'number' && root['schemaVersion'] > AUTHORITY_STATE_SCHEMA_VERSION) {
      throw new CaInvalidError(`${where}: schema version ${root['schemaVersion']} was written by a newer meshca`, { rule: 'state-version' });
    }
    throw bad(`schemaVersion must be ${AUTHORITY_STATE_SCHEMA_VERSION}`);
  }
  const bundle = obj(root['bundle'], 'bundle');
  const sequence = bundle['sequence'];
  if (typeof sequence !== 'number' || !Number.isSafeInteger(sequence) || sequence < 0) throw bad('bundle.sequence must be a non-negative integer');
  const active = root['active'] === undefined ? undefined : obj(root['active'], 'active');
  const next = root['next'] === undefined ? undefined : obj(root['next'], 'next');
  return Object.freeze({
    schemaVersion: AUTHORITY_STATE_SCHEMA_VERSION,
    trustDomain: str(root['trustDomain'], 'trustDomain'),
    sequence,
    bundleFingerprints: Object.freeze(list(bundle['roots'], 'bundle.roots').map((r, i) => fingerprint(r, `bundle.roots[${i}]`))),
    active: active
      ? Object.freeze({
          fingerprint: fingerprint(active['certificate'], 'active.certificate'),
          activatedAt: active['activatedAt'] === undefined ? undefined : date(active['activatedAt'], 'active.activatedAt'),
        })
      : undefined,
    next: next
      ? Object.freeze({ fingerprint: fingerprint(next['certificate'], 'next.certificate'), publishedAt: date(next['publishedAt'], 'next.publishedAt') })
      : undefined,
    retiring: Object.freeze(
      list(root['retiring'], 'retiring').map((e, i) => {
        const r = obj(e, `retiring[${i}]`);
        return Object.freeze({ fingerprint: fingerprint(r['root'], `retiring[${i}].root`), trustUntil: date(r['trustUntil'], `retiring[${i}].trustUntil`) });
      }),
    ),
    distrusted: Object.freeze(
      list(root['distrusted'], 'distrusted').map((e, i) => {
        const d = obj(e, `distrusted[${i}]`);
        return Object.freeze({ fingerprint: fingerprint(d['root'], `distrusted[${i}].root`), at: date(d['at'], `distrusted[${i}].at`) });
      }),
    ),
  });
}

// ---------------------------------------------------------------------------------------------
// Reading

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

async function readNext(dataDir: string): Promise<{ next: AuthorityPem | undefined; nextError: Error | undefined; warnings: readonly string[] }> {
  try {
    const files = await readAuthorityFiles(join(dataDir, NEXT_AUTHORITY_DIR));
    const { warnings, ...pem } = files;
    return { next: pem, nextError: undefined, warnings };
  } catch (err) {
    if (err instanceof CaNotReadyError && err.rule === 'missing') return { next: undefined, nextError: undefined, warnings: [] };
    if (isIdentityError(err)) return { next: undefined, nextError: err, warnings: [] };
    throw err;
  }
}

async function readOnce(dataDir: string): Promise<StoredAuthority | undefined> {
  const commit = join(dataDir, ROTATION_STAGING_DIR, ROTATION_COMMIT_FILE);
  const statePath = join(dataDir, AUTHORITY_STATE_FILE);
  if (await exists(commit)) return undefined;
  const before = await readTextIfExists(statePath);
  const { warnings, ...active } = await readAuthorityFiles(dataDir);
  const next = await readNext(dataDir);
  const after = await readTextIfExists(statePath);
  if (before !== after || (await exists(commit))) return undefined;
  return {
    active,
    next: next.next,
    nextError: next.nextError,
    state: before === undefined ? undefined : parseAuthorityState(before, join(dataDir, AUTHORITY_STATE_FILE)),
    warnings: [...warnings, ...next.warnings],
  };
}

async function readConsistent(dataDir: string): Promise<StoredAuthority> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const stored = await readOnce(dataDir);
    if (stored) return stored;
  }
  throw new CaNotReadyError(`a change to the CA files in ${dataDir} is in progress (or was interrupted: run \`meshca ca rotate\` to complete it)`, {
    rule: 'in-progress',
  });
}

/** Reads and validates a data directory: the one-shot form of what the watcher delivers. */
export async function loadAuthoritySnapshot(dataDir: string, options: { trustDomain: TrustDomain; now: Date }): Promise<AuthoritySnapshot> {
  return resolveAuthoritySnapshot(await readConsistent(dataDir), options);
}

// ---------------------------------------------------------------------------------------------
// Locking

interface LockHolder {
  readonly pid: number;
  readonly host: string;
  readonly since: string;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the directory lock or fails at once (an operator re-runs; waiting could hide a stuck
 * process). A lock left by a dead process on this host is taken over.
 */
async function acquireLock(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, ROTATION_LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o600);
      try {
        const holder: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
        await handle.writeFile(JSON.stringify(holder));
        await handle.sync();
      } finally {
        await handle.close();
      }
      return () => unlink(path).catch(() => undefined);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder: Partial<LockHolder> = {};
    let ageMs = 0;
    try {
      holder = JSON.parse(await readFile(path, 'utf8')) as Partial<LockHolder>;
    } catch {
      // Written by a process that died between creating and filling it, or is filling it now.
      ageMs = Date.now() - (await stat(path).then((s) => s.mtimeMs, () => Date.now()));
    }
    const dead = typeof holder.pid === 'number' ? holder.host === hostname() && !isAlive(holder.pid) : ageMs > 10_000;
    if (dead) {
      await unlink(path).catch(() => undefined);
      continue;
    }
    throw new CaNotReadyError(
      `another process is changing ${dataDir} (pid ${holder.pid ?? '?'} on ${holder.host ?? '?'} since ${holder.since ?? '?'}); ` +
        `retry when it is done, or remove ${path} if no meshca process is running`,
      { rule: 'locked' },
    );
  }
  throw new CaNotReadyError(`cannot take the lock ${path}`, { rule: 'locked' });
}

// ---------------------------------------------------------------------------------------------
// Writing

type JournalStep = { readonly op: 'install'; readonly from: string; readonly to: string } | { readonly op: 'remove'; readonly path: string };

interface Journal {
  readonly schemaVersion: 1;
  readonly steps: readonly JournalStep[];
}

async function syncDir(path: string): Promise<void> {
  // Makes renames durable; some filesystems refuse fsync on directories, which costs only durability.
  try {
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    /* best effort */
  }
}

async function applyJournal(dataDir: string, journal: Journal): Promise<void> {
  const touched = new Set<string>([dataDir]);
  for (const step of journal.steps) {
    if (step.op === 'install') {
      const target = join(dataDir, step.to);
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      touched.add(dirname(target));
      try {
        await rename(join(dataDir, step.from), target);
      } catch (err) {
        // Gone from staging = moved by the interrupted run: this step is already done.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    } else {
      await rm(join(dataDir, step.path), { recursive: true, force: true });
    }
  }
  for (const dir of touched) await syncDir(dir);
  await rm(join(dataDir, ROTATION_STAGING_DIR), { recursive: true, force: true });
  await syncDir(dataDir);
}

export type RecoveryOutcome = 'clean' | 'completed' | 'discarded';

/** Finishes or discards an interrupted change. Call with the lock held. */
async function recoverLocked(dataDir: string): Promise<RecoveryOutcome> {
  const staging = join(dataDir, ROTATION_STAGING_DIR);
  const journalText = await readTextIfExists(join(staging, ROTATION_COMMIT_FILE));
  if (journalText !== undefined) {
    let journal: Journal;
    try {
      journal = JSON.parse(journalText) as Journal;
      if (journal.schemaVersion !== 1 || !Array.isArray(journal.steps)) throw new Error('unknown journal format');
    } catch (err) {
      throw new CaInvalidError(`${join(staging, ROTATION_COMMIT_FILE)} cannot be read; inspect ${staging} by hand`, { rule: 'journal', cause: err });
    }
    await applyJournal(dataDir, journal);
    return 'completed';
  }
  if (await exists(staging)) {
    await rm(staging, { recursive: true, force: true });
    return 'discarded';
  }
  return 'clean';
}

/**
 * Completes (or discards) a change that a crashed `meshca ca rotate` left behind. A CA should
 * call this before its first read at start-up; it takes the directory lock.
 */
export async function recoverAuthorityDir(dataDir: string): Promise<RecoveryOutcome> {
  if (!(await exists(join(dataDir, ROTATION_STAGING_DIR)))) return 'clean';
  const release = await acquireLock(dataDir);
  try {
    return await recoverLocked(dataDir);
  } finally {
    await release();
  }
}

async function applyChange(dataDir: string, change: AuthorityChange): Promise<void> {
  const staging = join(dataDir, ROTATION_STAGING_DIR);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true, mode: 0o700 });
  const steps: JournalStep[] = [];
  let n = 0;
  const stage = async (to: string, content: string, mode = 0o644): Promise<void> => {
    const from = `${ROTATION_STAGING_DIR}/${String(n++).padStart(2, '0')}-${to.replace(/\//g, '_')}`;
    await writeFileAtomic(join(dataDir, from), content, mode);
    steps.push({ op: 'install', from, to });
  };
  const nextPath = (file: string): string => `${NEXT_AUTHORITY_DIR}/${file}`;

  if (change.next) {
    await stage(nextPath(AUTHORITY_FILES.key), change.next.keyPem, 0o600);
    await stage(nextPath(AUTHORITY_FILES.cert), change.next.certPem);
    await stage(nextPath(AUTHORITY_FILES.chain), change.next.chainPem ?? change.next.certPem);
    await stage(nextPath(AUTHORITY_FILES.root), change.next.rootPem);
  }
  if (change.active) {
    await stage(AUTHORITY_FILES.key, change.active.keyPem, 0o600);
    await stage(AUTHORITY_FILES.cert, change.active.certPem);
    await stage(AUTHORITY_FILES.chain, change.active.chainPem ?? change.active.certPem);
  }
  if (change.bundlePem !== undefined) await stage(AUTHORITY_FILES.root, change.bundlePem);
  if (change.next === null) steps.push({ op: 'remove', path: NEXT_AUTHORITY_DIR });
  await stage(AUTHORITY_STATE_FILE, formatAuthorityState(change.state));

  const journal: Journal = { schemaVersion: 1, steps };
  await writeFileAtomic(join(staging, ROTATION_COMMIT_FILE), `${JSON.stringify(journal, null, 2)}\n`, 0o600);
  await syncDir(staging);
  await applyJournal(dataDir, journal);
}

export interface FileAuthorityStoreOptions {
  /** Told when an interrupted change was completed or discarded before this one. */
  readonly onRecovered?: (outcome: Exclude<RecoveryOutcome, 'clean'>) => void;
}

/** The `AuthorityStore` over a data directory, with the layout and write order described above. */
export function createFileAuthorityStore(dataDir: string, options: FileAuthorityStoreOptions = {}): AuthorityStore {
  return {
    read: () => readConsistent(dataDir),
    async update(decide) {
      const release = await acquireLock(dataDir);
      try {
        const outcome = await recoverLocked(dataDir);
        if (outcome !== 'clean') options.onRecovered?.(outcome);
        const current = await readConsistent(dataDir);
        const { change, result } = await decide(current);
        if (change) await applyChange(dataDir, change);
        return result;
      } finally {
        await release();
      }
    },
  };
}

/**
 * Makes a data directory hold exactly `stored`: a replica's copy of the CA Secret it follows in
 * Kubernetes mode. Written as one journaled change, so the watcher sees the old state or the new
 * one; a directory that already matches is not touched (no reload, no log line).
 */
export async function mirrorStoredAuthority(dataDir: string, stored: StoredAuthority): Promise<'changed' | 'unchanged'> {
  const same = (a: AuthorityPem | undefined, b: AuthorityPem | undefined): boolean =>
    a === b || (a !== undefined && b !== undefined && a.certPem === b.certPem && a.keyPem === b.keyPem && (a.chainPem ?? a.certPem) === (b.chainPem ?? b.certPem) && a.rootPem === b.rootPem);
  const current = await readAuthorityFiles(dataDir).catch((err: unknown) => {
    if (err instanceof CaNotReadyError && err.rule === 'missing') return undefined;
    throw err;
  });
  if (stored.state === undefined) {
    // Never rotated: the four files are all there is (a prepared authority always has a state).
    if (current && same(current, stored.active)) return 'unchanged';
    await writeAuthorityFiles(dataDir, stored.active, { force: true });
    return 'changed';
  }
  // A fresh (emptyDir) data directory: the active files first, then the slots as one change.
  if (current === undefined) await writeAuthorityFiles(dataDir, stored.active, { force: true });
  const state = stored.state;
  return createFileAuthorityStore(dataDir).update(async (current) => {
    const unchanged =
      same(current.active, stored.active) && same(current.next, stored.next) && current.state !== undefined && formatAuthorityState(current.state) === formatAuthorityState(state);
    if (unchanged) return { result: 'unchanged' as const };
    return {
      change: {
        active: { certPem: stored.active.certPem, keyPem: stored.active.keyPem, chainPem: stored.active.chainPem ?? stored.active.certPem },
        next: stored.next ?? null,
        bundlePem: stored.active.rootPem,
        state,
      },
      result: 'changed' as const,
    };
  });
}
