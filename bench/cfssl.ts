import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '../src/ca/certificate-authority.js';
import { createSelfSignedRoot, loadAuthority } from '../src/pki/authority.js';

/** A running `cfssl serve` (Debian `golang-cfssl`), the Go CA meshca is compared with. */
export interface RunningCfssl {
  readonly url: string;
  readonly rootPem: string;
  readonly pid: number;
  readonly version: string;
  close(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export function cfsslVersion(): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('cfssl', ['version'], (err, stdout) => resolve(err ? undefined : (/Version:\s*(\S+)/.exec(stdout)?.[1] ?? 'unknown')));
  });
}

/**
 * Starts cfssl with a P-256 CA like meshca's, a 24 h profile with the SVID key usages, and TLS
 * on loopback (meshca's APIs are TLS too). Its access log goes where meshca's does in the
 * bench: nowhere. Undefined when `cfssl` is not on the PATH.
 */
export async function startCfssl(options: { cpus?: string } = {}): Promise<RunningCfssl | undefined> {
  const version = await cfsslVersion();
  if (version === undefined) return undefined;
  const dir = await mkdtemp(join(tmpdir(), 'meshca-bench-cfssl-'));
  const now = new Date();
  const root = await createSelfSignedRoot({ trustDomain: 'cluster.local', now });
  const ca = new CertificateAuthority({ authority: loadAuthority({ certPem: root.certPem, keyPem: root.keyPem, rootPem: root.certPem }, now) });
  const tls = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const serving = await ca.issueServingCertificate(tls.publicKey, { dnsNames: ['localhost'], ttlSeconds: 3600 });
  await writeFile(join(dir, 'ca.pem'), root.certPem);
  await writeFile(join(dir, 'ca-key.pem'), root.keyPem, { mode: 0o600 });
  await writeFile(join(dir, 'tls.pem'), serving.certChainPem.join(''));
  await writeFile(join(dir, 'tls-key.pem'), tls.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  const profile = { signing: { default: { expiry: '24h', usages: ['digital signature', 'key encipherment', 'server auth', 'client auth'] } } };
  await writeFile(join(dir, 'config.json'), JSON.stringify(profile));
  const port = await freePort();
  const args = ['serve', '-address', '127.0.0.1', '-port', String(port), '-ca', join(dir, 'ca.pem'), '-ca-key', join(dir, 'ca-key.pem')];
  args.push('-config', join(dir, 'config.json'), '-tls-cert', join(dir, 'tls.pem'), '-tls-key', join(dir, 'tls-key.pem'));
  // taskset execs cfssl in place, so the pid is cfssl's own.
  const [command, ...argv] = options.cpus === undefined ? ['cfssl', ...args] : ['taskset', '-c', options.cpus, 'cfssl', ...args];
  const child: ChildProcess = spawn(command!, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    if (log.length < 4096) log += chunk.toString('utf8');
  });
  const url = `https://localhost:${port}/api/v1/cfssl/sign`;
  // Ready when the port answers; cfssl has no readiness endpoint of its own.
  for (let i = 0; ; i++) {
    // A connect, not a trial bind: binding the port ourselves could take it from cfssl.
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) break;
    if (i > 100 || child.exitCode !== null) {
      child.kill();
      throw new Error(`cfssl serve did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    rootPem: root.certPem,
    pid: child.pid!,
    version,
    async close() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(undefined)));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
