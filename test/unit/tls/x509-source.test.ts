import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { parseTrustDomain, parseX509Svid, X509Bundle, X509BundleSet } from '../../../src/spiffe/index.js';
import { createStaticX509Source } from '../../../src/tls/index.js';
import { createTestLeaf, createTestRoot } from '../../helpers/test-ca.js';

const root = await createTestRoot({ trustDomain: 'a.test' });
const otherRoot = await createTestRoot({ trustDomain: 'b.test' });
const leaf = await createTestLeaf(root);
const svid = parseX509Svid(leaf.pem, leaf.keyPem);
const a = parseTrustDomain('a.test');
const b = parseTrustDomain('b.test');

describe('createStaticX509Source', () => {
  it('hands out the SVID and the bundle of each trust domain', () => {
    const bundles = new X509BundleSet([new X509Bundle(a, [root.cert]), new X509Bundle(b, [otherRoot.cert])]);
    const source = createStaticX509Source({ svid, bundles });
    assert.equal(source.getX509Svid(), svid);
    assert.ok(source.getX509BundleForTrustDomain(a)?.hasAuthority(root.cert));
    assert.ok(source.getX509BundleForTrustDomain(b)?.hasAuthority(otherRoot.cert));
    assert.equal(source.getX509BundleForTrustDomain(parseTrustDomain('c.test')), undefined);
    assert.equal(source.getX509Bundles().length, 2);
  });

  it('returns the same bundle list until the material changes, so consumers can cache on it', () => {
    const source = createStaticX509Source({ svid, bundles: new X509BundleSet([new X509Bundle(a, [root.cert])]) });
    const list = source.getX509Bundles();
    assert.equal(source.getX509Bundles(), list);
    source.set({ svid });
    assert.equal(source.getX509Bundles(), list);
    source.set({ bundles: new X509BundleSet([new X509Bundle(a, [root.cert])]) });
    assert.notEqual(source.getX509Bundles(), list);
  });

  it('does not see later changes to the bundle set it was given', () => {
    const bundles = new X509BundleSet([new X509Bundle(a, [root.cert])]);
    const source = createStaticX509Source({ svid, bundles });
    bundles.set(new X509Bundle(b, [otherRoot.cert]));
    assert.equal(source.getX509BundleForTrustDomain(b), undefined);
  });

  it('emits update after set(), with the getters already returning the new material', async () => {
    const source = createStaticX509Source({ svid, bundles: new X509BundleSet() });
    const rotated = await createTestLeaf(root, { uris: ['spiffe://a.test/next'] });
    const rotatedSvid = parseX509Svid(rotated.pem, rotated.keyPem);
    const seen: string[] = [];
    const listener = (): void => void seen.push(source.getX509Svid().id.toString());
    source.on('update', listener);
    source.set({ svid: rotatedSvid });
    source.off('update', listener);
    source.set({ svid });
    assert.deepEqual(seen, ['spiffe://a.test/next']);
  });

  it('throws TypeError for an SVID without its private key or bundles that are not a set', () => {
    assert.throws(() => createStaticX509Source({ svid: parseX509Svid(leaf.pem), bundles: new X509BundleSet() }), TypeError);
    assert.throws(() => createStaticX509Source({ svid, bundles: [] as never }), TypeError);
    const source = createStaticX509Source({ svid, bundles: new X509BundleSet() });
    assert.throws(() => source.set({ svid: parseX509Svid(leaf.pem) }), TypeError);
    assert.equal(source.getX509Svid(), svid);
  });
});
