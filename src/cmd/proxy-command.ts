import type { Server } from 'node:net';
import { Command, Option } from 'commander';
import { systemClock } from '../clock.js';
import { parseDurationSeconds } from '../config/duration.js';
import { parseListen, type ListenAddress } from '../config/listen.js';
import { ConfigError } from '../errors.js';
import type { PolicyEngine } from '../policy/index.js';
import type { WorkloadScope } from '../proxy/workload-scope.js';
import type { PolicyReloader } from '../sidecar/policy-reloader.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import type { X509Source } from '../tls/index.js';
import { parseTrustDomainFlag, trustDomainOption, type CliIo } from './cli-common.js';

interface ProxyOptions {
  listen: string;
  upstream: string;
  policy?: string;
  meshWidePolicy: boolean;
  workloadApiSocket?: string;
  svidDir?: string;
  trustDomain: string;
  namespace?: string;
  workloadLabels?: string;
  appPort?: string;
  outbound: boolean;
  upstreamSpiffeId?: string;
  upstreamTrustDomain?: string;
  healthListen?: string;
  accessLog: boolean;
  maxConnectionAge?: string;
  logLevel: string;
}

function parseLabels(value: string | undefined, problems: string[]): Record<string, string> | undefined {
  if (!value) return undefined;
  const labels: Record<string, string> = {};
  for (const pair of value.split(',')) {
    const [k, v, ...rest] = pair.split('=');
    if (!k?.trim() || v === undefined || rest.length > 0) problems.push(`--workload-labels ${JSON.stringify(pair)} must be key=value`);
    else labels[k.trim()] = v.trim();
  }
  return labels;
}

function parsePort(value: string | undefined, flag: string, problems: string[]): number | undefined {
  if (value === undefined) return undefined;
  const port = Number(value);
  if (!/^\d{1,5}$/.test(value) || port < 1 || port > 65535) {
    problems.push(`${flag} ${JSON.stringify(value)} must be a port number`);
    return undefined;
  }
  return port;
}

/**
 * What the proxy loads when it starts, not before: `meshca --help` and every other command stay
 * free of undici, prom-client, the policy compilers and (for --svid-dir) grpc-js.
 */
async function loadProxyModules() {
  const [policyFile, policy, scope, health, inbound, outbound, reloader, metrics, spiffeId, tls, log] = await Promise.all([
    import('../files/policy-file.js'),
    import('../policy/index.js'),
    import('../proxy/workload-scope.js'),
    import('../sidecar/health-server.js'),
    import('../sidecar/inbound-proxy.js'),
    import('../sidecar/outbound-proxy.js'),
    import('../sidecar/policy-reloader.js'),
    import('../sidecar/proxy-metrics.js'),
    import('../spiffe/spiffe-id.js'),
    import('../tls/index.js'),
    import('../log.js'),
  ]);
  return { ...policyFile, ...policy, ...scope, ...health, ...inbound, ...outbound, ...reloader, ...metrics, ...spiffeId, ...tls, ...log };
}
type ProxyModules = Awaited<ReturnType<typeof loadProxyModules>>;

/** Loads, compiles and checks a policy text for this workload; throws `ConfigError` to refuse it. */
function policyLoader(m: ProxyModules, path: string, trustDomain: TrustDomain, scope: WorkloadScope, self: X509Source, meshWide: boolean): (text: string) => PolicyEngine {
  const { parsePolicyYaml, compilePolicies, requireApplicablePolicy } = m;
  return (text) => {
    // A policy without metadata.namespace is in the workload's namespace, as `kubectl apply` places it.
    const loaded = parsePolicyYaml(text, path, { defaultNamespace: scope.namespace });
    const engine = compilePolicies(loaded.policies, { trustDomain, namespace: scope.namespace, workloadLabels: scope.labels });
    requireApplicablePolicy(engine, path, self.getX509Svid().id, meshWide);
    return engine;
  };
}

