/**
 * The CA as Istio's pilot-agent uses it (CA_ADDR pointing at meshca): the request shapes it sends
 * over IstioCertificateService, checked against what the CA issues or refuses.
 *
 * pilot-agent sends `authorization: Bearer <istio-ca token>` and `ClusterID: <its CLUSTER_ID>`
 * (Kubernetes by default) as metadata, an RSA-2048 CSR with the SPIFFE ID as its URI SAN, and
 * validity_duration from SECRET_TTL (24 h). ztunnel adds an ImpersonatedIdentity in the request
 * metadata Struct.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { Metadata, status, type ServiceError } from '@grpc/grpc-js';

import { opensslCsr } from '../helpers/openssl.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';

const SLEEP = 'spiffe://cluster.local/ns/default/sa/sleep';

function istioMetadata(clusterId?: string): Metadata {
  const m = new Metadata();
  if (clusterId !== undefined) m.set('ClusterID', clusterId);
  return m;
}

async function pilotAgentCsr(): Promise<string> {
  return (await opensslCsr(['-newkey', 'rsa:2048'], ['-addext', `subjectAltName=URI:${SLEEP}`])).csrPem;
}

function lifetimeSeconds(chain: readonly string[]): number {
  const leaf = new X509Certificate(chain[0]!);
  return (Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / 1000;
}

describe("CA gRPC API with pilot-agent's request shapes", () => {
  let ca: TestCa;
  let other: TestCa;
  before(async () => {
    [ca, other] = await Promise.all([startTestCa(), startTestCa({ clusterId: 'east' })]);
  });
  after(async () => Promise.all([ca.close(), other.close()]));

  const token = (c: TestCa) => c.mint({ namespace: 'default', serviceAccount: 'sleep' });

  test('ClusterID Kubernetes and validity_duration 86400: a 24 h SVID for the token identity, the root last', async () => {
    const response = await ca.createCertificate({ csr: await pilotAgentCsr(), validity_duration: 86_400 }, await token(ca), istioMetadata('Kubernetes'));
    const leaf = new X509Certificate(response.cert_chain[0]!);
    assert.equal(leaf.subjectAltName, `URI:${SLEEP}`);
    // Backdated about 10 s (clock skew), so the span is a little over 24 h.
    const span = lifetimeSeconds(response.cert_chain);
    assert.ok(span >= 86_400 && span <= 86_400 + 60, `lifetime ${span}s`);
    assert.equal(response.cert_chain.at(-1), ca.rootPem);
  });

  test('validity_duration 3600 gives 1 h; 0 (unset in proto3) gives the CA default; no ClusterID header is accepted', async () => {
    const hour = await ca.createCertificate({ csr: await pilotAgentCsr(), validity_duration: 3600 }, await token(ca), istioMetadata());
    assert.ok(lifetimeSeconds(hour.cert_chain) <= 3600 + 60);
    const defaulted = await ca.createCertificate({ csr: await pilotAgentCsr(), validity_duration: 0 }, await token(ca), istioMetadata());
    assert.ok(lifetimeSeconds(defaulted.cert_chain) >= 86_400);
  });

  test('a ClusterID naming another cluster is UNAUTHENTICATED, and the log says which', async () => {
    await assert.rejects(ca.createCertificate({ csr: await pilotAgentCsr(), validity_duration: 86_400 }, await token(ca), istioMetadata('east')), (err: ServiceError) => {
      assert.equal(err.code, status.UNAUTHENTICATED);
      assert.equal(err.details, 'authentication failed');
      assert.deepEqual(err.metadata.get('meshca-error-code'), ['ERR_AUTHN_FAILED']);
      return true;
    });
    const line = ca.logs.lines.find((l) => l['errRule'] === 'cluster-id');
    assert.match(String(line?.['errMessage']), /claims cluster "east"; this CA authenticates cluster "Kubernetes"/);
    // The CA of cluster east (--cluster-id east) takes it, and refuses Kubernetes.
    await other.createCertificate({ csr: await pilotAgentCsr() }, await token(other), istioMetadata('east'));
    await assert.rejects(other.createCertificate({ csr: await pilotAgentCsr() }, await token(other), istioMetadata('Kubernetes')), (err: ServiceError) => err.code === status.UNAUTHENTICATED);
  });

  test("ztunnel's ImpersonatedIdentity is PERMISSION_DENIED, not answered with the caller's own identity", async () => {
    const request = {
      csr: await pilotAgentCsr(),
      validity_duration: 86_400,
      metadata: { fields: { ImpersonatedIdentity: { stringValue: 'spiffe://cluster.local/ns/default/sa/helloworld' } } },
    };
    await assert.rejects(ca.createCertificate(request as never, await token(ca), istioMetadata('Kubernetes')), (err: ServiceError) => {
      assert.equal(err.code, status.PERMISSION_DENIED);
      assert.match(err.details, /impersonated identities/);
      return true;
    });
  });
});
