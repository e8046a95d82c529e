import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { CertificateAuthority } from '../../../src/ca/certificate-authority.js';
import { CsrError, IdentityMismatchError, TtlError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { createSelfSignedRoot, loadAuthority } from '../../../src/pki/authority.js';
import { createCsr } from '../../../src/pki/csr.js';
import { mustParseSpiffeId } from '../../../src/spiffe/spiffe-id.js';
import { SigningPool } from '../../../src/workers/signing-pool.js';
import { ManualClock } from '../../helpers/manual-clock.js';

const ID = mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
const csr = (uris: string[] = [ID.toString()]): string => createCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey, { uris }).pem;

describe('SigningPool (worker threads)', () => {
  const clock = new ManualClock(new Date('2026-11-25T12:00:00Z'));
  let pool: SigningPool;
  let rootPem: string;
  let rootKeyPem: string;
  before(async () => {
    const root = await createSelfSignedRoot({ trustDomain: 'cluster.local', now: clock.now() });
    rootPem = root.certPem;
    rootKeyPem = root.keyPem;
    const pem = { certPem: root.certPem, keyPem: root.keyPem, rootPem: root.certPem };
    const ca = new CertificateAuthority({ authority: loadAuthority(pem, clock.now()), clock });
    pool = new SigningPool({ ca, authority: pem, workers: 2, clock, logger: silentLogger, caOptions: {} });
  });
  after(async () => {
    await pool.close();
  });

  test('signs concurrently in workers with the main thread clock, chained to the root', async () => {
    const issued = await Promise.all(Array.from({ length: 40 }, () => pool.sign(csr(), ID)));
    assert.equal(new Set(issued.map((i) => i.serial)).size, 40);
    for (const svid of issued) {
      const leaf = new X509Certificate(svid.certChainPem[0]!);
      assert.ok(leaf.verify(new X509Certificate(rootPem).publicKey));
      assert.equal(leaf.subjectAltName, `URI:${ID}`);
      assert.equal(svid.notBefore.toISOString(), '2026-11-25T11:59:50.000Z', 'time comes from the injected clock');
      assert.ok(svid.spiffeId.equals(ID));
    }
  });

  test('a worker refusal arrives as the same coded error as in-process signing', async () => {
    await assert.rejects(pool.sign('garbage', ID), (err: unknown) => err instanceof CsrError && err.rule === 'pem');
    await assert.rejects(pool.sign(csr(['spiffe://cluster.local/ns/x/sa/y']), ID), (err: unknown) => err instanceof IdentityMismatchError && err.rule === 'csr-spiffe-id');
    assert.throws(() => pool.resolveTtlSeconds(10 ** 9), TtlError);
  });

  test('close() drains: every job in flight when the pool is retired is answered, then new ones are refused', async () => {
    const retiring = new SigningPool({ ca: new CertificateAuthority({ authority: loadAuthority({ certPem: rootPem, keyPem: rootKeyPem, rootPem }, clock.now()), clock }), authority: { certPem: rootPem, keyPem: rootKeyPem, rootPem }, workers: 2, clock, logger: silentLogger, caOptions: {} });
    const inFlight = Array.from({ length: 200 }, () => retiring.sign(csr(), ID));
    const closing = retiring.close();
    await assert.rejects(retiring.sign(csr(), ID), /signing pool is closed/);
    const settled = await Promise.allSettled(inFlight);
    const failed = settled.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
    assert.deepEqual(failed, [], `${failed.length} of 200 failed`);
    await closing;
  });
});

