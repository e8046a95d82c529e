import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SpiffeIdError } from '../../../src/errors.js';
import {
  isSpiffeId,
  mustParseSpiffeId,
  parseSpiffeId,
  parseTrustDomain,
  SpiffeId,
  spiffeIdFromSegments,
} from '../../../src/spiffe/index.js';
import type { SpiffeIdRule } from '../../../src/spiffe/index.js';

function assertInvalid(fn: () => unknown, rule: SpiffeIdRule): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SpiffeIdError, `expected SpiffeIdError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_SPIFFE_ID_INVALID');
    assert.equal(err.rule, rule, err.message);
    return true;
  });
}

// Valid IDs: [input, trust domain, path]. Sources: SPIFFE-ID standard examples, go-spiffe tests.
const VALID: ReadonlyArray<readonly [string, string, string]> = [
  ['spiffe://trustdomain', 'trustdomain', ''],
  ['spiffe://trustdomain/path', 'trustdomain', '/path'],
  ['spiffe://domain.test/path/element', 'domain.test', '/path/element'],
  ['spiffe://staging.example.com/payments/mysql', 'staging.example.com', '/payments/mysql'],
  ['spiffe://staging.example.com/payments/web-fe', 'staging.example.com', '/payments/web-fe'],
  ['spiffe://k8s-west.example.com/ns/staging/sa/default', 'k8s-west.example.com', '/ns/staging/sa/default'],
  ['spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453', 'example.com', '/9eebccd2-12bf-40a6-b262-65fe0487d453'],
  ['spiffe://trust_domain_name.example.com/x', 'trust_domain_name.example.com', '/x'],
  ['spiffe://192.168.1.1/workload', '192.168.1.1', '/workload'],
  ['spiffe://abcdefghijklmnopqrstuvwxyz0123456789.-_/x', 'abcdefghijklmnopqrstuvwxyz0123456789.-_', '/x'],
  ['spiffe://td/ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_', 'td', '/ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_'],
  ['spiffe://trustdomain/.path', 'trustdomain', '/.path'],
  ['spiffe://trustdomain/..path', 'trustdomain', '/..path'],
  ['spiffe://trustdomain/...', 'trustdomain', '/...'],
  ['spiffe://trustdomain/path./x.', 'trustdomain', '/path./x.'],
  ['spiffe://-/_', '-', '/_'],
  [`spiffe://${'a'.repeat(255)}`, 'a'.repeat(255), ''],
  // Exactly the 2048-byte maximum.
  [`spiffe://td/${'x'.repeat(2048 - 12)}`, 'td', `/${'x'.repeat(2048 - 12)}`],
];

