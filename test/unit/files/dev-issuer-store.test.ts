import * as assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';

import { ConfigError } from '../../../src/errors.js';
import { DEV_ISSUER_KEY_FILE, loadOrCreateDevIssuer } from '../../../src/files/dev-issuer-store.js';

const posix = process.platform !== 'win32';

describe('loadOrCreateDevIssuer', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-dev-issuer-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a key file readable by its owner only, then loads the same key', async () => {
    const dataDir = join(dir, 'nested', 'data');
    const first = await loadOrCreateDevIssuer(dataDir);
    assert.equal(first.created, true);
    assert.equal(first.path, join(dataDir, DEV_ISSUER_KEY_FILE));
    if (posix) assert.equal((await stat(first.path)).mode & 0o777, 0o600);

    const second = await loadOrCreateDevIssuer(dataDir);
    assert.equal(second.created, false);
    assert.equal(second.issuer.keyId, first.issuer.keyId);
    assert.deepEqual(second.warnings, []);
  });

  it('leaves no temporary files behind', async () => {
    await loadOrCreateDevIssuer(dir);
    assert.deepEqual(await readdir(dir), [DEV_ISSUER_KEY_FILE]);
  });

  it('gives every concurrent caller the same key', async () => {
    const results = await Promise.all([loadOrCreateDevIssuer(dir), loadOrCreateDevIssuer(dir), loadOrCreateDevIssuer(dir)]);
    assert.equal(new Set(results.map((r) => r.issuer.keyId)).size, 1);
    assert.equal(results.filter((r) => r.created).length, 1);
    assert.deepEqual(await readdir(dir), [DEV_ISSUER_KEY_FILE]);
  });

  it('warns when the key file is readable by other users', async () => {
    if (!posix) return; // Windows has no mode bits to check
    const { path } = await loadOrCreateDevIssuer(dir);
    await chmod(path, 0o644);
    const { warnings } = await loadOrCreateDevIssuer(dir);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /chmod 600/);
  });

  it('refuses a corrupt key file instead of silently replacing it', async () => {
    await writeFile(join(dir, DEV_ISSUER_KEY_FILE), '{"kty":"EC"', { mode: 0o600 });
    await assert.rejects(loadOrCreateDevIssuer(dir), (err: unknown) => err instanceof ConfigError && err.code === 'ERR_CONFIG_INVALID');
    await writeFile(join(dir, DEV_ISSUER_KEY_FILE), '{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}', { mode: 0o600 });
    await assert.rejects(loadOrCreateDevIssuer(dir), (err: unknown) => err instanceof ConfigError && err.code === 'ERR_CONFIG_INVALID');
  });
});
