import { parseProxyLimits } from '../config/listener-limits.js';
import { Command, Option } from 'commander';
import { systemClock } from '../clock.js';
import { parseListen } from '../config/listen.js';
import { ConfigError } from '../errors.js';
import type { PolicyReloader } from '../sidecar/policy-reloader.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import type { X509Source } from '../tls/index.js';
import { parseTrustDomainFlag, trustDomainOption, waitForStopSignal, type CliIo } from './cli-common.js';
import {
  Closers,
  closeServer,
  listenOn,
  loadProxyModules,
  parseDurationMs,
  parseLabels,
  parsePort,
  parseUpstreamUrl,
  policyNotes,
  startInbound,
  startOutbound,
  svidProblem,
  type StartedPart,
} from './proxy-parts.js';

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
  maxConnections?: string;
  idleTimeout?: string;
  logLevel: string;
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
    .addOption(new Option('--max-connections <n|auto>', 'open client connections; auto: 40% of the file-descriptor room').env('MESHCA_MAX_CONNECTIONS'))
    .addOption(new Option('--idle-timeout <duration>', 'close a kept-alive client connection idle this long (default 60s)').env('MESHCA_IDLE_TIMEOUT'))
    .addOption(new Option('--max-connection-age <duration>', "close client connections after this long (default: when the client's certificate expires)").env('MESHCA_MAX_CONNECTION_AGE'))
    .addOption(new Option('--log-level <level>', 'log level').default(env['MESHCA_LOG_LEVEL'] ?? 'info'))
    .action(async (opts: ProxyOptions) => {
      const problems: string[] = [];
      const listen = parseListen(opts.listen, '--listen', problems);
      const healthListen = opts.healthListen === undefined ? undefined : parseListen(opts.healthListen, '--health-listen', problems);
      const appPort = parsePort(opts.appPort, '--app-port', problems);
      const upstream = opts.outbound
        ? parseUpstreamUrl(opts.upstream, '--upstream', 'https:', 'with --outbound', problems)
        : parseUpstreamUrl(opts.upstream, '--upstream', 'http:', 'for the inbound proxy', problems);
      // An ambient SPIFFE_ENDPOINT_SOCKET is only a default: --svid-dir wins over it.
      const socket = opts.workloadApiSocket ?? (opts.svidDir === undefined ? env['SPIFFE_ENDPOINT_SOCKET'] : undefined);
      if (!socket === !opts.svidDir) problems.push('give exactly one of --workload-api-socket (or SPIFFE_ENDPOINT_SOCKET) and --svid-dir');
      if (opts.outbound && !opts.upstreamSpiffeId && !opts.upstreamTrustDomain) problems.push('--outbound needs --upstream-spiffe-id or --upstream-trust-domain');
      if (opts.outbound && opts.policy) problems.push('--policy applies to the inbound proxy only');
      const labels = parseLabels(opts.workloadLabels, '--workload-labels', problems);
      const maxConnectionAgeMs = parseDurationMs(opts.maxConnectionAge, '--max-connection-age', problems);
      const limits = parseProxyLimits(opts, problems);
      let trustDomain: TrustDomain | undefined;
      try {
        trustDomain = parseTrustDomainFlag(opts.trustDomain);
      } catch (err) {
        problems.push(...(err as ConfigError).problems);
      }
      if (problems.length > 0 || !upstream || !trustDomain || !listen) throw new ConfigError(problems);

      const [m, { createLogger }] = await Promise.all([loadProxyModules(), import('../log.js')]);
      const logger = createLogger({ level: opts.logLevel, destination: io.stderr });
      const clock = systemClock;
      const closers = new Closers();
      try {
        const source: X509Source = opts.svidDir
          ? await m.createX509SourceFromFiles({
              certChainPath: `${opts.svidDir}/cert-chain.pem`,
              keyPath: `${opts.svidDir}/key.pem`,
              bundlePath: `${opts.svidDir}/root-cert.pem`,
              trustDomain,
            })
          : await (await import('../transport/grpc/workload-api-client.js')).createWorkloadApiX509Source({ socket: socket!, logger });
        closers.add(() => source.close());
        let started: StartedPart | undefined;
        const metrics = new m.ProxyMetrics({ defaultMetrics: true, openConnections: () => started?.server.openConnections?.() ?? 0 });
        const common = { source, listen, upstream, accessLog: opts.accessLog, metrics, logger, closers, limits };
        let reloader: PolicyReloader | undefined;
        if (opts.outbound) {
          started = await startOutbound(m, {
            ...common,
            ...(opts.upstreamSpiffeId === undefined ? {} : { upstreamSpiffeId: opts.upstreamSpiffeId }),
            ...(opts.upstreamTrustDomain === undefined ? {} : { upstreamTrustDomain: opts.upstreamTrustDomain }),
          });
        } else {
          const inbound = await startInbound(m, {
            ...common,
            trustDomain,
            meshWidePolicy: opts.meshWidePolicy,
            clock,
            ...(opts.policy === undefined ? {} : { policyPath: opts.policy }),
            ...(opts.namespace === undefined ? {} : { namespace: opts.namespace }),
            ...(labels === undefined ? {} : { labels }),
            ...(appPort === undefined ? {} : { appPort }),
            ...(maxConnectionAgeMs === undefined ? {} : { maxConnectionAgeMs }),
          });
          started = inbound;
          reloader = inbound.reloader;
        }
        if (healthListen !== undefined) {
          const health = m.createHealthServer({
            registry: metrics.registry,
            notReady: () => svidProblem(source, clock.now()),
            notes: () => policyNotes(reloader, opts.policy),
          });
          closers.add(() => closeServer(health));
          const healthPort = await listenOn(health, healthListen, 'health');
          logger.info({ listen: `${healthListen.host}:${healthPort}` }, 'health and metrics listening');
        }
        const mode = opts.outbound ? 'outbound' : 'inbound';
        logger.info({ mode, listen: `${listen.host}:${started.port}`, upstream: upstream.origin, spiffeId: source.getX509Svid().id.toString() }, 'meshca proxy listening');
        io.stdout.write(`meshca proxy ready: ${mode} on port ${started.port}\n`);
        await waitForStopSignal();
      } finally {
        await closers.closeAll();
      }
    });
}