const INVALID: ReadonlyArray<readonly [string, SpiffeIdRule]> = [
  ['', 'empty'],
  // Scheme: exactly lowercase `spiffe://`.
  ['s', 'scheme'],
  ['spiffe:/', 'scheme'],
  ['Spiffe://trustdomain', 'scheme'],
  ['SPIFFE://domain.test/path/element', 'scheme'],
  ['http://domain.test/path/element', 'scheme'],
  ['spiffe:path/element', 'scheme'],
  ['spiffe:/path/element', 'scheme'],
  ['192.168.2.2:6688', 'scheme'],
  [' spiffe://trustdomain/path', 'scheme'],
  ['trustdomain/path', 'scheme'],
  // Trust domain.
  ['spiffe://', 'trust-domain-missing'],
  ['spiffe:///', 'trust-domain-missing'],
  ['spiffe:///path/element', 'trust-domain-missing'],
  ['spiffe://Domain.test/path', 'trust-domain-chars'],
  ['spiffe://eXample.org', 'trust-domain-chars'],
  ['spiffe://trust$domain', 'trust-domain-chars'],
  ['spiffe://[::1]/path', 'trust-domain-chars'],
  ['spiffe://exa mple.org/path', 'trust-domain-chars'],
  ['spiffe://exämple.org/path', 'trust-domain-chars'],
  [`spiffe://${'a'.repeat(256)}/path`, 'trust-domain-too-long'],
  ['spiffe://domain.test:8080/path/element', 'port'],
  ['spiffe://domain.test:/path/element', 'port'],
  ['spiffe://user:password@test.org/path/element', 'userinfo'],
  ['spiffe://user@test.org/path', 'userinfo'],
  ['spiffe://%F0%9F%A4%AF/path', 'percent-encoding'],
  ['spiffe://%62%61%64/path', 'percent-encoding'],
  // Query and fragment, wherever they start.
  ['spiffe://domain.test/path/element?query=1', 'query'],
  ['spiffe://domain.test/path/element?#fragment-1', 'query'],
  ['spiffe://domain.test?query', 'query'],
  ['spiffe://domain.test/path#fragment', 'fragment'],
  ['spiffe://domain.test#fragment', 'fragment'],
  // Path percent-encoding.
  ['spiffe://trustdomain/%F0%9F%A4%AF', 'percent-encoding'],
  ['spiffe://trustdomain/%62%61%64', 'percent-encoding'],
  ['spiffe://domain.test/path/elem%5uent', 'percent-encoding'],
  // Empty segments and trailing slashes.
  ['spiffe://trustdomain/', 'path-trailing-slash'],
  ['spiffe://trustdomain/path/', 'path-trailing-slash'],
  ['spiffe://trustdomain//', 'path-empty-segment'],
  ['spiffe://trustdomain//path', 'path-empty-segment'],
  ['spiffe://domain.test/path//element', 'path-empty-segment'],
  // Dot segments.
  ['spiffe://trustdomain/.', 'path-dot-segment'],
  ['spiffe://trustdomain/./path', 'path-dot-segment'],
  ['spiffe://trustdomain/path/./other', 'path-dot-segment'],
  ['spiffe://trustdomain/path/..', 'path-dot-segment'],
  ['spiffe://trustdomain/..', 'path-dot-segment'],
  ['spiffe://trustdomain/../path', 'path-dot-segment'],
  ['spiffe://trustdomain/path/../other', 'path-dot-segment'],
  // Path characters that older parsers accepted.
  ['spiffe://domain.test/pa:th/element', 'path-chars'],
  ['spiffe://domain.test/pa@th/element', 'path-chars'],
  ["spiffe://domain.test/p!a$t&h'/(e)l*e+m,e;n=t", 'path-chars'],
  ['spiffe://domain.test/path/elem[ent', 'path-chars'],
  ['spiffe://domain.test/path/elem]ent', 'path-chars'],
  ['spiffe://domain.test/path element', 'path-chars'],
  ['spiffe://domain.test/päth', 'path-chars'],
  ['spiffe://domain.test/path\u0000', 'path-chars'],
  ['spiffe://domain.test/\ud83e\udd2f', 'path-chars'],
  ['spiffe://domain.test/spiffe://domain.test/path', 'path-chars'],
  ['spiffe://domain.test/path\\x', 'path-chars'],
  // Length.
  [`spiffe://td/${'x'.repeat(2048 - 11)}`, 'too-long'],
  [`spiffe://${'a'.repeat(5000)}`, 'too-long'],
];

