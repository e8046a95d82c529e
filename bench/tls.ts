import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:net';
import * as tls from 'node:tls';
import { parseTrustDomain, parseX509Svid, X509Bundle, X509BundleSet } from '../src/spiffe/index.js';
import { createHttpsServer, createServer, createStaticX509Source, getPeerSpiffeId } from '../src/tls/index.js';
import { createTestLeaf, createTestRoot } from '../test/helpers/test-ca.js';
import { median, progress, type BenchResult } from './harness.js';

/**
 * meshca/tls servers against plain node servers with the same ECDSA P-256 certificates, in the
 * same run: full mTLS handshakes on fresh connections, and requests on kept-alive connections.
 *
 * The servers run in this process and the load comes from a child process, so on a 2-core
 * machine the servers have a core of their own. Two figures per scenario:
 * - wall-clock rate: what a client sees, but it moves with whatever else the machine runs, and
 *   if the client is the bottleneck it hides server cost;
 * - rate per CPU-second of this (server) process: the server's own cost per operation, which
 *   neighbours on a shared machine barely disturb. The >= 0.9x target is judged on this one.
 * Windows alternate plain/meshca in ABBA order and each ratio is the ratio of the two medians,
 * so slow drifts in machine load cancel out.
 */
export interface BenchTlsOptions {
  /** ABBA rounds per scenario (each round is two windows per server). */
  readonly rounds?: number;
  /** Length of one measured window; at most 3000. */
  readonly durationMs?: number;
}

interface LoadRequest {
  readonly mode: 'handshakes' | 'requests';
  readonly port: number;
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
}

interface LoadResult {
  readonly type: 'done';
  readonly completed: number;
  readonly errors: number;
  readonly elapsedMs: number;
  readonly firstError?: string;
}

interface Sample {
  /** Operations per wall-clock second. */
  readonly rate: number;
  /** Operations per CPU-second of this process. */
  readonly perCpu: number;
}

// Plain JavaScript run by a child `node -e`, so it needs no TypeScript loader; it uses node:tls
// only, no meshca code, so both servers see exactly the same client. It reports when its
// measured window starts and ends, so the parent can read its own CPU time over exactly that
// window. Loops are bounded by the window.
const LOAD_GENERATOR = `
const tls = require('node:tls');
const { cert, key, ca } = JSON.parse(process.env.MESHCA_BENCH_LOAD);
// One context for all connections, as any serious client would; per-connection contexts would
// make the client, not the server, the bottleneck.
const secureContext = tls.createSecureContext({ cert, key, ca });
const base = { host: '127.0.0.1', secureContext, rejectUnauthorized: true, checkServerIdentity: () => undefined };
const REQUEST = Buffer.from('GET / HTTP/1.1\\r\\nhost: bench\\r\\n\\r\\n');

function run(job) {
  return new Promise((resolve) => {
    const started = performance.now();
    const measureFrom = started + job.warmupMs;
    const end = measureFrom + job.durationMs;
    let completed = 0, errors = 0, firstError, active = 0, measuring = false;
    const tick = () => {
      const now = performance.now();
      if (!measuring && now >= measureFrom) { measuring = true; completed = 0; errors = 0; process.send({ type: 'start' }); }
      return now < end;
    };
    const finish = () => { if (--active === 0) resolve({ type: 'done', completed, errors, firstError, elapsedMs: job.durationMs }); };
    const fail = (err) => { errors++; firstError ??= String(err && err.code || err); };

    const handshakeLoop = () => {
      if (!tick()) return finish();
      let done = false;
      const socket = tls.connect({ ...base, port: job.port });
      socket.setNoDelay(true);
      // The server answers one byte after it accepted the peer: a completed mTLS handshake.
      socket.once('data', () => { done = true; completed++; socket.destroy(); });
      socket.once('error', (err) => { if (!done) fail(err); });
      socket.once('close', () => { if (!done) fail('closed'); handshakeLoop(); });
    };

    const requestLoop = () => {
      const socket = tls.connect({ ...base, port: job.port }, () => socket.write(REQUEST));
      // One small request in flight per connection: Nagle would add delayed-ACK stalls.
      socket.setNoDelay(true);
      let buffer = '';
      socket.setEncoding('latin1');
      socket.on('data', (chunk) => {
        buffer += chunk;
        for (;;) {
          const head = buffer.indexOf('\\r\\n\\r\\n');
          if (head < 0) return;
          const m = /content-length: (\\d+)/i.exec(buffer.slice(0, head));
          const total = head + 4 + (m ? Number(m[1]) : 0);
          if (buffer.length < total) return;
          buffer = buffer.slice(total);
          completed++;
          if (!tick()) { socket.destroy(); return; }
          socket.write(REQUEST);
        }
      });
      socket.once('error', fail);
      socket.once('close', finish);
    };

    for (let i = 0; i < job.concurrency; i++) { active++; (job.mode === 'handshakes' ? handshakeLoop : requestLoop)(); }
  });
}
process.on('message', async (job) => process.send(await run(job)));
`;

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function close(server: Server): Promise<void> {
  const closed = once(server, 'close');
  server.close();
  (server as Partial<https.Server>).closeAllConnections?.();
  await closed;
}

function startLoadGenerator(material: { cert: string; key: string; ca: string }): ChildProcess {
  return spawn(process.execPath, ['--input-type=commonjs', '-e', LOAD_GENERATOR], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, MESHCA_BENCH_LOAD: JSON.stringify(material) },
  });
}

