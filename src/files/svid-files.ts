/**
 * The SVID on disk, for workloads that read files instead of the Workload API (Envoy, nginx,
 * anything with `ssl_certificate`): Istio's output-certificate names in one directory, each
 * replaced atomically, plus an optional command to run after every rotation (spiffe-helper's
 * "renew signal" idea: tell the consumer to reload).
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { X509Bundle } from '../spiffe/x509-bundle.js';
import type { X509Svid } from '../spiffe/x509-svid.js';
import { writeFileAtomic } from './atomic-write.js';

/** Istio's names (`--output-certs` / `OUTPUT_CERTS`), so existing mounts and configs fit. */
export const SVID_FILES = Object.freeze({
  certChain: 'cert-chain.pem',
  key: 'key.pem',
  root: 'root-cert.pem',
});

export interface SvidFilePaths {
  readonly certChain: string;
  readonly key: string;
  readonly root: string;
}

/**
 * Writes `cert-chain.pem` (leaf then intermediates), `key.pem` (PKCS#8, mode 0600) and
 * `root-cert.pem` (the trust bundle) into `dir`, creating it if needed. Each file is replaced
 * atomically. The order is deliberate: the root first, so a new chain never appears before its
 * anchor is trusted; the certificate chain last, because consumers watch it to reload, and by
 * then the matching key is already in place.
 */
export async function writeSvidFiles(dir: string, svid: X509Svid, bundle: X509Bundle): Promise<SvidFilePaths> {
  if (svid.privateKey === undefined) throw new TypeError('writeSvidFiles needs an SVID with its private key');
  if (svid.certificates.length === 0) throw new TypeError('writeSvidFiles needs an SVID with certificates');
  const paths: SvidFilePaths = {
    certChain: join(dir, SVID_FILES.certChain),
    key: join(dir, SVID_FILES.key),
    root: join(dir, SVID_FILES.root),
  };
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(paths.root, bundle.toPem(), 0o644);
  await writeFileAtomic(paths.key, svid.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), 0o600);
  await writeFileAtomic(paths.certChain, svid.certificates.map((cert) => cert.toString()).join(''), 0o644);
  return paths;
}

export interface RunHookOptions {
  /** Killed after this long. Default 30 s. */
  readonly timeoutMs?: number;
  /** Added to the agent's environment, e.g. the output directory and the new SPIFFE ID. */
  readonly env?: Readonly<Record<string, string>>;
  readonly logger?: Logger;
}

export interface HookResult {
  readonly ok: boolean;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  readonly stdout: string;
  readonly stderr: string;
}

export const DEFAULT_HOOK_TIMEOUT_MS = 30_000;
const MAX_LOGGED_OUTPUT = 4096;

/**
 * Runs the operator's post-rotation command with `/bin/sh -c` (it is configuration, written by
 * whoever deploys the agent, so shell syntax like `kill -HUP $(cat pid)` is allowed). Never
 * rejects: a failing hook is logged and reported, and rotation carries on — the new files are in
 * place either way.
 */
export function runPostRotationHook(command: string, options: RunHookOptions = {}): Promise<HookResult> {
  const logger = options.logger ?? silentLogger;
  const timeoutMs = options.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS;
  return new Promise((resolve) => {
    execFile(
      '/bin/sh',
      ['-c', command],
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024, env: { ...process.env, ...options.env }, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const failure = err as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: NodeJS.Signals | null }) | null;
        const exitCode = failure === null ? 0 : typeof failure.code === 'number' ? failure.code : null;
        const signal = failure?.signal ?? null;
        const timedOut = failure !== null && failure.killed === true && signal === 'SIGKILL';
        const result: HookResult = {
          ok: failure === null,
          exitCode,
          signal,
          timedOut,
          stdout: truncate(stdout),
          stderr: truncate(stderr),
        };
        const fields = { hook: command, exitCode, signal, stdout: result.stdout, stderr: result.stderr };
        if (result.ok) logger.info(fields, 'post-rotation hook ran');
        else if (timedOut) logger.warn({ ...fields, timeoutMs }, 'post-rotation hook timed out and was killed; continuing');
        else logger.warn({ ...fields, err: failure }, 'post-rotation hook failed; continuing');
        resolve(result);
      },
    );
  });
}

function truncate(text: string): string {
  return text.length > MAX_LOGGED_OUTPUT ? `${text.slice(0, MAX_LOGGED_OUTPUT)}…[truncated]` : text;
}
