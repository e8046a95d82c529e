/**
 * `ca rotate --prepare`, `--activate` and `--retire --force` against a running CA with signing
 * workers, while certificate requests keep arriving: the watcher swaps the authority (and
 * retires the old signing pool) under load, and not one request may fail for it.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createCsr } from '../../src/pki/csr.js';
import { meshca } from '../helpers/cli.js';
import { startTestCa } from '../helpers/test-ca-server.js';

describe('CA authority rotation under load', () => {
  test('prepare, activate, retire with requests in flight: 0 failed, and issuance moves to the new root', async () => {
    const ca = await startTestCa({ signingWorkers: '2', rateLimit: '0' });
    const csrs = Array.from({ length: 32 }, () => createCsr(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey).pem);
    const tokens = await Promise.all(Array.from({ length: 8 }, (_, i) => ca.mint({ serviceAccount: `load-${i}`, ttlSeconds: 600 })));
    const failures: string[] = [];
    let issued = 0;
    let lastLeaf = '';
    let stop = false;
    const loops = tokens.map(async (token, i) => {
      for (let n = 0; !stop; n++) {
        try {
          const response = await ca.createCertificate({ csr: csrs[(i * 4 + n) % csrs.length]! }, token);
          issued++;
          lastLeaf = response.cert_chain[0]!;
        } catch (err) {
          failures.push(String((err as Error).message));
        }
      }
    });
    try {
      const oldRoot = new X509Certificate(await readFile(join(ca.dataDir, 'root-cert.pem'), 'utf8')).fingerprint256;
      for (const step of ['--prepare', '--activate', '--retire']) {
        await new Promise((r) => setTimeout(r, 1500));
        const args = ['ca', 'rotate', step, ...(step === '--retire' ? ['--force'] : []), '--data-dir', ca.dataDir];
        const result = await meshca(args);
        assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 2500));
      stop = true;
      await Promise.all(loops);
      assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${issued + failures.length} requests failed`);
      assert.ok(issued > 100, `only ${issued} requests issued`);
      const roots = (await readFile(join(ca.dataDir, 'root-cert.pem'), 'utf8')).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
      assert.equal(roots.length, 1, 'the old root was retired');
      const newRoot = new X509Certificate(roots[0]!);
      assert.notEqual(newRoot.fingerprint256, oldRoot);
      assert.ok(new X509Certificate(lastLeaf).verify(newRoot.publicKey) || new X509Certificate(lastLeaf).checkIssued(newRoot), 'the last certificates come from the new authority');
    } finally {
      stop = true;
      await Promise.all(loops);
      await ca.close();
    }
  });
});
