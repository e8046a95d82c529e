/**
 * Load generator for the gRPC CA, run as a child process so the CA keeps its own core.
 * Reads a JSON job from stdin, prints one JSON result line on stdout.
 */
import { generateKeyPairSync } from 'node:crypto';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { createCsr } from '../src/pki/csr.js';
import { loadIstioCaProto } from '../src/transport/grpc/protos.js';

interface Job {
  readonly address: string;
  readonly rootPem: string;
  readonly concurrency: number;
  readonly channels: number;
  /** Stop after this long (steady-state runs) ... */
  readonly durationMs?: number;
  /** ... or after these many requests (burst runs). */
  readonly total?: number;
  /** One token per request for bursts (all first-time callers); cycled otherwise. */
  readonly tokens: readonly string[];
  readonly csrCount: number;
}

const input: Buffer[] = [];
for await (const chunk of process.stdin) input.push(chunk as Buffer);
const job = JSON.parse(Buffer.concat(input).toString('utf8')) as Job;
const csrs = Array.from({ length: job.csrCount }, () => createCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey).pem);
const { IstioCertificateService } = loadIstioCaProto().istio.v1.auth;
const clients = Array.from(
  { length: job.channels },
  (_, i) =>
    new IstioCertificateService(job.address, job.rootPem ? credentials.createSsl(Buffer.from(job.rootPem)) : credentials.createInsecure(), {
      // Distinct channels: grpc-js would otherwise share one subchannel between clients.
      'grpc.channel_id': i,
      'grpc.use_local_subchannel_pool': 1,
    } as Record<string, number>),
);

function call(i: number): Promise<void> {
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${job.tokens[i % job.tokens.length]}`);
  const client = clients[i % clients.length]!;
  return new Promise((resolve, reject) => {
    client.CreateCertificate({ csr: csrs[i % csrs.length]!, validity_duration: 0 }, metadata, { deadline: Date.now() + 30_000 }, (err: ServiceError | null) =>
      err ? reject(err) : resolve(),
    );
  });
}

// Warm up the channels (TLS, HTTP/2) before measuring.
await Promise.all(clients.map((_, i) => call(i).catch(() => undefined)));

const latencies: number[] = [];
const errors: Record<string, number> = {};
let next = 0;
const started = performance.now();
const deadline = job.durationMs === undefined ? Infinity : started + job.durationMs;
const limit = job.total ?? Infinity;
async function worker(): Promise<void> {
  while (performance.now() < deadline && next < limit) {
    const i = next++;
    const t0 = performance.now();
    try {
      await call(i);
      latencies.push(performance.now() - t0);
    } catch (err) {
      const key = (err as ServiceError).details ?? String(err);
      errors[key] = (errors[key] ?? 0) + 1;
    }
  }
}
await Promise.all(Array.from({ length: job.concurrency }, worker));
const elapsedMs = performance.now() - started;
latencies.sort((a, b) => a - b);
const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil((p / 100) * latencies.length) - 1))] ?? Number.NaN;
process.stdout.write(
  JSON.stringify({ ok: latencies.length, errors, elapsedMs, rate: (latencies.length * 1000) / elapsedMs, p50: pct(50), p99: pct(99), max: latencies.at(-1) }) + '\n',
);
for (const c of clients) c.close();
