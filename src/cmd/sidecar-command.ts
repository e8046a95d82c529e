/**
 * `meshca sidecar`: a pod's one meshca process. The agent obtains and rotates the SVID; the
 * inbound proxy (the enforcement point in front of the app) and the outbound proxy (mTLS for the
 * app's plain requests) read it from the agent's rotator in memory, so there is no second copy of
 * the key, no file or socket between them and one process to size. Files and the Workload API
 * stay available (`--out`, `--workload-api-socket`) for apps that use them.
 *
 * Start order: health first (so /ready can say what is missing), the agent, then, once the first
 * SVID is in, the policy and the proxies. A policy that cannot load stops the start.
 */
import { Command, Option } from 'commander';
import type { Clock } from '../clock.js';
import { parseAgentConfig, type AgentConfig, type AgentOptionValues } from '../config/agent-config.js';
import { parseListen, type ListenAddress } from '../config/listen.js';
import { parseProxyLimits, type ListenerLimits } from '../config/listener-limits.js';
import { parseTrustDomainFlag } from '../config/trust-domain-flag.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../log.js';
import type { PolicyReloader } from '../sidecar/policy-reloader.js';
import { parseSpiffeId } from '../spiffe/spiffe-id.js';
import type { RunningAgent } from './agent-command.js';
import { addAgentOptions, envOption } from './agent-options.js';
import { waitForStopSignal, type CliIo } from './cli-common.js';
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
  type InboundPartOptions,
  type StartedPart,
} from './proxy-parts.js';

interface SidecarOptionValues extends AgentOptionValues {
  readonly inboundListen?: string;
  readonly inboundUpstream?: string;
  readonly policy?: string;
  readonly meshWidePolicy: boolean;
  readonly namespace?: string;
  readonly workloadLabels?: string;
  readonly appPort?: string;
  readonly maxConnectionAge?: string;
  readonly maxConnections?: string;
  readonly idleTimeout?: string;
  readonly outboundListen?: string;
  readonly outboundUpstream?: string;
  readonly outboundSpiffeId?: string;
  readonly outboundTrustDomain?: string;
  readonly accessLog: boolean;
  readonly logLevel: string;
}

/** What the inbound part takes from the flags; the rest of its options are wired at start. */
type InboundConfig = Pick<InboundPartOptions, 'listen' | 'upstream' | 'policyPath' | 'meshWidePolicy' | 'namespace' | 'labels' | 'appPort' | 'maxConnectionAgeMs'>;

interface OutboundConfig {
  readonly listen: ListenAddress;
  readonly upstream: URL;
  readonly upstreamSpiffeId?: string;
  readonly upstreamTrustDomain?: string;
}

export interface SidecarConfig {
  readonly agent: AgentConfig;
  readonly inbound?: InboundConfig;
  readonly outbound?: OutboundConfig;
  readonly healthListen?: ListenAddress;
  readonly accessLog: boolean;
  readonly logLevel: string;
  readonly limits: ListenerLimits;
}

