/**
 * The agent against a real gRPC CA over TLS on 127.0.0.1:0, and the SPIFFE Workload API over a
 * temp unix socket, each with a real grpc-js client on the other end.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { credentials, Metadata, status as GrpcStatus, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { SvidRotator, type SvidRotatorEvents } from '../../src/agent/svid-rotator.js';
import { DevTokenIssuer } from '../../src/authn/dev-issuer.js';
import { startAgent, type RunningAgent } from '../../src/cmd/agent-command.js';
import { parseAgentConfig } from '../../src/config/agent-config.js';
import { isIdentityError, type ErrorCode } from '../../src/errors.js';
import type { SpiffeWorkloadAPIClient } from '../../src/generated/workload/SpiffeWorkloadAPI.js';
import type { X509SVIDResponse__Output } from '../../src/generated/workload/X509SVIDResponse.js';
import { silentLogger } from '../../src/log.js';
import { createCsr } from '../../src/pki/csr.js';
import { mustParseSpiffeId } from '../../src/spiffe/spiffe-id.js';
import { parseTrustDomain } from '../../src/spiffe/trust-domain.js';
import { parseX509Svid, type X509Svid } from '../../src/spiffe/x509-svid.js';
import { createGrpcCaClient, type GrpcCaClient } from '../../src/transport/grpc/ca-client.js';
import { loadWorkloadProto } from '../../src/transport/grpc/protos.js';
import { SECURITY_HEADER_MISSING, startWorkloadApiServer, type JwtSvidProvider, type WorkloadApiServer, type WorkloadX509Source } from '../../src/transport/grpc/workload-api-server.js';
import { createTestMeshCa, issueServingCertificate, startFakeCaServer, type FakeCaServer, type TestMeshCa } from '../helpers/fake-ca-server.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { openssl } from '../helpers/openssl.js';

const SLEEP = 'spiffe://cluster.local/ns/default/sa/sleep';
const TD = parseTrustDomain('cluster.local');

function newCsr(uris: readonly string[] = [SLEEP]): string {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return createCsr(privateKey, { uris }).pem;
}

function rejectsWithCode(code: ErrorCode, rule: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isIdentityError(err), String(err));
    assert.equal(err.code, code, err.message);
    assert.equal(err.rule, rule, err.message);
    return true;
  };
}

async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('gRPC CA client', () => {
  let issuer: DevTokenIssuer;
  let mesh: TestMeshCa;
  let server: FakeCaServer;
  let client: GrpcCaClient;

  before(async () => {
    issuer = await DevTokenIssuer.generate();
    mesh = await createTestMeshCa({ tokenIssuer: issuer });
    server = await startFakeCaServer({ issuance: mesh.issuance, tls: await issueServingCertificate(mesh.authority, ['localhost']) });
    // Dial the IP, verify the name the certificate carries.
    client = createGrpcCaClient({ address: server.address, rootCertPem: mesh.rootPem, serverName: 'localhost', timeoutMs: 5000 });
  });

  after(async () => {
    client.close();
    await server.close();
  });

  const token = (sa = 'sleep'): Promise<string> => issuer.mint({ namespace: 'default', serviceAccount: sa, now: new Date() });

  test('gets an SVID over TLS with the bearer token, leaf first and root last, with the requested lifetime', async () => {
    const { certChainPem } = await client.createCertificate({ csrPem: newCsr(), ttlSeconds: 3600, token: await token() });
    assert.equal(certChainPem.length, 2);
    const leaf = new X509Certificate(certChainPem[0]!);
    assert.equal(leaf.subjectAltName, `URI:${SLEEP}`);
    assert.equal(new X509Certificate(certChainPem[1]!).fingerprint256, mesh.bundle.authorities[0]!.fingerprint256);
    assert.equal(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom), 3600_000 + 10_000, 'the TTL plus 10 s of backdating');
    assert.deepEqual(server.requests.at(-1), { validitySeconds: 3600, hadBearer: true });
  });

  test('sends validity_duration 0 (CA default) when no TTL is asked for', async () => {
    const { certChainPem } = await client.createCertificate({ csrPem: newCsr(), token: await token() });
    const leaf = new X509Certificate(certChainPem[0]!);
    assert.equal(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom), 24 * 3600_000 + 10_000);
    assert.equal(server.requests.at(-1)?.validitySeconds, 0);
  });

  test('maps UNAUTHENTICATED to ERR_AUTHN_FAILED', async () => {
    const stranger = await DevTokenIssuer.generate();
    const forged = await stranger.mint({ namespace: 'default', serviceAccount: 'sleep', now: new Date() });
    await assert.rejects(client.createCertificate({ csrPem: newCsr(), token: forged }), rejectsWithCode('ERR_AUTHN_FAILED', 'ca-rejected-token'));
  });

  test('maps PERMISSION_DENIED (a CSR for someone else) to ERR_IDENTITY_MISMATCH', async () => {
    const csrPem = newCsr(['spiffe://cluster.local/ns/kube-system/sa/admin']);
    await assert.rejects(client.createCertificate({ csrPem, token: await token() }), rejectsWithCode('ERR_IDENTITY_MISMATCH', 'ca-denied'));
  });

  test('maps INVALID_ARGUMENT (a broken CSR) to ERR_CSR_INVALID', async () => {
    await assert.rejects(client.createCertificate({ csrPem: 'not a csr', token: await token() }), rejectsWithCode('ERR_CSR_INVALID', 'ca-rejected-request'));
  });

  test('maps an unreachable CA to a retryable ERR_CA_NOT_READY', async () => {
    const nowhere = createGrpcCaClient({ address: `127.0.0.1:${await freePort()}`, rootCertPem: mesh.rootPem, timeoutMs: 5000 });
    try {
      await assert.rejects(nowhere.createCertificate({ csrPem: newCsr(), token: await token() }), rejectsWithCode('ERR_CA_NOT_READY', 'unavailable'));
    } finally {
      nowhere.close();
    }
  });

  test('refuses a CA whose TLS certificate does not chain to the configured root, until the roots are updated', async () => {
    const other = await createTestMeshCa({ tokenIssuer: issuer });
    const wary = createGrpcCaClient({ address: server.address, rootCertPem: other.rootPem, serverName: 'localhost', timeoutMs: 5000 });
    const requestsBefore = server.requests.length;
    try {
      await assert.rejects(wary.createCertificate({ csrPem: newCsr(), token: await token() }), rejectsWithCode('ERR_CA_NOT_READY', 'unavailable'));
      assert.equal(server.requests.length, requestsBefore, 'the token never reached an unverified server');
      // The mesh root rotated to the one the CA's certificate chains to.
      wary.updateRootCertPem(other.rootPem + mesh.rootPem);
      const { certChainPem } = await wary.createCertificate({ csrPem: newCsr(), token: await token() });
      assert.equal(parseX509Svid(certChainPem.join('')).id.toString(), SLEEP);
    } finally {
      wary.close();
    }
  });

  test('a CA certificate that does not name the host dialled: one message with its names and the flag that fixes it', async () => {
    const byIp = createGrpcCaClient({ address: server.address, rootCertPem: mesh.rootPem, timeoutMs: 5000 });
    const requestsBefore = server.requests.length;
    try {
      const err = await byIp.createCertificate({ csrPem: newCsr(), token: await token() }).then(
        () => assert.fail('issued over a connection whose server name was not verified'),
        (e: unknown) => e,
      );
      assert.ok(isIdentityError(err), String(err));
      assert.equal(err.code, 'ERR_CA_NOT_READY');
      assert.equal(err.rule, 'server-name-mismatch');
      const host = server.address.replace(/:\d+$/, '');
      assert.equal(err.message, `CA at ${server.address}: its serving certificate is not valid for "${host}" (it names DNS:localhost); dial one of its names, or set --ca-server-name to one of them`);
      assert.equal(err.message.split('ERR_TLS').length, 1, 'no repeated node error text');
      assert.equal(server.requests.length, requestsBefore, 'the token never reached the server');
    } finally {
      byIp.close();
    }
  });

  test('maps a missed deadline to ERR_CA_NOT_READY / deadline-exceeded, and honours abort', async () => {
    const quick = createGrpcCaClient({ address: server.address, rootCertPem: mesh.rootPem, serverName: 'localhost', timeoutMs: 300 });
    server.stall = true;
    try {
      await assert.rejects(quick.createCertificate({ csrPem: newCsr(), token: await token() }), rejectsWithCode('ERR_CA_NOT_READY', 'deadline-exceeded'));
      const controller = new AbortController();
      const pending = client.createCertificate({ csrPem: newCsr(), token: await token(), signal: controller.signal });
      controller.abort(new Error('shutting down'));
      await assert.rejects(pending, /shutting down/);
    } finally {
      server.stall = false;
      quick.close();
    }
  });

  test('talks plaintext only when told to (insecure)', async () => {
    const plain = await startFakeCaServer({ issuance: mesh.issuance });
    const insecure = createGrpcCaClient({ address: plain.address, insecure: true });
    try {
      const { certChainPem } = await insecure.createCertificate({ csrPem: newCsr(), token: await token() });
      assert.equal(parseX509Svid(certChainPem.join('')).id.toString(), SLEEP);
    } finally {
      insecure.close();
      await plain.close();
    }
    assert.throws(() => createGrpcCaClient({ address: plain.address }), TypeError);
  });
});

/** Reads a server stream message by message. */
class StreamReader<T> {
  readonly #queue: T[] = [];
  readonly #waiting: ((value: T | Error | 'end') => void)[] = [];
  #done: Error | 'end' | undefined;

