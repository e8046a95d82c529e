/**
 * The library's Workload API X509Source when there is no agent to talk to: the caller's handled
 * rejection is the end of it (no timer crashes the process later), and the socket comes from
 * SPIFFE_ENDPOINT_SOCKET when none is given, as go-spiffe does.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createWorkloadApiX509Source } from '../../src/transport/grpc/workload-api-client.js';

describe('createWorkloadApiX509Source without an agent', () => {
  let dir: string;
  const saved = process.env['SPIFFE_ENDPOINT_SOCKET'];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-wlapi-client-'));
  });

  after(async () => {
    if (saved === undefined) delete process.env['SPIFFE_ENDPOINT_SOCKET'];
    else process.env['SPIFFE_ENDPOINT_SOCKET'] = saved;
    await rm(dir, { recursive: true, force: true });
  });

  test('a start that timed out leaves no reconnect behind to crash the process later', async () => {
    const crashes: Error[] = [];
    const onCrash = (err: Error): void => void crashes.push(err);
    process.on('uncaughtException', onCrash);
    try {
      await assert.rejects(createWorkloadApiX509Source({ socket: join(dir, 'none.sock'), timeoutMs: 1200 }), (err: Error & { code?: string; rule?: string }) => {
        assert.equal(err.code, 'ERR_CA_NOT_READY');
        assert.equal(err.rule, 'timeout');
        return true;
      });
      // Reconnects were due at 0.5 s, 1.5 s, 3.5 s after the first attempt.
      await new Promise((r) => setTimeout(r, 3000));
      assert.deepEqual(crashes.map((e) => e.message), []);
    } finally {
      process.off('uncaughtException', onCrash);
    }
  });

  test('the socket defaults to SPIFFE_ENDPOINT_SOCKET; with neither, a config error says so', async () => {
    delete process.env['SPIFFE_ENDPOINT_SOCKET'];
    await assert.rejects(createWorkloadApiX509Source({ timeoutMs: 200 }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_CONFIG_INVALID');
      assert.match(err.message, /set SPIFFE_ENDPOINT_SOCKET/);
      return true;
    });
    process.env['SPIFFE_ENDPOINT_SOCKET'] = `unix://${join(dir, 'from-env.sock')}`;
    await assert.rejects(createWorkloadApiX509Source({ timeoutMs: 300 }), /from-env\.sock/);
  });
});