/** Every problem with the flags, the agent's and the proxies', in one `ConfigError`. */
export function parseSidecarConfig(values: SidecarOptionValues): SidecarConfig {
  const problems: string[] = [];
  let agent: AgentConfig | undefined;
  try {
    agent = parseAgentConfig(values, { requireDelivery: false });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  const paired = (a: string | undefined, aFlag: string, b: string | undefined, bFlag: string): boolean => {
    if ((a === undefined) !== (b === undefined)) problems.push(`${a === undefined ? bFlag : aFlag} needs ${a === undefined ? aFlag : bFlag}`);
    return a !== undefined && b !== undefined;
  };
  if (values.inboundListen === undefined && values.outboundListen === undefined && values.inboundUpstream === undefined && values.outboundUpstream === undefined) {
    problems.push('nothing to proxy: give --inbound-listen with --inbound-upstream and/or --outbound-listen with --outbound-upstream (for the SVID alone, run meshca agent)');
  }

  let inbound: InboundConfig | undefined;
  if (paired(values.inboundListen, '--inbound-listen', values.inboundUpstream, '--inbound-upstream')) {
    const listen = parseListen(values.inboundListen!, '--inbound-listen', problems);
    const upstream = parseUpstreamUrl(values.inboundUpstream!, '--inbound-upstream', 'http:', '(the app, plain HTTP on loopback)', problems);
    const labels = parseLabels(values.workloadLabels, '--workload-labels', problems);
    const appPort = parsePort(values.appPort, '--app-port', problems);
    const maxConnectionAgeMs = parseDurationMs(values.maxConnectionAge, '--max-connection-age', problems);
    if (listen !== undefined && upstream !== undefined) {
      inbound = {
        listen,
        upstream,
        meshWidePolicy: values.meshWidePolicy,
        ...(values.policy === undefined ? {} : { policyPath: values.policy }),
        ...(values.namespace === undefined ? {} : { namespace: values.namespace }),
        ...(labels === undefined ? {} : { labels }),
        ...(appPort === undefined ? {} : { appPort }),
        ...(maxConnectionAgeMs === undefined ? {} : { maxConnectionAgeMs }),
      };
    }
  } else {
    // Inbound-only flags without an inbound proxy would silently do nothing: a policy not enforced.
    for (const [value, flag] of [
      [values.policy, '--policy'],
      [values.workloadLabels, '--workload-labels'],
      [values.appPort, '--app-port'],
      [values.maxConnectionAge, '--max-connection-age'],
      [values.meshWidePolicy ? 'true' : undefined, '--mesh-wide-policy'],
    ] as const) {
      if (value !== undefined) problems.push(`${flag} applies to the inbound proxy: give --inbound-listen and --inbound-upstream`);
    }
  }

  let outbound: OutboundConfig | undefined;
  if (paired(values.outboundListen, '--outbound-listen', values.outboundUpstream, '--outbound-upstream')) {
    const listen = parseListen(values.outboundListen!, '--outbound-listen', problems);
    const upstream = parseUpstreamUrl(values.outboundUpstream!, '--outbound-upstream', 'https:', '(the mTLS service)', problems);
    const { outboundSpiffeId: id, outboundTrustDomain: td } = values;
    if ((id === undefined) === (td === undefined)) problems.push('--outbound-listen needs exactly one of --outbound-spiffe-id and --outbound-trust-domain: who the upstream must be');
    if (id !== undefined) {
      try {
        parseSpiffeId(id);
      } catch (err) {
        problems.push(`--outbound-spiffe-id: ${(err as Error).message}`);
      }
    }
    if (td !== undefined) {
      try {
        parseTrustDomainFlag(td, '--outbound-trust-domain');
      } catch (err) {
        problems.push(...(err as ConfigError).problems);
      }
    }
    if (listen !== undefined && upstream !== undefined) {
      outbound = { listen, upstream, ...(id === undefined ? {} : { upstreamSpiffeId: id }), ...(td === undefined ? {} : { upstreamTrustDomain: td }) };
    }
  } else if (values.outboundSpiffeId !== undefined || values.outboundTrustDomain !== undefined) {
    problems.push(`${values.outboundSpiffeId !== undefined ? '--outbound-spiffe-id' : '--outbound-trust-domain'} applies to the outbound proxy: give --outbound-listen and --outbound-upstream`);
  }

  const limits = parseProxyLimits(values, problems);
  if (problems.length > 0 || agent === undefined) throw new ConfigError(problems);
  // The agent's --health-listen is the sidecar's one health endpoint, served here for all parts.
  const { healthListen, ...agentOnly } = agent;
  return Object.freeze({
    agent: Object.freeze(agentOnly),
    ...(inbound === undefined ? {} : { inbound: Object.freeze(inbound) }),
    ...(outbound === undefined ? {} : { outbound: Object.freeze(outbound) }),
    ...(healthListen === undefined ? {} : { healthListen }),
    accessLog: values.accessLog,
    logLevel: values.logLevel,
    limits,
  });
}

export function buildSidecarCommand(io: CliIo): Command {
  const env = io.env;
  const opt = (flags: string, description: string, name: string, fallback?: string): Option => envOption(io, flags, description, name, fallback);
  return addAgentOptions(new Command('sidecar'), io, { optional: true })
    .addOption(opt('--inbound-listen <host:port>', 'inbound: terminate mTLS here, e.g. 0.0.0.0:15006', 'MESHCA_INBOUND_LISTEN'))
    .addOption(opt('--inbound-upstream <url>', 'inbound: the app, e.g. http://127.0.0.1:5000', 'MESHCA_INBOUND_UPSTREAM'))
    .addOption(opt('--policy <file.yaml>', 'inbound: Istio AuthorizationPolicy / CiliumNetworkPolicy YAML; re-read when it changes', 'MESHCA_POLICY'))
    .addOption(
      new Option(
        '--mesh-wide-policy',
        'inbound: the policy file holds the whole mesh; if none of it applies here, allow every peer (Istio semantics) instead of refusing to start (env MESHCA_MESH_WIDE_POLICY=true)',
      ).default(env['MESHCA_MESH_WIDE_POLICY'] === 'true'),
    )
    .addOption(opt('--namespace <ns>', 'inbound: the pod namespace; must agree with the SVID', 'POD_NAMESPACE'))
    .addOption(opt('--workload-labels <k=v,...>', 'inbound: pod labels (app, version...) for policy selectors', 'MESHCA_WORKLOAD_LABELS'))
    .addOption(opt('--app-port <port>', "inbound: the app's port, which policies name in ports/toPorts (default: --inbound-upstream's port)", 'MESHCA_APP_PORT'))
    .addOption(opt('--max-connections <n|auto>', 'open client connections per proxy listener; auto: 40% of the file-descriptor room each', 'MESHCA_MAX_CONNECTIONS'))
    .addOption(opt('--idle-timeout <duration>', 'close a kept-alive client connection idle this long (default 60s)', 'MESHCA_IDLE_TIMEOUT'))
    .addOption(opt('--max-connection-age <duration>', "inbound: close client connections after this long (default: when the client's certificate expires)", 'MESHCA_MAX_CONNECTION_AGE'))
    .addOption(opt('--outbound-listen <host:port>', 'outbound: plain HTTP for the app, e.g. 127.0.0.1:15001', 'MESHCA_OUTBOUND_LISTEN'))
    .addOption(opt('--outbound-upstream <url>', 'outbound: the mTLS service, e.g. https://helloworld.default.svc:5000', 'MESHCA_OUTBOUND_UPSTREAM'))
    .addOption(opt('--outbound-spiffe-id <id>', 'outbound: the SPIFFE ID the upstream must present', 'MESHCA_OUTBOUND_SPIFFE_ID'))
    .addOption(opt('--outbound-trust-domain <td>', 'outbound: accept any upstream in this trust domain instead', 'MESHCA_OUTBOUND_TRUST_DOMAIN'))
    // The same variable as `meshca proxy --no-access-log`.
    .addOption(new Option('--no-access-log', 'do not log a line per request (env MESHCA_NO_ACCESS_LOG=true)').default(!['true', '1'].includes(env['MESHCA_NO_ACCESS_LOG'] ?? '')))
    .addOption(opt('--log-level <level>', 'log level', 'MESHCA_LOG_LEVEL', 'info'))
    .action(async (opts: SidecarOptionValues) => {
      const config = parseSidecarConfig(opts);
      await runSidecar(config, io);
    });
}

export interface RunningSidecar {
  readonly spiffeId: string;
  /** The agent part: its rotator is the SVID source the proxies read. */
  readonly agent: RunningAgent;
  readonly inboundPort?: number;
  readonly outboundPort?: number;
  readonly healthPort?: number;
  /** Stops the proxies, then the agent. */
  close(): Promise<void>;
}

export interface SidecarDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Aborts the wait for the first SVID (a stop signal during start-up). */
  readonly signal?: AbortSignal;
}

