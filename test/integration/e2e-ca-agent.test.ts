import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { X509SVIDResponse__Output } from '../../src/generated/workload/X509SVIDResponse.js';
import { loadWorkloadProto } from '../../src/transport/grpc/protos.js';
import { runMeshca } from '../helpers/cli.js';
import { openssl } from '../helpers/openssl.js';
import { freePort, startMeshca, startProcess, type RunningProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/eventually.js';

describe('end to end: real `meshca ca serve` and `meshca agent` processes on loopback', () => {
  let dir: string;
  let ca: RunningProcess;
  const agents: RunningProcess[] = [];
  let grpcPort: string;
  let httpPort: string;

  const startAgent = async (sa: string, ttl: string, options: { caHttpAddress?: boolean } = {}): Promise<{ out: string; socket: string; agent: RunningProcess }> => {
    const token = (await runMeshca(['token', '--data-dir', join(dir, 'ca'), '--namespace', 'default', '--service-account', sa])).stdout.trim();
    const tokenFile = join(dir, `${sa}.token`);
    await writeFile(tokenFile, token, { mode: 0o600 });
    const out = join(dir, sa);
    const socket = join(dir, `${sa}.sock`);
    const agent = startMeshca([
      'agent',
      '--ca-address', `localhost:${grpcPort}`,
      ...(options.caHttpAddress === false ? [] : ['--ca-http-address', `localhost:${httpPort}`]),
      '--ca-root', join(dir, 'ca', 'root-cert.pem'),
      '--token-file', tokenFile,
      '--out', out,
      '--workload-api-socket', socket,
      '--svid-ttl', ttl,
    ]);
    agents.push(agent);
    await eventually(() => existsSync(join(out, 'cert-chain.pem')) && existsSync(socket), `${sa} agent files`);
    return { out, socket, agent };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshca-e2e-'));
    ca = startMeshca(['ca', 'serve', '--data-dir', join(dir, 'ca'), '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--log-level', 'warn']);
    const ready = await ca.waitFor(/meshca CA ready: grpc port (\d+), http port (\d+)/, 30_000);
    grpcPort = ready[1]!;
    httpPort = ready[2]!;
  });

  after(async () => {
    for (const a of agents) await a.stop();
    const code = await ca.stop();
    assert.equal(code, 0, `CA exits cleanly on SIGTERM\n${ca.stderr().slice(-2000)}`);
    await rm(dir, { recursive: true, force: true });
  });

  test('agents write Istio-named files (key 0600) that openssl s_server and s_client use for mutual TLS', async () => {
    const sleep = await startAgent('sleep', '24h');
    const hello = await startAgent('helloworld', '24h');
    assert.equal((await stat(join(sleep.out, 'key.pem'))).mode & 0o777, 0o600);
    const leaf = new X509Certificate(await readFile(join(sleep.out, 'cert-chain.pem')));
    assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/default/sa/sleep');

    const port = await freePort();
    const server = startProcess('openssl', [
      's_server', '-accept', `127.0.0.1:${port}`, '-naccept', '2', '-www',
      '-cert', join(hello.out, 'cert-chain.pem'), '-key', join(hello.out, 'key.pem'),
      '-CAfile', join(hello.out, 'root-cert.pem'), '-Verify', '1', '-verify_return_error',
    ]);
    try {
      await server.waitFor(/ACCEPT/);
      const client = await openssl(
        ['s_client', '-connect', `127.0.0.1:${port}`, '-cert', join(sleep.out, 'cert-chain.pem'), '-key', join(sleep.out, 'key.pem'), '-CAfile', join(sleep.out, 'root-cert.pem'), '-verify_return_error', '-quiet'],
        'GET / HTTP/1.0\r\n\r\n',
      );
      assert.equal(client.code, 0, client.stderr);
      assert.match(client.stderr, /verify return:1/);
      assert.match(client.stdout, /Cipher/);

      // curl presents the same files as a client certificate; the server verifies it against the mesh root.
      const curl = await new Promise<{ code: number; out: string }>((resolve) => {
        const p = startProcess('curl', ['-sS', '--insecure', '--cert', join(sleep.out, 'cert-chain.pem'), '--key', join(sleep.out, 'key.pem'), `https://127.0.0.1:${port}/`]);
        p.child.once('exit', (code) => resolve({ code: code ?? 1, out: p.stdout() }));
      });
      assert.equal(curl.code, 0);
      assert.match(curl.out, /Cipher/);
    } finally {
      await server.stop();
    }
  });

  test('the Workload API streams the SVID and a rotated one after a short-TTL rotation; it requires the security header', async () => {
    const { socket } = await startAgent('rotating', '20s');
    const { SpiffeWorkloadAPI } = loadWorkloadProto();
    const client = new SpiffeWorkloadAPI(`unix://${socket}`, credentials.createInsecure());
    try {
      const noHeader = client.FetchX509SVID({}, new Metadata());
      await new Promise<void>((resolve) => {
        noHeader.on('error', (err: ServiceError) => {
          assert.equal(err.code, status.INVALID_ARGUMENT);
          resolve();
        });
        noHeader.on('data', () => assert.fail('no data without the security header'));
      });

      const metadata = new Metadata();
      metadata.set('workload.spiffe.io', 'true');
      const stream = client.FetchX509SVID({}, metadata);
      const responses: X509SVIDResponse__Output[] = [];
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${responses.length} responses in 25 s`)), 25_000);
        stream.on('data', (r: X509SVIDResponse__Output) => {
          responses.push(r);
          if (responses.length === 2) {
            clearTimeout(timer);
            resolve();
          }
        });
        stream.on('error', reject);
      });
      stream.cancel();
      const serials = responses.map((r) => {
        assert.equal(r.svids[0]!.spiffe_id, 'spiffe://cluster.local/ns/default/sa/rotating');
        return new X509Certificate(r.svids[0]!.x509_svid).serialNumber;
      });
      assert.notEqual(serials[0], serials[1], 'a new SVID after rotation');

      const jwt = await new Promise<{ svids: { spiffe_id: string; svid: string }[] }>((resolve, reject) =>
        client.FetchJWTSVID({ audience: ['spiffe://cluster.local/ns/default/sa/backend'] }, metadata, (err: ServiceError | null, r?: { svids: { spiffe_id: string; svid: string }[] }) => (err ? reject(err) : resolve(r!))),
      );
      assert.equal(jwt.svids[0]!.spiffe_id, 'spiffe://cluster.local/ns/default/sa/rotating');
      const validated = await new Promise<{ spiffe_id: string }>((resolve, reject) =>
        client.ValidateJWTSVID({ audience: 'spiffe://cluster.local/ns/default/sa/backend', svid: jwt.svids[0]!.svid }, metadata, (err: ServiceError | null, r?: { spiffe_id: string }) => (err ? reject(err) : resolve(r!))),
      );
      assert.equal(validated.spiffe_id, 'spiffe://cluster.local/ns/default/sa/rotating');
    } finally {
      client.close();
    }
  });

  test('with --ca-address alone, JWT-SVIDs come over the CA gRPC port: FetchJWTSVID, then ValidateJWTSVID against the bundle keys', async () => {
    const { socket } = await startAgent('grpc-only', '1h', { caHttpAddress: false });
    const { SpiffeWorkloadAPI } = loadWorkloadProto();
    const client = new SpiffeWorkloadAPI(`unix://${socket}`, credentials.createInsecure());
    const metadata = new Metadata();
    metadata.set('workload.spiffe.io', 'true');
    try {
      const jwt = await new Promise<{ svids: { spiffe_id: string; svid: string }[] }>((resolve, reject) =>
        client.FetchJWTSVID({ audience: ['spiffe://cluster.local/ns/default/sa/backend'] }, metadata, (err: ServiceError | null, r?: { svids: { spiffe_id: string; svid: string }[] }) => (err ? reject(err) : resolve(r!))),
      );
      assert.equal(jwt.svids[0]!.spiffe_id, 'spiffe://cluster.local/ns/default/sa/grpc-only');
      const validated = await new Promise<{ spiffe_id: string }>((resolve, reject) =>
        client.ValidateJWTSVID({ audience: 'spiffe://cluster.local/ns/default/sa/backend', svid: jwt.svids[0]!.svid }, metadata, (err: ServiceError | null, r?: { spiffe_id: string }) => (err ? reject(err) : resolve(r!))),
      );
      assert.equal(validated.spiffe_id, 'spiffe://cluster.local/ns/default/sa/grpc-only');
      // Another audience does not validate.
      await assert.rejects(
        new Promise((resolve, reject) =>
          client.ValidateJWTSVID({ audience: 'spiffe://cluster.local/ns/default/sa/other', svid: jwt.svids[0]!.svid }, metadata, (err: ServiceError | null, r?: unknown) => (err ? reject(err) : resolve(r))),
        ),
        (err: ServiceError) => err.code === status.INVALID_ARGUMENT || err.code === status.UNAUTHENTICATED || err.code === status.PERMISSION_DENIED,
      );
    } finally {
      client.close();
    }
  });
});

