/**
 * The agent's CA clients read the `meshca-error-code` a meshca CA sends, so a refusal keeps its
 * exact meaning across the wire (a TTL refusal is ERR_TTL_INVALID, not "some INVALID_ARGUMENT").
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { isIdentityError } from '../../src/errors.js';
import { createCsr } from '../../src/pki/csr.js';
import { createGrpcCaClient, type GrpcCaClient } from '../../src/transport/grpc/ca-client.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';

const csrPem = (): string => createCsr(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey).pem;

describe('gRPC CA client against the real CA: refusals keep their code', () => {
  let ca: TestCa;
  let client: GrpcCaClient;
  before(async () => {
    ca = await startTestCa({ maxTtl: '48h', rateLimit: '1', rateBurst: '2' });
    client = createGrpcCaClient({ address: ca.grpcAddress, rootCertPem: ca.rootPem, timeoutMs: 5000 });
  });
  after(async () => {
    client.close();
    await ca.close();
  });

  const refusal = async (run: Promise<unknown>): Promise<{ code: string; rule: string | undefined }> => {
    const err = await run.then(
      () => assert.fail('expected a refusal'),
      (e: unknown) => e,
    );
    assert.ok(isIdentityError(err), String(err));
    return { code: err.code, rule: err.rule };
  };

  test('a lifetime over --max-ttl is ERR_TTL_INVALID (the status alone says INVALID_ARGUMENT)', async () => {
    const token = await ca.mint({ serviceAccount: 'ttl' });
    assert.deepEqual(await refusal(client.createCertificate({ csrPem: csrPem(), ttlSeconds: 72 * 3600, token })), { code: 'ERR_TTL_INVALID', rule: 'ca-rejected-request' });
    const log = ca.logs.lines.find((l) => l['code'] === 'ERR_TTL_INVALID');
    assert.ok(log, 'the CA logged the refusal with the same code');
  });

  test('a broken CSR stays ERR_CSR_INVALID; a stranger token ERR_AUTHN_FAILED', async () => {
    assert.equal((await refusal(client.createCertificate({ csrPem: 'not a csr', token: await ca.mint({ serviceAccount: 'csr' }) }))).code, 'ERR_CSR_INVALID');
    assert.equal((await refusal(client.createCertificate({ csrPem: csrPem(), token: 'a.b.c' }))).code, 'ERR_AUTHN_FAILED');
  });

  test('a workload over its rate is ERR_RATE_LIMITED', async () => {
    const token = await ca.mint({ serviceAccount: 'busy' });
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) {
      await client.createCertificate({ csrPem: csrPem(), token }).then(
        () => codes.push('issued'),
        (e: { code: string }) => codes.push(e.code),
      );
    }
    assert.deepEqual(codes.slice(0, 2), ['issued', 'issued'], 'the burst is served');
    assert.ok(codes.slice(2).includes('ERR_RATE_LIMITED'), codes.join());
  });
});
