import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { DetailedPeerCertificate } from 'node:tls';
import { TLSSocket } from 'node:tls';
import { parseTrustDomain, parseX509Svid, X509Bundle, X509BundleSet } from '../../../src/spiffe/index.js';
import { peerChainOf } from '../../../src/tls/secure-material.js';
import {
  createMtlsServerOptions,
  createStaticX509Source,
  findPeerIdentity,
  getPeerSpiffeId,
} from '../../../src/tls/index.js';
import { chainPem, createTestIntermediate, createTestLeaf, createTestRoot } from '../../helpers/test-ca.js';

const root = await createTestRoot({ trustDomain: 'a.test' });
const intermediate = await createTestIntermediate(root);
const leaf = await createTestLeaf(intermediate);
const otherRoot = await createTestRoot({ trustDomain: 'b.test' });
const svid = parseX509Svid(chainPem(leaf, intermediate), leaf.keyPem);
const a = parseTrustDomain('a.test');

/** The linked shape node gives for getPeerCertificate(true): a self-signed root points at itself. */
function detailed(...certs: readonly X509Certificate[]): DetailedPeerCertificate {
  const nodes = certs.map((cert) => ({ raw: cert.raw, fingerprint256: cert.fingerprint256 }) as DetailedPeerCertificate);
  nodes.forEach((node, i) => {
    (node as { issuerCertificate: DetailedPeerCertificate }).issuerCertificate = nodes[i + 1] ?? node;
  });
  return nodes[0]!;
}

describe('peerChainOf', () => {
  it('follows issuer links leaf first and stops at the self-signed root', () => {
    const chain = peerChainOf(detailed(leaf.cert, intermediate.cert, root.cert));
    assert.deepEqual(
      chain.map((c) => c.fingerprint256),
      [leaf, intermediate, root].map((c) => c.cert.fingerprint256),
    );
  });

  it('leaves out known authorities but never the leaf', () => {
    const skip = new Set([root.cert.fingerprint256, leaf.cert.fingerprint256]);
    const chain = peerChainOf(detailed(leaf.cert, intermediate.cert, root.cert), skip);
    assert.deepEqual(
      chain.map((c) => c.fingerprint256),
      [leaf, intermediate].map((c) => c.cert.fingerprint256),
    );
  });

  it('returns nothing for a peer that sent no certificate', () => {
    assert.deepEqual(peerChainOf({} as DetailedPeerCertificate), []);
  });

  it('stops after more certificates than any accepted path holds', () => {
    // A loop of distinct nodes over the same certificate: bounded, and verify rejects it.
    const nodes = Array.from(
      { length: 50 },
      () => ({ raw: leaf.cert.raw, fingerprint256: leaf.cert.fingerprint256 }) as DetailedPeerCertificate,
    );
    nodes.forEach((node, i) => ((node as { issuerCertificate: DetailedPeerCertificate }).issuerCertificate = nodes[(i + 1) % 50]!));
    assert.equal(peerChainOf(nodes[0]!).length, 11);
  });
});

describe('createMtlsServerOptions', () => {
  it('requires and verifies client certificates, from TLS 1.2, without session resumption', () => {
    const options = createMtlsServerOptions(
      createStaticX509Source({ svid, bundles: new X509BundleSet([new X509Bundle(a, [root.cert])]) }),
    );
    assert.equal(options.requestCert, true);
    assert.equal(options.rejectUnauthorized, true);
    assert.equal(options.minVersion, 'TLSv1.2');
    assert.notEqual(options.secureOptions, 0);
    assert.equal(new X509Certificate(options.cert).fingerprint256, leaf.cert.fingerprint256);
    assert.match(options.cert, /(-----BEGIN CERTIFICATE-----[\s\S]*){2}/, 'the chain includes the intermediate');
    assert.match(options.key, /BEGIN PRIVATE KEY/);
  });

  it('trusts the authorities of every bundle, each once', () => {
    const bundles = new X509BundleSet([
      new X509Bundle(a, [root.cert]),
      new X509Bundle(parseTrustDomain('b.test'), [otherRoot.cert, root.cert]),
    ]);
    const options = createMtlsServerOptions(createStaticX509Source({ svid, bundles }));
    assert.deepEqual(
      options.ca.map((pem) => new X509Certificate(pem).fingerprint256),
      [root.cert.fingerprint256, otherRoot.cert.fingerprint256],
    );
  });

  it("trusts nothing, not node's public roots, when there are no bundles", () => {
    const options = createMtlsServerOptions(createStaticX509Source({ svid, bundles: new X509BundleSet() }));
    assert.deepEqual(options.ca, []);
  });

  it('builds the PEM once per rotation', () => {
    const source = createStaticX509Source({ svid, bundles: new X509BundleSet([new X509Bundle(a, [root.cert])]) });
    const first = createMtlsServerOptions(source);
    assert.equal(createMtlsServerOptions(source).ca, first.ca);
    source.set({ bundles: new X509BundleSet([new X509Bundle(a, [root.cert])]) });
    assert.notEqual(createMtlsServerOptions(source).ca, first.ca);
  });
});

describe('getPeerSpiffeId', () => {
  it('throws TypeError for a socket that did not come through meshca/tls', () => {
    const socket = new TLSSocket(new Socket());
    assert.equal(findPeerIdentity(socket), undefined);
    assert.throws(() => getPeerSpiffeId(socket), TypeError);
    assert.throws(() => getPeerSpiffeId({ socket }), TypeError);
    socket.destroy();
  });
});
