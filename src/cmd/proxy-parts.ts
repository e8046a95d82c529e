/**
 * The inbound and outbound proxies as `meshca proxy` and `meshca sidecar` start them: flag
 * checks, the policy file and its reloader, listening, and stopping. Both roots wire the same
 * parts, so a sidecar's enforcement point is exactly the standalone proxy's.
 */
import type { Server } from 'node:net';
import type { Clock } from '../clock.js';
import { parseDurationSeconds } from '../config/duration.js';
import type { ListenAddress } from '../config/listen.js';
import type { ListenerLimits } from '../config/listener-limits.js';
import type { Logger } from '../log.js';
import type { PolicyEngine } from '../policy/index.js';
import type { WorkloadScope } from '../proxy/workload-scope.js';
import type { PolicyReloader } from '../sidecar/policy-reloader.js';
import type { ProxyMetrics } from '../sidecar/proxy-metrics.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import type { X509Source } from '../tls/index.js';

/**
 * What a proxy loads when it starts, not before: `meshca --help` and every other command stay
 * free of undici, the metrics and the policy compilers.
 */
export async function loadProxyModules() {
  const [policyFile, policy, scope, health, inbound, outbound, reloader, metrics, spiffeId, trustDomainFlag, tls, limits] = await Promise.all([
    import('../files/policy-file.js'),
    import('../policy/index.js'),
    import('../proxy/workload-scope.js'),
    import('../transport/health-server.js'),
    import('../sidecar/inbound-proxy.js'),
    import('../sidecar/outbound-proxy.js'),
    import('../sidecar/policy-reloader.js'),
    import('../sidecar/proxy-metrics.js'),
    import('../spiffe/spiffe-id.js'),
    import('../config/trust-domain-flag.js'),
    import('../tls/index.js'),
    import('../transport/connection-limits.js'),
  ]);
  return { ...policyFile, ...policy, ...scope, ...health, ...inbound, ...outbound, ...reloader, ...metrics, ...spiffeId, ...trustDomainFlag, ...tls, ...limits };
}
export type ProxyModules = Awaited<ReturnType<typeof loadProxyModules>>;

/** `k=v,k=v` pod labels; `flag` names the flag in problems. */
export function parseLabels(value: string | undefined, flag: string, problems: string[]): Record<string, string> | undefined {
  if (!value) return undefined;
  const labels: Record<string, string> = {};
  for (const pair of value.split(',')) {
    const [k, v, ...rest] = pair.split('=');
    if (!k?.trim() || v === undefined || rest.length > 0) problems.push(`${flag} ${JSON.stringify(pair)} must be key=value`);
    else labels[k.trim()] = v.trim();
  }
  return labels;
}

export function parsePort(value: string | undefined, flag: string, problems: string[]): number | undefined {
  if (value === undefined) return undefined;
  const port = Number(value);
  if (!/^\d{1,5}$/.test(value) || port < 1 || port > 65535) {
    problems.push(`${flag} ${JSON.stringify(value)} must be a port number`);
    return undefined;
  }
  return port;
}

/** An `http://` (the app, inbound) or `https://` (the mTLS service, outbound) upstream URL. */
export function parseUpstreamUrl(value: string, flag: string, protocol: 'http:' | 'https:', why: string, problems: string[]): URL | undefined {
  try {
    const url = new URL(value);
    if (url.protocol === protocol) return url;
    problems.push(`${flag} must be an ${protocol}// URL ${why}`);
  } catch {
    problems.push(`${flag} ${JSON.stringify(value)} is not a URL`);
  }
  return undefined;
}

export function parseDurationMs(value: string | undefined, flag: string, problems: string[]): number | undefined {
  if (value === undefined) return undefined;
  try {
    return parseDurationSeconds(value, flag) * 1000;
  } catch (err) {
    problems.push((err as Error).message);
    return undefined;
  }
}

/** Stops, last first, what a root started: a start-up failure or a signal leaves nothing running. */
export class Closers {
  readonly #closers: (() => unknown)[] = [];

  add(close: () => unknown): void {
    this.#closers.push(close);
  }

