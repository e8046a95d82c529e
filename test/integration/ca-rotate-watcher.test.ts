import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuthorityRotation, type AuthoritySnapshot } from '../../src/ca/authority-rotation.js';
import { systemClock } from '../../src/clock.js';
import { CaInvalidError, CaNotReadyError } from '../../src/errors.js';
import { writeFileAtomic } from '../../src/files/atomic-write.js';
import { writeAuthorityFiles } from '../../src/files/authority-files.js';
import { createFileAuthorityStore, loadAuthoritySnapshot } from '../../src/files/authority-slots.js';
import { watchAuthorityDir, type AuthorityWatcher } from '../../src/files/authority-watcher.js';
import { createSelfSignedRoot } from '../../src/pki/authority.js';
import { parseTrustDomain } from '../../src/spiffe/trust-domain.js';
import { ManualClock } from '../helpers/manual-clock.js';

const td = parseTrustDomain('example.org');
/** Bounded wait for file events and file reads; the tests never sleep for a fixed time. */
const EVENT_WAIT_MS = 10_000;

/** Collects what a watcher reports; `next*()` resolve on the next report or fail after a bounded wait. */
class Recorder {
  readonly changes: AuthoritySnapshot[] = [];
  readonly errors: Error[] = [];
  #waiters: { kind: 'change' | 'error'; resolve: (v: unknown) => void }[] = [];

  onChange = (s: AuthoritySnapshot): void => {
    this.changes.push(s);
    this.#wake('change', s);
  };

  onError = (e: Error): void => {
    this.errors.push(e);
    this.#wake('error', e);
  };

  nextChange(): Promise<AuthoritySnapshot> {
    return this.#wait('change') as Promise<AuthoritySnapshot>;
  }

  nextError(): Promise<Error> {
    return this.#wait('error') as Promise<Error>;
  }

  #wait(kind: 'change' | 'error'): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${kind} reported within ${EVENT_WAIT_MS} ms`)), EVENT_WAIT_MS);
      this.#waiters.push({ kind, resolve: (v) => (clearTimeout(timer), resolve(v)) });
    });
  }

  #wake(kind: 'change' | 'error', value: unknown): void {
    const ready = this.#waiters.filter((w) => w.kind === kind);
    this.#waiters = this.#waiters.filter((w) => w.kind !== kind);
    for (const w of ready) w.resolve(value);
  }
}

