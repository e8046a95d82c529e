/**
 * Raw HTTP/1.1 on both sides of a proxy, for attack tables:
 * - `RecordingApp` is the protected app. Every byte the proxy sends it is recorded per
 *   connection before a real node HTTP server parses it, and every request that server parsed is
 *   logged with its headers and body. A test asserts on what the app received, not on what the
 *   attacker was told.
 * - `rawExchange` writes bytes exactly as given over TCP or TLS and returns every byte that came
 *   back, and whether the proxy closed the connection.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';

export interface AppRequest {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly body: string;
}

export class RecordingApp {
  readonly requests: AppRequest[] = [];
  /** The bytes of each upstream connection, in order. */
  readonly connections: Buffer[][] = [];
  #inner = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('latin1');
      this.requests.push({ method: req.method ?? '', url: req.url ?? '', httpVersion: req.httpVersion, headers: req.headers, rawHeaders: req.rawHeaders, body });
      const text = `app saw ${req.method} ${req.url} with ${body.length} body bytes\n`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) }).end(text);
    });
  });
  #front = net.createServer((socket) => {
    const record: Buffer[] = [];
    this.connections.push(record);
    const inner = net.connect((this.#inner.address() as net.AddressInfo).port, '127.0.0.1');
    socket.on('data', (chunk: Buffer) => record.push(chunk));
    socket.pipe(inner).pipe(socket);
    const end = (): void => {
      socket.destroy();
      inner.destroy();
    };
    socket.on('error', end);
    inner.on('error', end);
    socket.on('close', end);
    inner.on('close', end);
  });

  async start(): Promise<number> {
    await new Promise<void>((r) => this.#inner.listen(0, '127.0.0.1', () => r()));
    await new Promise<void>((r) => this.#front.listen(0, '127.0.0.1', () => r()));
    return (this.#front.address() as net.AddressInfo).port;
  }

  /** Every byte the app received, all connections joined. */
  rawText(): string {
    return this.connections.map((c) => Buffer.concat(c).toString('latin1')).join('\n--- next connection ---\n');
  }

  reset(): void {
    this.requests.length = 0;
    this.connections.length = 0;
  }

  async stop(): Promise<void> {
    this.#inner.closeAllConnections();
    await new Promise<void>((r) => this.#front.close(() => r()));
    await new Promise<void>((r) => this.#inner.close(() => r()));
  }
}

export interface RawExchange {
  readonly text: string;
  /** The other side closed the connection before the idle wait ran out. */
  readonly closed: boolean;
  /** Status codes of every response in `text`, in order (100 Continue included). */
  readonly statuses: readonly number[];
}

export interface RawTarget {
  readonly port: number;
  /** TLS client options (cert, key, ca); plain TCP without them. */
  readonly tls?: tls.ConnectionOptions;
}

/**
 * Sends `bytes` (or each part with `pauseMs` between them) and collects the answer until the
 * connection closes or nothing arrives for `idleMs`.
 */
export function rawExchange(target: RawTarget, bytes: string | readonly string[], options: { idleMs?: number; pauseMs?: number } = {}): Promise<RawExchange> {
  const idleMs = options.idleMs ?? 400;
  const parts = typeof bytes === 'string' ? [bytes] : bytes;
  return new Promise((resolve, reject) => {
    const socket: net.Socket = target.tls
      ? tls.connect({ port: target.port, host: '127.0.0.1', checkServerIdentity: () => undefined, ...target.tls })
      : net.connect(target.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let idle: NodeJS.Timeout | undefined;
    let settled = false;
    const done = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(idle);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({ text, closed, statuses: [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1])) });
    };
    const arm = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => done(false), idleMs);
    };
    socket.once(target.tls ? 'secureConnect' : 'connect', () => {
      void (async () => {
        for (const [i, part] of parts.entries()) {
          if (i > 0 && options.pauseMs) await new Promise((r) => setTimeout(r, options.pauseMs));
          if (!socket.destroyed) socket.write(Buffer.from(part, 'latin1'));
        }
        arm();
      })();
    });
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      arm();
    });
    socket.on('end', () => done(true));
    socket.on('close', () => done(true));
    socket.on('error', (err) => (chunks.length > 0 ? done(true) : reject(err)));
  });
}
