/**
 * Real `meshca agent`s (startAgent, in-process) against a real CA from `startTestCa`, and the
 * small pieces the federation and rotation tests share: bounded waits on rotator events and
 * one-request mTLS clients.
 */
import { writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { request, type Agent } from 'node:https';
import { join } from 'node:path';
import type { SvidRotator, SvidRotatorEvents } from '../../src/agent/svid-rotator.js';
import { systemClock } from '../../src/clock.js';
import { startAgent, type RunningAgent } from '../../src/cmd/agent-command.js';
import { parseAgentConfig, type AgentOptionValues } from '../../src/config/agent-config.js';
import type { Logger } from '../../src/log.js';
import { silentLogger } from '../../src/log.js';
import type { X509Certificate } from 'node:crypto';
import type { TrustDomain } from '../../src/spiffe/trust-domain.js';
import { X509Bundle } from '../../src/spiffe/x509-bundle.js';
import { verifyX509Svid } from '../../src/spiffe/x509-svid.js';
import type { TestCa } from './test-ca-server.js';

/** Whether the rotator's current SVID chains to `root` (as a peer trusting only that root would see it). */
export function chainsTo(rotator: SvidRotator, td: TrustDomain, root: X509Certificate): boolean {
  try {
    verifyX509Svid(rotator.getX509Svid().certificates, new X509Bundle(td, [root]), { now: new Date() });
    return true;
  } catch {
    return false;
  }
}

/** Whether the rotator's bundle for `td` holds the root with this SHA-256 fingerprint. */
export function trusts(rotator: SvidRotator, td: TrustDomain, fingerprint: string): boolean {
  return rotator.getX509BundleForTrustDomain(td)?.authorities.some((c) => c.fingerprint256 === fingerprint) ?? false;
}

export interface TestAgentOptions {
  readonly dir: string;
  readonly serviceAccount: string;
  readonly trustDomain: string;
  readonly svidTtl?: string;
  readonly bundleRefresh?: string;
  readonly workloadApi?: boolean;
  /** Serve /healthz and /metrics on a loopback port chosen by the OS. */
  readonly health?: boolean;
  readonly out?: boolean;
  readonly federatedBundle?: readonly string[];
  readonly federatedBundleCa?: string;
  readonly logger?: Logger;
}

/** Mints a token for default/<sa> with the CA's dev issuer and starts an agent for it. */
export async function startTestAgent(ca: TestCa, options: TestAgentOptions): Promise<RunningAgent> {
  const sa = options.serviceAccount;
  const tokenFile = join(options.dir, `${sa}.token`);
  await writeFile(tokenFile, await ca.mint({ serviceAccount: sa, ttlSeconds: 3600 }), { mode: 0o600 });
  const values: AgentOptionValues = {
    caAddress: ca.grpcAddress,
    caRoot: join(ca.dataDir, 'root-cert.pem'),
    tokenFile,
    trustDomain: options.trustDomain,
    ...(options.out === false ? {} : { out: join(options.dir, `${sa}-out`) }),
    ...(options.workloadApi ? { workloadApiSocket: `unix://${join(options.dir, `${sa}.sock`)}` } : {}),
    svidTtl: options.svidTtl ?? '1h',
    key: 'ec-p256',
    hookTimeout: '10s',
    insecure: false,
    caTimeout: '10s',
    bundleRefresh: options.bundleRefresh ?? '1h',
    ...(options.health ? { healthListen: '127.0.0.1:0' } : {}),
    ...(options.federatedBundle ? { federatedBundle: options.federatedBundle } : {}),
    ...(options.federatedBundleCa ? { federatedBundleCa: options.federatedBundleCa } : {}),
  };
  return startAgent(parseAgentConfig(values), { clock: systemClock, logger: options.logger ?? silentLogger });
}

/**
 * The mTLS pair the rotation tests use: agents for default/helloworld (the server) and
 * default/sleep (the client), each holding a valid SVID when this resolves.
 */
export async function startHelloAndSleep(
  ca: TestCa,
  options: Omit<TestAgentOptions, 'serviceAccount'>,
): Promise<{ hello: RunningAgent; sleep: RunningAgent }> {
  const [hello, sleep] = await Promise.all([
    startTestAgent(ca, { ...options, serviceAccount: 'helloworld' }),
    startTestAgent(ca, { ...options, serviceAccount: 'sleep' }),
  ]);
  await Promise.all([hello.rotator.waitForSvid(), sleep.rotator.waitForSvid()]);
  return { hello, sleep };
}

/** Resolves with the next `event` payload for which `predicate` holds (earlier events are not replayed). */
export function waitForEvent<E extends keyof SvidRotatorEvents>(
  rotator: SvidRotator,
  event: E,
  predicate: (payload: SvidRotatorEvents[E]) => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<SvidRotatorEvents[E]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      rotator.off(event, listener);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const listener = (payload: SvidRotatorEvents[E]): void => {
      if (!predicate(payload)) return;
      clearTimeout(timer);
      rotator.off(event, listener);
      resolve(payload);
    };
    rotator.on(event, listener);
  });
}

/** Waits until `check()` holds, re-checking on every rotator event (no fixed sleeps). */
export async function waitUntil(rotators: readonly SvidRotator[], check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  if (check()) return;
  await new Promise<void>((resolve, reject) => {
    const listeners: [SvidRotator, () => void][] = [];
    const cleanup = (): void => {
      clearTimeout(timer);
      for (const [rotator, listener] of listeners) rotator.off('update', listener).off('bundle', listener);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    for (const rotator of rotators) {
      const listener = (): void => {
        if (!check()) return;
        cleanup();
        resolve();
      };
      listeners.push([rotator, listener]);
      rotator.on('update', listener).on('bundle', listener);
    }
  });
}

export interface MtlsResponse {
  readonly status: number;
  readonly body: string;
  /** Whether the request went out on a reused (kept-alive) connection. */
  readonly reused: boolean;
}

/** One GET through an mTLS `https.Agent` (from `createMtlsAgent`). */
export function mtlsGet(agent: Agent, port: number, path = '/hello', timeoutMs = 15_000): Promise<MtlsResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent, timeout: timeoutMs }, (res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, reused: req.reusedSocket }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Tears down what the rotation tests start: server (and its kept-alive sockets), agents, CA, dir. */
export async function stopAll(parts: {
  readonly server: import('node:https').Server | undefined;
  readonly agents: readonly (RunningAgent | undefined)[];
  readonly ca: TestCa | undefined;
  readonly dir: string | undefined;
}): Promise<void> {
  if (parts.server) {
    parts.server.closeAllConnections();
    await new Promise<void>((resolve) => parts.server!.close(() => resolve()));
  }
  await Promise.all(parts.agents.map((a) => a?.close()));
  await parts.ca?.close();
  if (parts.dir) await (await import('node:fs/promises')).rm(parts.dir, { recursive: true, force: true });
}
