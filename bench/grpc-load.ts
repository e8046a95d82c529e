/**
 * Load generator for the gRPC CA, run as a child process so the CA keeps its own core.
 * Reads a JSON job from stdin, prints one JSON result line on stdout.
 *
 * It speaks the gRPC wire protocol directly over `node:http2` (as ghz or h2load do) rather than
 * through grpc-js's client: that client costs ~0.6 ms of CPU per call, more than the CA spends,
 * so on two cores it would measure itself. Istio's real callers are Go and Rust agents. Every
 * response is still checked: HTTP 200, `grpc-status: 0` in the trailers, a well-framed message,
 * and one in 16 decoded with the proto and checked for a leaf, its chain and the root.
 */
import { generateKeyPairSync } from 'node:crypto';
import { connect, constants, type ClientHttp2Session } from 'node:http2';
import { createCsr } from '../src/pki/csr.js';
import { measureLoad, readJob, type LoopJob } from './load-loop.js';
import { loadIstioCaProto } from '../src/transport/grpc/protos.js';

interface Job extends LoopJob {
  readonly address: string;
  /** Empty for a plaintext (`--insecure`) CA. */
  readonly rootPem: string;
  /** HTTP/2 connections; calls are spread over them round-robin. */
  readonly channels: number;
  /** One token per request for bursts (all first-time callers); cycled otherwise. */
  readonly tokens: readonly string[];
  readonly csrCount: number;
}

const PATH = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

const job = await readJob<Job>();
const method = loadIstioCaProto().istio.v1.auth.IstioCertificateService.service.CreateCertificate;
/** Length-prefixed gRPC messages, encoded once: the load generator's own cost stays small. */
const bodies = Array.from({ length: job.csrCount }, () => {
  const csr = createCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey).pem;
  const message = method.requestSerialize({ csr, validity_duration: 0 });
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
});

const authority = job.address;
const sessions: ClientHttp2Session[] = Array.from({ length: job.channels }, () =>
  connect(job.rootPem ? `https://${authority}` : `http://${authority}`, {
    ...(job.rootPem ? { ca: job.rootPem, servername: authority.replace(/:\d+$/, ''), ALPNProtocols: ['h2'] } : {}),
    settings: { initialWindowSize: 1 << 20 },
  }),
);
await Promise.all(sessions.map((s) => new Promise<void>((resolve, reject) => s.once('connect', () => resolve()).once('error', reject))));

class CallError extends Error {}

function call(i: number, decode: boolean): Promise<void> {
  const session = sessions[i % sessions.length]!;
  return new Promise((resolve, reject) => {
    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: PATH,
      [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '30S',
      authorization: `Bearer ${job.tokens[i % job.tokens.length]}`,
    });
    let httpStatus = 0;
    let grpcStatus: string | undefined;
    let grpcMessage = '';
    const chunks: Buffer[] = [];
    stream.on('response', (headers) => {
      httpStatus = Number(headers[constants.HTTP2_HEADER_STATUS]);
      // A "trailers-only" response (every refusal) carries the status in the headers.
      if (headers['grpc-status'] !== undefined) {
        grpcStatus = String(headers['grpc-status']);
        grpcMessage = decodeURIComponent(String(headers['grpc-message'] ?? ''));
      }
    });
    stream.on('trailers', (trailers) => {
      grpcStatus = String(trailers['grpc-status']);
      grpcMessage = decodeURIComponent(String(trailers['grpc-message'] ?? ''));
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', reject);
    stream.on('close', () => {
      if (httpStatus !== 200) return reject(new CallError(`HTTP ${httpStatus || 'no response'}`));
      if (grpcStatus !== '0') return reject(new CallError(`grpc-status ${grpcStatus ?? 'missing'}: ${grpcMessage}`));
      const body = Buffer.concat(chunks);
      if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) return reject(new CallError('malformed gRPC response frame'));
      if (decode) {
        const chain = method.responseDeserialize(body.subarray(5)).cert_chain;
        if (chain.length < 2 || !chain.every((pem) => pem.startsWith('-----BEGIN CERTIFICATE-----'))) return reject(new CallError('response without a certificate chain'));
      }
      resolve();
    });
    stream.end(bodies[i % bodies.length]);
  });
}

// Open the connections and warm the CA's caches before anything is measured.
await Promise.all(sessions.map((_, i) => call(i, true).catch(() => undefined)));
await measureLoad(job, call);
for (const s of sessions) s.close();
