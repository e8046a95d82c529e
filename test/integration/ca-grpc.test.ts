import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { SignJWT } from 'jose';
import { DevTokenIssuer } from '../../src/authn/dev-issuer.js';
import { createCsr } from '../../src/pki/csr.js';
import { loadIstioCaProto } from '../../src/transport/grpc/protos.js';
import { opensslCsr, opensslVerify } from '../helpers/openssl.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';

const SLEEP_ID = 'spiffe://cluster.local/ns/default/sa/sleep';

function ecCsr(uris: readonly string[] = [SLEEP_ID]): string {
  return createCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey, { uris }).pem;
}

function uriOf(pem: string): string | undefined {
  return new X509Certificate(pem).subjectAltName?.replace(/^URI:/, '');
}

describe('gRPC IstioCertificateService/CreateCertificate', () => {
  let ca: TestCa;
  before(async () => {
    ca = await startTestCa();
  });
  after(async () => {
    await ca.close();
  });

  test('issues a chain (leaf, root) for the token identity that openssl verifies against root-cert.pem', async () => {
    const token = await ca.mint({ namespace: 'default', serviceAccount: 'sleep' });
    const response = await ca.createCertificate({ csr: ecCsr() }, token);
    assert.equal(response.cert_chain.length, 2);
    assert.equal(uriOf(response.cert_chain[0]!), SLEEP_ID);
    assert.equal(new X509Certificate(response.cert_chain[1]!).fingerprint256, new X509Certificate(ca.rootPem).fingerprint256);
    const leaf = new X509Certificate(response.cert_chain[0]!);
    assert.equal((new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()) / 1000, 86_400 + 10, '24 h plus 10 s of backdating');
    const verdict = await opensslVerify(ca.rootPem, response.cert_chain[0]!, { purpose: 'sslclient' });
    assert.equal(verdict.code, 0, verdict.stdout + verdict.stderr);
  });

  test('the identity comes from the token: a CSR with no SAN gets the token identity', async () => {
    const token = await ca.mint({ namespace: 'bookinfo', serviceAccount: 'reviews' });
    const { csrPem } = await opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    const response = await ca.createCertificate({ csr: csrPem }, token);
    assert.equal(uriOf(response.cert_chain[0]!), 'spiffe://cluster.local/ns/bookinfo/sa/reviews');
  });

  test('honours validity_duration, and treats <= 0 as the default', async () => {
    const token = await ca.mint();
    const short = await ca.createCertificate({ csr: ecCsr(), validity_duration: 3600 }, token);
    const leaf = new X509Certificate(short.cert_chain[0]!);
    assert.equal((new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()) / 1000, 3600 + 10);
    const dflt = await ca.createCertificate({ csr: ecCsr(), validity_duration: -5 }, token);
    const leaf2 = new X509Certificate(dflt.cert_chain[0]!);
    assert.equal((new Date(leaf2.validTo).getTime() - new Date(leaf2.validFrom).getTime()) / 1000, 86_400 + 10);
  });

  test('logs each request once with identity, serial and outcome, and never the token or CSR', async () => {
    const token = await ca.mint();
    const csr = ecCsr();
    const response = await ca.createCertificate({ csr }, token);
    const serial = new X509Certificate(response.cert_chain[0]!).serialNumber.toLowerCase();
    const lines = ca.logs.lines.filter((l) => l['serial'] === serial);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!['spiffeId'], SLEEP_ID);
    assert.equal(lines[0]!['result'], 'issued');
    assert.equal(typeof lines[0]!['latencyMs'], 'number');
    const all = ca.logs.raw.join('\n');
    assert.ok(!all.includes(token), 'token must not be logged');
    assert.ok(!all.includes(csr.split('\n')[1]!), 'CSR must not be logged');
  });

  describe('bad input gets a precise status and loses nothing', () => {
    const cases: {
      name: string;
      request: () => Promise<{ csr: string; validity_duration?: number; token?: string; metadata?: Metadata }>;
      code: status;
      details: RegExp;
      errorCode: string;
    }[] = [
      { name: 'no authorization metadata', request: async () => ({ csr: ecCsr() }), code: status.UNAUTHENTICATED, details: /authentication failed/, errorCode: 'ERR_AUTHN_FAILED' },
      {
        name: 'a non-bearer authorization',
        request: async () => {
          const metadata = new Metadata();
          metadata.set('authorization', 'Basic dXNlcjpwYXNz');
          return { csr: ecCsr(), metadata };
        },
        code: status.UNAUTHENTICATED,
        details: /authentication failed/,
        errorCode: 'ERR_AUTHN_FAILED',
      },
      { name: 'a garbage token', request: async () => ({ csr: ecCsr(), token: 'not.a.jwt' }), code: status.UNAUTHENTICATED, details: /authentication failed/, errorCode: 'ERR_AUTHN_FAILED' },
      {
        name: 'an expired token',
        request: async () => ({ csr: ecCsr(), token: await ca.mint({ now: new Date(Date.now() - 3 * 3600_000), ttlSeconds: 600 }) }),
        code: status.UNAUTHENTICATED,
        details: /authentication failed/,
        errorCode: 'ERR_AUTHN_FAILED',
      },
      {
        name: 'a token for another audience',
        request: async () => ({ csr: ecCsr(), token: await ca.mint({ audience: 'https://kubernetes.default.svc' }) }),
        code: status.UNAUTHENTICATED,
        details: /authentication failed/,
        errorCode: 'ERR_AUTHN_FAILED',
      },
      {
        name: 'a token forged with another key',
        request: async () => {
          const forger = await DevTokenIssuer.generate({ issuer: ca.devIssuer.issuer });
          return { csr: ecCsr(), token: await forger.mint({ namespace: 'default', serviceAccount: 'sleep', now: new Date() }) };
        },
        code: status.UNAUTHENTICATED,
        details: /authentication failed/,
        errorCode: 'ERR_AUTHN_FAILED',
      },
      {
        name: 'an alg:none token',
        request: async () => {
          const real = await ca.mint();
          const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
          return { csr: ecCsr(), token: `${header}.${real.split('.')[1]}.` };
        },
        code: status.UNAUTHENTICATED,
        details: /authentication failed/,
        errorCode: 'ERR_AUTHN_FAILED',
      },
      {
        name: 'an HS256 token keyed with the public key',
        request: async () => {
          const jwk = ca.devIssuer.publicJwks().keys[0]!;
          const secret = new TextEncoder().encode(JSON.stringify(jwk));
          const token = await new SignJWT({ 'kubernetes.io': { namespace: 'default', serviceaccount: { name: 'sleep', uid: 'x' } } })
            .setProtectedHeader({ alg: 'HS256', kid: jwk.kid })
            .setIssuer(ca.devIssuer.issuer)
            .setSubject('system:serviceaccount:default:sleep')
            .setAudience('istio-ca')
            .setExpirationTime('1h')
            .sign(secret);
          return { csr: ecCsr(), token };
        },
        code: status.UNAUTHENTICATED,
        details: /authentication failed/,
        errorCode: 'ERR_AUTHN_FAILED',
      },
      { name: 'an empty CSR', request: async () => ({ csr: '', token: await ca.mint() }), code: status.INVALID_ARGUMENT, details: /request has no CSR/, errorCode: 'ERR_CSR_INVALID' },
      {
        name: 'a malformed CSR',
        request: async () => ({ csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', token: await ca.mint() }),
        code: status.INVALID_ARGUMENT,
        details: /CSR is not valid DER/,
        errorCode: 'ERR_CSR_INVALID',
      },
      {
        name: 'a CSR with a broken signature',
        request: async () => {
          const pem = ecCsr();
          const der = Buffer.from(pem.split('\n').slice(1, -2).join(''), 'base64');
          der[der.length - 4]! ^= 0x10;
          return { csr: `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`, token: await ca.mint() };
        },
        code: status.INVALID_ARGUMENT,
        details: /CSR signature does not verify/,
        errorCode: 'ERR_CSR_INVALID',
      },
      {
        name: 'a CSR with a weak RSA-1024 key',
        request: async () => ({ csr: (await opensslCsr(['-newkey', 'rsa:1024'])).csrPem, token: await ca.mint() }),
        code: status.INVALID_ARGUMENT,
        details: /RSA 1024 bits is not accepted/,
        errorCode: 'ERR_CSR_INVALID',
      },
      {
        name: 'a CSR asking for another identity',
        request: async () => ({ csr: ecCsr(['spiffe://cluster.local/ns/istio-system/sa/istiod']), token: await ca.mint() }),
        code: status.PERMISSION_DENIED,
        details: /CSR requests "spiffe:\/\/cluster\.local\/ns\/istio-system\/sa\/istiod" but the caller is authenticated as spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/,
        errorCode: 'ERR_IDENTITY_MISMATCH',
      },
      {
        name: 'a TTL over the maximum',
        request: async () => ({ csr: ecCsr(), validity_duration: 30 * 86_400, token: await ca.mint() }),
        code: status.INVALID_ARGUMENT,
        details: /requested TTL 2592000s is greater than the maximum allowed 604800s/,
        errorCode: 'ERR_TTL_INVALID',
      },
      {
        name: 'an oversized request',
        request: async () => ({ csr: 'A'.repeat(100_000), token: await ca.mint() }),
        code: status.RESOURCE_EXHAUSTED,
        details: /larger than max/,
        errorCode: '',
      },
    ];

    for (const c of cases) {
      test(`${c.name} → ${status[c.code]}`, async () => {
        const { csr, validity_duration, token, metadata } = await c.request();
        await assert.rejects(ca.createCertificate({ csr, ...(validity_duration ? { validity_duration } : {}) }, token, metadata), (err: ServiceError) => {
          assert.equal(err.code, c.code, `${status[err.code]}: ${err.details}`);
          assert.match(err.details, c.details);
          if (c.errorCode) assert.deepEqual(err.metadata.get('meshca-error-code'), [c.errorCode]);
          return true;
        });
      });
    }

    test('the server keeps serving after every refusal', async () => {
      const response = await ca.createCertificate({ csr: ecCsr() }, await ca.mint());
      assert.equal(uriOf(response.cert_chain[0]!), SLEEP_ID);
    });
  });

  test('a client that does not trust the mesh root cannot talk to the CA', async () => {
    const { createTestRoot } = await import('../helpers/test-ca.js');
    const other = await createTestRoot();
    const { IstioCertificateService } = loadIstioCaProto().istio.v1.auth;
    const client = new IstioCertificateService(ca.grpcAddress, credentials.createSsl(Buffer.from(other.pem)));
    try {
      await assert.rejects(
        new Promise((resolve, reject) =>
          client.CreateCertificate({ csr: ecCsr() }, new Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res))),
        ),
        (err: ServiceError) => err.code === status.UNAVAILABLE,
      );
    } finally {
      client.close();
    }
  });
});
