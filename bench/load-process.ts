import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** What a load generator child prints as its last stdout line. */
export interface LoadResult {
  readonly ok: number;
  readonly errors: Record<string, number>;
  readonly elapsedMs: number;
  readonly rate: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  /** The load generator's own CPU use, in cores, over the measured window. */
  readonly cpuCores: number;
}

export interface MeasuredLoad extends LoadResult {
  /** The server's CPU use over the measured window, in cores. */
  readonly serverCores: number;
  /** Certificates per second of server CPU: the "per core" figure. */
  readonly perServerCore: number;
  readonly errorCount: number;
}

/** CPU microseconds the server has used so far (user + system). */
export type CpuMeter = () => number;

/** The CA running in this process: its CPU is this process's, workers included. */
export const thisProcessCpu: CpuMeter = () => {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
};

/** A server in another process, from /proc (Linux): utime + stime of all its threads. */
export function processCpu(pid: number): CpuMeter {
  const ticksPerSecond = 100; // USER_HZ on Linux
  return () => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / ticksPerSecond;
  };
}

/**
 * Runs a load generator (`grpc-load.ts` or `http-load.ts`) as a child process, optionally
 * pinned to one CPU, and samples the server's CPU between the child's "MEASURING" mark and
 * its result, so warm-up and start-up are not counted.
 */
export function runLoad(script: 'grpc-load.ts' | 'http-load.ts', job: object, options: { serverCpu: CpuMeter; cpu?: number }): Promise<MeasuredLoad> {
  const path = fileURLToPath(new URL(`./${script}`, import.meta.url));
  const node = [process.execPath, '--import', 'tsx', path];
  const [command, ...args] = options.cpu === undefined ? node : ['taskset', '-c', String(options.cpu), ...node];
  return new Promise((resolve, reject) => {
    let cpuAtStart = 0;
    let wallAtStart = 0;
    let cpuAtEnd = 0;
    let wallAtEnd = 0;
    let stderr = '';
    const child = execFile(command!, args, { maxBuffer: 64 * 1024 * 1024, timeout: 600_000 }, (err, stdout) => {
      if (err) return reject(new Error(`load generator failed: ${stderr || err.message}`));
      const result = JSON.parse(stdout.trim().split('\n').pop()!) as LoadResult;
      const serverCores = (cpuAtEnd - cpuAtStart) / 1000 / (wallAtEnd - wallAtStart);
      const errorCount = Object.values(result.errors).reduce((a, b) => a + b, 0);
      resolve({ ...result, serverCores, perServerCore: serverCores > 0 ? result.rate / serverCores : Number.NaN, errorCount });
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      if (text.includes('MEASURING')) {
        cpuAtStart = options.serverCpu();
        wallAtStart = performance.now();
      }
      if (text.includes('MEASURED')) {
        cpuAtEnd = options.serverCpu();
        wallAtEnd = performance.now();
      }
      stderr += text.replace(/MEASUR(ING|ED)\n/g, '');
    });
    child.stdin!.end(JSON.stringify(job));
  });
}

/** Pins every thread of this process to `cpus` (e.g. "0" or "0-1"); false when taskset is missing. */
export function pinThisProcess(cpus: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('taskset', ['-a', '-p', '-c', cpus, String(process.pid)], (err) => resolve(!err));
  });
}
