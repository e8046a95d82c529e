import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { describe, test } from 'node:test';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { CertificateAuthority } from '../../../src/ca/certificate-authority.js';
import { CaNotReadyError, CsrError, IdentityMismatchError, TtlError, type IdentityError } from '../../../src/errors.js';
import { createSelfSignedRoot, loadAuthority, type Authority } from '../../../src/pki/authority.js';
import { sign as cryptoSign } from 'node:crypto';
import { OID, signatureAlgorithmFor } from '../../../src/pki/algorithms.js';
import { createCsr } from '../../../src/pki/csr.js';
import * as der from '../../../src/pki/der.js';
import { encodePem } from '../../../src/pki/pem.js';
import { checkX509SvidLeaf } from '../../../src/spiffe/x509-svid.js';
import { generateKey } from '../../../src/pki/keys.js';
import { mustParseSpiffeId } from '../../../src/spiffe/spiffe-id.js';
import { ManualClock } from '../../helpers/manual-clock.js';
import { openssl, opensslCsr, opensslVerify } from '../../helpers/openssl.js';
import { createTestIntermediate, createTestRoot } from '../../helpers/test-ca.js';

const HOUR = 3_600_000;
const SLEEP = mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
const T0 = new Date('2026-11-25T12:00:00.000Z');

async function selfSignedAuthority(now = new Date()): Promise<Authority> {
  const root = await createSelfSignedRoot({ trustDomain: 'cluster.local', now });
  return loadAuthority({ certPem: root.certPem, keyPem: root.keyPem, rootPem: root.certPem }, now);
}

function ecCsr(uris: readonly string[] = [SLEEP.toString()]): string {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return createCsr(privateKey, { uris }).pem;
}

async function assertRejects(promise: Promise<unknown>, type: new (...args: never[]) => IdentityError, rule: string, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    assert.equal(err.rule, rule);
    assert.match(err.message, message);
    return true;
  });
}

