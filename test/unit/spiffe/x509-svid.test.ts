import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { IdentityError, SpiffeIdError, SvidError, SvidUntrustedError } from '../../../src/errors.js';
import {
  createStaticX509SvidSource,
  parseCertificatesPem,
  parseTrustDomain,
  parseX509Svid,
  verifyX509Svid,
  X509Bundle,
  X509BundleSet,
} from '../../../src/spiffe/index.js';
import type { X509BundleSource, X509SvidRule } from '../../../src/spiffe/index.js';
import type { TestCertificate } from '../../helpers/test-ca.js';
import { chainPem, createTestIntermediate, createTestLeaf, createTestRoot } from '../../helpers/test-ca.js';

function assertSvidError(fn: () => unknown, rule: X509SvidRule): SvidError {
  let caught: unknown;
  assert.throws(fn, (err: unknown) => {
    caught = err;
    assert.ok(err instanceof SvidError, `expected SvidError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_SVID_INVALID');
    assert.equal(err.rule, rule, err.message);
    return true;
  });
  return caught as SvidError;
}

function assertUntrusted(fn: () => unknown, rule: X509SvidRule): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SvidUntrustedError, `expected SvidUntrustedError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_SVID_UNTRUSTED');
    assert.equal(err.rule, rule, err.message);
    return true;
  });
}

const HOUR = 3_600_000;
const td = parseTrustDomain('example.org');
const now = new Date();
const root = await createTestRoot({ trustDomain: 'example.org' });
const intermediate = await createTestIntermediate(root);
const leaf = await createTestLeaf(root, { uris: ['spiffe://example.org/ns/default/sa/api'], dnsNames: ['api.local'] });
const leafViaIntermediate = await createTestLeaf(intermediate);
const bundles = new X509BundleSet([new X509Bundle(td, [root.cert])]);

describe('parseX509Svid', () => {
  it('parses a PEM chain and key into the ID, certificates and leaf validity', () => {
    const svid = parseX509Svid(chainPem(leafViaIntermediate, intermediate), leafViaIntermediate.keyPem);
    assert.equal(svid.id.toString(), 'spiffe://example.org/workload');
    assert.equal(svid.certificates.length, 2);
    assert.ok(svid.certificates[0] instanceof X509Certificate);
    assert.equal(svid.certificates[0]!.fingerprint256, leafViaIntermediate.cert.fingerprint256);
    assert.equal(svid.privateKey?.type, 'private');
    assert.equal(svid.notBefore.getTime(), new Date(leafViaIntermediate.cert.validFrom).getTime());
    assert.equal(svid.notAfter.getTime(), new Date(leafViaIntermediate.cert.validTo).getTime());
    assert.ok(Object.isFrozen(svid) && Object.isFrozen(svid.certificates));
  });

  it('parses a single DER buffer, concatenated DER and a list of DER buffers', () => {
    assert.equal(parseX509Svid(leaf.der).id.toString(), 'spiffe://example.org/ns/default/sa/api');
    assert.equal(parseX509Svid(Buffer.concat([leafViaIntermediate.der, intermediate.der])).certificates.length, 2);
    assert.equal(parseX509Svid([leafViaIntermediate.der, intermediate.der]).certificates.length, 2);
  });

  it('parses PEM given as bytes, as read from a file', () => {
    assert.equal(parseX509Svid(Buffer.from(leaf.pem)).certificates.length, 1);
  });

  it('accepts the private key as a KeyObject and omits it when not given', () => {
    assert.equal(parseX509Svid(leaf.pem, leaf.privateKey).privateKey, leaf.privateKey);
    assert.equal(parseX509Svid(leaf.pem).privateKey, undefined);
  });

  it('accepts RSA and Ed25519 leaves with matching keys', async () => {
    for (const keyAlg of ['rsa-2048', 'ed25519'] as const) {
      const l = await createTestLeaf(root, { keyAlg });
      assert.equal(parseX509Svid(l.pem, l.keyPem).id.toString(), 'spiffe://example.org/workload');
    }
  });

  it('rejects a private key that does not match the leaf', () => {
    assertSvidError(() => parseX509Svid(leaf.pem, leafViaIntermediate.keyPem), 'key-mismatch');
    assertSvidError(() => parseX509Svid(leaf.pem, root.privateKey), 'key-mismatch');
  });

  it('rejects an unparseable private key', () => {
    assertSvidError(() => parseX509Svid(leaf.pem, 'not a key'), 'private-key');
  });

  it('throws TypeError for a public KeyObject given as private key', () => {
    assert.throws(() => parseX509Svid(leaf.pem, leaf.key.publicKey), TypeError);
  });

  const leafCases: ReadonlyArray<readonly [string, Parameters<typeof createTestLeaf>[1], X509SvidRule]> = [
    ['no URI SAN', { uris: [], dnsNames: ['a.example'] }, 'uri-san-count'],
    ['no SAN extension at all', { uris: null }, 'uri-san-count'],
    ['two URI SANs', { uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] }, 'uri-san-count'],
    ['a URI SAN that is not a SPIFFE ID', { uris: ['https://example.org/a'] }, 'spiffe-id'],
    ['a SPIFFE ID with a dot segment', { uris: ['spiffe://example.org/a/../b'] }, 'spiffe-id'],
    ['a SPIFFE ID without a path', { uris: ['spiffe://example.org'] }, 'leaf-id-path'],
    ['CA=true', { ca: true }, 'leaf-is-ca'],
    ['no key usage extension', { keyUsages: null }, 'leaf-key-usage'],
    ['key usage without digitalSignature', { keyUsages: ['keyEncipherment'] }, 'leaf-key-usage'],
    ['keyCertSign', { keyUsages: ['digitalSignature', 'keyCertSign'] }, 'leaf-key-cert-sign'],
    ['cRLSign', { keyUsages: ['digitalSignature', 'cRLSign'] }, 'leaf-crl-sign'],
    [
      'a second SAN extension',
      { extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://example.org/admin' }])] },
      'duplicate-extension',
    ],
  ];
  for (const [what, options, rule] of leafCases) {
    it(`rejects a leaf with ${what} (${rule})`, async () => {
      const bad = await createTestLeaf(root, options);
      assertSvidError(() => parseX509Svid(bad.pem), rule);
      // The verifier applies the same leaf rules to peers, as untrusted.
      assertUntrusted(() => verifyX509Svid([bad.cert], bundles, { now }), rule);
    });
  }

  it('keeps the SpiffeIdError as cause when the URI SAN is not a valid SPIFFE ID', async () => {
    const bad = await createTestLeaf(root, { uris: ['spiffe://Example.org/a'] });
    const err = assertSvidError(() => parseX509Svid(bad.pem), 'spiffe-id');
    assert.ok(err.cause instanceof SpiffeIdError);
    assert.equal(err.cause.rule, 'trust-domain-chars');
  });

  it('accepts a leaf with no basic constraints extension (CA absent means false)', async () => {
    const l = await createTestLeaf(root, { ca: null });
    assert.equal(parseX509Svid(l.pem).id.toString(), 'spiffe://example.org/workload');
  });

  it('rejects a chain whose second certificate is not a CA', () => {
    assertSvidError(() => parseX509Svid(chainPem(leaf, leafViaIntermediate)), 'intermediate-not-ca');
  });

  it('rejects a chain whose intermediate lacks keyCertSign', async () => {
    const noSign = await createTestIntermediate(root, { keyUsages: ['cRLSign'] });
    const l = await createTestLeaf(noSign);
    assertSvidError(() => parseX509Svid(chainPem(l, noSign)), 'intermediate-key-usage');
  });

  const inputCases: ReadonlyArray<readonly [string, () => Parameters<typeof parseX509Svid>[0], X509SvidRule]> = [
    ['an empty string', () => '', 'no-certificates'],
    ['an empty list', () => [], 'no-certificates'],
    ['an empty buffer', () => new Uint8Array(), 'no-certificates'],
    ['garbage DER', () => Uint8Array.from([0x30, 0x03, 1, 2, 3]), 'der'],
    ['DER with trailing bytes in a list', () => [Buffer.concat([leaf.der, Buffer.from([0])])], 'der'],
    ['truncated concatenated DER', () => leaf.der.subarray(0, leaf.der.length - 1), 'der'],
    ['a key PEM instead of a certificate', () => leaf.keyPem, 'pem'],
  ];
  for (const [what, input, rule] of inputCases) {
    it(`rejects ${what} (${rule})`, () => {
      assertSvidError(() => parseX509Svid(input()), rule);
    });
  }
});

describe('parseCertificatesPem', () => {
  it('returns every certificate in order', () => {
    const certs = parseCertificatesPem(chainPem(leaf, intermediate, root));
    assert.deepEqual(
      certs.map((c) => c.fingerprint256),
      [leaf, intermediate, root].map((c) => c.cert.fingerprint256),
    );
  });

  it('rejects input with no CERTIFICATE block', () => {
    assertSvidError(() => parseCertificatesPem('hello'), 'no-certificates');
  });

  it('rejects any non-CERTIFICATE block', () => {
    assertSvidError(() => parseCertificatesPem(`${leaf.pem}${leaf.keyPem}`), 'pem');
  });

  it('rejects base64 padding in the middle of a block', () => {
    const lines = leaf.pem.split('\n');
    lines.splice(2, 0, 'QQ==');
    assertSvidError(() => parseCertificatesPem(lines.join('\n')), 'pem');
  });
});

describe('verifyX509Svid', () => {
  it('verifies a leaf signed directly by a bundle authority', () => {
    const result = verifyX509Svid([leaf.cert], bundles, { now });
    assert.equal(result.id.toString(), 'spiffe://example.org/ns/default/sa/api');
    assert.deepEqual(
      result.verifiedChain.map((c) => c.fingerprint256),
      [leaf.cert.fingerprint256, root.cert.fingerprint256],
    );
  });

  it('verifies a chain through an intermediate', () => {
    const result = verifyX509Svid([leafViaIntermediate.cert, intermediate.cert], bundles, { now });
    assert.deepEqual(
      result.verifiedChain.map((c) => c.fingerprint256),
      [leafViaIntermediate, intermediate, root].map((c) => c.cert.fingerprint256),
    );
  });

  it('accepts a single bundle as the source', () => {
    const bundle = new X509Bundle(td, [root.cert]);
    assert.equal(verifyX509Svid([leaf.cert], bundle, { now }).id.toString(), 'spiffe://example.org/ns/default/sa/api');
  });

  it('verifies intermediates given out of order, with the root included', async () => {
    const second = await createTestIntermediate(intermediate);
    const deep = await createTestLeaf(second);
    const result = verifyX509Svid([deep.cert, root.cert, intermediate.cert, second.cert], bundles, { now });
    assert.deepEqual(
      result.verifiedChain.map((c) => c.fingerprint256),
      [deep, second, intermediate, root].map((c) => c.cert.fingerprint256),
    );
  });

  it('ignores unrelated extra certificates in the chain', async () => {
    const unrelated = await createTestRoot({ trustDomain: 'example.org' });
    const result = verifyX509Svid([leafViaIntermediate.cert, unrelated.cert, intermediate.cert], bundles, { now });
    assert.equal(result.verifiedChain.length, 3);
  });

  it('verifies across key algorithms (RSA root, Ed25519 intermediate, EC leaf)', async () => {
    const rsaRoot = await createTestRoot({ trustDomain: 'mixed.test', keyAlg: 'rsa-2048' });
    const edMid = await createTestIntermediate(rsaRoot, { keyAlg: 'ed25519' });
    const ecLeaf = await createTestLeaf(edMid);
    const source = new X509Bundle(parseTrustDomain('mixed.test'), [rsaRoot.cert]);
    assert.equal(verifyX509Svid([ecLeaf.cert, edMid.cert], source, { now }).verifiedChain.length, 3);
  });

  it('rejects a leaf whose root is not in the bundle (no-path)', async () => {
    const strangerRoot = await createTestRoot({ trustDomain: 'example.org' });
    const stranger = await createTestLeaf(strangerRoot);
    assertUntrusted(() => verifyX509Svid([stranger.cert], bundles, { now }), 'no-path');
    // Sending the untrusted root along does not help.
    assertUntrusted(() => verifyX509Svid([stranger.cert, strangerRoot.cert], bundles, { now }), 'no-path');
  });

  it('rejects a leaf when no bundle exists for its trust domain', async () => {
    const foreignRoot = await createTestRoot({ trustDomain: 'example.net' });
    const foreign = await createTestLeaf(foreignRoot);
    assertUntrusted(() => verifyX509Svid([foreign.cert], bundles, { now }), 'no-bundle');
  });

  it("rejects an ID of one trust domain signed by another trust domain's authority", async () => {
    // example.net's CA mints an example.org ID: trusting example.net must not make it valid.
    const netRoot = await createTestRoot({ trustDomain: 'example.net' });
    const forged = await createTestLeaf(netRoot, { uris: ['spiffe://example.org/ns/default/sa/admin'] });
    const federated = new X509BundleSet([
      new X509Bundle(td, [root.cert]),
      new X509Bundle(parseTrustDomain('example.net'), [netRoot.cert]),
    ]);
    assertUntrusted(() => verifyX509Svid([forged.cert], federated, { now }), 'no-path');
  });

  it('rejects a bundle source that answers with another trust domain', () => {
    const wrong: X509BundleSource = {
      getX509BundleForTrustDomain: () => new X509Bundle(parseTrustDomain('example.net'), [root.cert]),
    };
    assertUntrusted(() => verifyX509Svid([leaf.cert], wrong, { now }), 'bundle-mismatch');
  });

  it('rejects an expired leaf', async () => {
    const old = await createTestLeaf(root, { notBefore: new Date(now.getTime() - 2 * HOUR), notAfter: new Date(now.getTime() - HOUR) });
    assertUntrusted(() => verifyX509Svid([old.cert], bundles, { now }), 'expired');
  });

  it('rejects a leaf that is not yet valid', async () => {
    const early = await createTestLeaf(root, { notBefore: new Date(now.getTime() + HOUR), notAfter: new Date(now.getTime() + 2 * HOUR) });
    assertUntrusted(() => verifyX509Svid([early.cert], bundles, { now }), 'not-yet-valid');
  });

  it('judges validity at the given instant, not the wall clock', () => {
    const later = new Date(now.getTime() + 2 * HOUR);
    assertUntrusted(() => verifyX509Svid([leaf.cert], bundles, { now: later }), 'expired');
  });

  it('rejects an expired intermediate', async () => {
    const oldMid = await createTestIntermediate(root, {
      notBefore: new Date(now.getTime() - 3 * HOUR),
      notAfter: new Date(now.getTime() - HOUR),
    });
    const l = await createTestLeaf(oldMid, { notBefore: new Date(now.getTime() - 2 * HOUR) });
    assertUntrusted(() => verifyX509Svid([l.cert, oldMid.cert], bundles, { now }), 'expired');
  });

  it('rejects an expired bundle authority', async () => {
    const oldRoot = await createTestRoot({
      trustDomain: 'old.test',
      notBefore: new Date(now.getTime() - 3 * HOUR),
      notAfter: new Date(now.getTime() - HOUR),
    });
    const l = await createTestLeaf(oldRoot, { notBefore: new Date(now.getTime() - 2 * HOUR) });
    const source = new X509Bundle(parseTrustDomain('old.test'), [oldRoot.cert]);
    assertUntrusted(() => verifyX509Svid([l.cert], source, { now }), 'expired');
  });

  it('rejects a leaf issued by an intermediate that is not a CA', async () => {
    const notCa = await createTestIntermediate(root, { ca: false });
    const l = await createTestLeaf(notCa);
    assertUntrusted(() => verifyX509Svid([l.cert, notCa.cert], bundles, { now }), 'intermediate-not-ca');
  });

  it('rejects a leaf issued by an intermediate without keyCertSign', async () => {
    const noSign = await createTestIntermediate(root, { keyUsages: ['cRLSign'] });
    const l = await createTestLeaf(noSign);
    assertUntrusted(() => verifyX509Svid([l.cert, noSign.cert], bundles, { now }), 'intermediate-key-usage');
  });

  it("enforces an authority's pathLenConstraint", async () => {
    const strictRoot = await createTestRoot({ trustDomain: 'strict.test', pathLength: 0 });
    const mid = await createTestIntermediate(strictRoot);
    const l = await createTestLeaf(mid);
    const source = new X509Bundle(parseTrustDomain('strict.test'), [strictRoot.cert]);
    assertUntrusted(() => verifyX509Svid([l.cert, mid.cert], source, { now }), 'path-length');
    // Directly issued leaves are still fine.
    const direct = await createTestLeaf(strictRoot);
    assert.equal(verifyX509Svid([direct.cert], source, { now }).verifiedChain.length, 2);
  });

  it('rejects a leaf with an unknown critical extension', async () => {
    const odd = await createTestLeaf(root, {
      extensions: [new x509.Extension('1.3.6.1.4.1.99999.1', true, Uint8Array.from([0x05, 0x00]))],
    });
    assertUntrusted(() => verifyX509Svid([odd.cert], bundles, { now }), 'unhandled-critical-extension');
  });

  it('rejects a leaf whose signature does not verify', async () => {
    // Same issuer name and key identifier as the trusted root, different key.
    const impostorRoot = await createTestRoot({ trustDomain: 'example.org', subject: root.cert.subject.replace(/\n/g, ', ') });
    const l = await createTestLeaf(impostorRoot);
    assertUntrusted(() => verifyX509Svid([l.cert], bundles, { now }), 'no-path');
  });

  it('rejects a path longer than the maximum', async () => {
    let parent: TestCertificate = root;
    const mids: TestCertificate[] = [];
    for (let i = 0; i < 9; i++) {
      parent = await createTestIntermediate(parent);
      mids.push(parent);
    }
    const deep = await createTestLeaf(parent);
    // 1 leaf + 9 intermediates + root = 11 certificates.
    assertUntrusted(() => verifyX509Svid([deep.cert, ...mids.reverse().map((m) => m.cert)], bundles, { now }), 'path-too-long');
    assertUntrusted(
      () => verifyX509Svid([deep.cert, ...mids.map((m) => m.cert), root.cert], bundles, { now }),
      'chain-too-long',
    );
  });

  it('rejects an empty chain', () => {
    assertUntrusted(() => verifyX509Svid([], bundles, { now }), 'no-certificates');
  });

  it('throws TypeError on caller misuse', () => {
    assert.throws(() => verifyX509Svid([leaf.cert], bundles, { now: new Date(Number.NaN) }), TypeError);
    assert.throws(() => verifyX509Svid([leaf.cert], bundles, {} as never), TypeError);
    assert.throws(() => verifyX509Svid([leaf.der] as never, bundles, { now }), TypeError);
    assert.throws(() => verifyX509Svid([leaf.cert], {} as never, { now }), TypeError);
  });

  it('reports every failure as an IdentityError, never a bare Error', async () => {
    const bad = await createTestLeaf(root, { uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] });
    assert.throws(() => verifyX509Svid([bad.cert], bundles, { now }), IdentityError);
  });
});

describe('createStaticX509SvidSource', () => {
  it('hands out the SVID it wraps', () => {
    const svid = parseX509Svid(leaf.pem, leaf.keyPem);
    assert.equal(createStaticX509SvidSource(svid).getX509Svid(), svid);
  });
});
