import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { SpiffeIdError } from '../../../src/errors.js';
import { parseTrustDomain, TrustDomain } from '../../../src/spiffe/index.js';
import type { SpiffeIdRule } from '../../../src/spiffe/index.js';

function assertInvalid(fn: () => unknown, rule: SpiffeIdRule): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SpiffeIdError, `expected SpiffeIdError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_SPIFFE_ID_INVALID');
    assert.equal(err.rule, rule, err.message);
    return true;
  });
}

describe('parseTrustDomain', () => {
  const valid: ReadonlyArray<readonly [string, string]> = [
    ['example.org', 'example.org'],
    ['trustdomain', 'trustdomain'],
    ['spiffe://example.org', 'example.org'],
    ['spiffe://trustdomain/path', 'trustdomain'],
    ['spiffe://example.org/ns/prod/sa/api', 'example.org'],
    ['abcdefghijklmnopqrstuvwxyz0123456789.-_', 'abcdefghijklmnopqrstuvwxyz0123456789.-_'],
    ['10.0.0.1', '10.0.0.1'],
    ['a'.repeat(255), 'a'.repeat(255)],
  ];
  for (const [input, name] of valid) {
    it(`accepts ${JSON.stringify(input.slice(0, 50))}`, () => {
      const td = parseTrustDomain(input);
      assert.equal(td.name, name);
      assert.equal(td.toString(), name);
      assert.equal(td.idString(), `spiffe://${name}`);
    });
  }

  const invalid: ReadonlyArray<readonly [string, SpiffeIdRule]> = [
    ['', 'trust-domain-missing'],
    ['spiffe://', 'trust-domain-missing'],
    ['spiffe:///path', 'trust-domain-missing'],
    ['eXample.org', 'trust-domain-chars'],
    ['EXAMPLE.ORG', 'trust-domain-chars'],
    ['spiffe://eXample.org', 'trust-domain-chars'],
    ['spiffe://eXample.org/path', 'trust-domain-chars'],
    ['example.org/ns/prod', 'trust-domain-chars'],
    ['exa mple.org', 'trust-domain-chars'],
    ['a'.repeat(256), 'trust-domain-too-long'],
    ['example.org:443', 'port'],
    ['spiffe://example.org:443', 'port'],
    ['user@example.org', 'userinfo'],
    ['%65xample.org', 'percent-encoding'],
    ['spiffe:/trustdomain/path', 'scheme'],
    ['SPIFFE://example.org', 'scheme'],
    ['https://example.org', 'scheme'],
    ['spiffe://trustdomain/', 'path-trailing-slash'],
    ['spiffe://trustdomain/path/', 'path-trailing-slash'],
    ['spiffe://trustdomain/../x', 'path-dot-segment'],
    ['spiffe://%F0%9F%A4%AF/path', 'percent-encoding'],
    ['spiffe://trustdomain/%F0%9F%A4%AF', 'percent-encoding'],
    ['spiffe://trustdomain?x', 'query'],
    [`spiffe://td/${'x'.repeat(2048)}`, 'too-long'],
  ];
  for (const [input, rule] of invalid) {
    it(`rejects ${JSON.stringify(input.slice(0, 50))} (${rule})`, () => {
      assertInvalid(() => parseTrustDomain(input), rule);
    });
  }

  it('accepts exactly [a-z0-9._-] among code points 0-255 in a bare name', () => {
    for (let code = 0; code < 256; code++) {
      const ch = String.fromCharCode(code);
      const ok = /^[a-z0-9._-]$/.test(ch);
      let accepted = true;
      try {
        parseTrustDomain(`trustdomain${ch}`);
      } catch (err) {
        assert.ok(err instanceof SpiffeIdError);
        accepted = false;
      }
      assert.equal(accepted, ok, `char ${code}`);
    }
  });

  it('throws TypeError for non-string input', () => {
    assert.throws(() => parseTrustDomain(undefined as never), TypeError);
    assert.throws(() => parseTrustDomain(7 as never), TypeError);
  });
});

describe('TrustDomain', () => {
  it('validates a bare name in its constructor', () => {
    assert.equal(new TrustDomain('example.org').name, 'example.org');
    assertInvalid(() => new TrustDomain('spiffe://example.org'), 'scheme');
    assertInvalid(() => new TrustDomain('Example.org'), 'trust-domain-chars');
    assertInvalid(() => new TrustDomain(''), 'trust-domain-missing');
  });

  it('is equal to another instance with the same name', () => {
    const a = parseTrustDomain('example.org');
    assert.ok(a.equals(parseTrustDomain('spiffe://example.org/x')));
    assert.ok(!a.equals(parseTrustDomain('example.net')));
    assert.ok(!a.equals(undefined));
  });

  it('serialises to its name in JSON and is immutable', () => {
    const td = parseTrustDomain('example.org');
    assert.equal(JSON.stringify({ td }), '{"td":"example.org"}');
    assert.ok(Object.isFrozen(td));
  });
});
