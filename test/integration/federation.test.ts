/**
 * Two trust domains, each with its own real CA (startTestCa) and agent (startAgent), federated
 * through each other's SPIFFE bundle endpoint over HTTPS: `sleep` in td-a calls `helloworld` in
 * td-b over mTLS, each side verifying the other against the *other* trust domain's bundle, and
 * helloworld authorizes each request with an Istio AuthorizationPolicy naming a td-a principal.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { credentials, Metadata, type ClientReadableStream } from '@grpc/grpc-js';
import type { RunningAgent } from '../../src/cmd/agent-command.js';
import { parsePolicyYaml } from '../../src/files/policy-file.js';
import type { X509BundlesResponse__Output } from '../../src/generated/workload/X509BundlesResponse.js';
import type { X509SVIDResponse__Output } from '../../src/generated/workload/X509SVIDResponse.js';
import { authorizeId, compilePolicies, type PolicyEngine } from '../../src/policy/index.js';
import { mustParseSpiffeId } from '../../src/spiffe/spiffe-id.js';
import { parseTrustDomain } from '../../src/spiffe/trust-domain.js';
import { parseX509BundlePem, X509BundleSet } from '../../src/spiffe/x509-bundle.js';
import { createHttpsServer, createMtlsAgent, createStaticX509Source, getPeerSpiffeId, type X509Source } from '../../src/tls/index.js';
import { loadWorkloadProto } from '../../src/transport/grpc/protos.js';
import { mtlsGet, startTestAgent, waitUntil } from '../helpers/agent-harness.js';
import { httpsRequest } from '../helpers/https-request.js';
import { startTestCa, type TestCa } from '../helpers/test-ca-server.js';

const TD_A = parseTrustDomain('td-a');
const TD_B = parseTrustDomain('td-b');
const SLEEP = mustParseSpiffeId('spiffe://td-a/ns/default/sa/sleep');
const HELLO = mustParseSpiffeId('spiffe://td-b/ns/default/sa/helloworld');

const ALLOW_SLEEP_FROM_TD_A = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: helloworld
  namespace: default
spec:
  action: ALLOW
  rules:
    - from:
        - source:
            principals: ["td-a/ns/default/sa/sleep"]
`;

/** Names a sleep in helloworld's own trust domain: same namespace and account, other trust domain. */
const ALLOW_SLEEP_FROM_TD_B_ONLY = ALLOW_SLEEP_FROM_TD_A.replace('td-a/ns/default/sa/sleep', 'td-b/ns/default/sa/sleep');

function compile(yaml: string): PolicyEngine {
  return compilePolicies(parsePolicyYaml(yaml, 'inline').policies, { trustDomain: TD_B, namespace: 'default' });
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function close(server: Server | undefined): Promise<void> {
  if (server === undefined) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

function firstMessage<T>(stream: ClientReadableStream<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    stream.once('data', (message: T) => {
      stream.cancel();
      resolve(message);
    });
    stream.once('error', (err: Error & { code?: number }) => {
      if (err.code !== 1) reject(err); // 1 = CANCELLED, after our own cancel()
    });
  });
}

