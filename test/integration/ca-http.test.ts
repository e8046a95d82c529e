import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createCsr } from '../../src/pki/csr.js';
import { httpsRequest } from '../helpers/https-request.js';
import { opensslVerify } from '../helpers/openssl.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';
import { buildHttpApp } from '../../src/transport/http/app.js';
import { CaMetrics } from '../../src/transport/metrics.js';

const SLEEP_ID = 'spiffe://cluster.local/ns/default/sa/sleep';
const ecCsr = (uris: readonly string[] = [SLEEP_ID]): string =>
  createCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey, { uris }).pem;

describe('HTTP API', () => {
  let ca: TestCa;
  before(async () => {
    ca = await startTestCa({ rateLimit: '1', rateBurst: '20' });
  });
  after(async () => {
    await ca.close();
  });

  const post = (body: unknown, token?: string, contentType = 'application/json') =>
    httpsRequest(`${ca.httpUrl}/v1/certificates`, {
      ca: ca.rootPem,
      method: 'POST',
      headers: { 'content-type': contentType, ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  test('POST /v1/certificates issues an SVID over HTTPS verified by root-cert.pem', async () => {
    const token = await ca.mint({ namespace: 'default', serviceAccount: 'sleep' });
    const res = await post({ csr: ecCsr(), ttl: '2h' }, token);
    assert.equal(res.status, 200, res.body);
    const body = res.json<{ certChain: string[]; rootCert: string; spiffeId: string; expiresAt: string; serial: string }>();
    assert.equal(body.spiffeId, SLEEP_ID);
    assert.equal(body.certChain.length, 2);
    assert.equal(body.rootCert, ca.rootPem);
    const leaf = new X509Certificate(body.certChain[0]!);
    assert.equal(new Date(leaf.validTo).toISOString(), body.expiresAt);
    assert.equal((new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()) / 1000, 7200 + 10);
    assert.equal(leaf.serialNumber.toLowerCase(), body.serial);
    const verdict = await opensslVerify(ca.rootPem, body.certChain[0]!, { purpose: 'sslserver' });
    assert.equal(verdict.code, 0, verdict.stdout + verdict.stderr);
  });

  test('GET /v1/bundle serves the roots as PEM with a sequence and refresh hint', async () => {
    const res = await httpsRequest(`${ca.httpUrl}/v1/bundle`, { ca: ca.rootPem });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/x-pem-file');
    assert.equal(res.body, ca.rootPem);
    assert.equal(res.headers['x-spiffe-sequence'], '1');
  });

  test('GET /.well-known/spiffe-bundle serves a SPIFFE bundle (JWKS) whose key is the root', async () => {
    const res = await httpsRequest(`${ca.httpUrl}/.well-known/spiffe-bundle`, { ca: ca.rootPem });
    assert.equal(res.status, 200);
    const doc = res.json<{ keys: { use: string; x5c: string[]; kty: string }[]; spiffe_sequence: number; spiffe_refresh_hint: number }>();
    assert.deepEqual(doc.keys.map((k) => k.use), ['x509-svid', 'jwt-svid']);
    const root = new X509Certificate(Buffer.from(doc.keys[0]!.x5c[0]!, 'base64'));
    assert.equal(root.fingerprint256, new X509Certificate(ca.rootPem).fingerprint256);
    const fromJwk = createPublicKey({ key: doc.keys[0] as never, format: 'jwk' });
    assert.ok(fromJwk.equals(root.publicKey));
    assert.equal(doc.spiffe_sequence, 1);
    assert.equal(doc.spiffe_refresh_hint, 300);
  });

  test('health, readiness and Prometheus metrics', async () => {
    assert.equal((await httpsRequest(`${ca.httpUrl}/healthz`, { ca: ca.rootPem })).status, 200);
    assert.equal((await httpsRequest(`${ca.httpUrl}/readyz`, { ca: ca.rootPem })).json<{ status: string }>().status, 'ready');
    assert.equal(ca.running.readiness(), undefined);
    const metrics = await httpsRequest(`${ca.httpUrl}/metrics`, { ca: ca.rootPem });
    assert.match(metrics.body, /meshca_certificates_issued_total\{transport="http"\} \d+/);
    assert.match(metrics.body, /meshca_ca_certificate_expiry_seconds\{serial="[0-9a-f]+"\} \d+/);
    assert.match(metrics.body, /meshca_trust_bundle_authority_expiry_seconds\{fingerprint="[0-9A-F:]+"\} \d+/);
    assert.match(metrics.body, /meshca_certificate_request_duration_seconds_bucket/);
    // The absolute expiry beside the seconds left: the CA certificate's notAfter, to the second.
    const at = Number(/^meshca_ca_certificate_expiration_timestamp_seconds\{serial="[0-9a-f]+"\} (\d+)$/m.exec(metrics.body)?.[1]);
    assert.equal(at, Date.parse(new X509Certificate(ca.rootPem).validTo) / 1000);
    assert.match(metrics.body, /^meshca_trust_bundle_authority_expiration_timestamp_seconds\{fingerprint="[0-9A-F:]+"\} \d+$/m);
    // The CA's scrape lints: no gauge named like a counter, every family typed.
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: metrics.body, encoding: 'utf8' });
    if (promtool.error === undefined) assert.equal(promtool.status, 0, promtool.stdout + promtool.stderr);
  });

  test('POST /v1/jwtsvids mints a JWT-SVID that verifies against the bundle JWKS', async () => {
    const token = await ca.mint({ namespace: 'default', serviceAccount: 'jwt-user' });
    const res = await httpsRequest(`${ca.httpUrl}/v1/jwtsvids`, {
      ca: ca.rootPem,
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ audience: ['spiffe://cluster.local/ns/default/sa/backend'], ttl: 120 }),
    });
    assert.equal(res.status, 200, res.body);
    const body = res.json<{ token: string; spiffeId: string; expiresAt: string }>();
    assert.equal(body.spiffeId, 'spiffe://cluster.local/ns/default/sa/jwt-user');
    const bundle = (await httpsRequest(`${ca.httpUrl}/.well-known/spiffe-bundle`, { ca: ca.rootPem })).json<{ keys: { use: string; kid?: string }[] }>();
    const jwtKeys = bundle.keys.filter((k) => k.use === 'jwt-svid');
    assert.equal(jwtKeys.length, 1);
    const { createLocalJWKSet, jwtVerify, decodeProtectedHeader } = await import('jose');
    assert.equal(decodeProtectedHeader(body.token).kid, jwtKeys[0]!.kid);
    // SPIFFE's `use: jwt-svid` is not JOSE's `sig`: a SPIFFE consumer drops it before handing keys to JOSE.
    const keys = jwtKeys.map(({ use: _use, ...k }) => k);
    const { payload } = await jwtVerify(body.token, createLocalJWKSet({ keys: keys as never }), {
      audience: 'spiffe://cluster.local/ns/default/sa/backend',
      algorithms: ['ES256'],
    });
    assert.equal(payload.sub, 'spiffe://cluster.local/ns/default/sa/jwt-user');
    assert.equal(payload.exp! - payload.iat!, 120);
    const refused = await httpsRequest(`${ca.httpUrl}/v1/jwtsvids`, {
      ca: ca.rootPem,
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer nope' },
      body: JSON.stringify({ audience: 'x' }),
    });
    assert.equal(refused.status, 401);
    const noAudience = await httpsRequest(`${ca.httpUrl}/v1/jwtsvids`, {
      ca: ca.rootPem,
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ audience: [] }),
    });
    assert.equal(noAudience.status, 400);
    assert.equal(noAudience.json<{ error: { code: string } }>().error.code, 'ERR_BAD_REQUEST');
  });

  describe('bad input: one JSON error shape with a stable code', () => {
    const cases: { name: string; send: () => Promise<Awaited<ReturnType<typeof post>>>; status: number; code: string; message?: RegExp }[] = [
      { name: 'missing bearer token', send: async () => post({ csr: ecCsr() }), status: 401, code: 'ERR_AUTHN_FAILED', message: /^authentication failed$/ },
      { name: 'forged token', send: async () => post({ csr: ecCsr() }, 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA'), status: 401, code: 'ERR_AUTHN_FAILED' },
      { name: 'expired token', send: async () => post({ csr: ecCsr() }, await ca.mint({ now: new Date(Date.now() - 7200_000), ttlSeconds: 600 })), status: 401, code: 'ERR_AUTHN_FAILED' },
      { name: 'malformed JSON', send: async () => post('{"csr": ', await ca.mint()), status: 400, code: 'ERR_BAD_REQUEST' },
      { name: 'missing csr field', send: async () => post({ ttl: 60 }, await ca.mint()), status: 400, code: 'ERR_BAD_REQUEST', message: /csr/ },
      { name: 'unknown field', send: async () => post({ csr: ecCsr(), spiffeId: 'spiffe://cluster.local/ns/kube-system/sa/admin' }, await ca.mint()), status: 400, code: 'ERR_BAD_REQUEST' },
      { name: 'wrong content type', send: async () => post('csr=x', await ca.mint(), 'application/x-www-form-urlencoded'), status: 415, code: 'ERR_MEDIA_TYPE_UNSUPPORTED' },
      { name: 'oversized body', send: async () => post({ csr: 'A'.repeat(200_000) }, await ca.mint()), status: 413, code: 'ERR_REQUEST_TOO_LARGE' },
      { name: 'garbage CSR', send: async () => post({ csr: 'hello' }, await ca.mint()), status: 400, code: 'ERR_CSR_INVALID' },
      { name: 'CSR for another identity', send: async () => post({ csr: ecCsr(['spiffe://cluster.local/ns/x/sa/y']) }, await ca.mint()), status: 403, code: 'ERR_IDENTITY_MISMATCH' },
      { name: 'bad ttl string', send: async () => post({ csr: ecCsr(), ttl: 'forever' }, await ca.mint()), status: 400, code: 'ERR_TTL_INVALID' },
      { name: 'ttl over the maximum', send: async () => post({ csr: ecCsr(), ttl: '1000h' }, await ca.mint()), status: 400, code: 'ERR_TTL_INVALID', message: /greater than the maximum/ },
      { name: 'unknown route', send: async () => httpsRequest(`${ca.httpUrl}/v1/nope`, { ca: ca.rootPem }), status: 404, code: 'ERR_NOT_FOUND' },
    ];
    for (const c of cases) {
      test(`${c.name} → ${c.status} ${c.code}`, async () => {
        const res = await c.send();
        assert.equal(res.status, c.status, res.body);
        const body = res.json<{ error: { code: string; message: string } }>();
        assert.equal(body.error.code, c.code);
        assert.equal(typeof body.error.message, 'string');
        if (c.message) assert.match(body.error.message, c.message);
      });
    }
  });

  test('a per-identity rate limit answers 429 without affecting other identities', async () => {
    const token = await ca.mint({ serviceAccount: 'chatty' });
    const statuses: number[] = [];
    for (let i = 0; i < 25; i++) {
      statuses.push((await post({ csr: ecCsr(['spiffe://cluster.local/ns/default/sa/chatty']) }, token)).status);
    }
    assert.ok(statuses.includes(429), `statuses ${statuses.join(',')}`);
    const other = await post({ csr: ecCsr(['spiffe://cluster.local/ns/default/sa/quiet']) }, await ca.mint({ serviceAccount: 'quiet' }));
    assert.equal(other.status, 200);
  });
});

