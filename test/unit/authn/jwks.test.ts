import * as assert from 'node:assert/strict';
import { createHmac, createPublicKey } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import fc from 'fast-check';
import { SignJWT, importJWK } from 'jose';
import type { JWTPayload } from 'jose';

import { createJwksAuthenticator } from '../../../src/authn/jwks.js';
import type { CreateJwksAuthenticatorOptions } from '../../../src/authn/jwks.js';
import { DevTokenIssuer } from '../../../src/authn/dev-issuer.js';
import type { Authenticator } from '../../../src/authn/authenticator.js';
import { AuthnError, AuthnUnavailableError } from '../../../src/errors.js';
import { ManualClock } from '../../helpers/manual-clock.js';

const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const AUDIENCE = 'istio-ca';

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

async function assertAuthnRule(promise: Promise<unknown>, rule: string, token?: string): Promise<void> {
  const err = await rejection(promise);
  assert.ok(err instanceof AuthnError, `expected AuthnError, got ${String(err)}`);
  assert.equal(err.code, 'ERR_AUTHN_FAILED');
  assert.equal(err.rule, rule);
  if (token !== undefined) assert.ok(!err.message.includes(token), 'the message must not contain the token');
}

describe('createJwksAuthenticator', () => {
  let issuer: DevTokenIssuer;
  let stranger: DevTokenIssuer;
  let clock: ManualClock;
  let authn: Authenticator;

  before(async () => {
    issuer = await DevTokenIssuer.generate();
    stranger = await DevTokenIssuer.generate();
    clock = new ManualClock();
    authn = createJwksAuthenticator({ issuer: ISSUER, audiences: [AUDIENCE], jwks: { keys: issuer.publicJwks() }, clock, clockToleranceSeconds: 0 });
  });

  const mint = (overrides: Partial<Parameters<DevTokenIssuer['mint']>[0]> = {}, by: DevTokenIssuer = issuer): Promise<string> =>
    by.mint({ namespace: 'shop', serviceAccount: 'cart', podName: 'cart-0', audience: AUDIENCE, now: clock.now(), ...overrides });

  /** Signs arbitrary claims with the trusted key, for tokens the dev issuer refuses to mint. */
  const signWithTrustedKey = async (payload: JWTPayload, header: Record<string, unknown> = {}): Promise<string> => {
    const key = await importJWK(issuer.exportPrivateJwk(), issuer.alg);
    return new SignJWT(payload).setProtectedHeader({ alg: issuer.alg, kid: issuer.keyId, ...header }).sign(key);
  };

  const validClaims = (): JWTPayload => {
    const iat = Math.floor(clock.now().getTime() / 1000);
    return {
      iss: ISSUER,
      aud: [AUDIENCE],
      sub: 'system:serviceaccount:shop:cart',
      iat,
      nbf: iat,
      exp: iat + 3600,
      'kubernetes.io': { namespace: 'shop', serviceaccount: { name: 'cart', uid: '00000000-0000-4000-8000-000000000000' } },
    };
  };

  it('accepts a valid projected token and returns the identity with pod and expiry', async () => {
    const token = await mint();
    const identity = await authn.authenticate(token);
    assert.equal(identity.namespace, 'shop');
    assert.equal(identity.serviceAccount, 'cart');
    assert.equal(identity.podName, 'cart-0');
    assert.ok(identity.podUid);
    assert.equal(identity.expiresAt?.getTime(), clock.now().getTime() + 3600_000);
  });

  it('accepts a token without pod claims', async () => {
    const identity = await authn.authenticate(await mint({ podName: undefined }));
    assert.equal(identity.podName, undefined);
    assert.equal(identity.podUid, undefined);
  });

  it('accepts a token carrying any one of the configured audiences', async () => {
    const multi = createJwksAuthenticator({ issuer: ISSUER, audiences: ['other', AUDIENCE], jwks: { keys: issuer.publicJwks() }, clock });
    assert.equal((await multi.authenticate(await mint({ audience: ['unrelated', AUDIENCE] }))).serviceAccount, 'cart');
  });

  it('rejects an expired token', async () => {
    const token = await mint({ ttlSeconds: 600 });
    const later = new ManualClock(clock.now().getTime() + 600_000);
    const lateAuthn = createJwksAuthenticator({ issuer: ISSUER, audiences: [AUDIENCE], jwks: { keys: issuer.publicJwks() }, clock: later, clockToleranceSeconds: 0 });
    await assertAuthnRule(lateAuthn.authenticate(token), 'expired', token);
  });

  it('allows clock skew up to clockToleranceSeconds', async () => {
    const token = await mint({ ttlSeconds: 600 });
    const later = new ManualClock(clock.now().getTime() + 605_000);
    const tolerant = createJwksAuthenticator({ issuer: ISSUER, audiences: [AUDIENCE], jwks: { keys: issuer.publicJwks() }, clock: later, clockToleranceSeconds: 10 });
    assert.equal((await tolerant.authenticate(token)).namespace, 'shop');
  });

  it('rejects a token that is not valid yet', async () => {
    const token = await mint({ now: new Date(clock.now().getTime() + 3600_000) });
    await assertAuthnRule(authn.authenticate(token), 'not-yet-valid', token);
  });

  it('rejects a token for another audience', async () => {
    await assertAuthnRule(authn.authenticate(await mint({ audience: ISSUER })), 'audience');
  });

  it('rejects a token from another issuer signed with the trusted key', async () => {
    const impostor = await DevTokenIssuer.fromPrivateJwk(issuer.exportPrivateJwk(), { issuer: 'https://evil.example' });
    await assertAuthnRule(authn.authenticate(await mint({}, impostor)), 'issuer');
  });

  it('rejects a forged signature made with another key under the trusted kid', async () => {
    const key = await importJWK(stranger.exportPrivateJwk(), stranger.alg);
    const forged = await new SignJWT(validClaims()).setProtectedHeader({ alg: 'ES256', kid: issuer.keyId }).sign(key);
    await assertAuthnRule(authn.authenticate(forged), 'signature', forged);
  });

  it('rejects a token whose signature was tampered with', async () => {
    const token = await mint();
    const [h, p] = token.split('.');
    const tampered = `${h}.${p}.${b64(Buffer.alloc(64, 7).toString('latin1'))}`;
    await assertAuthnRule(authn.authenticate(tampered), 'signature');
  });

  it('rejects a token whose payload was swapped for another identity', async () => {
    const token = await mint();
    const [h, , s] = token.split('.');
    const claims = { ...validClaims(), sub: 'system:serviceaccount:kube-system:admin', 'kubernetes.io': { namespace: 'kube-system', serviceaccount: { name: 'admin', uid: 'x' } } };
    await assertAuthnRule(authn.authenticate(`${h}.${b64(claims)}.${s}`), 'signature');
  });

  it('rejects a token signed by an unknown key (unknown kid)', async () => {
    await assertAuthnRule(authn.authenticate(await mint({}, stranger)), 'kid');
  });

  it('refuses alg "none" explicitly', async () => {
    const token = `${b64({ alg: 'none', kid: issuer.keyId })}.${b64(validClaims())}.`;
    await assertAuthnRule(authn.authenticate(token), 'alg', token);
  });

  it('refuses HS256 signed with the public key bytes as the HMAC secret (key confusion)', async () => {
    const publicJwk = issuer.publicJwks().keys[0];
    assert.ok(publicJwk);
    const pem = createPublicKey({ key: publicJwk as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    for (const secret of [pem, JSON.stringify(publicJwk)]) {
      const signingInput = `${b64({ alg: 'HS256', kid: issuer.keyId, typ: 'JWT' })}.${b64(validClaims())}`;
      const signature = createHmac('sha256', secret).update(signingInput).digest('base64url');
      await assertAuthnRule(authn.authenticate(`${signingInput}.${signature}`), 'alg');
    }
  });

  it('refuses an algorithm outside a narrowed allow-list', async () => {
    const rsOnly = createJwksAuthenticator({ issuer: ISSUER, audiences: [AUDIENCE], jwks: { keys: issuer.publicJwks() }, clock, algorithms: ['RS256'] });
    await assertAuthnRule(rsOnly.authenticate(await mint()), 'alg');
  });

  it('rejects a token without kubernetes.io claims', async () => {
    const { 'kubernetes.io': _dropped, ...claims } = validClaims();
    await assertAuthnRule(authn.authenticate(await signWithTrustedKey(claims)), 'claims-missing');
  });

  it('rejects kubernetes.io claims without serviceaccount.name', async () => {
    const claims = { ...validClaims(), 'kubernetes.io': { namespace: 'shop', serviceaccount: { uid: 'u' } } };
    await assertAuthnRule(authn.authenticate(await signWithTrustedKey(claims)), 'claims-missing');
  });

  it('rejects a malformed pod claim', async () => {
    const claims = { ...validClaims(), 'kubernetes.io': { namespace: 'shop', serviceaccount: { name: 'cart', uid: 'u' }, pod: 'cart-0' } };
    await assertAuthnRule(authn.authenticate(await signWithTrustedKey(claims)), 'claims-invalid');
  });

  it('rejects a sub that disagrees with the kubernetes.io claims', async () => {
    const claims = { ...validClaims(), sub: 'system:serviceaccount:kube-system:cart' };
    await assertAuthnRule(authn.authenticate(await signWithTrustedKey(claims)), 'subject-mismatch');
  });

  it('rejects a sub that is not a service account', async () => {
    const claims = { ...validClaims(), sub: 'alice@example.com' };
    await assertAuthnRule(authn.authenticate(await signWithTrustedKey(claims)), 'not-service-account');
  });

  it('rejects a token without exp', async () => {
    const { exp: _dropped, ...claims } = validClaims();
    await assertAuthnRule(authn.authenticate(await signWithTrustedKey(claims)), 'claims-missing');
  });

  it('rejects malformed base64 before any crypto', async () => {
    await assertAuthnRule(authn.authenticate('eyJ!!!.eyJ.sig'), 'token-malformed');
  });

  it('rejects a header that is base64url but not JSON', async () => {
    await assertAuthnRule(authn.authenticate('aaaa.bbbb.cccc'), 'token-malformed');
  });

  it('rejects a non-JSON payload on its signature, never parsing unauthenticated claims', async () => {
    await assertAuthnRule(authn.authenticate(`${b64({ alg: 'ES256', kid: issuer.keyId })}.${b64('not json')}.${b64('sig')}`), 'signature');
  });

  it('rejects an oversized token', async () => {
    const claims = { ...validClaims(), padding: 'x'.repeat(9000) };
    const token = await signWithTrustedKey(claims);
    await assertAuthnRule(authn.authenticate(token), 'token-too-large');
  });

  it('rejects with the caller reason when already aborted', async () => {
    const reason = new Error('gone');
    assert.equal(await rejection(authn.authenticate(await mint(), { signal: AbortSignal.abort(reason) })), reason);
  });

  it('rejects configurations that would weaken verification', () => {
    const base: CreateJwksAuthenticatorOptions = { issuer: ISSUER, audiences: [AUDIENCE], jwks: { keys: { keys: [] } } };
    assert.throws(() => createJwksAuthenticator({ ...base, audiences: [] }), TypeError);
    assert.throws(() => createJwksAuthenticator({ ...base, algorithms: ['HS256' as 'RS256'] }), TypeError);
    assert.throws(() => createJwksAuthenticator({ ...base, jwks: {} }), TypeError);
    assert.throws(() => createJwksAuthenticator({ ...base, jwks: { keys: { keys: [] }, uri: 'https://x' } }), TypeError);
  });

  it('verifies RS256 and EdDSA issuers too', async () => {
    for (const alg of ['RS256', 'EdDSA'] as const) {
      const other = await DevTokenIssuer.generate({ alg });
      const a = createJwksAuthenticator({ issuer: ISSUER, audiences: [AUDIENCE], jwks: { keys: other.publicJwks() }, clock });
      assert.equal((await a.authenticate(await mint({}, other))).serviceAccount, 'cart');
    }
  });

  describe('property: hostile input only ever yields AuthnError', () => {
    it('for arbitrary strings', async () => {
      await fc.assert(
        fc.asyncProperty(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.stringMatching(/^[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,40}$/)), async (input) => {
          const err = await rejection(authn.authenticate(input));
          assert.ok(err instanceof AuthnError, `got ${String(err)}`);
          assert.equal(err.code, 'ERR_AUTHN_FAILED');
        }),
        { numRuns: 300 },
      );
    });

    it('for mutated valid tokens', async () => {
      const token = await mint();
      const original = await authn.authenticate(token);
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!= ';
      const mutation = fc.oneof(
        fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), char: fc.constantFrom(...alphabet) }),
        fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), char: fc.constantFrom(...alphabet) }),
        fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), char: fc.constant('') }),
        fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(), char: fc.constant('') }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 4 }), async (mutations) => {
          let mutated = token;
          for (const m of mutations) {
            const at = m.at % (mutated.length + 1);
            if (m.kind === 'replace') mutated = mutated.slice(0, at) + m.char + mutated.slice(at + 1);
            else if (m.kind === 'insert') mutated = mutated.slice(0, at) + m.char + mutated.slice(at);
            else if (m.kind === 'delete') mutated = mutated.slice(0, at) + mutated.slice(at + 1);
            else mutated = mutated.slice(0, at);
          }
          try {
            // A mutation can be a no-op on the decoded bytes (e.g. unused trailing base64 bits):
            // then, and only then, the same identity comes back.
            assert.deepEqual(await authn.authenticate(mutated), original);
          } catch (err) {
            assert.ok(err instanceof AuthnError, `got ${String(err)}`);
            assert.equal(err.code, 'ERR_AUTHN_FAILED');
            assert.ok(!err.message.includes(mutated) || mutated.length < 8);
          }
        }),
        { numRuns: 300 },
      );
    });
  });
});