describe('federation: td-a and td-b, each with its own CA and agent', () => {
  let dir: string;
  let caA: TestCa;
  let caB: TestCa;
  let sleep: RunningAgent;
  let hello: RunningAgent;
  let engine: PolicyEngine;
  const handled: string[] = [];
  const servers: Server[] = [];

  /** helloworld: identifies the peer from the handshake, then asks the policy about the request. */
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const peer = getPeerSpiffeId(req);
    handled.push(peer.toString());
    const decision = engine.decide({
      peer,
      method: req.method ?? 'GET',
      path: (req.url ?? '/').split('?')[0]!,
      host: req.headers.host,
      headers: (name) => {
        const value = req.headers[name];
        return Array.isArray(value) ? value.join(',') : value;
      },
    });
    res.writeHead(decision.allowed ? 200 : 403, { 'content-type': 'text/plain' });
    res.end(decision.allowed ? `hello ${peer}\n` : `RBAC: access denied (${decision.reason})\n`);
  };

  async function startHelloworld(source: X509Source): Promise<number> {
    const server = createHttpsServer(source, {}, handler);
    servers.push(server);
    return listen(server);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-fed-'));
    [caA, caB] = await Promise.all([
      startTestCa({ trustDomain: 'td-a', signingWorkers: '0' }),
      startTestCa({ trustDomain: 'td-b', signingWorkers: '0' }),
    ]);
    // Each agent fetches the other trust domain's bundle from that CA's SPIFFE bundle endpoint,
    // authenticating the endpoint (https_web) with the CA file given as --federated-bundle-ca.
    [sleep, hello] = await Promise.all([
      startTestAgent(caA, {
        dir,
        serviceAccount: 'sleep',
        trustDomain: 'td-a',
        workloadApi: true,
        health: true,
        federatedBundle: [`td-b=${caB.httpUrl}/.well-known/spiffe-bundle`],
        federatedBundleCa: join(caB.dataDir, 'root-cert.pem'),
      }),
      startTestAgent(caB, {
        dir,
        serviceAccount: 'helloworld',
        trustDomain: 'td-b',
        federatedBundle: [`spiffe://td-a=${caA.httpUrl}/.well-known/spiffe-bundle`],
        federatedBundleCa: join(caA.dataDir, 'root-cert.pem'),
      }),
    ]);
    await Promise.all([sleep.rotator.waitForSvid(), hello.rotator.waitForSvid()]);
    await waitUntil(
      [sleep.rotator, hello.rotator],
      () => sleep.rotator.getX509BundleForTrustDomain(TD_B) !== undefined && hello.rotator.getX509BundleForTrustDomain(TD_A) !== undefined,
      'both agents to fetch the federated bundle',
    );
    engine = compile(ALLOW_SLEEP_FROM_TD_A);
  });

  after(async () => {
    for (const server of servers) await close(server);
    await Promise.all([sleep?.close(), hello?.close()]);
    await Promise.all([caA?.close(), caB?.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  test('each agent holds the other trust domain\'s bundle from its bundle endpoint, apart from its own, polled at the refresh hint', () => {
    const rootA = parseX509BundlePem(TD_A, caA.rootPem).authorities[0]!;
    const rootB = parseX509BundlePem(TD_B, caB.rootPem).authorities[0]!;
    assert.notEqual(rootA.fingerprint256, rootB.fingerprint256);
    const own = sleep.rotator.getX509BundleForTrustDomain(TD_A)!;
    const federated = sleep.rotator.getX509BundleForTrustDomain(TD_B)!;
    assert.deepEqual(own.authorities.map((c) => c.fingerprint256), [rootA.fingerprint256]);
    assert.deepEqual(federated.authorities.map((c) => c.fingerprint256), [rootB.fingerprint256], 'never merged with td-a\'s roots');
    assert.deepEqual(sleep.rotator.getX509Bundles().map((b) => b.trustDomain.name), ['td-a', 'td-b']);
    assert.equal(typeof federated.sequenceNumber, 'number', 'spiffe_sequence travels with the bundle');
    assert.deepEqual(hello.rotator.getX509BundleForTrustDomain(TD_A)?.authorities.map((c) => c.fingerprint256), [rootA.fingerprint256]);

    const [status] = sleep.federation!.status();
    assert.equal(status!.failures, 0);
    // The CA publishes spiffe_refresh_hint 300: the next fetch is due 5 min after the last.
    assert.equal(status!.nextFetchAt!.getTime() - status!.fetchedAt!.getTime(), 300_000);
    // The agent's own SVID is anchored in its own trust domain only.
    assert.equal(sleep.rotator.getX509Svid().id.toString(), SLEEP.toString());
  });

  test('expiry metrics: the agent reports seconds left on its SVID and on every trusted root, own and federated; the CA on its certificate', async () => {
    const { port } = sleep.healthAddress!;
    const text = await new Promise<string>((resolve, reject) => {
      httpGet({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
    const value = (pattern: RegExp): number => {
      const match = pattern.exec(text);
      assert.ok(match, `no ${pattern} in\n${text}`);
      return Number(match[1]);
    };
    const svidLeft = value(/^meshca_agent_svid_expiry_seconds ([\d.e+-]+)$/m);
    assert.ok(svidLeft > 3000 && svidLeft <= 3600, `1 h SVID: ${svidLeft} s left`);
    const rootA = parseX509BundlePem(TD_A, caA.rootPem).authorities[0]!;
    const rootB = parseX509BundlePem(TD_B, caB.rootPem).authorities[0]!;
    for (const [td, root] of [['td-a', rootA], ['td-b', rootB]] as const) {
      const left = value(new RegExp(`^meshca_agent_bundle_authority_expiry_seconds\\{trust_domain="${td}",fingerprint="${root.fingerprint256}"\\} ([\\d.e+-]+)$`, 'm'));
      assert.ok(Math.abs(left - (Date.parse(root.validTo) - Date.now()) / 1000) < 60, `${td} root: ${left} s left`);
    }
    assert.equal(value(/^meshca_agent_federated_bundle_fetch_failures\{trust_domain="td-b"\} (\d+)$/m), 0);

    const ca = await httpsRequest(`${caA.httpUrl}/metrics`, { ca: caA.rootPem });
    assert.equal(ca.status, 200);
    const caLeft = /^meshca_ca_certificate_expiry_seconds\{serial="[0-9a-f]+"\} ([\d.e+-]+)$/m.exec(ca.body);
    assert.ok(caLeft, ca.body);
    assert.ok(Number(caLeft[1]) > 86400 * 365, 'a fresh self-signed root has years left');
  });

  test('the Workload API sends td-b\'s bundle as federated_bundles and in FetchX509Bundles', async () => {
    const client = new (loadWorkloadProto().SpiffeWorkloadAPI)(sleep.workloadApi!.endpoint, credentials.createInsecure());
    const metadata = new Metadata();
    metadata.set('workload.spiffe.io', 'true');
    try {
      const svid: X509SVIDResponse__Output = await firstMessage(client.FetchX509SVID({}, metadata));
      assert.equal(svid.svids[0]!.spiffe_id, SLEEP.toString());
      assert.deepEqual(Object.keys(svid.federated_bundles), ['spiffe://td-b']);
      assert.equal(new X509Certificate(svid.federated_bundles['spiffe://td-b']!).fingerprint256, parseX509BundlePem(TD_B, caB.rootPem).authorities[0]!.fingerprint256);
      assert.equal(new X509Certificate(svid.svids[0]!.bundle).fingerprint256, parseX509BundlePem(TD_A, caA.rootPem).authorities[0]!.fingerprint256);

      const bundles: X509BundlesResponse__Output = await firstMessage(client.FetchX509Bundles({}, metadata));
      assert.deepEqual(Object.keys(bundles.bundles).sort(), ['spiffe://td-a', 'spiffe://td-b']);
    } finally {
      client.close();
    }
  });

  test('sleep (td-a) gets 200 from helloworld (td-b) whose policy names td-a/ns/default/sa/sleep; both verify across trust domains', async () => {
    engine = compile(ALLOW_SLEEP_FROM_TD_A);
    const port = await startHelloworld(hello.rotator);
    // sleep insists on helloworld's td-b ID and verifies it against td-b's (federated) bundle.
    const agent = createMtlsAgent(sleep.rotator, { authorizer: authorizeId(HELLO) });
    try {
      const res = await mtlsGet(agent, port);
      assert.equal(res.status, 200, res.body);
      assert.equal(res.body, `hello ${SLEEP}\n`);
      assert.equal(handled.at(-1), SLEEP.toString(), 'helloworld saw the td-a identity from the handshake');
    } finally {
      agent.destroy();
    }
  });

  test('the same request is 403 when the policy names only a sleep of td-b', async () => {
    engine = compile(ALLOW_SLEEP_FROM_TD_B_ONLY);
    const port = await startHelloworld(hello.rotator);
    const agent = createMtlsAgent(sleep.rotator, { authorizer: authorizeId(HELLO) });
    try {
      const res = await mtlsGet(agent, port);
      assert.equal(res.status, 403);
      assert.match(res.body, /RBAC: access denied/);
    } finally {
      agent.destroy();
      engine = compile(ALLOW_SLEEP_FROM_TD_A);
    }
  });

  test('a helloworld without td-a\'s bundle refuses sleep at the handshake; a sleep without td-b\'s refuses helloworld', async () => {
    const ownOnly = createStaticX509Source({
      svid: hello.rotator.getX509Svid(),
      bundles: new X509BundleSet([hello.rotator.getX509BundleForTrustDomain(TD_B)!]),
    });
    const port = await startHelloworld(ownOnly);
    const before = handled.length;
    const agent = createMtlsAgent(sleep.rotator, { authorizer: authorizeId(HELLO) });
    try {
      await assert.rejects(mtlsGet(agent, port), (err: Error & { code?: string }) => {
        // The server's TLS stack rejects the td-a chain (an unknown-CA alert, or with TLS 1.3 often
        // just a reset, the client's half having finished first); not a byte of the request is read.
        assert.match(err.code ?? '', /^(ECONNRESET|EPIPE|ERR_SSL_.*ALERT.*)$/, String(err));
        return true;
      });
      assert.equal(handled.length, before, 'the handler never ran');
    } finally {
      agent.destroy();
    }

    // The other direction: sleep's client without td-b's bundle does not trust helloworld.
    const helloPort = await startHelloworld(hello.rotator);
    const sleepOwnOnly = createStaticX509Source({
      svid: sleep.rotator.getX509Svid(),
      bundles: new X509BundleSet([sleep.rotator.getX509BundleForTrustDomain(TD_A)!]),
    });
    const lonely = createMtlsAgent(sleepOwnOnly, { authorizer: authorizeId(HELLO) });
    try {
      await assert.rejects(mtlsGet(lonely, helloPort), (err: Error & { code?: string }) => {
        // Node's chain check fails: td-b's root is in no bundle this client holds.
        assert.match(err.code ?? '', /CERT|ISSUER|VERIFY/, String(err));
        return true;
      });
      assert.equal(handled.length, before);
    } finally {
      lonely.destroy();
    }
  });
});
