import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';

import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader } from 'jose';

import { DEFAULT_DEV_ISSUER, DevTokenIssuer } from '../../../src/authn/dev-issuer.js';
import { createJwksAuthenticator } from '../../../src/authn/jwks.js';

const NOW = new Date('2030-01-01T00:00:00Z');

describe('DevTokenIssuer', () => {
  it('mints a token shaped like a projected service-account token', async () => {
    const issuer = await DevTokenIssuer.generate();
    const token = await issuer.mint({ namespace: 'shop', serviceAccount: 'cart', podName: 'cart-0', now: NOW });
    const header = decodeProtectedHeader(token);
    assert.deepEqual(Object.keys(header).sort(), ['alg', 'kid']);
    assert.equal(header.alg, 'ES256');
    const publicJwk = issuer.publicJwks().keys[0];
    assert.ok(publicJwk);
    assert.equal(header.kid, await calculateJwkThumbprint(publicJwk, 'sha256'));

    const claims = decodeJwt(token);
    assert.equal(claims.iss, DEFAULT_DEV_ISSUER);
    assert.equal(claims.sub, 'system:serviceaccount:shop:cart');
    assert.deepEqual(claims.aud, ['istio-ca']);
    assert.equal(claims.iat, NOW.getTime() / 1000);
    assert.equal(claims.nbf, claims.iat);
    assert.equal(claims.exp, (claims.iat ?? 0) + 3600);
    assert.match(String(claims.jti), /^[0-9a-f-]{36}$/);
    const k8s = claims['kubernetes.io'] as { namespace: string; serviceaccount: { name: string; uid: string }; pod: { name: string; uid: string } };
    assert.equal(k8s.namespace, 'shop');
    assert.equal(k8s.serviceaccount.name, 'cart');
    assert.match(k8s.serviceaccount.uid, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(k8s.pod.name, 'cart-0');
  });

  it('keeps a service account UID stable across mints and varies it between accounts', async () => {
    const issuer = await DevTokenIssuer.generate();
    const uid = async (sa: string): Promise<string> =>
      (decodeJwt(await issuer.mint({ namespace: 'shop', serviceAccount: sa, now: NOW }))['kubernetes.io'] as { serviceaccount: { uid: string } })
        .serviceaccount.uid;
    assert.equal(await uid('cart'), await uid('cart'));
    assert.notEqual(await uid('cart'), await uid('checkout'));
  });

  it('honours issuer, audience and ttl options', async () => {
    const issuer = await DevTokenIssuer.generate({ issuer: 'https://oidc.example/cluster-1' });
    const claims = decodeJwt(await issuer.mint({ namespace: 'a', serviceAccount: 'b', audience: ['x', 'y'], ttlSeconds: 600, now: NOW }));
    assert.equal(claims.iss, 'https://oidc.example/cluster-1');
    assert.deepEqual(claims.aud, ['x', 'y']);
    assert.equal((claims.exp ?? 0) - (claims.iat ?? 0), 600);
    assert.equal(claims['kubernetes.io'] && 'pod' in (claims['kubernetes.io'] as object), false);
  });

  it('publishes only public key material', async () => {
    for (const alg of ['ES256', 'RS256', 'EdDSA'] as const) {
      const issuer = await DevTokenIssuer.generate({ alg });
      const [jwk] = issuer.publicJwks().keys;
      assert.ok(jwk);
      for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(secret in jwk, false, `${alg} leaks ${secret}`);
      assert.equal(jwk.use, 'sig');
      assert.equal(jwk.alg, alg);
    }
  });

  it('round-trips through exportPrivateJwk and fromPrivateJwk with the same key id', async () => {
    const original = await DevTokenIssuer.generate();
    const restored = await DevTokenIssuer.fromPrivateJwk(original.exportPrivateJwk());
    assert.equal(restored.keyId, original.keyId);
    const authn = createJwksAuthenticator({ issuer: DEFAULT_DEV_ISSUER, audiences: ['istio-ca'], jwks: { keys: original.publicJwks() } });
    const identity = await authn.authenticate(await restored.mint({ namespace: 'shop', serviceAccount: 'cart', now: new Date() }));
    assert.equal(identity.serviceAccount, 'cart');
  });

  it('refuses a public key, since it cannot sign', async () => {
    const issuer = await DevTokenIssuer.generate();
    const [publicJwk] = issuer.publicJwks().keys;
    assert.ok(publicJwk);
    await assert.rejects(DevTokenIssuer.fromPrivateJwk(publicJwk), TypeError);
  });

  it('refuses to mint for names the API server would never accept', async () => {
    const issuer = await DevTokenIssuer.generate();
    await assert.rejects(issuer.mint({ namespace: 'Shop', serviceAccount: 'cart', now: NOW }), TypeError);
    await assert.rejects(issuer.mint({ namespace: 'shop', serviceAccount: 'a:b', now: NOW }), TypeError);
    await assert.rejects(issuer.mint({ namespace: 'shop', serviceAccount: 'cart', ttlSeconds: 0, now: NOW }), TypeError);
  });

  it('keeps the private key out of inspect and JSON output', async () => {
    const issuer = await DevTokenIssuer.generate();
    const d = issuer.exportPrivateJwk().d;
    assert.ok(d);
    assert.ok(!inspect(issuer, { showHidden: true, depth: 5 }).includes(d));
    assert.ok(!JSON.stringify(issuer).includes(d));
  });
});