async function listenOn(server: Server, address: ListenAddress, what: string): Promise<number> {
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

/**
 * `meshca proxy`: mTLS and authorization for services in any language. Inbound, it terminates
 * mTLS in front of a plain HTTP app and enforces policy scoped by the workload's own SVID; with
 * --outbound, it lets a plain client reach an mTLS service with the workload's own SVID.
 */
export function buildProxyCommand(io: CliIo): Command {
  const env = io.env;
  return new Command('proxy')
    .addOption(new Option('--listen <host:port>', 'address to listen on').env('MESHCA_PROXY_LISTEN').makeOptionMandatory())
    .addOption(new Option('--upstream <url>', 'inbound: the app, http://127.0.0.1:8080; outbound: the mTLS service, https://host:port').env('MESHCA_PROXY_UPSTREAM').makeOptionMandatory())
    .addOption(new Option('--policy <file.yaml>', 'Istio AuthorizationPolicy / CiliumNetworkPolicy YAML (inbound); re-read when it changes').env('MESHCA_POLICY'))
    .addOption(new Option('--mesh-wide-policy', 'the policy file holds the whole mesh: if none of it applies to this workload, allow every peer (Istio semantics) instead of refusing to start').env('MESHCA_MESH_WIDE_POLICY').default(false))
    .addOption(new Option('--workload-api-socket <path>', 'get the SVID from the SPIFFE Workload API (default $SPIFFE_ENDPOINT_SOCKET unless --svid-dir is given)'))
    .addOption(new Option('--svid-dir <dir>', 'get the SVID from cert-chain.pem, key.pem, root-cert.pem in this directory').env('MESHCA_SVID_DIR'))
    .addOption(trustDomainOption(io))
    .addOption(new Option('--namespace <ns>', 'namespace of the protected workload; must agree with its SVID').env('POD_NAMESPACE'))
    .addOption(new Option('--workload-labels <k=v,...>', 'pod labels of the protected workload (app, version...) for policy selectors; the service account and namespace labels come from its SVID').env('MESHCA_WORKLOAD_LABELS'))
    .addOption(new Option('--app-port <port>', "the app's port, which policies name in ports/toPorts (default: --upstream's port)").env('MESHCA_APP_PORT'))
    .option('--outbound', 'originate mTLS to --upstream for a plain local client', false)
    .addOption(new Option('--upstream-spiffe-id <id>', 'outbound: the SPIFFE ID the upstream must present').env('MESHCA_UPSTREAM_SPIFFE_ID'))
    .addOption(new Option('--upstream-trust-domain <td>', 'outbound: accept any upstream in this trust domain'))
    .addOption(new Option('--health-listen <host:port>', 'serve GET /healthz, /ready and /metrics here').env('MESHCA_HEALTH_LISTEN'))
    .addOption(new Option('--no-access-log', 'do not log a line per request').env('MESHCA_NO_ACCESS_LOG'))
    .addOption(new Option('--max-connection-age <duration>', "close client connections after this long (default: when the client's certificate expires)").env('MESHCA_MAX_CONNECTION_AGE'))
    .addOption(new Option('--log-level <level>', 'log level').default(env['MESHCA_LOG_LEVEL'] ?? 'info'))
    .action(async (opts: ProxyOptions) => {
      const problems: string[] = [];
      const listen = parseListen(opts.listen, '--listen', problems);
      const healthListen = opts.healthListen === undefined ? undefined : parseListen(opts.healthListen, '--health-listen', problems);
      const appPort = parsePort(opts.appPort, '--app-port', problems);
      let upstream: URL | undefined;
      try {
        upstream = new URL(opts.upstream);
        const want = opts.outbound ? 'https:' : 'http:';
        if (upstream.protocol !== want) problems.push(`--upstream must be an ${want}// URL ${opts.outbound ? 'with --outbound' : 'for the inbound proxy'}`);
      } catch {
        problems.push(`--upstream ${JSON.stringify(opts.upstream)} is not a URL`);
      }
      // An ambient SPIFFE_ENDPOINT_SOCKET is only a default: --svid-dir wins over it.
      const socket = opts.workloadApiSocket ?? (opts.svidDir === undefined ? env['SPIFFE_ENDPOINT_SOCKET'] : undefined);
      if (!socket === !opts.svidDir) problems.push('give exactly one of --workload-api-socket (or SPIFFE_ENDPOINT_SOCKET) and --svid-dir');
      if (opts.outbound && !opts.upstreamSpiffeId && !opts.upstreamTrustDomain) problems.push('--outbound needs --upstream-spiffe-id or --upstream-trust-domain');
      if (opts.outbound && opts.policy) problems.push('--policy applies to the inbound proxy only');
      const labels = parseLabels(opts.workloadLabels, problems);
      let maxConnectionAgeMs: number | undefined;
      if (opts.maxConnectionAge !== undefined) {
        try {
          maxConnectionAgeMs = parseDurationSeconds(opts.maxConnectionAge, '--max-connection-age') * 1000;
        } catch (err) {
          problems.push((err as Error).message);
        }
      }
      let trustDomain: TrustDomain | undefined;
      try {
        trustDomain = parseTrustDomainFlag(opts.trustDomain);
      } catch (err) {
        problems.push(...(err as ConfigError).problems);
      }
      if (problems.length > 0 || !upstream || !trustDomain || !listen) throw new ConfigError(problems);

      const m = await loadProxyModules();
      const { createLogger, createX509SourceFromFiles, ProxyMetrics, createOutboundProxy, authorizeId, authorizeMemberOf, parseSpiffeId, workloadScopeOf, PolicyReloader, createInboundProxy, createHealthServer } = m;
      const logger = createLogger({ level: opts.logLevel, destination: io.stderr });
      const clock = systemClock;
      // Whatever started is stopped on the way out, last first: a start-up failure leaves nothing running.
      const opened: (() => unknown)[] = [];
      const closeAll = async (): Promise<void> => {
        for (const close of opened.reverse()) await Promise.resolve(close()).catch(() => undefined);
      };
      try {
        const source: X509Source = opts.svidDir
          ? await createX509SourceFromFiles({
              certChainPath: `${opts.svidDir}/cert-chain.pem`,
              keyPath: `${opts.svidDir}/key.pem`,
              bundlePath: `${opts.svidDir}/root-cert.pem`,
              trustDomain,
            })
          : await (await import('../transport/grpc/workload-api-client.js')).createWorkloadApiX509Source({ socket: socket!, logger });
        opened.push(() => source.close());
        const self = source.getX509Svid().id;
        let proxy: (Server & { openConnections?: () => number }) | undefined;
        const metrics = new ProxyMetrics({ defaultMetrics: true, openConnections: () => proxy?.openConnections?.() ?? 0 });
        let reloader: PolicyReloader | undefined;
        if (opts.outbound) {
          const expected = opts.upstreamSpiffeId ?? `a member of trust domain ${opts.upstreamTrustDomain}`;
          proxy = createOutboundProxy({
            source,
            upstream,
            authorizer: opts.upstreamSpiffeId ? authorizeId(parseSpiffeId(opts.upstreamSpiffeId)) : authorizeMemberOf(parseTrustDomainFlag(opts.upstreamTrustDomain!)),
            expected,
            logger,
            accessLog: opts.accessLog,
            onRequest: metrics.record,
          });
        } else {
          const scope = workloadScopeOf(self, trustDomain, { namespace: opts.namespace, labels });
          if (opts.policy !== undefined) {
            reloader = await PolicyReloader.start({
              path: opts.policy,
              load: policyLoader(m, opts.policy, trustDomain, scope, source, opts.meshWidePolicy),
              logger,
              clock,
              onReload: (result) => metrics.policyReloads.inc({ result }),
            });
            opened.push(() => reloader?.close());
            const engine = reloader.current();
            logger.info({ policy: opts.policy, spiffeId: self.toString(), namespace: scope.namespace, applied: engine.appliedPolicies.map((p) => `${p.kind} ${p.policy}`), ignored: engine.ignoredPolicies.map((p) => `${p.kind} ${p.policy}: ${p.reason}`) }, 'policy loaded');
          }
          proxy = createInboundProxy({
            source,
            upstream,
            logger,
            accessLog: opts.accessLog,
            onRequest: metrics.record,
            clock,
            ...(appPort === undefined ? {} : { appPort }),
            ...(maxConnectionAgeMs === undefined ? {} : { maxConnectionAgeMs }),
            ...(reloader === undefined ? {} : { policy: reloader }),
          });
        }
        const server = proxy;
        opened.push(() => closeServer(server));
        const port = await listenOn(proxy, listen, 'proxy');
        if (healthListen !== undefined) {
          const health = createHealthServer({
            registry: metrics.registry,
            notReady: () => svidProblem(source, clock.now()),
            notes: () => (reloader?.lastError === undefined ? [] : [`policy: the last change to ${opts.policy} was refused, the previous policy stays in force: ${reloader.lastError}`]),
          });
          opened.push(() => closeServer(health));
          const healthPort = await listenOn(health, healthListen, 'health');
          logger.info({ listen: `${healthListen.host}:${healthPort}` }, 'health and metrics listening');
        }
        logger.info({ mode: opts.outbound ? 'outbound' : 'inbound', listen: `${listen.host}:${port}`, upstream: upstream.origin, spiffeId: self.toString() }, 'meshca proxy listening');
        io.stdout.write(`meshca proxy ready: ${opts.outbound ? 'outbound' : 'inbound'} on port ${port}\n`);
        await waitForSignal();
      } finally {
        await closeAll();
      }
    });
}

function svidProblem(source: X509Source, now: Date): string | undefined {
  try {
    const svid = source.getX509Svid();
    return svid.notAfter.getTime() <= now.getTime() ? `the SVID ${svid.id.toString()} expired at ${svid.notAfter.toISOString()}` : undefined;
  } catch (err) {
    return `no SVID: ${(err as Error).message}`;
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    // Kept-alive clients would hold close() open.
    (server as { closeAllConnections?: () => void }).closeAllConnections?.();
  });
}

function waitForSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
