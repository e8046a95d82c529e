import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';

import {
  CachingAuthenticator,
  checkTokenShape,
  formatServiceAccountUsername,
  parseServiceAccountUsername,
  readUnverifiedExpiry,
} from '../../../src/authn/authenticator.js';
import type { AuthenticateOptions, Authenticator, CallerIdentity } from '../../../src/authn/authenticator.js';
import { AuthnError, AuthnUnavailableError, isIdentityError } from '../../../src/errors.js';
import { ManualClock } from '../../helpers/manual-clock.js';

function ruleOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AuthnError, `expected AuthnError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_AUTHN_FAILED');
    return err.rule;
  }
  return undefined;
}

describe('checkTokenShape', () => {
  const cases: ReadonlyArray<readonly [string, string, string | undefined]> = [
    ['accepts a JWS compact token', 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln', undefined],
    ['accepts an empty signature so alg:none reaches the algorithm check', 'eyJhbGciOiJub25lIn0.eyJ4IjoxfQ.', undefined],
    ['rejects an empty token', '', 'token-empty'],
    ['rejects two segments', 'aaa.bbb', 'token-malformed'],
    ['rejects four segments', 'aaa.bbb.ccc.ddd', 'token-malformed'],
    ['rejects an empty header', '.bbb.ccc', 'token-malformed'],
    ['rejects an empty payload', 'aaa..ccc', 'token-malformed'],
    ['rejects standard base64 characters', 'aa+a.bbb.ccc', 'token-malformed'],
    ['rejects base64 padding', 'aaa=.bbb.ccc', 'token-malformed'],
    ['rejects whitespace', 'aaa.bbb.ccc\n', 'token-malformed'],
    ['rejects a Bearer prefix', 'Bearer aaa.bbb.ccc', 'token-malformed'],
    ['rejects a JWE (five segments)', 'a.b.c.d.e', 'token-malformed'],
  ];
  for (const [name, token, rule] of cases) {
    it(name, () => {
      assert.equal(ruleOf(() => checkTokenShape(token)), rule);
    });
  }

  it('rejects tokens over 8192 bytes by default', () => {
    const big = `${'a'.repeat(4096)}.${'b'.repeat(4096)}.c`;
    assert.equal(ruleOf(() => checkTokenShape(big)), 'token-too-large');
  });

  it('honours maxBytes and counts UTF-8 bytes, not characters', () => {
    assert.equal(ruleOf(() => checkTokenShape('aaaa.bbbb.cccc', { maxBytes: 10 })), 'token-too-large');
    // 6 characters, 12 bytes: caught by size before shape.
    assert.equal(ruleOf(() => checkTokenShape('éééééé', { maxBytes: 10 })), 'token-too-large');
  });

  it('never puts the token in the message', () => {
    for (const token of ['secret-ish token value', 'x'.repeat(9000)]) {
      assert.throws(
        () => checkTokenShape(token),
        (err: unknown) => err instanceof AuthnError && !err.message.includes(token),
      );
    }
  });
});

describe('parseServiceAccountUsername', () => {
  const valid: ReadonlyArray<readonly [string, string, string]> = [
    ['system:serviceaccount:default:default', 'default', 'default'],
    ['system:serviceaccount:shop:cart-v2', 'shop', 'cart-v2'],
    ['system:serviceaccount:a:b.c.d', 'a', 'b.c.d'],
    [`system:serviceaccount:${'n'.repeat(63)}:${'s'.repeat(253)}`, 'n'.repeat(63), 's'.repeat(253)],
  ];
  for (const [username, namespace, serviceAccount] of valid) {
    it(`parses ${username.slice(0, 60)}`, () => {
      assert.deepEqual(parseServiceAccountUsername(username), { namespace, serviceAccount });
      assert.equal(formatServiceAccountUsername({ namespace, serviceAccount }), username);
    });
  }

  const invalid: ReadonlyArray<readonly [string, string, string]> = [
    ['rejects a human user', 'alice@example.com', 'not-service-account'],
    ['rejects a node identity', 'system:node:worker-1', 'not-service-account'],
    ['rejects a prefix in the wrong case', 'System:ServiceAccount:a:b', 'not-service-account'],
    ['rejects a missing name', 'system:serviceaccount:shop', 'username-malformed'],
    ['rejects an extra segment', 'system:serviceaccount:shop:cart:extra', 'username-malformed'],
    ['rejects an empty namespace', 'system:serviceaccount::cart', 'namespace-invalid'],
    ['rejects an uppercase namespace', 'system:serviceaccount:Shop:cart', 'namespace-invalid'],
    ['rejects a dotted namespace (label, not subdomain)', 'system:serviceaccount:a.b:cart', 'namespace-invalid'],
    ['rejects a namespace longer than 63', `system:serviceaccount:${'n'.repeat(64)}:cart`, 'namespace-invalid'],
    ['rejects a namespace starting with a dash', 'system:serviceaccount:-shop:cart', 'namespace-invalid'],
    ['rejects a path-traversal namespace', 'system:serviceaccount:..:cart', 'namespace-invalid'],
    ['rejects an empty name', 'system:serviceaccount:shop:', 'service-account-invalid'],
    ['rejects a name with a slash', 'system:serviceaccount:shop:a/b', 'service-account-invalid'],
    ['rejects a name ending with a dot', 'system:serviceaccount:shop:cart.', 'service-account-invalid'],
    ['rejects a name with an empty label', 'system:serviceaccount:shop:a..b', 'service-account-invalid'],
    ['rejects a name longer than 253', `system:serviceaccount:shop:${'s'.repeat(254)}`, 'service-account-invalid'],
    ['rejects a name with a NUL byte', 'system:serviceaccount:shop:ca\u0000rt', 'service-account-invalid'],
  ];
  for (const [name, username, rule] of invalid) {
    it(name, () => {
      assert.equal(ruleOf(() => parseServiceAccountUsername(username)), rule);
    });
  }
});

describe('readUnverifiedExpiry', () => {
  const encode = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

  it('reads exp in seconds', () => {
    assert.equal(readUnverifiedExpiry(`${encode({})}.${encode({ exp: 1_900_000_000 })}.x`)?.getTime(), 1_900_000_000_000);
  });

  it('returns undefined for a missing or unreadable exp', () => {
    assert.equal(readUnverifiedExpiry(`${encode({})}.${encode({ exp: 'soon' })}.x`), undefined);
    assert.equal(readUnverifiedExpiry('a.!!!.c'), undefined);
    assert.equal(readUnverifiedExpiry('single'), undefined);
  });
});

class FakeAuthenticator implements Authenticator {
  calls = 0;
  readonly signals: Array<AbortSignal | undefined> = [];
  constructor(private readonly respond: (token: string, call: number) => CallerIdentity) {}

  async authenticate(token: string, options?: AuthenticateOptions): Promise<CallerIdentity> {
    this.calls += 1;
    this.signals.push(options?.signal);
    return this.respond(token, this.calls);
  }
}

describe('CachingAuthenticator', () => {
  const identity = (token: string, expiresAt?: Date): CallerIdentity => ({
    namespace: 'shop',
    serviceAccount: token.replace(/\W/g, '').slice(0, 20) || 'x',
    ...(expiresAt ? { expiresAt } : {}),
  });

  it('returns a cached identity without calling the backend again', async () => {
    const inner = new FakeAuthenticator((t) => identity(t));
    const cache = new CachingAuthenticator(inner, { clock: new ManualClock() });
    const first = await cache.authenticate('tok.en.a');
    const second = await cache.authenticate('tok.en.a');
    assert.deepEqual(second, first);
    assert.equal(inner.calls, 1);
  });

  it('keeps an entry no longer than the token expiry', async () => {
    const clock = new ManualClock();
    const inner = new FakeAuthenticator((t) => identity(t, new Date(clock.now().getTime() + 10_000)));
    const cache = new CachingAuthenticator(inner, { clock, maxAgeMs: 60_000 });
    await cache.authenticate('tok.en.a');
    clock.advance(9_999);
    await cache.authenticate('tok.en.a');
    assert.equal(inner.calls, 1);
    clock.advance(1);
    await cache.authenticate('tok.en.a');
    assert.equal(inner.calls, 2);
  });

  it('keeps an entry no longer than maxAgeMs even for a long-lived token', async () => {
    const clock = new ManualClock();
    const inner = new FakeAuthenticator((t) => identity(t, new Date(clock.now().getTime() + 3600_000)));
    const cache = new CachingAuthenticator(inner, { clock, maxAgeMs: 30_000 });
    await cache.authenticate('tok.en.a');
    clock.advance(29_999);
    await cache.authenticate('tok.en.a');
    assert.equal(inner.calls, 1);
    clock.advance(1);
    await cache.authenticate('tok.en.a');
    assert.equal(inner.calls, 2);
  });

  it('does not cache an identity that is already expired', async () => {
    const clock = new ManualClock();
    const inner = new FakeAuthenticator((t) => identity(t, new Date(clock.now().getTime() - 1)));
    const cache = new CachingAuthenticator(inner, { clock });
    await cache.authenticate('tok.en.a');
    await cache.authenticate('tok.en.a');
    assert.equal(inner.calls, 2);
    assert.equal(cache.size, 0);
  });

  it('does not cache failures: the next call asks the backend again', async () => {
    const inner = new FakeAuthenticator((t, call) => {
      if (call === 1) throw new AuthnUnavailableError('API server down');
      if (call === 2) throw new AuthnError('not yet valid', { rule: 'not-yet-valid' });
      return identity(t);
    });
    const cache = new CachingAuthenticator(inner, { clock: new ManualClock() });
    await assert.rejects(cache.authenticate('tok.en.a'), (err) => isIdentityError(err) && err.code === 'ERR_AUTHN_UNAVAILABLE');
    await assert.rejects(cache.authenticate('tok.en.a'), (err) => isIdentityError(err) && err.code === 'ERR_AUTHN_FAILED');
    await cache.authenticate('tok.en.a');
    assert.equal(inner.calls, 3);
    assert.equal(cache.size, 1);
  });

  it('evicts the least recently used entry beyond maxEntries', async () => {
    const inner = new FakeAuthenticator((t) => identity(t));
    const cache = new CachingAuthenticator(inner, { clock: new ManualClock(), maxEntries: 2 });
    await cache.authenticate('a.a.a');
    await cache.authenticate('b.b.b');
    await cache.authenticate('a.a.a'); // a is now the most recently used
    await cache.authenticate('c.c.c'); // evicts b
    assert.equal(cache.size, 2);
    assert.equal(inner.calls, 3);
    await cache.authenticate('a.a.a');
    assert.equal(inner.calls, 3);
    await cache.authenticate('b.b.b');
    assert.equal(inner.calls, 4);
  });

  it('drops expired entries from the least recently used end as new ones arrive', async () => {
    const inner = new FakeAuthenticator((t) => identity(t));
    const clock = new ManualClock();
    const cache = new CachingAuthenticator(inner, { clock, maxEntries: 3, maxAgeMs: 1000 });
    for (const t of ['a.a.a', 'b.b.b', 'c.c.c']) await cache.authenticate(t);
    clock.advance(2000);
    await cache.authenticate('d.d.d');
    assert.equal(cache.size, 1, 'the three expired entries are gone, not just one');
    await cache.authenticate('a.a.a');
    assert.equal(inner.calls, 5, 'an expired entry is never served');
  });

  it('keys entries by SHA-256 digest and never stores the token', async () => {
    const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJl';
    const inner = new FakeAuthenticator(() => identity('x'));
    const cache = new CachingAuthenticator(inner, { clock: new ManualClock() });
    // Observe every Map write the cache makes: the private map is otherwise invisible.
    const keys: unknown[] = [];
    const values: unknown[] = [];
    const originalSet = Map.prototype.set;
    Map.prototype.set = function <K, V>(this: Map<K, V>, key: K, value: V) {
      keys.push(key);
      values.push(value);
      return originalSet.call(this, key, value) as Map<K, V>;
    };
    try {
      await cache.authenticate(token);
    } finally {
      Map.prototype.set = originalSet;
    }
    assert.ok(keys.includes(createHash('sha256').update(token).digest('base64url')));
    assert.ok(!JSON.stringify({ keys, values }).includes(token));
    assert.ok(!JSON.stringify({ keys, values }).includes(token.split('.')[1] ?? ''));
  });

  it('passes the abort signal to the backend', async () => {
    const inner = new FakeAuthenticator((t) => identity(t));
    const cache = new CachingAuthenticator(inner, { clock: new ManualClock() });
    const controller = new AbortController();
    await cache.authenticate('a.a.a', { signal: controller.signal });
    assert.equal(inner.signals[0], controller.signal);
  });

  it('rejects nonsensical limits as misuse', () => {
    const inner = new FakeAuthenticator((t) => identity(t));
    assert.throws(() => new CachingAuthenticator(inner, { maxEntries: 0 }), TypeError);
    assert.throws(() => new CachingAuthenticator(inner, { maxAgeMs: -1 }), TypeError);
  });
});
