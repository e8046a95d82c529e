import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { JwtSvidIssuer } from '../../../src/ca/jwt-svid-issuer.js';
import { BundleError } from '../../../src/errors.js';
import { formatSpiffeBundleJwks, parseSpiffeBundleJwks } from '../../../src/spiffe/bundle-jwks.js';
import { parseTrustDomain } from '../../../src/spiffe/trust-domain.js';
import { createTestLeaf, createTestRoot } from '../../helpers/test-ca.js';

const td = parseTrustDomain('example.org');
const ecRoot = await createTestRoot({ trustDomain: 'example.org' });
const edRoot = await createTestRoot({ trustDomain: 'example.org', keyAlg: 'ed25519' });
const rsaRoot = await createTestRoot({ trustDomain: 'example.org', keyAlg: 'rsa-2048' });
const otherRoot = await createTestRoot({ trustDomain: 'example.org' });
const leaf = await createTestLeaf(ecRoot);
const jwtKey = (await JwtSvidIssuer.generate()).publicJwk() as Record<string, unknown>;

type Doc = Record<string, unknown> & { keys: Record<string, unknown>[] };

/** A valid document to break one rule at a time. */
function validDoc(): Doc {
  return JSON.parse(
    JSON.stringify(formatSpiffeBundleJwks([ecRoot.cert], { sequence: 3, refreshHintSeconds: 60, jwtAuthorities: [jwtKey] })),
  ) as Doc;
}

function assertRule(input: unknown, rule: string): void {
  assert.throws(
    () => parseSpiffeBundleJwks(td, input),
    (err: unknown) => {
      assert.ok(err instanceof BundleError, `expected BundleError, got ${String(err)}`);
      assert.equal(err.code, 'ERR_BUNDLE_INVALID');
      assert.equal(err.rule, rule, err.message);
      assert.match(err.message, /SPIFFE bundle for example\.org/);
      return true;
    },
  );
}