describe('CertificateAuthority.sign', () => {
  test('issues the X.509-SVID profile, field by field (checked with @peculiar/x509)', async () => {
    const clock = new ManualClock(T0);
    const authority = await selfSignedAuthority(T0);
    const ca = new CertificateAuthority({ authority, clock });
    const issued = await ca.sign(ecCsr(), SLEEP);

    const leaf = new x509.X509Certificate(issued.certificate);
    const root = new x509.X509Certificate(authority.certificate.raw);
    assert.equal(leaf.subject, '');
    assert.equal(leaf.issuer, 'O=cluster.local');
    assert.equal(leaf.notBefore.toISOString(), '2026-11-25T11:59:50.000Z', 'backdated 10 s');
    assert.equal(leaf.notAfter.toISOString(), '2026-11-26T12:00:00.000Z', '24 h from issuance');
    assert.equal(issued.notAfter.getTime() - T0.getTime(), 24 * HOUR);
    assert.equal(leaf.serialNumber, issued.serial);
    assert.equal(issued.serial.length, 32);
    assert.ok(Number.parseInt(issued.serial[0]!, 16) < 8, 'serial is positive');

    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
    assert.ok(san?.critical, 'SAN is critical because the subject is empty');
    assert.deepEqual(san.names.toJSON(), [{ type: 'url', value: SLEEP.toString() }]);
    const bc = leaf.getExtension(x509.BasicConstraintsExtension);
    assert.ok(bc?.critical);
    assert.equal(bc.ca, false);
    const ku = leaf.getExtension(x509.KeyUsagesExtension);
    assert.ok(ku?.critical);
    assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature);
    const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension);
    assert.deepEqual([...(eku?.usages ?? [])], [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
    const aki = leaf.getExtension(x509.AuthorityKeyIdentifierExtension);
    const ski = root.getExtension(x509.SubjectKeyIdentifierExtension);
    assert.equal(aki?.keyId, ski?.keyId);
    assert.equal(leaf.extensions.length, 5);
    assert.ok(await leaf.verify({ publicKey: root.publicKey, signatureOnly: true }, globalThis.crypto));

    assert.equal(issued.certChainPem.length, 2);
    assert.equal(new X509Certificate(issued.certChainPem[1]!).fingerprint256, authority.certificate.fingerprint256);
  });

  test('issued SVIDs pass openssl verify -x509_strict for client and server use', async () => {
    const authority = await selfSignedAuthority();
    const ca = new CertificateAuthority({ authority });
    const issued = await ca.sign(ecCsr(), SLEEP);
    const rootPem = ca.rootsPem;
    for (const purpose of ['sslclient', 'sslserver']) {
      const result = await opensslVerify(rootPem, issued.certChainPem[0]!, { purpose });
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /: OK/);
    }
    const text = await openssl(['x509', '-noout', '-text'], issued.certChainPem[0]);
    assert.match(text.stdout, /Subject: *\n/);
    assert.match(text.stdout, /X509v3 Subject Alternative Name: critical\n\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
    assert.match(text.stdout, /X509v3 Basic Constraints: critical\n\s+CA:FALSE/);
    assert.match(text.stdout, /X509v3 Key Usage: critical\n\s+Digital Signature\n/);
    assert.match(text.stdout, /TLS Web Server Authentication, TLS Web Client Authentication/);
  });

  test('an RSA key also gets keyEncipherment, as Istio issues it', async () => {
    const ca = new CertificateAuthority({ authority: await selfSignedAuthority() });
    const { privateKey } = await generateKey('rsa-2048');
    const issued = await ca.sign(createCsr(privateKey, { uris: [SLEEP.toString()] }).pem, SLEEP);
    const ku = new x509.X509Certificate(issued.certificate).getExtension(x509.KeyUsagesExtension);
    assert.equal(ku?.usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
  });

  test('signs a CSR made by openssl req with no SAN at all', async () => {
    const ca = new CertificateAuthority({ authority: await selfSignedAuthority() });
    const { csrPem } = await opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    const issued = await ca.sign(csrPem, SLEEP);
    const san = new x509.X509Certificate(issued.certificate).getExtension(x509.SubjectAlternativeNameExtension);
    assert.deepEqual(san?.names.toJSON(), [{ type: 'url', value: SLEEP.toString() }]);
  });

  test('an intermediate (plug-in) CA returns leaf, intermediate and root, and openssl verifies the chain', async () => {
    const root = await createTestRoot({ trustDomain: 'cluster.local' });
    const inter = await createTestIntermediate(root);
    const authority = loadAuthority({ certPem: inter.pem, keyPem: inter.keyPem, chainPem: inter.pem + root.pem, rootPem: root.pem }, new Date());
    const ca = new CertificateAuthority({ authority });
    const issued = await ca.sign(ecCsr(), SLEEP);
    assert.equal(issued.certChainPem.length, 3);
    assert.equal(new X509Certificate(issued.certChainPem[1]!).fingerprint256, inter.cert.fingerprint256);
    assert.equal(new X509Certificate(issued.certChainPem[2]!).fingerprint256, root.cert.fingerprint256);
    assert.equal(new x509.X509Certificate(issued.certificate).issuer, new x509.X509Certificate(inter.der).subject);
    const result = await opensslVerify(root.pem, issued.certChainPem[0]!, { untrustedPem: inter.pem, purpose: 'sslclient' });
    assert.equal(result.code, 0, result.stdout + result.stderr);
  });

  test('serial numbers are unique', async () => {
    const ca = new CertificateAuthority({ authority: await selfSignedAuthority() });
    const csr = ecCsr();
    const serials = new Set<string>();
    for (let i = 0; i < 300; i++) serials.add((await ca.sign(csr, SLEEP)).serial);
    assert.equal(serials.size, 300);
  });

  describe('refuses', () => {
    test('a CSR asking for a different SPIFFE ID', async () => {
      const ca = new CertificateAuthority({ authority: await selfSignedAuthority() });
      await assertRejects(
        ca.sign(ecCsr(['spiffe://cluster.local/ns/kube-system/sa/admin']), SLEEP),
        IdentityMismatchError,
        'csr-spiffe-id',
        /CSR requests "spiffe:\/\/cluster\.local\/ns\/kube-system\/sa\/admin" but the caller is authenticated as spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/,
      );
    });

    test('a CSR asking for its own ID plus another', async () => {
      const ca = new CertificateAuthority({ authority: await selfSignedAuthority() });
      await assertRejects(ca.sign(ecCsr([SLEEP.toString(), 'spiffe://evil.org/x']), SLEEP), IdentityMismatchError, 'csr-spiffe-id', /evil\.org/);
    });

    test('a CSR asking for a DNS name', async () => {
      const ca = new CertificateAuthority({ authority: await selfSignedAuthority() });
      const { csrPem } = await opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], ['-addext', 'subjectAltName=DNS:kubernetes.default.svc']);
      await assertRejects(ca.sign(csrPem, SLEEP), IdentityMismatchError, 'csr-san', /CSR requests a dns SAN "kubernetes\.default\.svc"/);
    });

    test('a CSR whose signature does not verify', async () => {
      const ca = new CertificateAuthority({ authority: await selfSignedAuthority() });
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const der = Uint8Array.from(createCsr(privateKey, { uris: [SLEEP.toString()] }).der);
      der[der.length - 3]! ^= 0x40;
      await assertRejects(ca.sign(der, SLEEP), CsrError, 'signature', /CSR signature does not verify/);
    });

    test('a weak RSA-1024 key', async () => {
      const ca = new CertificateAuthority({ authority: await selfSignedAuthority() });
      const { csrPem } = await opensslCsr(['-newkey', 'rsa:1024']);
      await assertRejects(ca.sign(csrPem, SLEEP), CsrError, 'weak-key', /RSA 1024 bits is not accepted/);
    });

    test('a TTL over the maximum, and a non-positive TTL', async () => {
      const ca = new CertificateAuthority({ authority: await selfSignedAuthority(), maxTtlSeconds: 48 * 3600 });
      await assertRejects(ca.sign(ecCsr(), SLEEP, { ttlSeconds: 49 * 3600 }), TtlError, 'too-long', /requested TTL 176400s is greater than the maximum allowed 172800s/);
      await assertRejects(ca.sign(ecCsr(), SLEEP, { ttlSeconds: 0 }), TtlError, 'not-positive', /not a positive number/);
      await assertRejects(ca.sign(ecCsr(), SLEEP, { ttlSeconds: Number.NaN }), TtlError, 'not-positive', /not a positive number/);
    });

    test('to sign once its own certificate has expired', async () => {
      const clock = new ManualClock(T0);
      const ca = new CertificateAuthority({ authority: await selfSignedAuthority(T0), clock });
      clock.advance(11 * 365 * 24 * HOUR);
      await assertRejects(ca.sign(ecCsr(), SLEEP), CaNotReadyError, 'ca-expired', /CA certificate expired at/);
    });

    test('to ship a certificate its signer got wrong', async () => {
      const authority = await selfSignedAuthority();
      const faulty: Authority = { ...authority, signer: { ...authority.signer, sign: async () => new Uint8Array(70).fill(1) } };
      const ca = new CertificateAuthority({ authority: faulty });
      await assert.rejects(ca.sign(ecCsr(), SLEEP), /CA self-check failed/);
    });
  });

  test('honours a shorter requested TTL', async () => {
    const clock = new ManualClock(T0);
    const ca = new CertificateAuthority({ authority: await selfSignedAuthority(T0), clock });
    const issued = await ca.sign(ecCsr(), SLEEP, { ttlSeconds: 3600 });
    assert.equal(issued.notAfter.getTime() - T0.getTime(), HOUR);
  });

  test('never issues past the CA certificate notAfter', async () => {
    const root = await createTestRoot({ trustDomain: 'cluster.local', notBefore: new Date(T0.getTime() - HOUR), notAfter: new Date(T0.getTime() + 5 * HOUR) });
    const clock = new ManualClock(T0);
    const ca = new CertificateAuthority({ authority: loadAuthority({ certPem: root.pem, keyPem: root.keyPem, rootPem: root.pem }, T0), clock });
    const issued = await ca.sign(ecCsr(), SLEEP);
    assert.equal(issued.notAfter.toISOString(), new Date(root.cert.validTo).toISOString());
  });
});