  async closeAll(): Promise<void> {
    for (const close of this.#closers.splice(0).reverse()) await Promise.resolve(close()).catch(() => undefined);
  }
}

export interface InboundPartOptions {
  readonly source: X509Source;
  readonly trustDomain: TrustDomain;
  readonly listen: ListenAddress;
  readonly upstream: URL;
  readonly policyPath?: string;
  readonly meshWidePolicy: boolean;
  /** The pod's namespace as the operator states it; must agree with the SVID. */
  readonly namespace?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly appPort?: number;
  readonly maxConnectionAgeMs?: number;
  readonly accessLog: boolean;
  readonly metrics: ProxyMetrics;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly closers: Closers;
  /** The listener's connection cap and timeouts (--max-connections, --idle-timeout). */
  readonly limits: ListenerLimits;
}

export interface StartedPart {
  readonly server: Server & { openConnections?: () => number };
  readonly port: number;
}

export interface StartedInbound extends StartedPart {
  readonly reloader: PolicyReloader | undefined;
}

/**
 * Loads the policy for this workload (scoped by its own SVID; refused unless some of it applies,
 * see workload-scope.ts), then listens. Throws `ConfigError` to refuse a start.
 */
export async function startInbound(m: ProxyModules, o: InboundPartOptions): Promise<StartedInbound> {
  const self = o.source.getX509Svid().id;
  const scope = m.workloadScopeOf(self, o.trustDomain, { namespace: o.namespace, labels: o.labels });
  let reloader: PolicyReloader | undefined;
  if (o.policyPath !== undefined) {
    const path = o.policyPath;
    const started = await m.PolicyReloader.start({
      path,
      load: policyLoader(m, path, o.trustDomain, scope, o.source, o.meshWidePolicy),
      logger: o.logger,
      clock: o.clock,
      onReload: (result) => o.metrics.policyReloads.inc({ result }),
    });
    reloader = started;
    o.closers.add(() => started.close());
    const engine = started.current();
    o.logger.info(
      {
        policy: path,
        spiffeId: self.toString(),
        namespace: scope.namespace,
        applied: engine.appliedPolicies.map((p) => `${p.kind} ${p.policy}`),
        ignored: engine.ignoredPolicies.map((p) => `${p.kind} ${p.policy}: ${p.reason}`),
      },
      'policy loaded',
    );
  }
  const server = m.createInboundProxy({
    source: o.source,
    upstream: o.upstream,
    logger: o.logger,
    accessLog: o.accessLog,
    onRequest: o.metrics.record,
    clock: o.clock,
    ...(o.appPort === undefined ? {} : { appPort: o.appPort }),
    ...(o.maxConnectionAgeMs === undefined ? {} : { maxConnectionAgeMs: o.maxConnectionAgeMs }),
    ...(reloader === undefined ? {} : { policy: reloader }),
    limits: o.limits,
  });
  m.capConnections(server, 'inbound', o.limits, { logger: o.logger, metrics: o.metrics.connections });
  o.closers.add(() => closeServer(server));
  const port = await listenOn(server, o.listen, 'inbound proxy');
  return { server, port, reloader };
}

export interface OutboundPartOptions {
  readonly source: X509Source;
  readonly listen: ListenAddress;
  readonly upstream: URL;
  /** The one identity the upstream must present, or any member of `upstreamTrustDomain`. */
  readonly upstreamSpiffeId?: string;
  readonly upstreamTrustDomain?: string;
  readonly accessLog: boolean;
  readonly metrics: ProxyMetrics;
  readonly logger: Logger;
  readonly closers: Closers;
  /** The listener's connection cap and timeouts (--max-connections, --idle-timeout). */
  readonly limits: ListenerLimits;
}

export async function startOutbound(m: ProxyModules, o: OutboundPartOptions): Promise<StartedPart> {
  const authorizer =
    o.upstreamSpiffeId !== undefined ? m.authorizeId(m.parseSpiffeId(o.upstreamSpiffeId)) : m.authorizeMemberOf(m.parseTrustDomainFlag(o.upstreamTrustDomain ?? '', '--upstream-trust-domain'));
  const server = m.createOutboundProxy({
    source: o.source,
    upstream: o.upstream,
    authorizer,
    expected: o.upstreamSpiffeId ?? `a member of trust domain ${o.upstreamTrustDomain}`,
    logger: o.logger,
    accessLog: o.accessLog,
    onRequest: o.metrics.record,
    limits: o.limits,
  });
  m.capConnections(server, 'outbound', o.limits, { logger: o.logger, metrics: o.metrics.connections });
  o.closers.add(() => closeServer(server));
  const port = await listenOn(server, o.listen, 'outbound proxy');
  return { server, port };
}

/** Loads, compiles and checks a policy text for this workload; throws `ConfigError` to refuse it. */
function policyLoader(m: ProxyModules, path: string, trustDomain: TrustDomain, scope: WorkloadScope, self: X509Source, meshWide: boolean): (text: string) => PolicyEngine {
  return (text) => {
    // A policy without metadata.namespace is in the workload's namespace, as `kubectl apply` places it.
    const loaded = m.parsePolicyYaml(text, path, { defaultNamespace: scope.namespace });
    const engine = m.compilePolicies(loaded.policies, { trustDomain, namespace: scope.namespace, workloadLabels: scope.labels });
    m.requireApplicablePolicy(engine, path, self.getX509Svid().id, meshWide);
    return engine;
  };
}

export async function listenOn(server: Server, address: ListenAddress, what: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    // A bind failure is the operator's to fix, not a crash: one line (see reportCliError), exit 1.
    const onError = (err: NodeJS.ErrnoException): void =>
      reject(Object.assign(new Error(`${what}: cannot listen on ${address.host}:${address.port}: ${err.code ?? err.message}`, { cause: err }), { code: err.code }));
    server.once('error', onError);
    server.listen(address.port, address.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const bound = server.address();
  return typeof bound === 'object' && bound ? bound.port : address.port;
}

export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    // Kept-alive clients would hold close() open.
    (server as { closeAllConnections?: () => void }).closeAllConnections?.();
  });
}

/** Why the source cannot serve (no SVID, or it expired), one line; undefined when it can. */
export function svidProblem(source: X509Source, now: Date): string | undefined {
  try {
    const svid = source.getX509Svid();
    return svid.notAfter.getTime() <= now.getTime() ? `the SVID ${svid.id.toString()} expired at ${svid.notAfter.toISOString()}` : undefined;
  } catch (err) {
    return `no SVID: ${(err as Error).message}`;
  }
}

/** `/ready`'s note while a refused policy change leaves the previous policy in force. */
export function policyNotes(reloader: PolicyReloader | undefined, path: string | undefined): string[] {
  return reloader?.lastError === undefined ? [] : [`policy: the last change to ${path} was refused, the previous policy stays in force: ${reloader.lastError}`];
}
