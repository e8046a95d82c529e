import { execFile } from 'node:child_process';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

import { systemClock, type Clock } from '../../src/clock.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the real `meshca` CLI (from source, via tsx) as a separate process. */
export function meshca(args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cmd/meshca.ts', ...args],
      { cwd: ROOT, env: { ...process.env, ...options.env }, timeout: options.timeoutMs ?? 30_000, maxBuffer: 8 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(options.input ?? '');
  });
}

/**
 * Runs the same CLI in this process through `runCli`, with captured output, the given env only
 * and stdin from `input`: ten times quicker than a process, so most CLI tests use it and only a
 * few smoke tests pay for `meshca` (above) as a real process.
 */
export async function runMeshca(args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv; clock?: Clock } = {}): Promise<CliResult> {
  const { runCli } = await import('../../src/cmd/program.js');
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await runCli(args, { stdout, stderr, clock: options.clock ?? systemClock, env: { ...options.env }, stdin: [options.input ?? ''] });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString('utf8');
    done();
  }
}
