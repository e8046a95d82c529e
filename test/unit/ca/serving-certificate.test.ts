import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, test } from 'node:test';
import { CertificateAuthority } from '../../../src/ca/certificate-authority.js';
import { ServingCertificateManager, type ServingCertificate } from '../../../src/ca/serving-certificate.js';
import { createSelfSignedRoot, loadAuthority } from '../../../src/pki/authority.js';
import { ManualClock } from '../../helpers/manual-clock.js';
import { opensslVerify } from '../../helpers/openssl.js';

const HOUR = 3_600_000;

describe('ServingCertificateManager', () => {
  test('issues a DNS-named serving certificate chained to the mesh root and renews it at half its life', async () => {
    const clock = new ManualClock(new Date('2026-11-25T00:00:00Z'));
    const root = await createSelfSignedRoot({ trustDomain: 'cluster.local', now: clock.now() });
    const ca = new CertificateAuthority({ authority: loadAuthority({ certPem: root.certPem, keyPem: root.keyPem, rootPem: root.certPem }, clock.now()), clock });
    const manager = new ServingCertificateManager({ ca, dnsNames: ['meshca.meshca.svc', 'localhost'], clock });
    const updates: ServingCertificate[] = [];
    manager.on('update', (m) => updates.push(m));
    const first = await manager.start();
    const leaf = new X509Certificate(first.certChainPem);
    assert.equal(leaf.subjectAltName, 'DNS:meshca.meshca.svc, DNS:localhost');
    assert.ok(leaf.checkHost('localhost'));
    const verdict = await opensslVerify(root.certPem, first.certChainPem, { purpose: 'sslserver', at: clock.now() });
    assert.equal(verdict.code, 0, verdict.stdout + verdict.stderr);

    await clock.waitForTimers();
    clock.advance(11 * HOUR);
    assert.equal(updates.length, 1, 'not renewed before half-life');
    clock.advance(1 * HOUR);
    await new Promise((resolve) => manager.once('update', resolve));
    assert.equal(updates.length, 2);
    assert.notEqual(updates[1]!.serial, first.serial);
    assert.equal(manager.current.serial, updates[1]!.serial);
    manager.close();
  });
});