describe('CA shutdown', () => {
  test('the CA reports not ready as soon as shutdown starts, then stops', async () => {
    const ca = await startTestCa();
    try {
      assert.equal(ca.running.readiness(), undefined);
      const closing = ca.running.close();
      assert.equal(ca.running.readiness(), 'shutting down');
      await closing;
      // A second close (SIGTERM then SIGINT) is the same shutdown, not a second one.
      await ca.running.close();
    } finally {
      await ca.close();
    }
  });
});

describe('/readyz', () => {
  test('answers 503 with the reason when the CA cannot serve', async () => {
    const ca = await startTestCa();
    try {
      let problem: string | undefined = 'shutting down';
      const app = buildHttpApp({
        issuance: ca.running.issuance,
        logger: ca.logger,
        metrics: new CaMetrics(),
        bundle: () => ({ trustDomain: 'cluster.local', authorities: [], rootsPem: ca.rootPem, sequence: 1, refreshHintSeconds: 300, jwtAuthorities: [] }),
        ready: () => problem,
      });
      try {
        const down = await app.inject({ method: 'GET', url: '/readyz' });
        assert.equal(down.statusCode, 503);
        assert.deepEqual(down.json(), { status: 'not ready', reason: 'shutting down' });
        problem = undefined;
        const up = await app.inject({ method: 'GET', url: '/readyz' });
        assert.equal(up.statusCode, 200);
        assert.deepEqual(up.json(), { status: 'ready' });
      } finally {
        await app.close();
      }
    } finally {
      await ca.close();
    }
  });
});
