/**
 * `npm run bench -- sidecar`: what one pod's meshca costs, measured against peers in the same run.
 *
 * - The built CLI (`dist/`, as an image runs it) is started as `meshca sidecar` (agent + inbound
 *   + outbound) against a real CA, pinned to CPU 0 with `taskset`; the app, the CA and the load
 *   generator share CPU 1. Every rate is also given per CPU-second of the proxy process itself
 *   (from /proc), so a saturated generator cannot flatter it.
 * - Baselines: a bare Node mTLS reverse proxy (bench/peers/bare-mtls-proxy.mjs) for kept-alive
 *   requests, nginx (`ssl_verify_client on`, one process) for full handshakes when installed,
 *   and the app reached directly for added latency.
 * - Load: Debian's `ab` (`-E client.pem`) when installed, else a Node client (no handshake figure).
 *
 * The RSS figures are also written to bench/footprint.json, which the manifest test holds the
 * k8s examples' memory requests and limits against.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { createCsr } from '../src/pki/csr.js';
import { startTestCa, type TestCa } from '../test/helpers/test-ca-server.js';
import { median, progress, type BenchResult } from './harness.js';
import { load } from './proxy.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const has = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const CLK_TCK = 100;
/** Extra node flags for the sidecar under test (to try V8 heap settings): MESHCA_BENCH_NODE_FLAGS. */
const NODE_FLAGS = (process.env['MESHCA_BENCH_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');

/** NODE_OPTIONS of the helloworld example's meshca-sidecar container: the sidecar runs as it ships. */
function shippedNodeOptions(): string {
  type Container = { name?: string; env?: { name?: string; value?: string }[] };
  type Doc = { kind?: string; spec?: { template?: { spec?: { initContainers?: Container[] } } } };
  const docs = parseAllDocuments(readFileSync(join(ROOT, 'k8s/examples/helloworld.yaml'), 'utf8')).map((d) => d.toJS() as Doc);
  const sidecar = docs.find((d) => d.kind === 'Deployment')?.spec?.template?.spec?.initContainers?.find((c) => c.name === 'meshca-sidecar');
  const value = sidecar?.env?.find((e) => e.name === 'NODE_OPTIONS')?.value;
  if (typeof value !== 'string') throw new Error('k8s/examples/helloworld.yaml: no NODE_OPTIONS on the meshca-sidecar container');
  return value;
}

interface Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  stop(): Promise<void>;
}

/** Starts a process, pinned to `cpu` when taskset exists. */
function start(cpu: number | undefined, command: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Proc {
  const pinned = cpu !== undefined && has('taskset');
  const child = spawn(pinned ? 'taskset' : command, pinned ? ['-c', String(cpu), command, ...args] : [...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return {
    child,
    pid: child.pid!,
    output: () => out,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const deadline = Date.now() + timeoutMs;
        const poll = (): void => {
          const m = out.match(pattern);
          if (m) return resolve(m);
          if (child.exitCode !== null || Date.now() > deadline) return reject(new Error(`${command}: no ${pattern} (exit ${child.exitCode}):\n${out.slice(-2000)}`));
          setTimeout(poll, 50);
        };
        poll();
      });
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

function rssMb(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1];
  return Number(kb) / 1024;
}

interface AbResult {
  readonly rate: number;
  readonly failed: number;
  readonly requests: number;
}

function ab(url: string, options: { clientPem?: string; keepAlive: boolean; concurrency: number; requests: number }): Promise<AbResult> {
  const args = ['-q', '-r', '-c', String(options.concurrency), '-n', String(options.requests), ...(options.keepAlive ? ['-k'] : []), ...(options.clientPem ? ['-E', options.clientPem] : []), url];
  const [command, argv] = has('taskset') ? ['taskset', ['-c', '1', 'ab', ...args]] : ['ab', args];
  return new Promise((resolve, reject) => {
    execFile(command, argv as string[], { timeout: 180_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      // ab exits non-zero after socket errors even with -r; its report still counts them.
      if (err && !/Complete requests:/.test(stdout)) return reject(new Error(`ab -c ${options.concurrency} -n ${options.requests}${options.keepAlive ? ' -k' : ''} ${url} failed (${err.message.split('\n')[0]}): ${stdout.slice(-300)} ${stderr.split('\n').filter((l) => !/SSL/.test(l)).slice(-3).join(' ')}`));
      const num = (re: RegExp): number => Number(re.exec(stdout)?.[1] ?? 0);
      resolve({ rate: num(/Requests per second:\s+([\d.]+)/), failed: num(/Failed requests:\s+(\d+)/) + num(/Non-2xx responses:\s+(\d+)/), requests: num(/Complete requests:\s+(\d+)/) });
      if (err) progress(`ab reported errors for ${url}: ${/Failed requests:.*\n(.*\n)?/.exec(stdout)?.[0].replace(/\s+/g, ' ') ?? err.message}`);
    });
  });
}

interface Measured {
  readonly rate: number;
  readonly perCpuSecond: number;
  readonly failed: number;
}

/** Runs the load and reads the server's own CPU time around it. */
async function measure(pid: number, run: () => Promise<AbResult>): Promise<Measured> {
  const cpu0 = cpuSeconds(pid);
  const r = await run();
  const cpu = cpuSeconds(pid) - cpu0;
  return { rate: r.rate, perCpuSecond: cpu > 0 ? r.requests / cpu : Number.NaN, failed: r.failed };
}

/** An SVID for `sa` from the CA, as PEM files: chain, key, and both in one (ab's -E). */
async function issue(ca: TestCa, dir: string, sa: string): Promise<{ cert: string; key: string; both: string }> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const token = await ca.mint({ serviceAccount: sa, ttlSeconds: 3600 });
  const response = await ca.createCertificate({ csr: createCsr(privateKey).pem }, token);
  const chain = response.cert_chain.slice(0, -1).join('');
  const keyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const paths = { cert: join(dir, `${sa}.pem`), key: join(dir, `${sa}-key.pem`), both: join(dir, `${sa}-both.pem`) };
  await writeFile(paths.cert, chain);
  await writeFile(paths.key, keyPem, { mode: 0o600 });
  await writeFile(paths.both, chain + keyPem, { mode: 0o600 });
  return paths;
}

const policy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: helloworld, namespace: default }
spec:
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/default/sa/sleep", "cluster.local/ns/default/sa/helloworld"] } }]
    to: [{ operation: { methods: ["GET"], paths: ["/hello"] } }]