describe('parseSpiffeBundleJwks', () => {
  it('round-trips formatSpiffeBundleJwks: EC, Ed25519 and RSA roots, the JWT key, sequence and refresh hint', () => {
    const doc = formatSpiffeBundleJwks([ecRoot.cert, edRoot.cert, rsaRoot.cert], {
      sequence: 42,
      refreshHintSeconds: 300,
      jwtAuthorities: [jwtKey],
    });
    const parsed = parseSpiffeBundleJwks(td, JSON.parse(JSON.stringify(doc)));
    assert.ok(parsed.x509.trustDomain.equals(td));
    assert.deepEqual(
      parsed.x509.authorities.map((c) => c.fingerprint256),
      [ecRoot, edRoot, rsaRoot].map((r) => r.cert.fingerprint256),
    );
    assert.equal(parsed.sequence, 42);
    assert.equal(parsed.x509.sequenceNumber, 42);
    assert.equal(parsed.refreshHintSeconds, 300);
    assert.equal(parsed.jwtAuthorities.length, 1);
    assert.equal(parsed.jwtAuthorities[0]!.kid, jwtKey['kid']);
    assert.equal(parsed.jwtAuthorities[0]!.use, 'jwt-svid');
  });

  it('accepts the document as JSON text', () => {
    const parsed = parseSpiffeBundleJwks(td, JSON.stringify(validDoc()));
    assert.equal(parsed.x509.authorities.length, 1);
  });

  it('leaves sequence and refresh hint undefined when the document omits them', () => {
    const parsed = parseSpiffeBundleJwks(td, { keys: [] });
    assert.equal(parsed.sequence, undefined);
    assert.equal(parsed.refreshHintSeconds, undefined);
    assert.equal(parsed.x509.authorities.length, 0, 'no x509-svid keys: the domain does not do X.509-SVIDs');
  });

  it('skips keys with an unknown use or key type, as the spec requires', () => {
    const doc = validDoc();
    doc.keys.push({ kty: 'EC', use: 'wit-svid', crv: 'P-256', x: 'garbage' });
    doc.keys.push({ kty: 'oct-future', use: 'x509-svid', x5c: ['not even base64!'] });
    const parsed = parseSpiffeBundleJwks(td, doc);
    assert.equal(parsed.x509.authorities.length, 1);
    assert.equal(parsed.jwtAuthorities.length, 1);
  });

  it('takes the trust domain from the caller, never from the document', () => {
    const doc = { ...validDoc(), trust_domain: 'evil.example' };
    assert.equal(parseSpiffeBundleJwks(td, doc).x509.trustDomain.name, 'example.org');
  });

  it('throws TypeError when the trust domain is not a TrustDomain', () => {
    assert.throws(() => parseSpiffeBundleJwks('example.org' as never, validDoc()), TypeError);
  });

  const x509Key = (mutate: (key: Record<string, unknown>) => void): Doc => {
    const doc = validDoc();
    mutate(doc.keys[0]!);
    return doc;
  };
  const jwtKeyOf = (mutate: (key: Record<string, unknown>) => void): Doc => {
    const doc = validDoc();
    mutate(doc.keys[1]!);
    return doc;
  };
  const b64 = (der: Buffer): string => der.toString('base64');

  const malformed: ReadonlyArray<readonly [string, () => unknown, string]> = [
    ['text that is not JSON', () => '{"keys": [', 'json'],
    ['a JSON array', () => [], 'not-object'],
    ['null', () => null, 'not-object'],
    ['no "keys"', () => ({ spiffe_sequence: 1 }), 'keys'],
    ['"keys" that is not an array', () => ({ keys: {} }), 'keys'],
    ['a negative sequence', () => ({ keys: [], spiffe_sequence: -1 }), 'sequence'],
    ['a fractional sequence', () => ({ keys: [], spiffe_sequence: 1.5 }), 'sequence'],
    ['a sequence as a string', () => ({ keys: [], spiffe_sequence: '7' }), 'sequence'],
    ['a sequence beyond 2^53', () => ({ keys: [], spiffe_sequence: 2 ** 60 }), 'sequence'],
    ['a refresh hint as a string', () => ({ keys: [], spiffe_refresh_hint: '300' }), 'refresh-hint'],
    ['a key that is not an object', () => ({ keys: ['x'] }), 'key'],
    ['a key without "use"', () => x509Key((k) => delete k['use']), 'key-use'],
    ['a key without "kty"', () => x509Key((k) => delete k['kty']), 'key-type'],
    ['an x509-svid key without x5c', () => x509Key((k) => delete k['x5c']), 'x5c'],
    ['an x509-svid key with an empty x5c', () => x509Key((k) => (k['x5c'] = [])), 'x5c'],
    ['an x509-svid key with two certificates', () => x509Key((k) => (k['x5c'] = [b64(ecRoot.der), b64(ecRoot.der)])), 'x5c'],
    ['an x5c in URL-safe base64', () => x509Key((k) => (k['x5c'] = [b64(ecRoot.der).replace(/\+/g, '-').replace(/\//g, '_') + '-_'])), 'x5c'],
    ['an x5c that is not DER', () => x509Key((k) => (k['x5c'] = [Buffer.from('hello world!').toString('base64')])), 'der'],
    ['an x5c certificate with trailing bytes', () => x509Key((k) => (k['x5c'] = [b64(Buffer.concat([ecRoot.der, Buffer.from([0, 0, 0])]))])), 'der'],
    ['an x5c certificate whose key is not the JWK key', () => x509Key((k) => (k['x5c'] = [b64(otherRoot.der)])), 'key-mismatch'],
    ['a JWK whose coordinates are not a key', () => x509Key((k) => (k['x'] = 'AAAA')), 'key'],
    ['an x509-svid key with a private member', () => x509Key((k) => (k['d'] = 'AAAA')), 'private-key'],
    [
      'a leaf certificate as an authority',
      () => ({ keys: [{ ...(leaf.cert.publicKey.export({ format: 'jwk' }) as object), use: 'x509-svid', x5c: [b64(leaf.der)] }] }),
      'authority-not-ca',
    ],
    ['a jwt-svid key without kid', () => jwtKeyOf((k) => delete k['kid']), 'kid'],
    ['a jwt-svid key with an empty kid', () => jwtKeyOf((k) => (k['kid'] = '')), 'kid'],
    ['a jwt-svid key that is not a key', () => jwtKeyOf((k) => (k['y'] = 'AAAA')), 'key'],
    ['a jwt-svid private key', () => jwtKeyOf((k) => (k['d'] = 'AAAA')), 'private-key'],
    [
      'two jwt-svid keys with the same kid',
      () => {
        const doc = validDoc();
        doc.keys.push({ ...doc.keys[1]! });
        return doc;
      },
      'kid-duplicate',
    ],
  ];
  for (const [what, input, rule] of malformed) {
    it(`rejects ${what} (rule ${rule})`, () => assertRule(input(), rule));
  }
});