/**
 * Starts health, the agent and, once the first SVID is in, the proxies. Resolves undefined when
 * `signal` aborted the wait; throws (having stopped whatever started) when a part cannot start.
 */
export async function startSidecar(config: SidecarConfig, deps: SidecarDeps): Promise<RunningSidecar | undefined> {
  const [m, { startAgent }, { Registry }] = await Promise.all([loadProxyModules(), import('./agent-command.js'), import('../transport/prometheus.js')]);
  const { clock, logger } = deps;
  const closers = new Closers();
  try {
    const registry = new Registry();
    let inbound: StartedPart | undefined;
    let reloader: PolicyReloader | undefined;
    const metrics = new m.ProxyMetrics({ defaultMetrics: true, registry, openConnections: () => inbound?.server.openConnections?.() ?? 0 });
    const agent = await startAgent(config.agent, { clock, logger, registry });
    closers.add(() => agent.close());
    const source = agent.rotator;
    let proxiesStarted = false;
    let healthPort: number | undefined;
    if (config.healthListen !== undefined) {
      const health = m.createHealthServer({
        registry,
        notReady: () => agent.notReady() ?? (proxiesStarted ? svidProblem(source, clock.now()) : 'starting the proxies'),
        notes: () => policyNotes(reloader, config.inbound?.policyPath),
      });
      closers.add(() => closeServer(health));
      healthPort = await listenOn(health, config.healthListen, 'health');
      logger.info({ listen: `${config.healthListen.host}:${healthPort}` }, 'health and metrics listening');
    }

    // The proxies need the workload's own identity (it scopes the policy and is the TLS
    // certificate): wait for the first SVID, as Istio's proxy waits for its certificate.
    let svid: Awaited<ReturnType<typeof source.waitForSvid>>;
    try {
      svid = await source.waitForSvid(deps.signal);
    } catch (err) {
      if (deps.signal?.aborted) {
        await closers.closeAll();
        return undefined;
      }
      throw err;
    }
    const common = { source, accessLog: config.accessLog, metrics, logger, closers, limits: config.limits };
    let inboundPort: number | undefined;
    let outboundPort: number | undefined;
    if (config.inbound !== undefined) {
      const { listen, upstream, policyPath, meshWidePolicy, namespace, labels, appPort, maxConnectionAgeMs } = config.inbound;
      const started = await startInbound(m, {
        ...common,
        trustDomain: config.agent.trustDomain,
        listen,
        upstream,
        meshWidePolicy,
        clock,
        ...(policyPath === undefined ? {} : { policyPath }),
        ...(namespace === undefined ? {} : { namespace }),
        ...(labels === undefined ? {} : { labels }),
        ...(appPort === undefined ? {} : { appPort }),
        ...(maxConnectionAgeMs === undefined ? {} : { maxConnectionAgeMs }),
      });
      inbound = started;
      reloader = started.reloader;
      inboundPort = started.port;
      logger.info({ mode: 'inbound', listen: `${listen.host}:${started.port}`, upstream: upstream.origin, spiffeId: svid.id.toString() }, 'inbound proxy listening');
    }
    if (config.outbound !== undefined) {
      const { listen, upstream, upstreamSpiffeId, upstreamTrustDomain } = config.outbound;
      const started = await startOutbound(m, {
        ...common,
        listen,
        upstream,
        ...(upstreamSpiffeId === undefined ? {} : { upstreamSpiffeId }),
        ...(upstreamTrustDomain === undefined ? {} : { upstreamTrustDomain }),
      });
      outboundPort = started.port;
      logger.info({ mode: 'outbound', listen: `${listen.host}:${started.port}`, upstream: upstream.origin, spiffeId: svid.id.toString() }, 'outbound proxy listening');
    }
    proxiesStarted = true;
    return {
      spiffeId: svid.id.toString(),
      agent,
      ...(inboundPort === undefined ? {} : { inboundPort }),
      ...(outboundPort === undefined ? {} : { outboundPort }),
      ...(healthPort === undefined ? {} : { healthPort }),
      close: () => closers.closeAll(),
    };
  } catch (err) {
    await closers.closeAll();
    throw err;
  }
}

async function runSidecar(config: SidecarConfig, io: CliIo): Promise<void> {
  const { createLogger } = await import('../log.js');
  const logger = createLogger({ level: config.logLevel, destination: io.stderr });
  const stopped = new AbortController();
  const ended = new AbortController();
  const stop = waitForStopSignal(ended.signal).then((signal) => {
    if (signal === undefined) return;
    logger.info({ signal }, 'shutting down');
    stopped.abort(new Error(`stopped by ${signal}`));
  });
  let sidecar: RunningSidecar | undefined;
  try {
    sidecar = await startSidecar(config, { clock: io.clock, logger, signal: stopped.signal });
    if (sidecar === undefined) return;
    const parts = [
      sidecar.inboundPort === undefined ? undefined : `inbound on port ${sidecar.inboundPort}`,
      sidecar.outboundPort === undefined ? undefined : `outbound on port ${sidecar.outboundPort}`,
      sidecar.healthPort === undefined ? undefined : `health on port ${sidecar.healthPort}`,
    ].filter((p) => p !== undefined);
    io.stdout.write(`meshca sidecar ready: ${sidecar.spiffeId}, ${parts.join(', ')}\n`);
    await stop;
  } finally {
    ended.abort();
    await sidecar?.close();
  }
}
