import { X509Certificate, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { rotationTime } from '../agent/rotation.js';
import { LOOPBACK_CA_OPTIONS, parseCaServeConfig } from '../config/ca-serve-config.js';
import { formatDuration } from '../config/duration.js';
import { loadOrCreateDevIssuer } from '../files/dev-issuer-store.js';
import { createLogger } from '../log.js';
import { createSelfSignedRoot, loadAuthority } from '../pki/authority.js';
import { CertificateAuthority } from '../ca/certificate-authority.js';
import { createCsr } from '../pki/csr.js';
import { exportPrivateKeyPem, generateKey } from '../pki/keys.js';
import { parseSpiffeId } from '../spiffe/spiffe-id.js';
import { AGENT_DEFAULTS } from '../config/agent-config.js';
import { parseSidecarConfig, startSidecar, type RunningSidecar } from './sidecar-command.js';
import type { CliIo } from './cli-common.js';
import { startCa, type RunningCa } from './ca-runtime.js';

const HELLO_POLICY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: helloworld
  namespace: default
spec:
  selector:
    matchLabels:
      app: helloworld
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/hello"]
`;

interface Outcome {
  readonly status?: number;
  readonly body?: string;
  readonly error?: string;
}

function get(url: string, agent: https.Agent | undefined, options: https.RequestOptions = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = https.get(url, { agent, ...options }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ? `${err.code}: ${err.message}` : err.message }));
  });
}

function getPlain(url: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ? `${err.code}: ${err.message}` : err.message }));
  });
}

/** "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: …:tlsv13 alert certificate required:…" → the readable part. */
function shortTlsError(error: string): string {
  const alert = /alert ([a-z ]+):/.exec(error)?.[1];
  const code = error.split(':')[0];
  return alert ? `${code} (${alert})` : error.split('\n')[0]!;
}

async function listenOn(server: http.Server | https.Server, preferred: number): Promise<number> {
  const attempt = (port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        const address = server.address();
        resolve(typeof address === 'object' && address ? address.port : port);
      });
    });
  try {
    return await attempt(preferred);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    return attempt(0);
  }
}

/**
 * The whole story on one machine, no cluster: CA, two workloads with agents, a helloworld
 * service behind mTLS and policy, and four requests that show what identity buys.
 */
export function buildDemoCommand(io: CliIo): Command {
  return new Command('demo')
    .option('--keep', 'leave everything running for manual poking (Ctrl-C to stop)', false)
    .option('--dir <dir>', 'use this directory instead of a temporary one (kept afterwards)')
    .option('--port <port>', 'helloworld HTTPS port', '5000')
    .action(async (opts: { keep: boolean; dir?: string; port: string }) => {
      const out = io.stdout;
      const total = 8;
      let n = 0;
      const step = (text: string): void => void out.write(`\n[${++n}/${total}] ${text}\n`);
      const say = (text: string): void => void out.write(`      ${text}\n`);
      const failures: string[] = [];
      const check = (ok: boolean, text: string): void => {
        say(`${ok ? '✔' : '✘'} ${text}`);
        if (!ok) failures.push(text);
      };

      const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'meshca-demo-')));
      const dataDir = join(dir, 'ca');
      const logger = createLogger({ level: 'warn', destination: io.stderr });
      const cleanups: (() => Promise<void> | void)[] = [];
      try {
        step('Starting the CA (self-signed root for trust domain cluster.local, dev token issuer)');
        const ca: RunningCa = await startCa(
          parseCaServeConfig({ ...LOOPBACK_CA_OPTIONS, dataDir, signingWorkers: '0' }),
          { logger, clock: io.clock },
        );
        cleanups.push(() => ca.close());
        const rootFile = join(dataDir, 'root-cert.pem');
        const root = new X509Certificate(await readFile(rootFile));
        say(`gRPC (Istio CreateCertificate) on localhost:${ca.grpcPort}, HTTPS API on localhost:${ca.httpPort}`);
        say(`root ${root.subject} ${root.fingerprint256.slice(0, 23)}…`);

        step('Minting Kubernetes-shaped service-account tokens for default/helloworld and default/sleep');
        const { issuer } = await loadOrCreateDevIssuer(dataDir);
        for (const sa of ['helloworld', 'sleep']) {
          const token = await issuer.mint({ namespace: 'default', serviceAccount: sa, audience: 'istio-ca', podName: `${sa}-v1-${randomBytes(3).toString('hex')}`, now: io.clock.now() });
          await mkdir(join(dir, sa), { recursive: true });
          await writeFile(join(dir, sa, 'istio-token'), token, { mode: 0o600 });
          say(`${sa}: audience istio-ca, expires in 1h (${join(dir, sa, 'istio-token')})`);
        }

        step(`Starting helloworld: a plain HTTP app on loopback, no TLS of its own`);
        const instance = `helloworld-v1-${randomBytes(4).toString('hex')}`;
        const app = http.createServer((req, res) => {
          const path = (req.url ?? '/').split('?')[0];
          if (path === '/hello' || path === '/hello3') {
            res.writeHead(200, { 'content-type': 'text/plain' }).end(`Hello version: v1, instance: ${instance}\n`);
          } else {
            res.writeHead(404).end('not found\n');
          }
        });
        await listenOn(app, 0);
        cleanups.push(() => new Promise<void>((r) => app.close(() => r())));
        const appPort = (app.address() as { port: number }).port;
        const policyFile = join(dir, 'helloworld-policy.yaml');
        await writeFile(policyFile, HELLO_POLICY);
        say(`http://127.0.0.1:${appPort}; policy "only sleep may GET /hello" in ${policyFile}`);

        step('Starting one meshca sidecar per pod: agent (local key, CSR over gRPC) + proxies, SVID shared in memory');
        const sidecarOf = async (sa: string, flags: Partial<Parameters<typeof parseSidecarConfig>[0]>): Promise<RunningSidecar> => {
          const config = parseSidecarConfig({
            ...AGENT_DEFAULTS,
            caAddress: `localhost:${ca.grpcPort}`,
            caRoot: rootFile,
            tokenFile: join(dir, sa, 'istio-token'),
            trustDomain: 'cluster.local',
            out: join(dir, sa, 'certs'),
            workloadApiSocket: join(dir, sa, 'workload.sock'),
            meshWidePolicy: false,
            accessLog: false,
            logLevel: 'warn',
            ...flags,
          });
          const sidecar = await startSidecar(config, { clock: io.clock, logger });
          cleanups.push(() => sidecar!.close());
          return sidecar!;
        };
        // helloworld's sidecar on the preferred port (the one the printed commands use), else any.
        const inbound = { inboundUpstream: `http://127.0.0.1:${appPort}`, policy: policyFile, namespace: 'default', workloadLabels: 'app=helloworld' };
        const helloworld = await sidecarOf('helloworld', { ...inbound, inboundListen: `127.0.0.1:${opts.port}` }).catch((err: NodeJS.ErrnoException) =>
          err.code === 'EADDRINUSE' ? sidecarOf('helloworld', { ...inbound, inboundListen: '127.0.0.1:0' }) : Promise.reject(err),
        );
        const port = helloworld.inboundPort!;
        const sleep = await sidecarOf('sleep', {
          outboundListen: '127.0.0.1:0',
          outboundUpstream: `https://localhost:${port}`,
          outboundSpiffeId: 'spiffe://cluster.local/ns/default/sa/helloworld',
        });
        for (const sidecar of [helloworld, sleep]) {
          await sidecar.agent.idle(); // the files the printed commands use are written
          const svid = sidecar.agent.rotator.getX509Svid();
          const next = rotationTime(svid);
          say(`${svid.id}  valid ${formatDuration((svid.notAfter.getTime() - io.clock.now().getTime()) / 1000)}, next rotation ${next.toISOString()} (${formatDuration((next.getTime() - io.clock.now().getTime()) / 1000)})`);
        }
        say(`helloworld: mTLS + policy on https://localhost:${port}${port === Number(opts.port) ? '' : ` (port ${opts.port} was busy)`}  →  the app`);
        say(`sleep: plain http://127.0.0.1:${sleep.outboundPort}  →  mTLS to helloworld, accepting only spiffe://cluster.local/ns/default/sa/helloworld`);

        step('sleep → GET /hello through both sidecars (allowed by policy)');
        const allowed = await getPlain(`http://127.0.0.1:${sleep.outboundPort}/hello`);
        say(`HTTP ${allowed.status ?? '-'}  ${allowed.body ?? allowed.error}`);
        check(allowed.status === 200 && /^Hello version: v1, instance: /.test(allowed.body ?? ''), 'sleep reaches helloworld over mTLS; helloworld verified sleep by SPIFFE ID');

        step('sleep → GET /hello3 (not in the policy)');
        const denied = await getPlain(`http://127.0.0.1:${sleep.outboundPort}/hello3`);
        say(`HTTP ${denied.status ?? '-'}  ${denied.body ?? denied.error}`);
        check(denied.status === 403, 'a valid identity outside policy gets 403');

        step('Clients without a mesh identity');
        const helloRoot = await readFile(join(dir, 'helloworld', 'certs', 'root-cert.pem'), 'utf8');
        const noCert = await get(`https://localhost:${port}/hello`, new https.Agent({ ca: helloRoot, checkServerIdentity: () => undefined }));
        say(`no client certificate  →  ${noCert.error ? shortTlsError(noCert.error) : `HTTP ${noCert.status}`}`);
        check(noCert.error !== undefined && /certificate required|CERTIFICATE_REQUIRED|ECONNRESET|socket hang up/i.test(noCert.error), 'refused at the TLS handshake (certificate required)');

        const foreignRoot = await createSelfSignedRoot({ trustDomain: 'evil.example', now: io.clock.now() });
        const foreignCa = new CertificateAuthority({ authority: loadAuthority({ certPem: foreignRoot.certPem, keyPem: foreignRoot.keyPem, rootPem: foreignRoot.certPem }, io.clock.now()), clock: io.clock });
        const { privateKey } = await generateKey('ec-p256');
        const foreignId = parseSpiffeId('spiffe://evil.example/ns/default/sa/sleep');
        const foreignSvid = await foreignCa.sign(createCsr(privateKey, { uris: [foreignId.toString()] }).pem, foreignId);
        const foreign = await get(
          `https://localhost:${port}/hello`,
          new https.Agent({ ca: helloRoot, cert: foreignSvid.certChainPem.join(''), key: exportPrivateKeyPem(privateKey), checkServerIdentity: () => undefined }),
        );
        say(`${foreignId} (another trust domain)  →  ${foreign.error ? `${shortTlsError(foreign.error)} (the server dropped the handshake)` : `HTTP ${foreign.status}`}`);
        check(foreign.error !== undefined, 'refused: its CA is not in the cluster.local trust bundle');

        step('Check it yourself');
        // Without --keep the servers stop and the files go when the demo ends: say so first,
        // rather than print commands that would then fail.
        if (!opts.keep) say(`These need the demo running: start it with ${demoCommand()} --keep and try them from another terminal.`);
        const sleepCerts = join(dir, 'sleep', 'certs');
        const helloCerts = join(dir, 'helloworld', 'certs');
        say(`openssl x509 -in ${join(helloCerts, 'cert-chain.pem')} -noout -text`);
        say(`openssl verify -x509_strict -CAfile ${rootFile} ${join(sleepCerts, 'cert-chain.pem')}`);
        say(`openssl s_client -connect localhost:${port} -cert ${join(sleepCerts, 'cert-chain.pem')} -key ${join(sleepCerts, 'key.pem')} -CAfile ${join(sleepCerts, 'root-cert.pem')}`);
        say(`curl --cacert ${join(sleepCerts, 'root-cert.pem')} --cert ${join(sleepCerts, 'cert-chain.pem')} --key ${join(sleepCerts, 'key.pem')} -k https://localhost:${port}/hello`);
        say('  (curl can only check hostnames, so -k skips the server check here; helloworld still verifies sleep)');
        say(`curl http://127.0.0.1:${sleep.outboundPort}/hello   (as sleep's app: plain HTTP, its sidecar does the mTLS)`);
        say(`${cliCommand()} inspect ${join(sleepCerts, 'cert-chain.pem')}`);

        out.write(`\n${failures.length === 0 ? 'All checks passed.' : `${failures.length} check(s) FAILED: ${failures.join('; ')}`}\n`);
        if (opts.keep) {
          out.write(`Everything is still running (files in ${dir}). Press Ctrl-C to stop.\n`);
          await new Promise<void>((resolve) => {
            process.once('SIGINT', resolve);
            process.once('SIGTERM', resolve);
          });
        }
        if (failures.length > 0) process.exitCode = 1;
      } finally {
        for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
        if (!opts.dir) await rm(dir, { recursive: true, force: true });
      }
    });
}

/** How the user runs meshca: from a checkout (`npm run -s meshca --`, no banner in the output) or installed. */
function cliCommand(): string {
  return fromCheckout() ? 'npm run -s meshca --' : 'meshca';
}

function demoCommand(): string {
  return fromCheckout() ? 'npm run demo --' : 'meshca demo';
}

function fromCheckout(): boolean {
  return /\.ts$/.test(process.argv[1] ?? '');
}
