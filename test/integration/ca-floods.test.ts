/**
 * `meshca ca serve` under a connection flood, with a file-descriptor limit of 256: thousands of
 * idle TCP connections on both listeners and a request that trickles its body. The cap refuses
 * what does not fit (a log line, a metric), the handshake deadline and the request timeout free
 * what was accepted, and a real client gets its certificate through it all.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { describe, test } from 'node:test';
import { loadOrCreateDevIssuer } from '../../src/files/dev-issuer-store.js';
import { createCsr } from '../../src/pki/csr.js';
import { createGrpcCaClient } from '../../src/transport/grpc/ca-client.js';
import { startProcess } from '../helpers/processes.js';

const FLOOD = 1500;

function openIdle(port: number, into: Socket[], closed: { count: number }): void {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.on('close', () => closed.count++);
  into.push(socket);
}

function get(port: number, path: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, ca, servername: 'localhost', agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the CA under a connection flood', () => {
  test('with ulimit -n 256, thousands of idle connections and a slow body open, a real client still gets a certificate', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshca-flood-'));
    const dataDir = join(dir, 'ca');
    const ca = startProcess('sh', [
      '-c',
      `ulimit -n 256 && exec "${process.execPath}" --import tsx src/cmd/meshca.ts ca serve --data-dir "${dataDir}" --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --handshake-timeout 2s --request-timeout 3s --idle-timeout 5s --signing-workers 0`,
    ]);
    const sockets: Socket[] = [];
    const closed = { count: 0 };
    try {
      const ready = await ca.waitFor(/meshca CA ready: grpc port (\d+), http port (\d+)/, 30_000);
      const [grpcPort, httpPort] = [Number(ready[1]), Number(ready[2])];
      const rootPem = await readFile(join(dataDir, 'root-cert.pem'), 'utf8');
      const { issuer } = await loadOrCreateDevIssuer(dataDir);

      // A request that sends its headers and then one byte of a 10,000-byte body.
      const slow = tlsConnect({ host: '127.0.0.1', port: httpPort, ca: rootPem, servername: 'localhost' });
      slow.on('error', () => undefined);
      let slowAnswer = '';
      slow.on('data', (d: Buffer) => (slowAnswer += d.toString()));
      const slowClosed = new Promise<number>((resolve) => slow.once('close', () => resolve(Date.now())));
      await new Promise<void>((resolve) => slow.once('secureConnect', () => resolve()));
      slow.write('POST /v1/certificates HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{');
      const slowStarted = Date.now();

      // Then the flood, which fills both listeners' caps.
      for (let i = 0; i < FLOOD; i++) {
        openIdle(grpcPort, sockets, closed);
        openIdle(httpPort, sockets, closed);
      }

      // A real client, retrying as the agent would, gets through.
      const client = createGrpcCaClient({ address: `127.0.0.1:${grpcPort}`, rootCertPem: rootPem, timeoutMs: 3000 });
      const started = Date.now();
      let issued: readonly string[] | undefined;
      let lastError: unknown;
      try {
        while (issued === undefined && Date.now() - started < 20_000) {
          try {
            const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
            const token = await issuer.mint({ namespace: 'default', serviceAccount: 'sleep', audience: 'istio-ca', now: new Date() });
            issued = (await client.createCertificate({ csrPem: createCsr(privateKey).pem, token, ttlSeconds: 3600 })).certChainPem;
          } catch (err) {
            lastError = err;
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      } finally {
        client.close();
      }
      assert.ok(issued !== undefined && issued.length >= 2, `no certificate within 20 s: ${String(lastError)}\n${ca.stderr().slice(-2000)}`);

      // The slow body was cut by the request timeout (3 s), not left to hold its connection.
      const slowEnd = await Promise.race([slowClosed, new Promise<number>((r) => setTimeout(() => r(-1), 10_000))]);
      assert.ok(slowEnd > 0 && slowEnd - slowStarted < 8000, `the slow request was still open after ${Date.now() - slowStarted} ms`);
      assert.match(slowAnswer, /^HTTP\/1\.1 408 /, slowAnswer);

      // Every idle connection was closed by the CA: refused at the cap, or at the handshake deadline.
      const deadline = Date.now() + 10_000;
      while (closed.count < sockets.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.equal(closed.count, sockets.length, 'idle connections still open after the handshake deadline');

      // The cap said so once per interval, not per socket, and counted every refusal.
      const capLines = ca.stderr().split('\n').filter((l) => l.includes('connection cap reached'));
      assert.ok(capLines.length >= 1 && capLines.length <= 4, `${capLines.length} cap log lines`);
      const metrics = await get(httpPort, '/metrics', rootPem);
      for (const listener of ['grpc', 'https']) {
        const dropped = Number(new RegExp(`^meshca_connections_dropped_total\\{listener="${listener}"\\} (\\d+)$`, 'm').exec(metrics.body)?.[1] ?? 0);
        assert.ok(dropped > FLOOD / 2, `${listener}: ${dropped} dropped`);
      }
      assert.equal(ca.child.exitCode, null, 'the CA is still running');
    } finally {
      for (const s of sockets) s.destroy();
      await ca.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
