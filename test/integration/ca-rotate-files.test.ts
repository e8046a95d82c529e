import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuthorityRotation } from '../../src/ca/authority-rotation.js';
import { CaInvalidError, CaNotReadyError } from '../../src/errors.js';
import { writeAuthorityFiles } from '../../src/files/authority-files.js';
import { createFileAuthorityStore, loadAuthoritySnapshot, recoverAuthorityDir } from '../../src/files/authority-slots.js';
import { createSelfSignedRoot } from '../../src/pki/authority.js';
import { parseTrustDomain } from '../../src/spiffe/trust-domain.js';
import { ManualClock } from '../helpers/manual-clock.js';

const td = parseTrustDomain('example.org');
const WEEK_S = 7 * 86400;

describe('CA data directory as rotation slots (real files)', () => {
  let dir: string;
  let n = 0;
  const clock = new ManualClock(new Date());

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-slots-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A data directory as `meshca ca init` writes it. */
  async function initDir(): Promise<string> {
    const dataDir = join(dir, `ca-${++n}`);
    const root = await createSelfSignedRoot({ trustDomain: td.name, now: clock.now() });
    await writeAuthorityFiles(dataDir, { ...root, rootPem: root.certPem });
    return dataDir;
  }

  const rotationFor = (dataDir: string, onRecovered?: (o: string) => void): AuthorityRotation =>
    new AuthorityRotation({
      store: createFileAuthorityStore(dataDir, onRecovered ? { onRecovered } : {}),
      trustDomain: td,
      maxSvidTtlSeconds: WEEK_S,
    });

  test('prepare writes next/ with the Istio file names, keys 0600, every root in root-cert.pem, and a schema-versioned state', async () => {
    const dataDir = await initDir();
    const result = await rotationFor(dataDir).prepare({ now: clock.now() });

    assert.deepEqual((await readdir(join(dataDir, 'next'))).sort(), ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    assert.equal((await stat(join(dataDir, 'next'))).mode & 0o777, 0o700);
    assert.equal((await stat(join(dataDir, 'next', 'ca-key.pem'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dataDir, 'ca-key.pem'))).mode & 0o777, 0o600);
    const snap = await loadAuthoritySnapshot(dataDir, { trustDomain: td, now: clock.now() });
    assert.deepEqual(snap.bundle.fingerprints, result.bundle.map((r) => r.fingerprint));
    assert.equal(snap.bundle.roots.length, 2);
    assert.equal(snap.next?.authority.certificate.fingerprint256, result.next?.fingerprint);

    const state = JSON.parse(await readFile(join(dataDir, 'authority-state.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(state, {
      schemaVersion: 1,
      trustDomain: 'example.org',
      bundle: { sequence: 2, roots: snap.bundle.fingerprints },
      active: { certificate: snap.authority.certificate.fingerprint256 },
      next: { certificate: result.next!.fingerprint, publishedAt: clock.now().toISOString() },
      retiring: [],
      distrusted: [],
    });
    const leftovers = (await readdir(dataDir)).filter((f) => f.startsWith('.'));
    assert.deepEqual(leftovers, [], 'no lock, staging area or temp file is left behind');
  });

  test('activate moves next/ into the active files, removes next/ and records trustUntil', async () => {
    const dataDir = await initDir();
    const rotation = rotationFor(dataDir);
    const prepared = await rotation.prepare({ now: clock.now() });
    const nextKey = await readFile(join(dataDir, 'next', 'ca-key.pem'), 'utf8');
    const result = await rotation.activate({ now: clock.now() });

    assert.equal(await readFile(join(dataDir, 'ca-key.pem'), 'utf8'), nextKey);
    assert.equal((await stat(join(dataDir, 'ca-key.pem'))).mode & 0o777, 0o600);
    await assert.rejects(stat(join(dataDir, 'next')), { code: 'ENOENT' });
    const snap = await loadAuthoritySnapshot(dataDir, { trustDomain: td, now: clock.now() });
    assert.equal(snap.authority.certificate.fingerprint256, prepared.next!.fingerprint);
    const state = JSON.parse(await readFile(join(dataDir, 'authority-state.json'), 'utf8')) as {
      active: { activatedAt: string };
      retiring: { root: string; trustUntil: string }[];
    };
    assert.equal(state.active.activatedAt, clock.now().toISOString());
    assert.deepEqual(state.retiring, [{ root: result.retiring[0]!.fingerprint, trustUntil: new Date(clock.now().getTime() + WEEK_S * 1000).toISOString() }]);
  });

  test('a change interrupted after its commit point blocks readers, and recovery completes it', async () => {
    const dataDir = await initDir();
    const reference = join(dir, `reference-${n}`);
    await cp(dataDir, reference, { recursive: true });
    await rotationFor(reference).prepare({ now: clock.now() });

    // What a `rotate --prepare` killed half-way through step 4 leaves: the journal, two files
    // already moved into next/, the rest still staged.
    const staged = ['next/ca-key.pem', 'next/ca-cert.pem', 'next/cert-chain.pem', 'next/root-cert.pem', 'root-cert.pem', 'authority-state.json'];
    await mkdir(join(dataDir, '.rotation'), { mode: 0o700 });
    const steps = staged.map((to, i) => ({ op: 'install', from: `.rotation/${i}-${to.replace('/', '_')}`, to }));
    for (const step of steps) await cp(join(reference, step.to), join(dataDir, step.from));
    await writeFile(join(dataDir, '.rotation', 'commit.json'), JSON.stringify({ schemaVersion: 1, steps }));
    await mkdir(join(dataDir, 'next'), { mode: 0o700 });
    for (const step of steps.slice(0, 2)) await rename(join(dataDir, step.from), join(dataDir, step.to));

    await assert.rejects(
      loadAuthoritySnapshot(dataDir, { trustDomain: td, now: clock.now() }),
      (err: unknown) => err instanceof CaNotReadyError && err.rule === 'in-progress' && /meshca ca rotate/.test(err.message),
    );
    assert.equal(await recoverAuthorityDir(dataDir), 'completed');
    const recovered = await loadAuthoritySnapshot(dataDir, { trustDomain: td, now: clock.now() });
    const expected = await loadAuthoritySnapshot(reference, { trustDomain: td, now: clock.now() });
    assert.deepEqual(recovered.bundle.fingerprints, expected.bundle.fingerprints);
    assert.equal(recovered.bundle.sequence, 2);
    assert.equal(recovered.next?.authority.certificate.fingerprint256, expected.next?.authority.certificate.fingerprint256);
    await assert.rejects(stat(join(dataDir, '.rotation')), { code: 'ENOENT' });
    assert.equal(await recoverAuthorityDir(dataDir), 'clean');
  });

  test('a staging area without a commit is discarded by the next rotation, which then proceeds', async () => {
    const dataDir = await initDir();
    await mkdir(join(dataDir, '.rotation'), { mode: 0o700 });
    await writeFile(join(dataDir, '.rotation', '00-root-cert.pem'), 'half a bundle');
    const before = await loadAuthoritySnapshot(dataDir, { trustDomain: td, now: clock.now() });
    assert.equal(before.bundle.roots.length, 1, 'readers ignore an uncommitted change');

    const recovered: string[] = [];
    const result = await rotationFor(dataDir, (o) => recovered.push(o)).prepare({ now: clock.now() });
    assert.deepEqual(recovered, ['discarded']);
    assert.equal(result.bundle.length, 2);
  });

  test('a rotation fails fast while another live process holds the lock, and takes over a dead one', async () => {
    const dataDir = await initDir();
    const lock = join(dataDir, '.rotation.lock');
    await writeFile(lock, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
    await assert.rejects(
      rotationFor(dataDir).prepare({ now: clock.now() }),
      (err: unknown) => err instanceof CaNotReadyError && err.rule === 'locked' && err.message.includes(`pid ${process.pid}`),
    );
    await assert.rejects(stat(join(dataDir, 'next')), { code: 'ENOENT' });

    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    await writeFile(lock, JSON.stringify({ pid: deadPid, host: hostname(), since: new Date().toISOString() }));
    const result = await rotationFor(dataDir).prepare({ now: clock.now() });
    assert.equal(result.sequence, 2);
    await assert.rejects(stat(lock), { code: 'ENOENT' }, 'the lock is released');
  });

  test('a corrupt or newer authority-state.json is refused with a coded rule', async () => {
    const dataDir = await initDir();
    await writeFile(join(dataDir, 'authority-state.json'), '{"schemaVersion": 1, "bundle": 3}');
    await assert.rejects(loadAuthoritySnapshot(dataDir, { trustDomain: td, now: clock.now() }), (err: unknown) => err instanceof CaInvalidError && err.rule === 'state');
    await writeFile(join(dataDir, 'authority-state.json'), '{"schemaVersion": 2}');
    await assert.rejects(
      loadAuthoritySnapshot(dataDir, { trustDomain: td, now: clock.now() }),
      (err: unknown) => err instanceof CaInvalidError && err.rule === 'state-version' && /newer meshca/.test(err.message),
    );
  });
});