`;

function nginxConfig(dir: string, port: number, appPort: number, server: { cert: string; key: string }, caPath: string): string {
  return `worker_processes 1; master_process off; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  upstream app { server 127.0.0.1:${appPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port} ssl; ssl_protocols TLSv1.3;
    ssl_certificate ${server.cert}; ssl_certificate_key ${server.key};
    ssl_client_certificate ${caPath}; ssl_verify_client on;
    location = /hello { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header x-forwarded-client-cert $ssl_client_escaped_cert; }
    location / { return 403; }
  }
}
`;
}

async function wallSeconds(args: readonly string[], runs = 5): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['bin/meshca.js', ...args], { cwd: ROOT, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`meshca ${args.join(' ')}: ${r.stderr}`);
    times.push((performance.now() - t0) / 1000);
  }
  return median(times);
}

export async function benchSidecar(options: { requests?: number } = {}): Promise<BenchResult[]> {
  const requests = options.requests ?? 20_000;
  progress('building dist/ (the sidecar is measured as it ships)');
  const built = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`tsc: ${built.stdout}${built.stderr}`);
  const useAb = has('ab');
  if (!useAb) progress('ab not installed (Debian apache2-utils): kept-alive load from a Node client, no handshake figures');
  const dir = await mkdtemp(join(tmpdir(), 'meshca-bench-sidecar-'));
  const ca = await startTestCa();
  const procs: Proc[] = [];
  const results: BenchResult[] = [];
  try {
    await writeFile(join(dir, 'helloworld.token'), await ca.mint({ serviceAccount: 'helloworld', ttlSeconds: 3600 }), { mode: 0o600 });
    await writeFile(join(dir, 'policy.yaml'), policy);
    const client = await issue(ca, dir, 'sleep');
    const server = await issue(ca, dir, 'helloworld');
    const caPath = join(ca.dataDir, 'root-cert.pem');
    const app = start(1, process.execPath, [join(ROOT, 'bench/peers/app.mjs')]);
    procs.push(app);
    const appPort = Number((await app.waitFor(/listening (\d+)/))[1]);

    const nodeOptions = shippedNodeOptions();
    const startSidecar = async (delivery: boolean): Promise<{ proc: Proc; inbound: number; outbound: number }> => {
      const proc = start(0, process.execPath, [
        ...NODE_FLAGS, 'bin/meshca.js', 'sidecar', '--ca-address', ca.grpcAddress, '--ca-root', caPath, '--token-file', join(dir, 'helloworld.token'),
        '--inbound-listen', '127.0.0.1:0', '--inbound-upstream', `http://127.0.0.1:${appPort}`, '--policy', join(dir, 'policy.yaml'),
        '--outbound-listen', '127.0.0.1:0', '--outbound-upstream', 'https://127.0.0.1:1', '--outbound-trust-domain', 'cluster.local',
        ...(delivery ? ['--out', join(dir, 'sidecar-out'), '--workload-api-socket', join(dir, 'workload.sock')] : []),
        '--no-access-log', '--log-level', 'warn',
      ], { NODE_OPTIONS: nodeOptions });
      procs.push(proc);
      const ready = (await proc.waitFor(/meshca sidecar ready: .*inbound on port (\d+), outbound on port (\d+)/))!;
      return { proc, inbound: Number(ready[1]), outbound: Number(ready[2]) };
    };
    progress(`meshca sidecar: agent + inbound (AuthorizationPolicy) + outbound, pinned to CPU 0, NODE_OPTIONS=${nodeOptions}`);
    const { proc: sidecar, inbound, outbound } = await startSidecar(false);
    const idleRss = rssMb(sidecar.pid);

    const bare = start(0, process.execPath, [join(ROOT, 'bench/peers/bare-mtls-proxy.mjs'), server.cert, server.key, caPath, String(appPort)]);
    procs.push(bare);
    const barePort = Number((await bare.waitFor(/listening (\d+)/))[1]);

    const keepAlive = async (pid: number, port: number): Promise<Measured> =>
      useAb
        ? measure(pid, () => ab(`https://127.0.0.1:${port}/hello`, { clientPem: client.both, keepAlive: true, concurrency: 16, requests }))
        : measure(pid, async () => {
            const r = await load({ url: `https://127.0.0.1:${port}/hello`, concurrency: 16, durationMs: 3000, tls: { cert: readFileSync(client.cert, 'utf8'), key: readFileSync(client.key, 'utf8'), ca: readFileSync(caPath, 'utf8') } });
            return { rate: r.rate, failed: r.errors, requests: Math.round(r.rate * 3) };
          });
    progress(`kept-alive mTLS requests, ${useAb ? `ab -k -c 16 -n ${requests}` : 'Node client, 16 connections'}: meshca sidecar vs bare Node proxy, alternating`);
    await keepAlive(sidecar.pid, inbound); // warm-up: JIT, pools
    await keepAlive(bare.pid, barePort);
    const sidecarRuns: Measured[] = [];
    const bareRuns: Measured[] = [];
    for (let round = 0; round < 3; round++) {
      sidecarRuns.push(await keepAlive(sidecar.pid, inbound));
      bareRuns.push(await keepAlive(bare.pid, barePort));
    }
    const perCpu = median(sidecarRuns.map((r) => r.perCpuSecond));
    const barePerCpu = median(bareRuns.map((r) => r.perCpuSecond));
    const failed = sidecarRuns.reduce((n, r) => n + r.failed, 0);
    results.push({
      name: `sidecar: kept-alive mTLS requests per proxy CPU-second (${median(sidecarRuns.map((r) => r.rate)).toFixed(0)} req/s wall vs ${median(bareRuns.map((r) => r.rate)).toFixed(0)}${failed ? `; ${failed} FAILED` : ''})`,
      value: perCpu,
      unit: 'req/cpu-s',
      baselineName: 'bare Node mTLS proxy',
      baseline: barePerCpu,
      ratio: perCpu / barePerCpu,
      target: '>= 0.9x',
      met: perCpu / barePerCpu >= 0.9 && failed === 0,
    });

    if (useAb) {
      progress('outbound: 2,000 plain requests to the outbound listener (a 502 each: the upstream is closed)');
      await ab(`http://127.0.0.1:${outbound}/hello`, { keepAlive: true, concurrency: 4, requests: 2000 });
    }
    const loadedRss = rssMb(sidecar.pid);
    const proxiedCount = (requests * 4 + (useAb ? 2000 : 0)).toLocaleString('en-US');
    results.push({ name: `sidecar (inbound + outbound) RSS after ${proxiedCount}+ proxied requests (idle after start ${idleRss.toFixed(1)} MB)`, value: loadedRss, unit: 'MB', target: '<= 80 MB', met: loadedRss <= 80 });

    if (useAb) {
      const handshakes = async (pid: number, port: number): Promise<Measured> => measure(pid, () => ab(`https://127.0.0.1:${port}/hello`, { clientPem: client.both, keepAlive: false, concurrency: 16, requests: 3000 }));
      if (has('nginx')) {
        const conf = join(dir, 'nginx.conf');
        const nginxPort = 20_000 + Math.floor(Math.random() * 20_000);
        await writeFile(conf, nginxConfig(dir, nginxPort, appPort, server, caPath));
        const nginx = start(0, 'nginx', ['-c', conf, '-p', dir]);
        procs.push(nginx);
        await new Promise((r) => setTimeout(r, 500));
        if (nginx.child.exitCode !== null) throw new Error(`nginx: ${nginx.output()}`);
        progress('full mTLS handshakes (ab without -k, -c 16): meshca sidecar vs nginx, alternating');
        const ours: Measured[] = [];
        const theirs: Measured[] = [];
        for (let round = 0; round < 3; round++) {
          ours.push(await handshakes(sidecar.pid, inbound));
          theirs.push(await handshakes(nginx.pid, nginxPort));
        }
        const ourRate = median(ours.map((r) => r.rate));
        const theirRate = median(theirs.map((r) => r.rate));
        results.push({
          name: `sidecar: full mTLS handshakes/s (per proxy CPU-second: ${median(ours.map((r) => r.perCpuSecond)).toFixed(0)} vs ${median(theirs.map((r) => r.perCpuSecond)).toFixed(0)})`,
          value: ourRate,
          unit: 'conn/s',
          baselineName: 'nginx, one process',
          baseline: theirRate,
          ratio: ourRate / theirRate,
          target: '>= 0.9x',
          met: ourRate / theirRate >= 0.9,
        });
      } else {
        progress('nginx not installed (Debian nginx): no handshake baseline');
      }
    }

    progress('added latency at concurrency 1 (Node client, µs timing): direct vs through the sidecar');
    const tls = { cert: readFileSync(client.cert, 'utf8'), key: readFileSync(client.key, 'utf8'), ca: readFileSync(caPath, 'utf8') };
    const direct = await load({ url: `http://127.0.0.1:${appPort}/hello`, concurrency: 1, durationMs: 2000 });
    const proxied = await load({ url: `https://127.0.0.1:${inbound}/hello`, concurrency: 1, durationMs: 2000, tls });
    const added = proxied.p50 - direct.p50;
    results.push({ name: `sidecar added p50 latency, concurrency 1 (direct ${direct.p50.toFixed(3)} ms, proxied ${proxied.p50.toFixed(3)} ms)`, value: added, unit: 'ms', target: '<= 0.5 ms', met: added <= 0.5 && proxied.errors === 0 });

    await sidecar.stop();
    progress('meshca sidecar as the k8s example ships it (+ SVID files for the app, + the Workload API), same kept-alive load, for its RSS');
    const shipped = await startSidecar(true);
    const shippedIdleRss = rssMb(shipped.proc.pid);
    for (let round = 0; round < 4; round++) await keepAlive(shipped.proc.pid, shipped.inbound);
    if (useAb) await ab(`http://127.0.0.1:${shipped.outbound}/hello`, { keepAlive: true, concurrency: 4, requests: 2000 });
    const shippedRss = rssMb(shipped.proc.pid);
    results.push({ name: `sidecar as the k8s example ships it (+ files + Workload API) RSS after ${proxiedCount}+ requests (idle ${shippedIdleRss.toFixed(1)} MB)`, value: shippedRss, unit: 'MB' });
    await shipped.proc.stop();

    progress('meshca agent alone (--out), idle after its first SVID');
    await writeFile(join(dir, 'agent.token'), await ca.mint({ serviceAccount: 'helloworld', ttlSeconds: 3600 }), { mode: 0o600 });
    const agent = start(0, process.execPath, ['bin/meshca.js', 'agent', '--ca-address', ca.grpcAddress, '--ca-root', caPath, '--token-file', join(dir, 'agent.token'), '--out', join(dir, 'agent-out')]);
    procs.push(agent);
    await agent.waitFor(/X.509-SVID issued/);
    await new Promise((r) => setTimeout(r, 1000));
    const agentRss = rssMb(agent.pid);
    results.push({ name: 'meshca agent RSS, idle with an SVID', value: agentRss, unit: 'MB', target: '<= 70 MB', met: agentRss <= 70 });

    progress('CLI start-up: meshca --help, meshca inspect root-cert.pem (median of 5)');
    const help = await wallSeconds(['--help']);
    const inspect = await wallSeconds(['inspect', caPath]);
    results.push({ name: 'meshca --help wall time', value: help, unit: 's', target: '<= 0.35 s', met: help <= 0.35 });
    results.push({ name: 'meshca inspect wall time', value: inspect, unit: 's', target: '<= 0.35 s', met: inspect <= 0.35 });

    const footprint = {
      note: 'Written by `npm run bench -- sidecar`; test/unit/k8s/manifests.test.ts holds the k8s examples\' memory requests and limits against these figures.',
      measuredAt: new Date().toISOString(),
      node: process.version,
      sidecarNodeOptions: nodeOptions,
      sidecarRssMb: Math.ceil(Math.max(loadedRss, shippedRss)),
      agentRssMb: Math.ceil(agentRss),
    };
    await writeFile(join(dirname(fileURLToPath(import.meta.url)), 'footprint.json'), JSON.stringify(footprint, null, 2) + '\n');
  } finally {
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    await ca.close();
    await rm(dir, { recursive: true, force: true });
  }
  return results;
}