describe('watchAuthorityDir (real files)', () => {
  let dir: string;
  let n = 0;
  const watchers: AuthorityWatcher[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-watch-'));
  });
  after(async () => {
    for (const w of watchers) w.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function initDir(now: Date): Promise<string> {
    const dataDir = join(dir, `ca-${++n}`);
    const root = await createSelfSignedRoot({ trustDomain: td.name, now });
    await writeAuthorityFiles(dataDir, { ...root, rootPem: root.certPem });
    return dataDir;
  }

  async function start(dataDir: string, clock: ManualClock | typeof systemClock, pollMs: number): Promise<{ watcher: AuthorityWatcher; recorder: Recorder }> {
    const recorder = new Recorder();
    const initial = await loadAuthoritySnapshot(dataDir, { trustDomain: td, now: clock.now() });
    const watcher = watchAuthorityDir(dataDir, { trustDomain: td, clock, pollMs, debounceMs: 20, initial, onChange: recorder.onChange, onError: recorder.onError });
    watchers.push(watcher);
    await watcher.check(); // the start-up check has settled: nothing changed yet
    assert.deepEqual(recorder.changes, []);
    return { watcher, recorder };
  }

  test('picks up `rotate --prepare` and `--activate` from the poll, each as a new validated snapshot', async () => {
    const clock = new ManualClock(new Date());
    const dataDir = await initDir(clock.now());
    const { watcher, recorder } = await start(dataDir, clock, 2000);
    const rotation = new AuthorityRotation({ store: createFileAuthorityStore(dataDir), trustDomain: td });

    const prepared = await rotation.prepare({ now: clock.now() });
    let change = recorder.nextChange();
    clock.advance(2000);
    let snap = await change;
    assert.equal(snap.bundle.sequence, 2);
    assert.equal(snap.bundle.roots.length, 2);
    assert.equal(snap.next?.authority.certificate.fingerprint256, prepared.next!.fingerprint);
    assert.equal(snap.authority.certificate.fingerprint256, prepared.active.fingerprint, 'the prepared root does not sign yet');

    await rotation.activate({ now: clock.now() });
    change = recorder.nextChange();
    clock.advance(2000);
    snap = await change;
    assert.equal(snap.authority.certificate.fingerprint256, prepared.next!.fingerprint, 'the running CA now signs with the new authority');
    assert.equal(snap.authorityPem.rootPem, snap.bundle.toPem(), 'workers get the whole bundle as root-cert.pem');
    assert.equal(snap.bundle.sequence, 3);
    assert.equal(watcher.current, snap);
    assert.deepEqual(recorder.errors, []);
  });

  test('reports a half-written authority once, keeps the previous one, and delivers the new one when complete', async () => {
    const clock = new ManualClock(new Date());
    const dataDir = await initDir(clock.now());
    const { watcher, recorder } = await start(dataDir, clock, 2000);
    const before = watcher.current!;
    const replacement = await createSelfSignedRoot({ trustDomain: td.name, now: clock.now() });

    // A plug-in CA replaced file by file: the key lands first.
    await writeFileAtomic(join(dataDir, 'ca-key.pem'), replacement.keyPem, 0o600);
    const error = recorder.nextError();
    clock.advance(2000);
    const err = await error;
    assert.ok(err instanceof CaInvalidError);
    assert.equal(err.rule, 'key-mismatch');
    assert.equal(watcher.current, before, 'the previous snapshot stays in force');

    // More polls over the same broken files report nothing new.
    for (let i = 0; i < 2; i++) {
      clock.advance(2000);
      await clock.waitForTimers(); // the poll re-arms once its check is done
    }
    assert.equal(watcher.current, before);

    await writeFileAtomic(join(dataDir, 'ca-cert.pem'), replacement.certPem);
    await writeFileAtomic(join(dataDir, 'root-cert.pem'), replacement.certPem);
    const change = recorder.nextChange();
    clock.advance(2000);
    const snap = await change;
    assert.equal(snap.authority.certificate.fingerprint256, new X509Certificate(replacement.certPem).fingerprint256);
    assert.equal(recorder.errors.length, 1, 'the half-written state was reported once');
  });

  test('ignores a change whose journal is still open and picks it up once committed', async () => {
    const clock = new ManualClock(new Date());
    const dataDir = await initDir(clock.now());
    const { recorder } = await start(dataDir, clock, 2000);
    await mkdir(join(dataDir, '.rotation'));
    await writeFile(join(dataDir, '.rotation', 'commit.json'), JSON.stringify({ schemaVersion: 1, steps: [] }));
    const error = recorder.nextError();
    clock.advance(2000);
    const err = await error;
    assert.ok(err instanceof CaNotReadyError);
    assert.equal(err.rule, 'in-progress');

    // The next rotation completes the (empty) journal first, then prepares.
    await new AuthorityRotation({ store: createFileAuthorityStore(dataDir), trustDomain: td }).prepare({ now: clock.now() });
    const change = recorder.nextChange();
    clock.advance(2000);
    assert.equal((await change).bundle.sequence, 2);
  });

  test('never serves two different bundles under one sequence when root-cert.pem is edited by hand', async () => {
    const clock = new ManualClock(new Date());
    const dataDir = await initDir(clock.now());
    const { recorder } = await start(dataDir, clock, 2000);
    for (let i = 0; i < 2; i++) {
      const extra = await createSelfSignedRoot({ trustDomain: td.name, now: clock.now() });
      await appendFile(join(dataDir, 'root-cert.pem'), extra.certPem);
      const change = recorder.nextChange();
      clock.advance(2000);
      await change;
    }
    assert.deepEqual(recorder.changes.map((s) => [s.bundle.sequence, s.bundle.roots.length]), [[2, 2], [3, 3]]);
  });

  test('notices a change through fs.watch alone, long before the next poll', async () => {
    const dataDir = await initDir(new Date());
    const { recorder } = await start(dataDir, systemClock, 3_600_000);
    const change = recorder.nextChange();
    await new AuthorityRotation({ store: createFileAuthorityStore(dataDir), trustDomain: td }).prepare({ now: new Date() });
    const snap = await change;
    assert.equal(snap.bundle.roots.length, 2);
    assert.ok((await readFile(join(dataDir, 'root-cert.pem'), 'utf8')).includes(snap.bundle.toPem().slice(0, 40)));
  });
});
