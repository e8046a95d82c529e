import { strict as assert } from 'node:assert';
import type { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { anchorStillTrusted, connectionDeadline, type VerifiedPeer } from '../../../src/proxy/peer-validity.js';
import { mustParseSpiffeId, parseTrustDomain, X509Bundle, X509BundleSet, type X509BundleSource } from '../../../src/spiffe/index.js';
import { createTestIntermediate, createTestLeaf, createTestRoot } from '../../helpers/test-ca.js';
import { bundleSet, createTestDomain, createTestSvid } from '../../integration/tls-fixtures.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
// Certificates carry whole seconds; relative to the real clock so the suite passes at any date.
const NOW = Math.floor(Date.now() / SECOND) * SECOND;
const at = (offsetMs: number): Date => new Date(NOW + offsetMs);

const ID = 'spiffe://example.org/ns/default/sa/client';
const id = mustParseSpiffeId(ID);

function peer(...chain: readonly X509Certificate[]): VerifiedPeer {
  return { id, verifiedChain: chain };
}

describe('connectionDeadline', async () => {
  const root = await createTestRoot({ trustDomain: 'example.org', notBefore: at(-HOUR), notAfter: at(24 * HOUR) });
  const shortRoot = await createTestRoot({ trustDomain: 'example.org', notBefore: at(-HOUR), notAfter: at(10 * MINUTE) });
  const mid = await createTestIntermediate(root, { notBefore: at(-HOUR), notAfter: at(2 * HOUR) });
  const shortMid = await createTestIntermediate(root, { notBefore: at(-HOUR), notAfter: at(20 * MINUTE) });
  const leaf = await createTestLeaf(mid, { uris: [ID], notBefore: at(-MINUTE), notAfter: at(HOUR) });
  const leafUnderShortMid = await createTestLeaf(shortMid, { uris: [ID], notBefore: at(-MINUTE), notAfter: at(HOUR) });
  const leafUnderShortRoot = await createTestLeaf(shortRoot, { uris: [ID], notBefore: at(-MINUTE), notAfter: at(HOUR) });

  const cases: readonly {
    readonly name: string;
    readonly chain: readonly X509Certificate[];
    readonly maxAgeMs?: number;
    readonly deadline: number;
  }[] = [
    { name: "is the leaf's notAfter when the leaf expires first", chain: [leaf.cert, mid.cert, root.cert], deadline: NOW + HOUR },
    {
      name: "is an intermediate's notAfter when the intermediate expires before the leaf",
      chain: [leafUnderShortMid.cert, shortMid.cert, root.cert],
      deadline: NOW + 20 * MINUTE,
    },
    { name: "is the root's notAfter when the root expires first", chain: [leafUnderShortRoot.cert, shortRoot.cert], deadline: NOW + 10 * MINUTE },
    { name: 'is capped by maxAgeMs when that comes sooner', chain: [leaf.cert, mid.cert, root.cert], maxAgeMs: 5 * MINUTE, deadline: NOW + 5 * MINUTE },
    {
      name: 'is the earliest notAfter when maxAgeMs comes later',
      chain: [leafUnderShortMid.cert, shortMid.cert, root.cert],
      maxAgeMs: 12 * HOUR,
      deadline: NOW + 20 * MINUTE,
    },
    { name: 'is now with a maxAgeMs of 0', chain: [leaf.cert, root.cert], maxAgeMs: 0, deadline: NOW },
  ];

  for (const c of cases) {
    it(c.name, () => {
      assert.equal(connectionDeadline(peer(...c.chain), NOW, c.maxAgeMs), c.deadline);
    });
  }

  it('measures maxAgeMs from the given now, not the real clock', () => {
    const later = NOW + 30 * MINUTE;
    assert.equal(connectionDeadline(peer(leaf.cert, root.cert), later, MINUTE), later + MINUTE);
  });
});

describe('anchorStillTrusted', async () => {
  const domain = await createTestDomain('example.org');
  const other = await createTestDomain('example.net');
  const mid = await createTestIntermediate(domain.root);
  const { leaf } = await createTestSvid(domain, '/ns/default/sa/client');
  const leafUnderMid = await createTestLeaf(mid, { uris: [ID] });
  const rotatedRoot = await createTestRoot({ trustDomain: 'example.org' });
  const td = parseTrustDomain('example.org');

  const cases: readonly {
    readonly name: string;
    readonly chain: readonly X509Certificate[];
    readonly bundles: X509BundleSource;
    readonly trusted: boolean;
  }[] = [
    { name: "is true while the chain's root is in the peer trust domain's bundle", chain: [leaf.cert, domain.root.cert], bundles: bundleSet(domain, other), trusted: true },
    {
      name: 'is true for a chain through an intermediate whose root is still trusted',
      chain: [leafUnderMid.cert, mid.cert, domain.root.cert],
      bundles: bundleSet(domain),
      trusted: true,
    },
    {
      name: 'is true while a rotating bundle holds both the old and the new root',
      chain: [leaf.cert, domain.root.cert],
      bundles: new X509BundleSet([new X509Bundle(td, [rotatedRoot.cert, domain.root.cert])]),
      trusted: true,
    },
    { name: 'is true with the bundle itself as the source', chain: [leaf.cert, domain.root.cert], bundles: domain.bundle, trusted: true },
    {
      name: 'is false once the bundle no longer holds the root',
      chain: [leaf.cert, domain.root.cert],
      bundles: new X509BundleSet([new X509Bundle(td, [rotatedRoot.cert]), other.bundle]),
      trusted: false,
    },
    {
      name: 'is false once every authority of the trust domain is withdrawn',
      chain: [leaf.cert, domain.root.cert],
      bundles: new X509BundleSet([new X509Bundle(td, [])]),
      trusted: false,
    },
    {
      name: 'is false when the peer trust domain has no bundle, even if another one holds the root',
      chain: [leaf.cert, domain.root.cert],
      bundles: new X509BundleSet([new X509Bundle(parseTrustDomain('example.net'), [domain.root.cert])]),
      trusted: false,
    },
    { name: "is false with only another trust domain's bundle as the source", chain: [leaf.cert, domain.root.cert], bundles: other.bundle, trusted: false },
    {
      name: 'judges by the last certificate of the chain, not an intermediate',
      chain: [leafUnderMid.cert, mid.cert],
      bundles: bundleSet(domain),
      trusted: false,
    },
    { name: 'is false for an empty chain', chain: [], bundles: bundleSet(domain), trusted: false },
  ];

  for (const c of cases) {
    it(c.name, () => {
      assert.equal(anchorStillTrusted(peer(...c.chain), c.bundles), c.trusted);
    });
  }
});
