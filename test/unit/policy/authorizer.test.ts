import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { AuthzDeniedError } from '../../../src/errors.js';
import {
  authorizeAny,
  authorizeId,
  authorizeIf,
  authorizeMemberOf,
  authorizeOneOf,
  type Authorizer,
  type AuthorizerRule,
} from '../../../src/policy/index.js';
import { mustParseSpiffeId, parseTrustDomain } from '../../../src/spiffe/index.js';

const sleep = mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
const httpbin = mustParseSpiffeId('spiffe://cluster.local/ns/foo/sa/httpbin');
const foreign = mustParseSpiffeId('spiffe://other.example/ns/default/sa/sleep');

function assertDenied(authorizer: Authorizer, peer = sleep, rule: AuthorizerRule, fragment?: string): void {
  assert.throws(
    () => authorizer(peer, []),
    (err: unknown) => {
      assert.ok(err instanceof AuthzDeniedError, `expected AuthzDeniedError, got ${String(err)}`);
      assert.equal(err.code, 'ERR_AUTHZ_DENIED');
      assert.equal(err.rule, rule);
      assert.ok(err.message.includes(peer.toString()), err.message);
      if (fragment !== undefined) assert.ok(err.message.includes(fragment), err.message);
      return true;
    },
  );
}

describe('authorizeAny', () => {
  it('allows any verified peer', () => {
    authorizeAny()(sleep);
    authorizeAny()(foreign, []);
  });
});

describe('authorizeId', () => {
  it('allows exactly the configured ID', () => {
    authorizeId(mustParseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep'))(sleep);
  });

  it('denies another ID and names the expected one', () => {
    assertDenied(authorizeId(httpbin), sleep, 'authorize-id', httpbin.toString());
  });

  it('denies the same path in another trust domain', () => {
    assertDenied(authorizeId(sleep), foreign, 'authorize-id');
  });
});

describe('authorizeOneOf', () => {
  it('allows any listed ID', () => {
    const authorizer = authorizeOneOf(httpbin, sleep);
    authorizer(sleep);
    authorizer(httpbin);
  });

  it('denies an unlisted ID', () => {
    assertDenied(authorizeOneOf(httpbin), sleep, 'authorize-one-of', httpbin.toString());
  });

  it('denies every peer when given no IDs', () => {
    assertDenied(authorizeOneOf(), sleep, 'authorize-one-of', '(none)');
  });
});

describe('authorizeMemberOf', () => {
  it('allows members of the trust domain', () => {
    authorizeMemberOf(parseTrustDomain('cluster.local'))(sleep);
  });

  it('denies peers from another trust domain', () => {
    assertDenied(authorizeMemberOf(parseTrustDomain('cluster.local')), foreign, 'authorize-member-of', '"cluster.local"');
  });
});

describe('authorizeIf', () => {
  const inDefault = authorizeIf((peer) => peer.path.startsWith('/ns/default/'), 'a workload in namespace default');

  it('allows a peer the predicate accepts and passes the chain', () => {
    inDefault(sleep);
    let seen: unknown;
    authorizeIf((_peer, chain) => {
      seen = chain;
      return true;
    }, 'anything')(sleep, []);
    assert.deepEqual(seen, []);
  });

  it('denies a peer the predicate rejects, with the description', () => {
    assertDenied(inDefault, httpbin, 'authorize-if', 'a workload in namespace default');
  });

  it('denies when the predicate returns a truthy non-boolean', () => {
    const sloppy = authorizeIf((() => 'yes') as unknown as () => boolean, 'a truthy answer');
    assertDenied(sloppy, sleep, 'authorize-if');
  });

  it('denies, keeping the cause, when the predicate throws', () => {
    const boom = new Error('lookup failed');
    const authorizer = authorizeIf(() => {
      throw boom;
    }, 'a known workload');
    assert.throws(
      () => authorizer(sleep),
      (err: unknown) => err instanceof AuthzDeniedError && err.code === 'ERR_AUTHZ_DENIED' && err.cause === boom,
    );
  });
});

describe('authorizer misuse', () => {
  it('rejects constructor arguments of the wrong type with TypeError', () => {
    assert.throws(() => authorizeId('spiffe://cluster.local/x' as never), TypeError);
    assert.throws(() => authorizeOneOf(sleep, 'spiffe://x/y' as never), TypeError);
    assert.throws(() => authorizeMemberOf('cluster.local' as never), TypeError);
    assert.throws(() => authorizeIf(undefined as never, 'x'), TypeError);
    assert.throws(() => authorizeIf(() => true, ''), TypeError);
  });

  it('rejects a peer that is not a SpiffeId with TypeError, not a denial', () => {
    for (const authorizer of [authorizeAny(), authorizeId(sleep), authorizeOneOf(sleep), authorizeMemberOf(sleep.trustDomain)]) {
      assert.throws(() => authorizer(sleep.toString() as never), TypeError);
    }
  });
});