describe('CertificateAuthority.sign: what the CA signs must parse and be an SVID', () => {
  /** A P-256 CSR whose SubjectPublicKeyInfo carries `algorithmExtra` after the curve OID, validly signed. */
  function csrWithSpki(algorithmExtra: Uint8Array): string {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const point = publicKey.export({ format: 'der', type: 'spki' }).subarray(-65);
    const spki = der.encodeSequence(der.encodeSequence(der.encodeOid(OID.ecPublicKey), der.encodeOid(OID.prime256v1), algorithmExtra), der.encodeBitString(point));
    const info = der.encodeSequence(der.encodeSmallInteger(0), der.encodeSequence(), spki, der.encodeTlv(0xa0));
    const alg = signatureAlgorithmFor('ec-p256');
    const signature = cryptoSign(alg.hash, info, { key: privateKey, dsaEncoding: 'der' });
    return encodePem('CERTIFICATE REQUEST', der.encodeSequence(info, alg.identifier, der.encodeBitString(signature)));
  }

  test('a SubjectPublicKeyInfo with an extra AlgorithmIdentifier element is refused (ERR_CSR_INVALID), not copied into a certificate', async () => {
    const ca = new CertificateAuthority({ authority: await selfSignedAuthority() });
    await assertRejects(ca.sign(csrWithSpki(der.encodeTlv(0x05)), SLEEP), CsrError, 'public-key-encoding', /not in canonical DER form/);
    // The same CSR without the extra element is signed, and OpenSSL parses the certificate.
    const issued = await ca.sign(csrWithSpki(new Uint8Array(0)), SLEEP);
    const text = await openssl(['x509', '-noout', '-text'], issued.certChainPem[0]!);
    assert.equal(text.code, 0, text.stderr);
  });

  test('the self-check refuses a certificate that verifies but is not an X509-SVID leaf', async () => {
    const root = await createSelfSignedRoot({ trustDomain: 'cluster.local', now: new Date() });
    // The CA certificate itself verifies and parses, but is a CA: never a workload's SVID.
    assert.throws(() => checkX509SvidLeaf(new X509Certificate(root.certPem).raw), (err: Error & { rule?: string }) => ['leaf-is-ca', 'leaf-id-path', 'uri-san-count'].includes(err.rule ?? ''));
    assert.throws(() => checkX509SvidLeaf(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01])), (err: Error & { rule?: string }) => err.rule === 'certificate-parse');
  });
});

