/**
 * A start that cannot succeed ends at once: one line naming the cause, exit 1, nothing left
 * listening. Real processes, as a kubelet would see them (a crash loop it can report, never a pod
 * that is Running and serves nothing).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort, meshcaExit } from '../helpers/processes.js';

const exitOf = (args: readonly string[]) => meshcaExit(args);

const lastLine = (text: string): string => text.trim().split('\n').at(-1) ?? '';

describe('start-up failures exit at once with one line', () => {
  let dir: string;
  let taken: net.Server;
  let takenPort: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-startup-'));
    taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    takenPort = (taken.address() as net.AddressInfo).port;
    await writeFile(join(dir, 'a-file'), 'not a directory\n');
    await writeFile(join(dir, 'token'), 'x\n');
  });

  after(async () => {
    taken.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('ca serve with its HTTPS port taken: one line, exit 1, and its gRPC port is released', async () => {
    const grpc = await freePort();
    const r = await exitOf(['ca', 'serve', '--data-dir', join(dir, 'ca'), '--grpc-listen', `127.0.0.1:${grpc}`, '--http-listen', `127.0.0.1:${takenPort}`]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(lastLine(r.stderr), new RegExp(`^meshca: .*EADDRINUSE.*127\\.0\\.0\\.1:${takenPort}`));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack');
    assert.ok(r.ms < 15_000, `exited after ${r.ms} ms`);
    const probe = net.createServer();
    await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(grpc, '127.0.0.1', () => resolve()));
    probe.close();
  });

  test('ca serve with a data dir it cannot create: one line, exit 1', async () => {
    const r = await exitOf(['ca', 'serve', '--data-dir', join(dir, 'a-file', 'ca'), '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(lastLine(r.stderr), /^meshca: ENOTDIR: not a directory/);
    assert.doesNotMatch(r.stderr, /unexpected error|\n\s+at /);
  });

  test('agent with its health port taken: one line, exit 1', async () => {
    const ca = await exitOf(['ca', 'init', '--data-dir', join(dir, 'agent-ca')]);
    assert.equal(ca.code, 0, ca.stderr);
    const r = await exitOf([
      'agent', '--ca-address', '127.0.0.1:1', '--ca-root', join(dir, 'agent-ca', 'root-cert.pem'), '--token-file', join(dir, 'token'),
      '--out', join(dir, 'out'), '--health-listen', `127.0.0.1:${takenPort}`,
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(lastLine(r.stderr), new RegExp(`^meshca: .*EADDRINUSE.*127\\.0\\.0\\.1:${takenPort}`));
  });
});