describe('createJwksAuthenticator key sources', () => {
  let issuer: DevTokenIssuer;
  let server: Server;
  let baseUrl: string;
  let jwksStatus = 200;
  let dir: string;

  before(async () => {
    issuer = await DevTokenIssuer.generate();
    dir = await mkdtemp(join(tmpdir(), 'meshca-jwks-'));
    server = createServer((req, res) => {
      if (req.url === '/.well-known/openid-configuration') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ issuer: baseUrl, jwks_uri: `${baseUrl}/openid/v1/jwks` }));
        return;
      }
      if (req.url === '/openid/v1/jwks' && jwksStatus === 200) {
        res.writeHead(200, { 'content-type': 'application/jwk-set+json' });
        res.end(JSON.stringify(issuer.publicJwks()));
        return;
      }
      res.writeHead(jwksStatus === 200 ? 404 : jwksStatus);
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await rm(dir, { recursive: true, force: true });
  });

  const mintFor = (iss: string): Promise<string> =>
    DevTokenIssuer.fromPrivateJwk(issuer.exportPrivateJwk(), { issuer: iss }).then((i) =>
      i.mint({ namespace: 'shop', serviceAccount: 'cart', audience: AUDIENCE, now: new Date() }),
    );

  it('loads keys from a JWKS file', async () => {
    const file = join(dir, 'jwks.json');
    await writeFile(file, JSON.stringify(issuer.publicJwks()));
    const authn = createJwksAuthenticator({ issuer: ISSUER, audiences: [AUDIENCE], jwks: { file } });
    assert.equal((await authn.authenticate(await mintFor(ISSUER))).namespace, 'shop');
  });

  it('reports a missing JWKS file as unavailable', async () => {
    const authn = createJwksAuthenticator({ issuer: ISSUER, audiences: [AUDIENCE], jwks: { file: join(dir, 'absent.json') } });
    const err = await rejection(authn.authenticate(await mintFor(ISSUER)));
    assert.ok(err instanceof AuthnUnavailableError);
    assert.equal(err.code, 'ERR_AUTHN_UNAVAILABLE');
  });

  it('fetches keys from a JWKS URL', async () => {
    const authn = createJwksAuthenticator({ issuer: ISSUER, audiences: [AUDIENCE], jwks: { uri: `${baseUrl}/openid/v1/jwks` } });
    assert.equal((await authn.authenticate(await mintFor(ISSUER))).serviceAccount, 'cart');
  });

  it('reports a failing JWKS endpoint as unavailable, not as a bad token', async () => {
    jwksStatus = 503;
    try {
      const authn = createJwksAuthenticator({ issuer: ISSUER, audiences: [AUDIENCE], jwks: { uri: `${baseUrl}/openid/v1/jwks` } });
      const err = await rejection(authn.authenticate(await mintFor(ISSUER)));
      assert.ok(err instanceof AuthnUnavailableError);
      assert.equal(err.code, 'ERR_AUTHN_UNAVAILABLE');
    } finally {
      jwksStatus = 200;
    }
  });

  it('reports an unreachable JWKS endpoint as unavailable', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const authn = createJwksAuthenticator({ issuer: ISSUER, audiences: [AUDIENCE], jwks: { uri: `http://127.0.0.1:${port}/jwks` } });
    const err = await rejection(authn.authenticate(await mintFor(ISSUER)));
    assert.ok(err instanceof AuthnUnavailableError);
  });

  it('finds the JWKS through OIDC discovery', async () => {
    const authn = createJwksAuthenticator({ issuer: baseUrl, audiences: [AUDIENCE], discovery: true });
    assert.equal((await authn.authenticate(await mintFor(baseUrl))).namespace, 'shop');
  });
});
