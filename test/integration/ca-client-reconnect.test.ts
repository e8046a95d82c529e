/**
 * The agent's CA client after an outage: the first call after the CA is back reaches it. grpc-js
 * keeps a failed channel in reconnect backoff (1 s growing to 2 min) and fails calls on it at
 * once with a stale UNAVAILABLE; the client gives the next call a fresh channel instead.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { runCli } from '../../src/cmd/program.js';
import { loadOrCreateDevIssuer } from '../../src/files/dev-issuer-store.js';
import { createCsr } from '../../src/pki/csr.js';
import { createGrpcCaClient } from '../../src/transport/grpc/ca-client.js';
import { freePort } from '../helpers/processes.js';
import { startTestCa } from '../helpers/test-ca-server.js';

const quiet = new Writable({ write: (_c, _e, done) => done() });

describe('gRPC CA client after a CA outage', () => {
  test('the first call after the CA comes back succeeds, however long the outage', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshca-reconnect-'));
    const dataDir = join(dir, 'ca');
    assert.equal(await runCli(['ca', 'init', '--data-dir', dataDir], { stdout: quiet, stderr: quiet, env: {} }), 0);
    const { issuer } = await loadOrCreateDevIssuer(dataDir);
    const port = await freePort();
    const client = createGrpcCaClient({ address: `localhost:${port}`, rootCertPem: await readFile(join(dataDir, 'root-cert.pem'), 'utf8'), timeoutMs: 5000 });
    const request = async (): Promise<{ certChainPem: readonly string[] }> => {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const token = await issuer.mint({ namespace: 'default', serviceAccount: 'sleep', audience: 'istio-ca', now: new Date() });
      return client.createCertificate({ csrPem: createCsr(privateKey).pem, token, ttlSeconds: 3600 });
    };
    try {
      // The CA is down: a few attempts, spread out so grpc-js's own backoff would have grown.
      for (let i = 0; i < 3; i++) {
        await assert.rejects(request(), (err: Error & { code?: string }) => err.code === 'ERR_CA_NOT_READY');
        await new Promise((r) => setTimeout(r, 1500));
      }
      const ca = await startTestCa({ dataDir, grpcListen: `127.0.0.1:${port}` });
      try {
        const started = Date.now();
        const issued = await request();
        assert.ok(issued.certChainPem.length >= 1);
        assert.ok(Date.now() - started < 3000, `answered after ${Date.now() - started} ms`);
      } finally {
        await ca.close();
      }
    } finally {
      client.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
