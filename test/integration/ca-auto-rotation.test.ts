import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { writeAuthorityFiles } from '../../src/files/authority-files.js';
import { createSelfSignedRoot } from '../../src/pki/authority.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { startTestCa } from '../helpers/test-ca-server.js';

const DAY = 86_400_000;

describe('a running CA renews its self-signed root by itself', () => {
  test('prepares a successor when the root nears its end, publishes it first, then signs with it', async () => {
    const clock = new ManualClock(new Date('2026-01-01T00:00:00Z'));
    const dataDir = await mkdtemp(join(tmpdir(), 'meshca-auto-'));
    const root = await createSelfSignedRoot({ trustDomain: 'cluster.local', now: clock.now(), validityDays: 60 });
    await writeAuthorityFiles(dataDir, { ...root, rootPem: root.certPem });
    // Plaintext: the simulated month would put real TLS verification (wall-clock time) off.
    const ca = await startTestCa({ dataDir, maxTtl: '24h', insecure: 'true' }, clock);
    const bundle = async () => {
      const res = await fetch(`${ca.httpUrl}/v1/bundle`);
      const body = await res.text();
      return { sequence: Number(res.headers.get('x-spiffe-sequence')), roots: (body.match(/BEGIN CERTIFICATE/g) ?? []).length };
    };
    const waitFor = async (check: () => Promise<boolean>, what: string): Promise<void> => {
      for (let i = 0; i < 100; i++) {
        await ca.running.serving.renew().catch(() => undefined);
        if (await check()) return;
        clock.advance(2_500); // lets the directory watcher poll
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.fail(`timed out: ${what}`);
    };
    try {
      const before = await bundle();
      assert.equal(before.roots, 1);
      // 60-day root: a successor is prepared once 30 days or less are left.
      clock.advance(31 * DAY);
      await waitFor(async () => (await bundle()).roots === 2, 'the prepared root in the bundle');
      const published = await bundle();
      assert.ok(published.sequence > before.sequence, 'the sequence grows with every bundle change');
      const oldIssuer = new X509Certificate(root.certPem).fingerprint256;
      const issuerOf = async () => {
        const r = await ca.createCertificate({ csr: (await import('../../src/pki/csr.js')).createCsr((await import('node:crypto')).generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey).pem }, await ca.mint());
        return new X509Certificate(r.cert_chain.at(-1)!).fingerprint256;
      };
      assert.equal(await issuerOf(), oldIssuer, 'nothing is signed by the new root before it has propagated');
      clock.advance(2 * 3_600_000);
      await waitFor(async () => (await issuerOf()) !== oldIssuer, 'activation of the new root');
      assert.equal((await bundle()).roots, 2, 'the old root stays trusted while its SVIDs live');
    } finally {
      await ca.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
