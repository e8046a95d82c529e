import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { BundleError } from '../../../src/errors.js';
import { parseTrustDomain, parseX509BundlePem, X509Bundle, X509BundleSet } from '../../../src/spiffe/index.js';
import { chainPem, createTestLeaf, createTestRoot } from '../../helpers/test-ca.js';

function assertBundleError(fn: () => unknown, rule: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BundleError, `expected BundleError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_BUNDLE_INVALID');
    assert.equal(err.rule, rule, err.message);
    return true;
  });
}

const td = parseTrustDomain('example.org');
const otherTd = parseTrustDomain('example.net');
const rootA = await createTestRoot({ trustDomain: 'example.org' });
const rootB = await createTestRoot({ trustDomain: 'example.org', keyAlg: 'ed25519' });
const foreignRoot = await createTestRoot({ trustDomain: 'example.net' });
const leaf = await createTestLeaf(rootA);

describe('parseX509BundlePem', () => {
  it('parses concatenated CA certificates in order', () => {
    const bundle = parseX509BundlePem(td, chainPem(rootA, rootB), 7);
    assert.ok(bundle.trustDomain.equals(td));
    assert.equal(bundle.authorities.length, 2);
    assert.equal(bundle.authorities[0]!.fingerprint256, rootA.cert.fingerprint256);
    assert.equal(bundle.authorities[1]!.fingerprint256, rootB.cert.fingerprint256);
    assert.equal(bundle.sequenceNumber, 7);
  });

  it('ignores explanatory text and CRLF line endings around blocks', () => {
    const pem = `Bag Attributes\r\n subject=/CN=x\r\n${rootA.pem.replace(/\n/g, '\r\n')}trailing words\n`;
    assert.equal(parseX509BundlePem(td, pem).authorities.length, 1);
  });

  it('drops duplicate authorities', () => {
    assert.equal(parseX509BundlePem(td, chainPem(rootA, rootA, rootB)).authorities.length, 2);
  });

  it('round-trips through toPem()', () => {
    const bundle = parseX509BundlePem(td, chainPem(rootA, rootB));
    const again = parseX509BundlePem(td, bundle.toPem());
    assert.deepEqual(
      again.authorities.map((c) => c.fingerprint256),
      bundle.authorities.map((c) => c.fingerprint256),
    );
  });

  const broken: ReadonlyArray<readonly [string, () => string, string]> = [
    ['empty input', () => '', 'empty'],
    ['text without PEM blocks', () => 'not a certificate at all', 'empty'],
    ['invalid base64 in a block', () => '-----BEGIN CERTIFICATE-----\n$$$$\n-----END CERTIFICATE-----\n', 'pem'],
    ['an unterminated block', () => rootA.pem.replace('-----END CERTIFICATE-----', ''), 'pem'],
    ['mismatched END label', () => rootA.pem.replace('END CERTIFICATE', 'END X509 CRL'), 'pem'],
    ['a private key block', () => `${rootA.pem}${rootA.keyPem}`, 'pem'],
    ['base64 that is not DER', () => '-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n', 'der'],
    ['a leaf certificate', () => chainPem(rootA, leaf), 'authority-not-ca'],
  ];
  for (const [what, pem, rule] of broken) {
    it(`rejects ${what} (${rule})`, () => {
      assertBundleError(() => parseX509BundlePem(td, pem()), rule);
    });
  }

  it('rejects a CA certificate whose key usage lacks keyCertSign', async () => {
    const noSign = await createTestRoot({ keyUsages: ['cRLSign', 'digitalSignature'] });
    assertBundleError(() => parseX509BundlePem(td, noSign.pem), 'authority-key-usage');
  });

  it('accepts a CA certificate without a key usage extension', async () => {
    const noKu = await createTestRoot({ keyUsages: null });
    assert.equal(parseX509BundlePem(td, noKu.pem).authorities.length, 1);
  });

  it('throws TypeError for a non-TrustDomain or non-string PEM', () => {
    assert.throws(() => parseX509BundlePem('example.org' as never, rootA.pem), TypeError);
    assert.throws(() => parseX509BundlePem(td, Buffer.from(rootA.pem) as never), TypeError);
  });
});

describe('X509Bundle', () => {
  it('recognises its authorities by exact DER', () => {
    const bundle = new X509Bundle(td, [rootA.cert]);
    assert.ok(bundle.hasAuthority(rootA.cert));
    assert.ok(bundle.hasAuthority(parseX509BundlePem(td, rootA.pem).authorities[0]!));
    assert.ok(!bundle.hasAuthority(rootB.cert));
  });

  it('rejects a non-CA authority passed to the constructor', () => {
    assertBundleError(() => new X509Bundle(td, [leaf.cert]), 'authority-not-ca');
  });

  it('allows an empty authority list and serialises it as empty PEM', () => {
    const bundle = new X509Bundle(td, []);
    assert.equal(bundle.authorities.length, 0);
    assert.equal(bundle.toPem(), '');
  });

  it('is a bundle source for its own trust domain only', () => {
    const bundle = new X509Bundle(td, [rootA.cert]);
    assert.equal(bundle.getX509BundleForTrustDomain(parseTrustDomain('example.org')), bundle);
    assert.equal(bundle.getX509BundleForTrustDomain(otherTd), undefined);
  });

  it('is immutable', () => {
    const bundle = new X509Bundle(td, [rootA.cert]);
    assert.ok(Object.isFrozen(bundle));
    assert.ok(Object.isFrozen(bundle.authorities));
  });
});

describe('X509BundleSet', () => {
  it('looks bundles up by trust domain name', () => {
    const own = new X509Bundle(td, [rootA.cert]);
    const foreign = new X509Bundle(otherTd, [foreignRoot.cert]);
    const set = new X509BundleSet([own, foreign]);
    assert.equal(set.size, 2);
    assert.equal(set.getX509BundleForTrustDomain(parseTrustDomain('spiffe://example.org')), own);
    assert.equal(set.getX509BundleForTrustDomain(otherTd), foreign);
    assert.equal(set.getX509BundleForTrustDomain(parseTrustDomain('unknown.test')), undefined);
  });

  it('replaces, never merges, the bundle of a trust domain', () => {
    const set = new X509BundleSet([new X509Bundle(td, [rootA.cert])]);
    set.set(new X509Bundle(td, [rootB.cert]));
    const current = set.getX509BundleForTrustDomain(td)!;
    assert.equal(current.authorities.length, 1);
    assert.ok(current.hasAuthority(rootB.cert));
    assert.ok(!current.hasAuthority(rootA.cert));
  });

  it('refuses two bundles for one trust domain at construction', () => {
    assert.throws(() => new X509BundleSet([new X509Bundle(td, [rootA.cert]), new X509Bundle(td, [rootB.cert])]), TypeError);
  });

  it('deletes a trust domain', () => {
    const set = new X509BundleSet([new X509Bundle(td, [rootA.cert])]);
    assert.ok(set.has(td));
    assert.ok(set.delete(td));
    assert.ok(!set.has(td));
    assert.equal(set.bundles().length, 0);
  });
});
