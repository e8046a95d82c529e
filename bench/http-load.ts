/**
 * HTTP/1.1 keep-alive load generator for certificate APIs (cfssl's `/api/v1/cfssl/sign`,
 * meshca's `/v1/certificates`), run as a child process like `grpc-load.ts`. Reads a JSON job
 * from stdin, prints one JSON result line on stdout. Every answer must be 200; one in 16 is
 * parsed and must carry a certificate.
 */
import { Agent, request } from 'node:https';
import { measureLoad, readJob, type LoopJob } from './load-loop.js';

interface Job extends LoopJob {
  readonly url: string;
  readonly rootPem: string;
  readonly connections: number;
  /** JSON request bodies, cycled. */
  readonly bodies: readonly string[];
  /** Bearer tokens, cycled; none for cfssl. */
  readonly tokens?: readonly string[];
  /** Where the certificate is in the answer. */
  readonly expect: 'cfssl' | 'meshca';
}

const job = await readJob<Job>();
const url = new URL(job.url);
const agent = new Agent({ keepAlive: true, maxSockets: job.connections, ca: job.rootPem, servername: url.hostname === '127.0.0.1' ? 'localhost' : url.hostname });
const bodies = job.bodies.map((b) => Buffer.from(b));

class CallError extends Error {}

function hasCertificate(text: string): boolean {
  const body = JSON.parse(text) as { result?: { certificate?: string }; certChain?: string[] };
  const pem = job.expect === 'cfssl' ? body.result?.certificate : body.certChain?.[0];
  return typeof pem === 'string' && pem.startsWith('-----BEGIN CERTIFICATE-----');
}

function call(i: number, decode: boolean): Promise<void> {
  const body = bodies[i % bodies.length]!;
  const token = job.tokens?.[i % job.tokens.length];
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': body.length, ...(token ? { authorization: `Bearer ${token}` } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new CallError(`HTTP ${res.statusCode}`));
          if (decode && !hasCertificate(Buffer.concat(chunks).toString('utf8'))) return reject(new CallError('answer without a certificate'));
          resolve();
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

await measureLoad(job, call);
agent.destroy();