  constructor(stream: ClientReadableStream<T>) {
    stream.on('data', (message: T) => this.#push(message));
    stream.on('error', (err: Error) => this.#finish(err));
    stream.on('end', () => this.#finish('end'));
  }

  #push(message: T): void {
    const waiter = this.#waiting.shift();
    if (waiter) waiter(message);
    else this.#queue.push(message);
  }

  #finish(result: Error | 'end'): void {
    this.#done ??= result;
    for (const waiter of this.#waiting.splice(0)) waiter(result);
  }

  next(): Promise<T | Error | 'end'> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#done !== undefined) return Promise.resolve(this.#done);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
}

function workloadClient(endpoint: string): SpiffeWorkloadAPIClient {
  return new (loadWorkloadProto().SpiffeWorkloadAPI)(endpoint, credentials.createInsecure());
}

function securityHeader(): Metadata {
  const metadata = new Metadata();
  metadata.set('workload.spiffe.io', 'true');
  return metadata;
}

function svidOf(message: X509SVIDResponse__Output | Error | 'end'): X509Svid {
  assert.ok(typeof message === 'object' && !(message instanceof Error), `expected a message, got ${String(message)}`);
  assert.equal(message.svids.length, 1);
  const [entry] = message.svids;
  const svid = parseX509Svid(entry!.x509_svid, `-----BEGIN PRIVATE KEY-----\n${entry!.x509_svid_key.toString('base64')}\n-----END PRIVATE KEY-----\n`);
  assert.equal(entry!.spiffe_id, svid.id.toString());
  return svid;
}

function nextEvent<E extends keyof SvidRotatorEvents>(rotator: SvidRotator, event: E, predicate: (p: SvidRotatorEvents[E]) => boolean = () => true): Promise<SvidRotatorEvents[E]> {
  return new Promise((resolve) => {
    const listener = (payload: SvidRotatorEvents[E]): void => {
      if (!predicate(payload)) return;
      rotator.off(event, listener);
      resolve(payload);
    };
    rotator.on(event, listener);
  });
}

function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('meshca agent end to end (gRPC CA over TLS, files, Workload API, health)', () => {
  let dir: string;
  let clock: ManualClock;
  let mesh: TestMeshCa;
  let server: FakeCaServer;
  let agent: RunningAgent;
  let client: SpiffeWorkloadAPIClient;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-agent-'));
    // The rotator and the CA share a manual clock; TLS runs on real time, which the serving
    // certificate (valid from now) satisfies as long as the manual clock starts at now.
    clock = new ManualClock(new Date());
    const issuer = await DevTokenIssuer.generate();
    mesh = await createTestMeshCa({ tokenIssuer: issuer, clock });
    server = await startFakeCaServer({ issuance: mesh.issuance, tls: await issueServingCertificate(mesh.authority, ['localhost']) });
    await writeFile(join(dir, 'root-cert.pem'), mesh.rootPem);
    await writeFile(join(dir, 'token'), await issuer.mint({ namespace: 'default', serviceAccount: 'sleep', now: clock.now(), ttlSeconds: 7 * 86400 }));
    const config = parseAgentConfig({
      caAddress: server.address,
      caRoot: join(dir, 'root-cert.pem'),
      tokenFile: join(dir, 'token'),
      trustDomain: 'cluster.local',
      out: join(dir, 'out'),
      workloadApiSocket: `unix://${join(dir, 'sock', 'agent.sock')}`,
      svidTtl: '24h',
      key: 'ec-p256',
      hook: `echo "$MESHCA_SVID_SERIAL" >> "${join(dir, 'hook.log')}"`,
      hookTimeout: '10s',
      insecure: false,
      caServerName: 'localhost',
      caTimeout: '5s',
      bundleRefresh: '1h',
      healthListen: '127.0.0.1:0',
    });
    agent = await startAgent(config, { clock, logger: silentLogger, random: () => 0.5 });
    client = workloadClient(agent.workloadApi!.endpoint);
  });

  after(async () => {
    client?.close();
    await agent?.close();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('writes the SVID files that openssl verifies against the root, runs the hook, and reports healthy', async () => {
    const svid = await agent.rotator.waitForSvid();
    await agent.idle();
    const out = join(dir, 'out');
    const verified = await openssl(['verify', '-x509_strict', '-CAfile', join(out, 'root-cert.pem'), join(out, 'cert-chain.pem')]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.equal((await stat(join(out, 'key.pem'))).mode & 0o777, 0o600);
    const modulus = await openssl(['pkey', '-in', join(out, 'key.pem'), '-pubout']);
    const certKey = await openssl(['x509', '-in', join(out, 'cert-chain.pem'), '-noout', '-pubkey']);
    assert.equal(modulus.stdout, certKey.stdout, 'key.pem matches the certificate');
    const serial = svid.certificates[0]!.serialNumber.toLowerCase();
    assert.equal((await readFile(join(dir, 'hook.log'), 'utf8')).trim(), serial);

    const { port } = agent.healthAddress!;
    assert.equal((await httpGet(port, '/healthz')).status, 200);
    const metrics = await httpGet(port, '/metrics');
    assert.match(metrics.body, /meshca_agent_rotations_total 1\b/);
    assert.match(metrics.body, /^meshca_agent_svid_expiration_timestamp_seconds \d{10}$/m);
    assert.match(metrics.body, /meshca_agent_svid_expiry_seconds 863[89]\d/, '24 h less the 10 s backdating');
    assert.match(metrics.body, /meshca_agent_svid_valid 1\b/);
  });

  test('refuses Workload API calls without the security header (INVALID_ARGUMENT)', async () => {
    const reader = new StreamReader(client.FetchX509SVID({}, new Metadata()));
    const result = await reader.next();
    assert.ok(result instanceof Error);
    assert.equal((result as ServiceError).code, GrpcStatus.INVALID_ARGUMENT);
    assert.equal((result as ServiceError).details, SECURITY_HEADER_MISSING);
    await new Promise<void>((resolve) => {
      client.FetchJWTSVID({ audience: ['x'] }, new Metadata(), (err) => {
        assert.equal(err?.code, GrpcStatus.INVALID_ARGUMENT);
        resolve();
      });
    });
  });

  test('FetchX509Bundles returns the DER bundle keyed by the trust domain ID', async () => {
    const reader = new StreamReader(client.FetchX509Bundles({}, securityHeader()));
    const message = await reader.next();
    assert.ok(typeof message === 'object' && !(message instanceof Error));
    assert.deepEqual(Object.keys(message.bundles), ['spiffe://cluster.local']);
    assert.deepEqual(message.bundles['spiffe://cluster.local'], mesh.bundle.authorities[0]!.raw);
  });

  test('the JWT-SVID RPCs, against a CA that does not serve them, answer UNAVAILABLE naming the service and --ca-http-address', async () => {
    const err = await new Promise<ServiceError | null>((resolve) => client.FetchJWTSVID({ audience: ['x'] }, securityHeader(), (e) => resolve(e)));
    assert.equal(err?.code, GrpcStatus.UNAVAILABLE, err?.details);
    assert.match(err?.details ?? '', /does not serve meshca\.v1\.JwtSvidService: JWT-SVIDs need a meshca CA, or --ca-http-address/);
  });

  test('FetchX509SVID delivers the SVID at once, then the next one when the agent rotates', async () => {
    const current = await agent.rotator.waitForSvid();
    const reader = new StreamReader(client.FetchX509SVID({}, securityHeader()));
    const first = svidOf(await reader.next());
    assert.equal(first.id.toString(), SLEEP);
    assert.equal(first.certificates[0]!.serialNumber, current.certificates[0]!.serialNumber);
    const message = first;
    assert.ok(message.privateKey && first.certificates[0]!.checkPrivateKey(message.privateKey));

    const rotated = nextEvent(agent.rotator, 'update', (u) => u.reason === 'svid');
    clock.advanceTo(agent.rotator.nextRotationAt!);
    const { svid } = await rotated;
    const second = svidOf(await reader.next());
    assert.equal(second.certificates[0]!.serialNumber, svid.certificates[0]!.serialNumber);
    assert.notEqual(second.certificates[0]!.serialNumber, first.certificates[0]!.serialNumber);
    await agent.idle();
    assert.equal((await readFile(join(dir, 'hook.log'), 'utf8')).trim().split('\n').length, 2, 'the hook ran again');
    const onDisk = parseX509Svid(await readFile(join(dir, 'out', 'cert-chain.pem'), 'utf8'));
    assert.equal(onDisk.certificates[0]!.serialNumber, second.certificates[0]!.serialNumber);
  });
});

describe('Workload API server', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-wl-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A source with nothing yet: what the agent looks like before its first SVID. */
  const emptySource: WorkloadX509Source = {
    trustDomain: TD,
    getX509Svid: () => {
      throw new Error('none yet');
    },
    getX509BundleForTrustDomain: () => undefined,
    on: () => undefined,
    off: () => undefined,
  };

  test('answers UNAVAILABLE while there is no SVID or bundle yet', async () => {
    const server = await startWorkloadApiServer({ socket: join(dir, 'empty.sock'), source: emptySource });
    const client = workloadClient(server.endpoint);
    try {
      for (const stream of [client.FetchX509SVID({}, securityHeader()), client.FetchX509Bundles({}, securityHeader())]) {
        const result = await new StreamReader<unknown>(stream).next();
        assert.ok(result instanceof Error);
        assert.equal((result as ServiceError).code, GrpcStatus.UNAVAILABLE);
      }
    } finally {
      client.close();
      await server.close();
    }
  });

  test('creates the socket 0777 in its directory, refuses a live or non-socket path, removes it on close', async () => {
    const path = join(dir, 'nested', 'agent.sock');
    const server: WorkloadApiServer = await startWorkloadApiServer({ socket: `unix://${path}`, source: emptySource });
    try {
      const stats = await stat(path);
      assert.ok(stats.isSocket());
      assert.equal(stats.mode & 0o777, 0o777);
      await assert.rejects(startWorkloadApiServer({ socket: path, source: emptySource }), (err: unknown) => isIdentityError(err) && err.code === 'ERR_CONFIG_INVALID' && /already running/.test(err.message));
    } finally {
      await server.close();
    }
    await assert.rejects(stat(path), /ENOENT/);
    const file = join(dir, 'regular-file');
    await writeFile(file, 'keep me');
    await assert.rejects(startWorkloadApiServer({ socket: file, source: emptySource }), (err: unknown) => isIdentityError(err) && err.code === 'ERR_CONFIG_INVALID');
    assert.equal(await readFile(file, 'utf8'), 'keep me');
    await assert.rejects(startWorkloadApiServer({ socket: 'tcp://127.0.0.1:1', source: emptySource }), (err: unknown) => isIdentityError(err) && err.code === 'ERR_CONFIG_INVALID');
  });

  test('serves the JWT profile through the provider port, with INVALID_ARGUMENT for a missing audience', async () => {
    const jwt: JwtSvidProvider = {
      fetchJwtSvid: async (audience) => ({ spiffeId: SLEEP, svid: `jwt-for-${audience.join(',')}` }),
      jwtBundles: async () => new Map([['spiffe://cluster.local', Buffer.from('{"keys":[]}')]]),
      validate: async (token, audience) => ({ spiffeId: SLEEP, claims: { aud: [audience], sub: SLEEP, exp: 1, nested: { ok: true }, token } }),
    };
    const server = await startWorkloadApiServer({ socket: join(dir, 'jwt.sock'), source: emptySource, jwt });
    const client = workloadClient(server.endpoint);
    try {
      const fetched = await new Promise<unknown>((resolve, reject) =>
        client.FetchJWTSVID({ audience: ['db'] }, securityHeader(), (err, res) => (err ? reject(err) : resolve(res))),
      );
      assert.deepEqual(fetched, { svids: [{ spiffe_id: SLEEP, svid: 'jwt-for-db', hint: '' }] });
      const missing = await new Promise<ServiceError | null>((resolve) => client.FetchJWTSVID({ audience: [] }, securityHeader(), (err) => resolve(err)));
      assert.equal(missing?.code, GrpcStatus.INVALID_ARGUMENT);
      const validated = await new Promise<{ spiffe_id: string; claims: { fields: Record<string, unknown> } | null }>((resolve, reject) =>
        client.ValidateJWTSVID({ audience: 'db', svid: 'abc' }, securityHeader(), (err, res) => (err ? reject(err) : resolve(res!))),
      );
      assert.equal(validated.spiffe_id, SLEEP);
      assert.deepEqual(Object.keys(validated.claims?.fields ?? {}).sort(), ['aud', 'exp', 'nested', 'sub', 'token']);
      const bundles = await new StreamReader(client.FetchJWTBundles({}, securityHeader())).next();
      assert.ok(typeof bundles === 'object' && !(bundles instanceof Error) && 'bundles' in bundles);
      assert.equal(bundles.bundles['spiffe://cluster.local']?.toString(), '{"keys":[]}');
    } finally {
      client.close();
      await server.close();
    }
  });

  test('ends open streams with OK when it closes (clients reconnect), and pushes nothing afterwards', async () => {
    const mesh = await createTestMeshCa({ tokenIssuer: await DevTokenIssuer.generate() });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const issued = await mesh.ca.sign(createCsr(privateKey, { uris: [SLEEP] }).pem, mustParseSpiffeId(SLEEP));
    const svid = parseX509Svid(issued.certChainPem[0]!, privateKey);
    const listeners = new Set<() => void>();
    const staticSource: WorkloadX509Source = {
      trustDomain: TD,
      getX509Svid: () => svid,
      getX509BundleForTrustDomain: () => mesh.bundle,
      on: (_event, listener) => listeners.add(listener),
      off: (_event, listener) => listeners.delete(listener),
    };
    const server = await startWorkloadApiServer({ socket: join(dir, 'close.sock'), source: staticSource });
    const client = workloadClient(server.endpoint);
    try {
      const reader = new StreamReader(client.FetchX509SVID({}, securityHeader()));
      assert.equal(svidOf(await reader.next()).certificates[0]!.serialNumber, svid.certificates[0]!.serialNumber);
      assert.equal(listeners.size, 2, 'subscribed to updates and errors');
      await server.close();
      assert.equal(await reader.next(), 'end');
      assert.equal(listeners.size, 0, 'unsubscribed');
    } finally {
      client.close();
    }
  });
});

describe('the CA serving certificate and the addresses a user types', () => {
  test('--ca-address 127.0.0.1:<port> verifies: the certificate names the IP the CA listens on', async () => {
    const { startTestCa } = await import('../helpers/test-ca-server.js');
    const ca = await startTestCa();
    const port = ca.grpcAddress.replace(/^.*:/, '');
    const client = createGrpcCaClient({ address: `127.0.0.1:${port}`, rootCertPem: await readFile(join(ca.dataDir, 'root-cert.pem'), 'utf8'), timeoutMs: 5000 });
    try {
      const csrPem = newCsr(['spiffe://cluster.local/ns/default/sa/helloworld']);
      const { certChainPem } = await client.createCertificate({ csrPem, token: await ca.mint({ serviceAccount: 'helloworld', ttlSeconds: 600 }) });
      assert.equal(parseX509Svid(certChainPem.join('')).id.toString(), 'spiffe://cluster.local/ns/default/sa/helloworld');
      const served = await openssl(['s_client', '-connect', `127.0.0.1:${port}`, '-alpn', 'h2', '-showcerts'], '');
      const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(served.stdout)?.[0];
      assert.ok(leaf, served.stdout + served.stderr);
      assert.match(new X509Certificate(leaf).subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    } finally {
      client.close();
      await ca.close();
    }
  });
});

describe('the agent when the CA certificate does not name what it dials', () => {
  test('says so once at warn, with the names and the flag, no stack; the same failure again only at debug', async () => {
    const { startTestCa, LogCapture } = await import('../helpers/test-ca-server.js');
    const { createLogger } = await import('../../src/log.js');
    const { parseAgentConfig } = await import('../../src/config/agent-config.js');
    const { systemClock } = await import('../../src/clock.js');
    const ca = await startTestCa();
    const dir = await mkdtemp(join(tmpdir(), 'meshca-name-'));
    const logs = new LogCapture();
    await writeFile(join(dir, 'token'), await ca.mint({ serviceAccount: 'sleep', ttlSeconds: 600 }), { mode: 0o600 });
    const agent = await startAgent(
      parseAgentConfig({
        caAddress: ca.grpcAddress,
        caServerName: 'meshca.example.internal',
        trustDomain: 'cluster.local',
        caRoot: join(ca.dataDir, 'root-cert.pem'),
        tokenFile: join(dir, 'token'),
        out: join(dir, 'out'),
        svidTtl: '1h',
        key: 'ec-p256',
        hookTimeout: '10s',
        insecure: false,
        caTimeout: '5s',
        bundleRefresh: '1h',
      }),
      { clock: systemClock, logger: createLogger({ level: 'warn', destination: logs }) },
    );
    try {
      let failures = 0;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${failures} failures in 15 s`)), 15_000);
        agent.rotator.on('error', () => {
          if (++failures === 3) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      const warned = logs.lines.filter((l) => l['errRule'] === 'server-name-mismatch');
      assert.equal(warned.length, 1, JSON.stringify(logs.lines));
      assert.match(String(warned[0]!['errMessage']), /not valid for "meshca.example.internal" \(it names DNS:localhost, DNS:meshca\.meshca\.svc, IP Address:127\.0\.0\.1\); dial one of its names, or set --ca-server-name/);
      assert.ok(!logs.raw.some((line) => line.includes('"stack"')), 'no stack at warn');
    } finally {
      await agent.close();
      await ca.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
