import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CaInvalidError } from '../../../src/errors.js';
import { createSelfSignedRoot, loadAuthority } from '../../../src/pki/authority.js';
import { readCertificateFields, readKeyUsage, readSubjectKeyId } from '../../../src/pki/certificate-fields.js';
import { opensslVerify } from '../../helpers/openssl.js';
import { chainPem, createTestIntermediate, createTestLeaf, createTestRoot } from '../../helpers/test-ca.js';

const HOUR = 3_600_000;

function assertCaInvalid(fn: () => unknown, rule: string, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CaInvalidError, `expected CaInvalidError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_CA_INVALID');
    assert.equal(err.rule, rule);
    assert.match(err.message, message);
    return true;
  });
}

describe('createSelfSignedRoot', () => {
  for (const keyKind of ['ec-p256', 'ec-p384', 'rsa-2048', 'ed25519'] as const) {
    test(`makes a ${keyKind} root that openssl accepts as a strict self-signed CA`, async () => {
      const now = new Date();
      const root = await createSelfSignedRoot({ trustDomain: 'cluster.local', keyKind, now });
      const authority = loadAuthority({ certPem: root.certPem, keyPem: root.keyPem, rootPem: root.certPem }, now);
      assert.equal(authority.signer.keyKind, keyKind);
      assert.equal(authority.certificate.subject, 'O=cluster.local');
      assert.equal(authority.certificate.ca, true);
      const fields = readCertificateFields(authority.certificate.raw);
      assert.deepEqual(readKeyUsage(fields), { digitalSignature: false, keyEncipherment: false, keyCertSign: true, cRLSign: true });
      assert.equal(fields.extensions.get('2.5.29.19')?.critical, true);
      assert.equal(fields.extensions.get('2.5.29.15')?.critical, true);
      assert.equal(readSubjectKeyId(fields).length, 20);
      const years = (authority.notAfter.getTime() - now.getTime()) / (365 * 24 * HOUR);
      assert.ok(years > 9.9 && years < 10.1, `root lifetime ${years} years`);
      const verify = await opensslVerify(root.certPem, root.certPem);
      assert.equal(verify.code, 0, verify.stderr);
    });
  }
});

describe('loadAuthority (plug-in CA)', () => {
  test('loads an intermediate CA with an Istio-style cert-chain.pem and orders the issuer chain', async () => {
    const root = await createTestRoot({ trustDomain: 'cluster.local' });
    const mid = await createTestIntermediate(root);
    const ca = await createTestIntermediate(mid);
    const authority = loadAuthority(
      // Out of order and repeating the signing cert and root, as hand-made cacerts often do.
      { certPem: ca.pem, keyPem: ca.keyPem, chainPem: chainPem(root, ca, mid), rootPem: root.pem },
      new Date(),
    );
    assert.deepEqual(
      authority.issuerChain.map((c) => c.fingerprint256),
      [ca.cert.fingerprint256, mid.cert.fingerprint256, root.cert.fingerprint256],
    );
    assert.deepEqual(authority.intermediates.map((c) => c.fingerprint256), [mid.cert.fingerprint256]);
  });

  test('refuses a key that does not match the CA certificate', async () => {
    const root = await createTestRoot();
    const other = await createTestRoot();
    assertCaInvalid(
      () => loadAuthority({ certPem: root.pem, keyPem: other.keyPem, rootPem: root.pem }, new Date()),
      'key-mismatch',
      /ca-key\.pem does not match the public key of ca-cert\.pem/,
    );
  });

  test('refuses an expired CA certificate', async () => {
    const root = await createTestRoot();
    const ca = await createTestIntermediate(root, { notBefore: new Date(Date.now() - 10 * HOUR), notAfter: new Date(Date.now() - HOUR) });
    assertCaInvalid(
      () => loadAuthority({ certPem: ca.pem, keyPem: ca.keyPem, chainPem: ca.pem, rootPem: root.pem }, new Date()),
      'expired',
      /CA certificate .* expired at/,
    );
  });

  test('refuses a CA certificate that is not yet valid', async () => {
    const root = await createTestRoot();
    const ca = await createTestIntermediate(root, { notBefore: new Date(Date.now() + HOUR), notAfter: new Date(Date.now() + 5 * HOUR) });
    assertCaInvalid(
      () => loadAuthority({ certPem: ca.pem, keyPem: ca.keyPem, rootPem: root.pem }, new Date()),
      'not-yet-valid',
      /is not valid until/,
    );
  });

  test('refuses a broken chain: the intermediate is not signed by the given root', async () => {
    const root = await createTestRoot();
    const otherRoot = await createTestRoot();
    const ca = await createTestIntermediate(root);
    assertCaInvalid(
      () => loadAuthority({ certPem: ca.pem, keyPem: ca.keyPem, chainPem: ca.pem, rootPem: otherRoot.pem }, new Date()),
      'chain',
      /CA chain is broken: no certificate in cert-chain\.pem or root-cert\.pem signed/,
    );
  });

  test('refuses a chain with a missing middle certificate', async () => {
    const root = await createTestRoot();
    const mid = await createTestIntermediate(root);
    const ca = await createTestIntermediate(mid);
    assertCaInvalid(
      () => loadAuthority({ certPem: ca.pem, keyPem: ca.keyPem, chainPem: ca.pem, rootPem: root.pem }, new Date()),
      'chain',
      /CA chain is broken/,
    );
  });

  test('refuses a signing certificate that is not a CA', async () => {
    const root = await createTestRoot();
    const leaf = await createTestLeaf(root);
    assertCaInvalid(
      () => loadAuthority({ certPem: leaf.pem, keyPem: leaf.keyPem, rootPem: root.pem }, new Date()),
      'not-ca',
      /is not a CA/,
    );
  });

  test('refuses a CA certificate without keyCertSign', async () => {
    const root = await createTestRoot();
    const ca = await createTestIntermediate(root, { keyUsages: ['digitalSignature'] });
    assertCaInvalid(
      () => loadAuthority({ certPem: ca.pem, keyPem: ca.keyPem, rootPem: root.pem }, new Date()),
      'key-usage',
      /lacks the keyCertSign key usage/,
    );
  });

  test('refuses unreadable key and certificate files', async () => {
    const root = await createTestRoot();
    assertCaInvalid(() => loadAuthority({ certPem: root.pem, keyPem: 'not a key', rootPem: root.pem }, new Date()), 'key', /not a readable PEM private key/);
    assertCaInvalid(() => loadAuthority({ certPem: 'nothing', keyPem: root.keyPem, rootPem: root.pem }, new Date()), 'missing', /holds no certificate/);
    assertCaInvalid(() => loadAuthority({ certPem: root.pem, keyPem: root.keyPem, rootPem: '' }, new Date()), 'missing', /root-cert\.pem holds no certificate/);
  });
});
