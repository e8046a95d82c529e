/**
 * A gRPC channel for unary calls over `node:http2` (gRPC over HTTP/2: PROTOCOL-HTTP2.md), for
 * the agent's calls to the CA. One HTTP/2 session, opened on the first call and reused; it is
 * dropped when it fails, when the server closes it, and after 30 s without calls (an agent
 * calls the CA every few hours, and a CA closes idle connections). There is no reconnect
 * backoff of its own: the caller's retry policy (the rotator's) decides when to call again, and
 * every call after a failure dials afresh.
 *
 * The request's headers, the bearer token among them, are written only after the TLS handshake
 * verified the server against the given roots and name.
 */
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { PeerCertificate } from 'node:tls';
import { GrpcStatus } from '../status.js';

export interface UnaryChannelOptions {
  /** `host:port` or `[v6]:port`. */
  readonly address: string;
  /** PEM roots for the server's certificate; undefined means plaintext. */
  readonly rootCertPem?: string;
  /** The name to verify in the server's certificate (and send as SNI and :authority). */
  readonly serverName?: string;
  /** How long an idle session stays open. Default 30 s. */
  readonly idleTimeoutMs?: number;
}

export interface UnaryCall {
  /** `/package.Service/Method`. */
  readonly path: string;
  /** The encoded request message. */
  readonly message: Buffer;
  /** Request metadata (lower-case names), e.g. `authorization`. */
  readonly metadata: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

/** A call's outcome: status OK with the response message, or a status and why. */
export type UnaryResult =
  | { readonly status: typeof GrpcStatus.OK; readonly message: Buffer }
  | {
      readonly status: Exclude<GrpcStatus, typeof GrpcStatus.OK>;
      readonly details: string;
      readonly cause?: ConnectionFailure;
      /** The `meshca-error-code` trailer, when the server sent one. */
      readonly errorCode?: string;
    };

/** A connection that failed before any answer: the socket or TLS error, and the server's certificate. */
export interface ConnectionFailure {
  readonly code: string | undefined;
  readonly message: string;
  /** For TLS failures: the certificate the server presented, when node kept it. */
  readonly peerCertificate?: PeerCertificate;
}

/** gRPC's default limit on a received message. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
const DEFAULT_IDLE_MS = 30_000;

/** gRPC's mapping of an HTTP status without grpc-status (http-grpc-status-mapping.md). */
function statusFromHttp(httpStatus: number): Exclude<GrpcStatus, typeof GrpcStatus.OK> {
  switch (httpStatus) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

function grpcTimeout(ms: number): string {
  // At most 8 digits (PROTOCOL-HTTP2.md); milliseconds cover 27 hours.
  return `${Math.min(Math.max(1, Math.ceil(ms)), 99_999_999)}m`;
}

function decodeGrpcMessage(value: string | string[] | undefined): string {
  const text = Array.isArray(value) ? value.join(',') : (value ?? '');
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

export class UnaryChannel {
  readonly #options: UnaryChannelOptions;
  readonly #authority: string;
  #rootCertPem: string | undefined;
  #session: ClientHttp2Session | undefined;
  /** Why the current session failed, for calls that fail on it. */
  #failure: ConnectionFailure | undefined;
  #active = 0;
  #closed = false;

  constructor(options: UnaryChannelOptions) {
    this.#options = options;
    this.#rootCertPem = options.rootCertPem;
    const port = /:(\d{1,5})$/.exec(options.address)?.[1];
    if (port === undefined) throw new TypeError(`address must be host:port, got ${JSON.stringify(options.address)}`);
    this.#authority = options.serverName === undefined ? options.address : `${options.serverName}:${port}`;
  }

  /** New roots for the server's certificate; the open session finishes its calls and closes. */
  updateRootCertPem(pem: string): void {
    this.#rootCertPem = pem;
    this.#session?.close();
    this.#session = undefined;
  }

  close(): void {
    this.#closed = true;
    this.#session?.close();
    this.#session = undefined;
  }

  call(call: UnaryCall): Promise<UnaryResult> {
    if (this.#closed) return Promise.resolve({ status: GrpcStatus.UNAVAILABLE, details: 'channel closed' });
    const session = this.#open();
    return new Promise((resolve) => {
      let settled = false;
      let stream: ClientHttp2Stream | undefined;
      const finish = (result: UnaryResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        call.signal?.removeEventListener('abort', onAbort);
        if (--this.#active === 0 && !session.destroyed) session.unref();
        if (result.status === GrpcStatus.UNAVAILABLE || result.status === GrpcStatus.DEADLINE_EXCEEDED) this.#drop(session);
        resolve(result);
      };
      const cancel = (status: typeof GrpcStatus.CANCELLED | typeof GrpcStatus.DEADLINE_EXCEEDED, details: string): void => {
        stream?.close(constants.NGHTTP2_CANCEL);
        finish({ status, details });
      };
      const onAbort = (): void => cancel(GrpcStatus.CANCELLED, 'cancelled by the caller');
      const timer = setTimeout(() => cancel(GrpcStatus.DEADLINE_EXCEEDED, `no answer within ${call.timeoutMs} ms`), call.timeoutMs);
      this.#active++;
      session.ref();
      call.signal?.addEventListener('abort', onAbort, { once: true });

      try {
        stream = session.request({
          ...call.metadata,
          [constants.HTTP2_HEADER_METHOD]: 'POST',
          [constants.HTTP2_HEADER_PATH]: call.path,
          [constants.HTTP2_HEADER_AUTHORITY]: this.#authority,
          [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
          te: 'trailers',
          'grpc-timeout': grpcTimeout(call.timeoutMs),
        });
      } catch (err) {
        finish({ status: GrpcStatus.UNAVAILABLE, details: (err as Error).message, cause: this.#failure ?? failureOf(err) });
        return;
      }
      let httpStatus = 0;
      let headerStatus: IncomingHttpHeaders | undefined;
      let trailers: IncomingHttpHeaders | undefined;
      const chunks: Buffer[] = [];
      let received = 0;
      stream.on('response', (headers) => {
        httpStatus = Number(headers[constants.HTTP2_HEADER_STATUS]);
        // A trailers-only response (every refusal) carries the status in its headers.
        if (headers['grpc-status'] !== undefined) headerStatus = headers;
      });
      stream.on('trailers', (t) => (trailers = t));
      stream.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > MAX_RESPONSE_BYTES + 5) {
          stream?.close(constants.NGHTTP2_CANCEL);
          finish({ status: GrpcStatus.RESOURCE_EXHAUSTED, details: `response larger than ${MAX_RESPONSE_BYTES} bytes` });
          return;
        }
        chunks.push(chunk);
      });
      let streamError: Error | undefined;
      stream.on('error', (err) => (streamError = err)); // reported by 'close' below
      const onClose = (): void => {
        if (settled) return;
        const statusHeaders = trailers ?? headerStatus;
        if (httpStatus === 0 || statusHeaders === undefined) {
          const failure = this.#failure;
          if (httpStatus !== 0 && httpStatus !== 200) {
            finish({ status: statusFromHttp(httpStatus), details: `HTTP ${httpStatus} without a gRPC status` });
          } else if (failure !== undefined || streamError !== undefined) {
            const cause = failure ?? failureOf(streamError);
            finish({ status: GrpcStatus.UNAVAILABLE, details: cause.message, cause });
          } else {
            const rst = stream!.rstCode;
            finish({ status: GrpcStatus.UNAVAILABLE, details: httpStatus === 0 ? `the connection closed before an answer (HTTP/2 code ${rst})` : 'the stream ended without a gRPC status' });
          }
          return;
        }
        const status = Number(statusHeaders['grpc-status']);
        if (!Number.isInteger(status) || status < 0 || status > 16) {
          finish({ status: GrpcStatus.UNKNOWN, details: `invalid grpc-status ${String(statusHeaders['grpc-status'])}` });
          return;
        }
        if (status !== GrpcStatus.OK) {
          const errorCode = statusHeaders['meshca-error-code'];
          finish({
            status: status as Exclude<GrpcStatus, typeof GrpcStatus.OK>,
            details: decodeGrpcMessage(statusHeaders['grpc-message']),
            ...(typeof errorCode === 'string' ? { errorCode } : {}),
          });
          return;
        }
        const body = Buffer.concat(chunks);
        // Exactly one uncompressed message: meshca never offers grpc-accept-encoding.
        if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) {
          finish({ status: GrpcStatus.INTERNAL, details: 'malformed response message frame' });
          return;
        }
        finish({ status: GrpcStatus.OK, message: body.subarray(5) });
      };
      // A stream closed by its session's failure closes before the session reports why: wait a
      // turn of the loop for the session's error (a TLS refusal, say) so the caller is told.
      stream.on('close', () => (httpStatus === 0 && this.#failure === undefined ? setImmediate(onClose) : onClose()));
      const frame = Buffer.allocUnsafe(5 + call.message.length);
      frame[0] = 0;
      frame.writeUInt32BE(call.message.length, 1);
      call.message.copy(frame, 5);
      stream.end(frame);
    });
  }

  #open(): ClientHttp2Session {
    const current = this.#session;
    if (current !== undefined && !current.closed && !current.destroyed) return current;
    this.#failure = undefined;
    const tlsRoots = this.#rootCertPem;
    const { serverName } = this.#options;
    const session = connect(`${tlsRoots === undefined ? 'http' : 'https'}://${this.#options.address}`, {
      ...(tlsRoots === undefined
        ? {}
        : { ca: tlsRoots, ALPNProtocols: ['h2'], ...(serverName === undefined ? {} : { servername: serverName }) }),
    });
    session.on('error', (err) => {
      if (this.#session === session) this.#failure = failureOf(err);
    });
    session.on('close', () => {
      if (this.#session === session) this.#session = undefined;
    });
    session.on('goaway', () => {
      if (this.#session === session) this.#session = undefined;
    });
    session.setTimeout(this.#options.idleTimeoutMs ?? DEFAULT_IDLE_MS, () => {
      if (this.#active === 0) session.close();
    });
    session.unref();
    this.#session = session;
    return session;
  }

  #drop(session: ClientHttp2Session): void {
    if (this.#session === session) this.#session = undefined;
    if (this.#active === 0) session.destroy();
    else session.close();
  }
}

function failureOf(err: unknown): ConnectionFailure {
  const e = err as NodeJS.ErrnoException & { cert?: PeerCertificate; reason?: string };
  return { code: e.code, message: e.reason ?? e.message, ...(e.cert === undefined ? {} : { peerCertificate: e.cert }) };
}
