/**
 * What a user who types a wrong command gets: a usage error with exit 2 and one clear line,
 * never a stack trace or a result that only fails later. In process, through `runCli`.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { systemClock } from '../../src/clock.js';
import { runCli } from '../../src/cmd/program.js';
import { openssl } from '../helpers/openssl.js';
import { startTestCa } from '../helpers/test-ca-server.js';

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

async function run(argv: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await runCli(argv, { stdout, stderr, clock: systemClock, env: {} });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

describe('CLI messages for mistakes a user types', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-cli-messages-'));
    assert.equal((await run(['ca', 'init', '--data-dir', join(dir, 'ca')])).code, 0);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('ca sign refuses the trust domain ID itself: an SVID names a workload', async () => {
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'req.pem')]);
    const refused = await run(['ca', 'sign', '--data-dir', join(dir, 'ca'), '--csr', join(dir, 'req.pem'), '--spiffe-id', 'spiffe://cluster.local']);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /--spiffe-id spiffe:\/\/cluster\.local is the trust domain's own ID, not a workload's/);
    assert.equal(refused.stdout, '', 'no certificate printed');
    const signed = await run(['ca', 'sign', '--data-dir', join(dir, 'ca'), '--csr', join(dir, 'req.pem'), '--spiffe-id', 'spiffe://cluster.local/ns/default/sa/sleep']);
    assert.equal(signed.code, 0, signed.stderr);
    assert.match(signed.stdout, /BEGIN CERTIFICATE/);
  });

  test('token --ttl 0s is a usage error, not a stack trace', async () => {
    const r = await run(['token', '--data-dir', join(dir, 'ca'), '--namespace', 'default', '--service-account', 'sleep', '--ttl', '0s']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--ttl 0s must be positive/);
    assert.doesNotMatch(r.stderr, /TypeError|\n\s+at /);
  });

  test('token without a CA in the data dir refuses instead of minting with a new key', async () => {
    const empty = join(dir, 'no-ca');
    const r = await run(['token', '--data-dir', empty, '--namespace', 'default', '--service-account', 'sleep']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /holds no CA \(no root-cert\.pem\)/);
    assert.equal(r.stdout, '');
    await assert.rejects(readdir(empty), /ENOENT/, 'nothing was created');
    const ok = await run(['token', '--data-dir', join(dir, 'ca'), '--namespace', 'default', '--service-account', 'sleep']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^ey[\w-]+\.[\w-]+\.[\w-]+\n$/);
  });

  test('inspect of a missing file or a directory: one coded line, exit 2', async () => {
    for (const [path, message] of [
      [join(dir, 'nope.pem'), /nope\.pem: no such file/],
      [dir, /: is a directory/],
    ] as const) {
      const r = await run(['inspect', path]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
    await writeFile(join(dir, 'junk.pem'), 'not pem\n');
    assert.equal((await run(['inspect', join(dir, 'junk.pem')])).code, 2);
  });

  test('never replaces trust silently: a data dir that lost its CA key but keeps its roots is refused by ca serve and ca init', async () => {
    for (const leftover of ['root-cert.pem', 'authority-state.json']) {
      const lost = join(dir, `lost-${leftover}`);
      await mkdir(lost);
      if (leftover === 'root-cert.pem') await copyFile(join(dir, 'ca', 'root-cert.pem'), join(lost, leftover));
      else await writeFile(join(lost, leftover), '{}\n');
      const before = await readFile(join(lost, leftover), 'utf8');

      await assert.rejects(
        startTestCa({ dataDir: lost }).then(async (ca) => {
          await ca.close();
          assert.fail('ca serve started with a new root');
        }),
        (err: Error & { code?: string; rule?: string }) => {
          assert.equal(err.code, 'ERR_CA_INVALID');
          assert.equal(err.rule, 'missing');
          assert.match(err.message, new RegExp(`holds ${leftover.replace('.', '\\.')}: the CA whose roots workloads trust lost its key`));
          return true;
        },
      );
      const init = await run(['ca', 'init', '--data-dir', lost]);
      assert.equal(init.code, 1, init.stderr);
      assert.match(init.stderr, new RegExp(`holds ${leftover.replace('.', '\\.')} of an earlier CA; pass --force`));
      assert.equal(await readFile(join(lost, leftover), 'utf8'), before, `${leftover} untouched`);
      assert.deepEqual((await readdir(lost)).sort(), [leftover], 'nothing written');

      const forced = await run(['ca', 'init', '--data-dir', lost, '--force']);
      assert.equal(forced.code, 0, forced.stderr);
    }
  });
});

