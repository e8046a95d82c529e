/**
 * What every subcommand shares: the CLI's I/O and the options several commands take. Kept free
 * of anything heavy, because every `meshca` process loads it (see program.ts).
 */
import { Option } from 'commander';
import type { Clock } from '../clock.js';

export interface CliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly clock: Clock;
  readonly env: NodeJS.ProcessEnv;
  /** What `-` reads (a CSR, a manifest, a PEM); `process.stdin` in the binary. */
  readonly stdin: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>;
}

/** All of standard input, for the commands that take `-` as a file name. */
export async function readStdin(io: CliIo): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk));
  return Buffer.concat(chunks).toString('utf8');
}

export function trustDomainOption(io: CliIo): Option {
  return new Option('--trust-domain <name>', 'SPIFFE trust domain').default(io.env['MESHCA_TRUST_DOMAIN'] ?? 'cluster.local');
}

export function dataDirOption(io: CliIo): Option {
  return new Option('--data-dir <dir>', 'CA data directory (Istio plug-in CA file names)').default(io.env['MESHCA_DATA_DIR'] ?? './certs');
}

export { parseTrustDomainFlag } from '../config/trust-domain-flag.js';

/**
 * Resolves with the signal that asked the process to stop (SIGTERM from the kubelet, SIGINT from
 * a terminal), or with undefined once `cancel` aborts (the command ended another way). Until then
 * it holds the event loop open: rotation timers are unref'd, because a library must not keep its
 * host process alive, and a long-running command must.
 */
export function waitForStopSignal(cancel?: AbortSignal): Promise<NodeJS.Signals | undefined> {
  const keepAlive = setInterval(() => undefined, 2 ** 30);
  return new Promise((resolve) => {
    const done = (signal: NodeJS.Signals | undefined): void => {
      clearInterval(keepAlive);
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      cancel?.removeEventListener('abort', onCancel);
      resolve(signal);
    };
    const stop = (signal: NodeJS.Signals): void => done(signal);
    const onCancel = (): void => done(undefined);
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    if (cancel?.aborted) onCancel();
    else cancel?.addEventListener('abort', onCancel, { once: true });
  });
}