describe('parseSpiffeId', () => {
  for (const [input, td, path] of VALID) {
    it(`accepts ${JSON.stringify(input.length > 60 ? `${input.slice(0, 60)}...` : input)}`, () => {
      const id = parseSpiffeId(input);
      assert.equal(id.trustDomain.name, td);
      assert.equal(id.path, path);
      assert.equal(id.toString(), input);
      assert.equal(isSpiffeId(input), true);
    });
  }

  for (const [input, rule] of INVALID) {
    it(`rejects ${JSON.stringify(input.length > 60 ? `${input.slice(0, 60)}...` : input)} (${rule})`, () => {
      assertInvalid(() => parseSpiffeId(input), rule);
      assert.equal(isSpiffeId(input), false);
    });
  }

  it('accepts exactly the allowed trust domain and path characters among code points 0-255', () => {
    for (let code = 0; code < 256; code++) {
      const ch = String.fromCharCode(code);
      if (ch === '/') continue;
      const tdOk = /^[a-z0-9._-]$/.test(ch);
      const pathOk = /^[a-zA-Z0-9._-]$/.test(ch);
      assert.equal(isSpiffeId(`spiffe://trustdomain${ch}/path`), tdOk, `trust domain char ${code}`);
      assert.equal(isSpiffeId(`spiffe://trustdomain/path${ch}`), pathOk, `path char ${code}`);
    }
  });

  it('names the whole ID and the broken rule in the message', () => {
    assert.throws(() => parseSpiffeId('spiffe://example.org/a/../b'), /spiffe:\/\/example\.org\/a\/\.\.\/b.*'\.' or '\.\.'/);
  });

  it('throws TypeError for non-string input', () => {
    for (const bad of [undefined, null, 42, {}, ['spiffe://td/x'], new String('spiffe://td/x')]) {
      assert.throws(() => parseSpiffeId(bad as never), TypeError);
    }
  });

  it('parses a maximum-length hostile input quickly', () => {
    // A pathological input for a backtracking regex: many segments of dots and letters.
    const input = `spiffe://td/${'a./'.repeat(678)}`;
    const start = performance.now();
    for (let i = 0; i < 1000; i++) isSpiffeId(input);
    assert.ok(performance.now() - start < 1000);
  });
});

describe('property: parseSpiffeId is total over strings', () => {
  const idChars = [...'abcAZ09.-_/:@%?#sSpife '];
  const nearId = fc
    .tuple(
      fc.constantFrom('spiffe://', 'spiffe://', 'spiffe://', 'SPIFFE://', 'spiffe:/', ''),
      fc.string({ unit: fc.constantFrom(...idChars), maxLength: 12 }),
      fc.string({ unit: fc.constantFrom(...idChars), maxLength: 24 }),
    )
    .map(([scheme, td, path]) => scheme + td + path);
  const anyString = fc.oneof(fc.string({ unit: 'binary', maxLength: 64 }), nearId, fc.string({ maxLength: 3000 }));

  it('either round-trips exactly or throws SpiffeIdError with a rule', () => {
    fc.assert(
      fc.property(anyString, (s) => {
        let id: SpiffeId;
        try {
          id = parseSpiffeId(s);
        } catch (err) {
          assert.ok(err instanceof SpiffeIdError, `non-SpiffeIdError for ${JSON.stringify(s)}: ${String(err)}`);
          assert.equal(typeof err.rule, 'string');
          return;
        }
        assert.equal(id.toString(), s);
        assert.ok(parseSpiffeId(id.toString()).equals(id));
      }),
      { numRuns: 3000 },
    );
  });

  it('accepts every ID built from valid trust domain names and segments', () => {
    const tdName = fc.string({ unit: fc.constantFrom(...'abz09.-_'), minLength: 1, maxLength: 20 });
    const segment = fc
      .string({ unit: fc.constantFrom(...'aZ9.-_'), minLength: 1, maxLength: 8 })
      .filter((s) => s !== '.' && s !== '..');
    fc.assert(
      fc.property(tdName, fc.array(segment, { maxLength: 6 }), (name, segments) => {
        const input = `spiffe://${name}${segments.map((s) => `/${s}`).join('')}`;
        const id = parseSpiffeId(input);
        assert.deepEqual(id.segments(), segments);
        assert.ok(spiffeIdFromSegments(parseTrustDomain(name), ...segments).equals(id));
      }),
      { numRuns: 500 },
    );
  });
});