/** Runs one window and reads this process's CPU time between the child's start and done messages. */
function measure(child: ChildProcess, request: LoadRequest): Promise<Sample> {
  return new Promise((resolve, reject) => {
    let cpuAtStart: NodeJS.CpuUsage | undefined;
    const onMessage = (message: { type: 'start' } | LoadResult): void => {
      if (message.type === 'start') {
        cpuAtStart = process.cpuUsage();
        return;
      }
      const cpu = process.cpuUsage(cpuAtStart);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (message.errors > 0) {
        reject(new Error(`${message.errors} ${request.mode} failed against port ${request.port}: ${message.firstError}`));
        return;
      }
      const cpuSeconds = (cpu.user + cpu.system) / 1e6;
      resolve({ rate: (message.completed * 1000) / message.elapsedMs, perCpu: message.completed / cpuSeconds });
    };
    const onExit = (code: number | null): void => reject(new Error(`load generator exited with ${code}`));
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send(request);
  });
}

export async function benchTls(options: BenchTlsOptions = {}): Promise<BenchResult[]> {
  const rounds = options.rounds ?? 3;
  const durationMs = Math.min(options.durationMs ?? 1000, 3000);
  progress('tls: preparing a root and P-256 SVIDs');
  const root = await createTestRoot({ trustDomain: 'bench.test' });
  const serverLeaf = await createTestLeaf(root, { uris: ['spiffe://bench.test/server'] });
  const clientLeaf = await createTestLeaf(root, { uris: ['spiffe://bench.test/client'] });
  const bundles = new X509BundleSet([new X509Bundle(parseTrustDomain('bench.test'), [root.cert])]);
  const source = createStaticX509Source({ svid: parseX509Svid(serverLeaf.pem, serverLeaf.keyPem), bundles });
  const plainOptions = {
    cert: serverLeaf.pem,
    key: serverLeaf.keyPem,
    ca: [root.pem],
    requestCert: true,
    rejectUnauthorized: true,
  };

  const servers = {
    handshakes: {
      meshca: createServer(source, {}, (socket) => socket.end('x')),
      plain: tls.createServer(plainOptions, (socket) => socket.end('x')),
    },
    requests: {
      meshca: createHttpsServer(source, {}, (request, response) => {
        // The identity check a handler does: a cached lookup, no certificate parsing.
        if (getPeerSpiffeId(request).path !== '/client') response.statusCode = 403;
        response.end('ok');
      }),
      plain: https.createServer(plainOptions, (_request, response) => response.end('ok')),
    },
  } as const;
  const ports = {
    handshakes: { meshca: await listen(servers.handshakes.meshca), plain: await listen(servers.handshakes.plain) },
    requests: { meshca: await listen(servers.requests.meshca), plain: await listen(servers.requests.plain) },
  };

  const child = startLoadGenerator({ cert: clientLeaf.pem, key: clientLeaf.keyPem, ca: root.pem });
  const samples = {
    handshakes: { meshca: [] as Sample[], plain: [] as Sample[] },
    requests: { meshca: [] as Sample[], plain: [] as Sample[] },
  };
  try {
    for (const mode of ['handshakes', 'requests'] as const) {
      const concurrency = mode === 'handshakes' ? 16 : 32;
      progress(`tls: ${mode}, ${rounds} ABBA rounds of ${durationMs} ms windows, ${concurrency} concurrent`);
      for (let r = 0; r < rounds; r++) {
        for (const which of ['plain', 'meshca', 'meshca', 'plain'] as const) {
          const port = ports[mode][which];
          samples[mode][which].push(await measure(child, { mode, port, concurrency, warmupMs: 200, durationMs }));
        }
      }
    }
  } finally {
    child.kill();
    for (const group of Object.values(servers)) for (const server of Object.values(group)) await close(server);
  }

  const results = (mode: 'handshakes' | 'requests', name: string, unit: string, baselineName: string): BenchResult[] => {
    const ours = samples[mode].meshca;
    const plain = samples[mode].plain;
    // The ratio shown is the ratio of the medians shown beside it, so the row reads consistently;
    // ABBA windows keep slow drifts in machine load from favouring either side.
    const pairRatio = (pick: (s: Sample) => number): number => median(ours.map(pick)) / median(plain.map(pick));
    const cpuRatio = pairRatio((s) => s.perCpu);
    return [
      {
        name: `${name} (wall clock)`,
        value: median(ours.map((s) => s.rate)),
        unit,
        baselineName,
        baseline: median(plain.map((s) => s.rate)),
        ratio: pairRatio((s) => s.rate),
      },
      {
        name: `${name} (per server CPU-second)`,
        value: median(ours.map((s) => s.perCpu)),
        unit: `${unit.replace('/s', '')}/cpu-s`,
        baselineName,
        baseline: median(plain.map((s) => s.perCpu)),
        ratio: cpuRatio,
        target: '>= 0.9x',
        met: cpuRatio >= 0.9,
      },
    ];
  };
  return [
    ...results('handshakes', 'mTLS full handshakes, meshca/tls createServer, 16 concurrent', 'handshakes/s', 'plain tls.createServer'),
    ...results('requests', 'mTLS kept-alive requests, createHttpsServer + identity, 32 conns', 'req/s', 'plain https requestCert'),
  ];
}