describe('SpiffeId', () => {
  it('compares by trust domain and path', () => {
    const a = mustParseSpiffeId('spiffe://example.org/ns/a');
    assert.ok(a.equals(mustParseSpiffeId('spiffe://example.org/ns/a')));
    assert.ok(!a.equals(mustParseSpiffeId('spiffe://example.org/ns/A')));
    assert.ok(!a.equals(mustParseSpiffeId('spiffe://example.net/ns/a')));
    assert.ok(!a.equals(undefined));
  });

  it('is a member of its own trust domain only', () => {
    const id = mustParseSpiffeId('spiffe://example.org/path/element');
    assert.ok(id.memberOf(parseTrustDomain('example.org')));
    assert.ok(!id.memberOf(parseTrustDomain('other.example.org')));
    assert.ok(mustParseSpiffeId('spiffe://example.org').memberOf(parseTrustDomain('example.org')));
  });

  it('splits its path into segments', () => {
    assert.deepEqual(mustParseSpiffeId('spiffe://td').segments(), []);
    assert.deepEqual(mustParseSpiffeId('spiffe://td/ns/prod/sa/api').segments(), ['ns', 'prod', 'sa', 'api']);
  });

  it('serialises to its string in JSON', () => {
    assert.equal(JSON.stringify({ id: mustParseSpiffeId('spiffe://td/x') }), '{"id":"spiffe://td/x"}');
  });

  it('is immutable', () => {
    const id = mustParseSpiffeId('spiffe://td/x');
    assert.ok(Object.isFrozen(id));
    assert.throws(() => {
      (id as { path: string }).path = '/y';
    }, TypeError);
  });

  it('validates the path given to its constructor', () => {
    const td = parseTrustDomain('td');
    assert.equal(new SpiffeId(td, '/a/b').toString(), 'spiffe://td/a/b');
    assertInvalid(() => new SpiffeId(td, 'a'), 'path-leading-slash');
    assertInvalid(() => new SpiffeId(td, '/a/'), 'path-trailing-slash');
    assertInvalid(() => new SpiffeId(td, '/a/../b'), 'path-dot-segment');
    assertInvalid(() => new SpiffeId(td, `/${'x'.repeat(2048)}`), 'too-long');
    assert.throws(() => new SpiffeId('td' as never, '/a'), TypeError);
  });
});

describe('spiffeIdFromSegments', () => {
  const td = parseTrustDomain('example.org');

  it('joins valid segments into a path', () => {
    assert.equal(spiffeIdFromSegments(td).toString(), 'spiffe://example.org');
    assert.equal(spiffeIdFromSegments(td, 'foo').toString(), 'spiffe://example.org/foo');
    assert.equal(spiffeIdFromSegments(td, 'ns', 'prod', 'sa', 'api').path, '/ns/prod/sa/api');
  });

  const cases: ReadonlyArray<readonly [readonly string[], SpiffeIdRule]> = [
    [[''], 'path-empty-segment'],
    [['ns', ''], 'path-empty-segment'],
    [['/'], 'path-chars'],
    [['/foo'], 'path-chars'],
    [['ns', 'prod/sa/admin'], 'path-chars'],
    [['$'], 'path-chars'],
    [['a b'], 'path-chars'],
    [['.'], 'path-dot-segment'],
    [['ns', '..'], 'path-dot-segment'],
    [['a%2Fb'], 'percent-encoding'],
    [['a?b'], 'query'],
    [['a#b'], 'fragment'],
    [['x'.repeat(2048)], 'too-long'],
  ];
  for (const [segments, rule] of cases) {
    it(`rejects segments ${JSON.stringify(segments).slice(0, 60)} (${rule})`, () => {
      assertInvalid(() => spiffeIdFromSegments(td, ...segments), rule);
    });
  }

  it('throws TypeError for a non-TrustDomain or non-string segment', () => {
    assert.throws(() => spiffeIdFromSegments('example.org' as never, 'a'), TypeError);
    assert.throws(() => spiffeIdFromSegments(td, 1 as never), TypeError);
  });
});

describe('isSpiffeId', () => {
  it('returns false for non-strings instead of throwing', () => {
    assert.equal(isSpiffeId(undefined), false);
    assert.equal(isSpiffeId(42), false);
    assert.equal(isSpiffeId('spiffe://td/x'), true);
  });
});
