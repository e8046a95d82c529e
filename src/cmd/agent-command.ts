/**
 * `meshca agent`: the node/pod-side half of meshca. Wires the SvidRotator to the gRPC CA client,
 * the token and root files, the SVID output files, the SPIFFE Workload API socket and a
 * health/metrics endpoint, and (with `--federated-bundle`) the bundles of federated trust
 * domains. This is the composition root for the agent (STYLE: L4); everything
 * it wires is tested on its own.
 */
import { parseListen } from '../config/listen.js';
import { readFile } from 'node:fs/promises';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Command, Option } from 'commander';
import { Counter, Gauge, Registry } from 'prom-client';
import { FederatedBundles, type FederatedBundleError } from '../agent/federated-bundles.js';
import { SvidRotator, type SvidRotatorError, type X509SvidUpdate } from '../agent/svid-rotator.js';
import type { Clock } from '../clock.js';
import { formatDuration, parseDurationSeconds } from '../config/duration.js';
import { ConfigError } from '../errors.js';
import { createFileBundleSource } from '../files/bundle-file.js';
import { createFederatedBundleSource } from '../files/federated-bundles.js';
import { runPostRotationHook, writeSvidFiles } from '../files/svid-files.js';
import { createFileTokenSource } from '../files/token-file.js';
import { createLogger, type Logger } from '../log.js';
import { isKeyKind, KEY_KINDS, type KeyKind } from '../pki/algorithms.js';
import { parseTrustDomain, type TrustDomain } from '../spiffe/trust-domain.js';
import { parseX509BundlePem, type X509Bundle } from '../spiffe/x509-bundle.js';
import { createGrpcCaClient, type GrpcCaClient } from '../transport/grpc/ca-client.js';
import { createCaJwtClient } from '../transport/http/ca-jwt-client.js';
import { parseWorkloadApiSocket, startWorkloadApiServer, type WorkloadApiServer } from '../transport/grpc/workload-api-server.js';
import { parseTrustDomainFlag, trustDomainOption, type CliIo } from './cli-common.js';

export interface AgentConfig {
  readonly caAddress: string;
  /** The mesh root-cert.pem: trust anchors for SVIDs and for the CA's TLS certificate. */
  readonly caRootPath: string;
  readonly tokenFile: string;
  readonly trustDomain: TrustDomain;
  readonly outDir?: string;
  readonly workloadApiSocket?: string;
  readonly svidTtlSeconds: number;
  readonly keyKind: KeyKind;
  readonly hook?: string;
  readonly hookTimeoutMs: number;
  readonly insecure: boolean;
  readonly caServerName?: string;
  readonly caTimeoutMs: number;
  readonly bundleRefreshMs: number;
  readonly healthListen?: { readonly host: string; readonly port: number };
  /** The CA's HTTPS API (`host:port`), for JWT-SVIDs; without it the JWT RPCs are unimplemented. */
  readonly caHttpAddress?: string;
  /** Foreign trust domains whose peers are trusted, each with where its bundle comes from. Default none. */
  readonly federatedBundles?: readonly FederatedBundleConfig[];
  /** PEM CAs that authenticate `https://` federated bundle endpoints; default: Node's public roots. */
  readonly federatedBundleCaPath?: string;
}

export interface FederatedBundleConfig {
  readonly trustDomain: TrustDomain;
  /** An `https://` SPIFFE bundle endpoint URL, or a file (PEM or SPIFFE bundle JWKS). */
  readonly location: string;
}

/** The raw option values, as commander hands them over (strings, env defaults applied). */
export interface AgentOptionValues {
  readonly caAddress?: string;
  readonly caRoot?: string;
  readonly tokenFile?: string;
  readonly trustDomain: string;
  readonly out?: string;
  readonly workloadApiSocket?: string;
  readonly svidTtl: string;
  readonly key: string;
  readonly hook?: string;
  readonly hookTimeout: string;
  readonly insecure: boolean;
  readonly caServerName?: string;
  readonly caTimeout: string;
  readonly bundleRefresh: string;
  readonly healthListen?: string;
  readonly caHttpAddress?: string;
  /** `<trust-domain>=<https-url-or-file>`, repeatable. */
  readonly federatedBundle?: readonly string[];
  readonly federatedBundleCa?: string;
}

/** The agent's defaults, for the CLI and for callers (the demo) that start agents in-process. */
export const AGENT_DEFAULTS = Object.freeze({
  svidTtl: '24h',
  key: 'ec-p256',
  hookTimeout: '30s',
  insecure: false,
  caTimeout: '10s',
  bundleRefresh: '5m',
} satisfies Partial<AgentOptionValues>);

/** Validates everything at once and lists every problem in one `ConfigError`. */
export function parseAgentConfig(values: AgentOptionValues): AgentConfig {
  const problems: string[] = [];
  const collect = <T>(f: () => T): T | undefined => {
    try {
      return f();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
      return undefined;
    }
  };
  const required = (value: string | undefined, flag: string, env: string): string | undefined => {
    if (value === undefined || value.trim() === '') problems.push(`${flag} (or ${env}) is required`);
    return value;
  };
  const caAddress = required(values.caAddress, '--ca-address', 'MESHCA_CA_ADDRESS');
  if (caAddress !== undefined && caAddress.trim() !== '' && !/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(caAddress)) {
    problems.push(`--ca-address ${JSON.stringify(caAddress)} must be host:port, e.g. istiod.istio-system.svc:15012`);
  }
  const caRootPath = required(values.caRoot, '--ca-root', 'MESHCA_CA_ROOT');
  const tokenFile = required(values.tokenFile, '--token-file', 'MESHCA_TOKEN_FILE');
  const trustDomain = collect(() => parseTrustDomainFlag(values.trustDomain));
  const svidTtlSeconds = collect(() => parseDurationSeconds(values.svidTtl, '--svid-ttl'));
  // The CA backdates notBefore by 10 s; below ~20 s the half-life point would fall before the
  // moment of issuance and the agent would renew in a loop.
  if (svidTtlSeconds !== undefined && svidTtlSeconds < 20) problems.push('--svid-ttl must be at least 20s');
  const hookTimeoutSeconds = collect(() => parseDurationSeconds(values.hookTimeout, '--hook-timeout'));
  const caTimeoutSeconds = collect(() => parseDurationSeconds(values.caTimeout, '--ca-timeout'));
  if (caTimeoutSeconds === 0) problems.push('--ca-timeout must be positive');
  const bundleRefreshSeconds = collect(() => parseDurationSeconds(values.bundleRefresh, '--bundle-refresh'));
  if (!isKeyKind(values.key)) problems.push(`--key ${values.key} is not one of ${KEY_KINDS.join(', ')}`);
  const workloadApiSocket = values.workloadApiSocket === undefined ? undefined : collect(() => parseWorkloadApiSocket(values.workloadApiSocket!));
  if (values.out === undefined && values.workloadApiSocket === undefined) {
    problems.push('nothing would receive the SVID: give --out <dir> and/or --workload-api-socket <path>');
  }
  const healthListen = values.healthListen === undefined ? undefined : parseListen(values.healthListen, '--health-listen', problems);
  const federatedBundles = parseFederatedBundleFlags(values.federatedBundle ?? [], trustDomain, problems);
  if (values.federatedBundleCa !== undefined && values.federatedBundleCa.trim() === '') problems.push('--federated-bundle-ca is empty');
  if (
    problems.length > 0 ||
    caAddress === undefined ||
    caRootPath === undefined ||
    tokenFile === undefined ||
    trustDomain === undefined ||
    svidTtlSeconds === undefined ||
    hookTimeoutSeconds === undefined ||
    caTimeoutSeconds === undefined ||
    bundleRefreshSeconds === undefined ||
    !isKeyKind(values.key)
  ) {
    throw new ConfigError(problems);
  }
  return Object.freeze({
    caAddress,
    caRootPath,
    tokenFile,
    trustDomain,
    ...(values.out === undefined ? {} : { outDir: values.out }),
    ...(workloadApiSocket === undefined ? {} : { workloadApiSocket }),
    svidTtlSeconds,
    keyKind: values.key,
    ...(values.hook === undefined ? {} : { hook: values.hook }),
    hookTimeoutMs: hookTimeoutSeconds * 1000,
    insecure: values.insecure,
    ...(values.caServerName === undefined ? {} : { caServerName: values.caServerName }),
    caTimeoutMs: caTimeoutSeconds * 1000,
    bundleRefreshMs: bundleRefreshSeconds * 1000,
    ...(healthListen === undefined ? {} : { healthListen }),
    ...(values.caHttpAddress === undefined ? {} : { caHttpAddress: values.caHttpAddress }),
    federatedBundles,
    ...(values.federatedBundleCa === undefined ? {} : { federatedBundleCaPath: values.federatedBundleCa }),
  });
}

/**
 * `<trust-domain>=<location>` values: the trust domain bare or as `spiffe://`, the location an
 * `https://` URL, a `file://` URL or a path. The own trust domain and repeats are refused.
 */
function parseFederatedBundleFlags(values: readonly string[], own: TrustDomain | undefined, problems: string[]): FederatedBundleConfig[] {
  const result: FederatedBundleConfig[] = [];
  for (const value of values) {
    const flag = `--federated-bundle ${JSON.stringify(value)}`;
    const eq = value.indexOf('=');
    const name = eq < 0 ? '' : value.slice(0, eq).trim();
    const location = eq < 0 ? '' : value.slice(eq + 1).trim();
    if (name === '' || location === '') {
      problems.push(`${flag} must be <trust-domain>=<https-url-or-file>, e.g. td-b=https://meshca.td-b.example:15014/.well-known/spiffe-bundle`);
      continue;
    }
    let trustDomain: TrustDomain;
    try {
      trustDomain = parseTrustDomain(name);
    } catch (err) {
      problems.push(`${flag}: ${(err as Error).message}`);
      continue;
    }
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(location)?.[1]?.toLowerCase();
    if (scheme !== undefined && scheme.length > 1 && scheme !== 'https' && scheme !== 'file') {
      problems.push(`${flag}: the bundle must come from an https:// URL or a file, not ${scheme}:`);
      continue;
    }
    if (own !== undefined && trustDomain.equals(own)) {
      problems.push(`${flag}: ${trustDomain.name} is this agent's own trust domain; its bundle comes from --ca-root`);
      continue;
    }
    if (result.some((f) => f.trustDomain.equals(trustDomain))) {
      problems.push(`${flag}: ${trustDomain.name} is federated more than once; give one bundle location per trust domain`);
      continue;
    }
    result.push(Object.freeze({ trustDomain, location }));
  }
  return result;
}

export interface AgentDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly random?: () => number;
}

export interface RunningAgent {
  /** The X.509 source: the own SVID and bundle, and the federated bundles when configured. */
  readonly rotator: SvidRotator;
  readonly federation: FederatedBundles | undefined;
  readonly workloadApi: WorkloadApiServer | undefined;
  /** Where the health endpoint listens (port resolved when 0 was asked for). */
  readonly healthAddress: { readonly host: string; readonly port: number } | undefined;
  /** Resolves when the files and hook of the latest update are done (for tests and shutdown). */
  idle(): Promise<void>;
  close(): Promise<void>;
}

/** Starts rotation, the Workload API and the health endpoint. Does not wait for the first SVID. */
export async function startAgent(config: AgentConfig, deps: AgentDeps): Promise<RunningAgent> {
  const logger = deps.logger.child({ component: 'agent' });
  const { clock } = deps;
  // Read the root once up front so a wrong path fails the start, not the first rotation.
  let rootPem: string;
  try {
    // Normalised PEM, so the first bundle event compares equal and keeps the channel.
    rootPem = parseX509BundlePem(config.trustDomain, await readFile(config.caRootPath, 'utf8')).toPem();
  } catch (err) {
    throw new ConfigError([`--ca-root ${config.caRootPath}: ${(err as Error).message}`], { cause: err });
  }
  const caClient: GrpcCaClient = createGrpcCaClient({
    address: config.caAddress,
    ...(config.insecure ? { insecure: true } : { rootCertPem: rootPem }),
    ...(config.caServerName === undefined ? {} : { serverName: config.caServerName }),
    timeoutMs: config.caTimeoutMs,
  });
  if (config.insecure) logger.warn({ caAddress: config.caAddress }, 'talking to the CA in plaintext (--insecure): the token is not protected');

  const tokenSource = createFileTokenSource(config.tokenFile, { clock });
  const federated = config.federatedBundles ?? [];
  const federation =
    federated.length === 0
      ? undefined
      : new FederatedBundles({
          trustDomain: config.trustDomain,
          sources: federated.map((f) =>
            createFederatedBundleSource(f.trustDomain, f.location, {
              ...(config.federatedBundleCaPath === undefined ? {} : { endpointCaPath: config.federatedBundleCaPath }),
              timeoutMs: config.caTimeoutMs,
            }),
          ),
          clock,
          ...(deps.random === undefined ? {} : { random: deps.random }),
        });
  const rotator = new SvidRotator({
    trustDomain: config.trustDomain,
    caClient,
    tokenSource,
    bundleSource: createFileBundleSource(config.caRootPath, config.trustDomain),
    clock,
    keyKind: config.keyKind,
    ttlSeconds: config.svidTtlSeconds,
    bundleRefreshMs: config.bundleRefreshMs,
    ...(deps.random === undefined ? {} : { random: deps.random }),
    ...(federation === undefined ? {} : { federatedBundles: federation }),
  });
  const metrics = new AgentMetrics(rotator, clock, federation);

  // Deliveries run one after another, so two quick updates never interleave their files.
  let delivery: Promise<void> = Promise.resolve();
  const deliver = (update: X509SvidUpdate): void => {
    delivery = delivery.then(async () => {
      if (config.outDir !== undefined) {
        try {
          await writeSvidFiles(config.outDir, update.svid, update.bundle);
        } catch (err) {
          logger.error({ err, outDir: config.outDir }, 'cannot write the SVID files');
          return;
        }
      }
      if (config.hook !== undefined) {
        await runPostRotationHook(config.hook, {
          timeoutMs: config.hookTimeoutMs,
          logger,
          env: {
            MESHCA_SPIFFE_ID: update.svid.id.toString(),
            MESHCA_SVID_SERIAL: update.serial,
            MESHCA_UPDATE_REASON: update.reason,
            ...(config.outDir === undefined ? {} : { MESHCA_OUT_DIR: config.outDir }),
          },
        });
      }
    });
  };

  rotator.on('update', (update) => {
    if (update.reason === 'svid') {
      metrics.rotations.inc();
      logger.info(
        {
          spiffeId: update.svid.id.toString(),
          serial: update.serial,
          notAfter: update.svid.notAfter.toISOString(),
          nextRotation: update.nextRotationAt?.toISOString(),
        },
        `X.509-SVID issued, valid ${formatDuration((update.svid.notAfter.getTime() - clock.now().getTime()) / 1000)}`,
      );
    }
    deliver(update);
  });
  let tlsRootPem = rootPem;
  rotator.on('bundle', (bundle: X509Bundle) => {
    if (!bundle.trustDomain.equals(config.trustDomain)) {
      logger.info({ trustDomain: bundle.trustDomain.name, roots: bundle.authorities.length, sequence: bundle.sequenceNumber }, 'federated trust bundle loaded');
      return;
    }
    logger.info({ trustDomain: bundle.trustDomain.name, roots: bundle.authorities.length }, 'trust bundle loaded');
    // The CA's serving certificate chains to the same mesh root: follow a root rotation.
    const pem = bundle.toPem();
    if (!config.insecure && pem !== tlsRootPem) {
      tlsRootPem = pem;
      caClient.updateRootCertPem(pem);
    }
  });
  rotator.on('error', (event: SvidRotatorError) => {
    const fields = {
      err: event.error,
      attempt: event.attempt,
      nextAttemptAt: event.nextAttemptAt?.toISOString(),
      svidValid: event.svidValid,
    };
    if (event.kind === 'rotation') {
      metrics.failures.inc();
      logger.warn(fields, event.svidValid ? 'SVID rotation failed; still serving the current SVID' : 'cannot obtain an SVID; retrying');
    } else if (event.kind === 'expired') {
      logger.error(fields, 'the X.509-SVID expired without a replacement; workloads have no identity until the CA answers');
    } else {
      logger.warn(fields, 'cannot read the trust bundle; keeping the last good one');
    }
  });

  federation?.on('error', (event: FederatedBundleError) => {
    logger.warn(
      {
        err: event.error,
        trustDomain: event.trustDomain.name,
        location: event.location,
        attempt: event.attempt,
        nextAttemptAt: event.nextFetchAt?.toISOString(),
      },
      event.bundleKept ? 'cannot refresh a federated trust bundle; keeping the last good one' : 'cannot fetch a federated trust bundle; its peers are not trusted yet',
    );
  });

  let workloadApi: WorkloadApiServer | undefined;
  let health: HttpServer | undefined;
  let healthAddress: { host: string; port: number } | undefined;
  try {
    if (config.workloadApiSocket !== undefined) {
      const jwt =
        config.caHttpAddress === undefined
          ? undefined
          : createCaJwtClient({
              address: config.caHttpAddress,
              trustDomain: config.trustDomain,
              tokenSource,
              rootCertPem: () => rotator.getX509BundleForTrustDomain(config.trustDomain)?.toPem() ?? rootPem,
              ...(config.caServerName === undefined ? {} : { serverName: config.caServerName }),
              timeoutMs: config.caTimeoutMs,
            });
      workloadApi = await startWorkloadApiServer({ socket: config.workloadApiSocket, source: rotator, logger: deps.logger, ...(jwt ? { jwt } : {}) });
    }
    if (config.healthListen !== undefined) {
      const server = createHealthServer(rotator, metrics);
      health = server;
      const { host, port } = config.healthListen;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
      healthAddress = { host, port: (server.address() as AddressInfo).port };
      logger.info(healthAddress, 'health and metrics listening');
    }
  } catch (err) {
    // Release what did start, so a failed start leaves no socket or channel behind.
    await workloadApi?.close();
    health?.close();
    caClient.close();
    throw err;
  }

  const running = rotator.run();
  const federating = federation?.run();
  let closing: Promise<void> | undefined;
  return {
    rotator,
    federation,
    workloadApi,
    healthAddress,
    idle: () => delivery,
    close(): Promise<void> {
      closing ??= (async () => {
        await rotator.close();
        await running;
        await federation?.close();
        await federating;
        await workloadApi?.close();
        await new Promise<void>((resolve) => {
          if (health === undefined) return resolve();
          health.close(() => resolve());
          health.closeAllConnections(); // keep-alive clients would otherwise hold close() open
        });
        caClient.close();
        await delivery;
      })();
      return closing;
    },
  };
}

class AgentMetrics {
  readonly registry = new Registry();
  readonly rotations: Counter;
  readonly failures: Counter;

  constructor(rotator: SvidRotator, clock: Clock, federation: FederatedBundles | undefined) {
    this.rotations = new Counter({ name: 'meshca_agent_rotations_total', help: 'X.509-SVIDs obtained from the CA.', registers: [this.registry] });
    this.failures = new Counter({
      name: 'meshca_agent_rotation_failures_total',
      help: 'Failed attempts to obtain an X.509-SVID.',
      registers: [this.registry],
    });
    new Gauge({
      name: 'meshca_agent_svid_expiry_seconds',
      help: 'Seconds until the current X.509-SVID expires; absent while no valid SVID is held (see meshca_agent_svid_valid).',
      registers: [this.registry],
      collect() {
        this.reset();
        try {
          this.set((rotator.getX509Svid().notAfter.getTime() - clock.now().getTime()) / 1000);
        } catch {
          // No SVID: leave the series absent rather than report a made-up number.
        }
      },
    });
    new Gauge({
      name: 'meshca_agent_bundle_authority_expiry_seconds',
      help: 'Seconds until each trusted root expires, per trust domain (own and federated); negative once expired.',
      labelNames: ['trust_domain', 'fingerprint'],
      registers: [this.registry],
      collect() {
        this.reset();
        const now = clock.now().getTime();
        for (const bundle of rotator.getX509Bundles()) {
          for (const cert of bundle.authorities) {
            this.set({ trust_domain: bundle.trustDomain.name, fingerprint: cert.fingerprint256 }, (Date.parse(cert.validTo) - now) / 1000);
          }
        }
      },
    });
    if (federation !== undefined) {
      new Gauge({
        name: 'meshca_agent_federated_bundle_fetch_failures',
        help: 'Consecutive failed fetches of each federated trust bundle (0 after a success).',
        labelNames: ['trust_domain'],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const status of federation.status()) this.set({ trust_domain: status.trustDomain.name }, status.failures);
        },
      });
    }
    new Gauge({
      name: 'meshca_agent_svid_valid',
      help: '1 while a valid X.509-SVID is held, else 0.',
      registers: [this.registry],
      collect() {
        this.set(rotator.hasValidSvid() ? 1 : 0);
      },
    });
  }
}

function createHealthServer(rotator: SvidRotator, metrics: AgentMetrics): HttpServer {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz' || path === '/ready') {
      let body = 'ok\n';
      let status = 200;
      try {
        rotator.getX509Svid();
      } catch (err) {
        // The message names the state and the last CA failure; it holds no secret.
        status = 503;
        body = `${(err as Error).message}\n`;
      }
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }).end(body);
      return;
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
  });
}

/** Repeatable; the env form is a comma-separated list of the same `<td>=<location>` values. */
function federatedBundleOption(env: NodeJS.ProcessEnv): Option {
  const fromEnv = env['MESHCA_FEDERATED_BUNDLES']
    ?.split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');
  const option = new Option(
    '--federated-bundle <td=url-or-file>',
    'trust peers of another trust domain: its bundle from an https:// SPIFFE bundle endpoint or a PEM/JWKS file; repeatable (env MESHCA_FEDERATED_BUNDLES, comma-separated)',
  ).argParser((value: string, previous: string[] | undefined) =>
    // Flags replace the env list rather than add to it, like every other flag.
    previous === undefined || previous === fromEnv ? [value] : [...previous, value],
  );
  return fromEnv === undefined || fromEnv.length === 0 ? option : option.default(fromEnv);
}

export function buildAgentCommand(io: CliIo): Command {
  const env = io.env;
  const envOption = (flags: string, description: string, name: string, fallback?: string): Option => {
    const option = new Option(flags, `${description} (env ${name})`);
    const value = env[name] ?? fallback;
    return value === undefined ? option : option.default(value);
  };
  return new Command('agent')
    .addOption(envOption('--ca-address <host:port>', 'CA gRPC address, e.g. istiod.istio-system.svc:15012', 'MESHCA_CA_ADDRESS'))
    .addOption(envOption('--ca-root <file>', 'mesh root-cert.pem: trust anchors, re-read for root rotation', 'MESHCA_CA_ROOT'))
    .addOption(envOption('--token-file <path>', 'projected service-account token, re-read before every request', 'MESHCA_TOKEN_FILE'))
    .addOption(trustDomainOption(io))
    .addOption(envOption('--out <dir>', 'write cert-chain.pem, key.pem, root-cert.pem here', 'MESHCA_OUT_DIR'))
    .addOption(envOption('--workload-api-socket <path>', 'serve the SPIFFE Workload API on this unix socket', 'MESHCA_WORKLOAD_API_SOCKET'))
    .addOption(envOption('--svid-ttl <duration>', 'requested SVID lifetime', 'MESHCA_SVID_TTL', AGENT_DEFAULTS.svidTtl))
    .addOption(new Option('--key <kind>', 'SVID key type (env MESHCA_KEY)').choices([...KEY_KINDS]).default(env['MESHCA_KEY'] ?? AGENT_DEFAULTS.key))
    .addOption(envOption('--hook <command>', 'shell command run after every rotation (e.g. reload a server)', 'MESHCA_HOOK'))
    .addOption(envOption('--hook-timeout <duration>', 'kill the hook after this long', 'MESHCA_HOOK_TIMEOUT', AGENT_DEFAULTS.hookTimeout))
    .addOption(
      new Option('--insecure', 'talk to the CA in plaintext; development only (env MESHCA_CA_INSECURE=true)').default(
        env['MESHCA_CA_INSECURE'] === 'true',
      ),
    )
    .addOption(envOption('--ca-server-name <name>', 'name to verify in the CA\'s TLS certificate', 'MESHCA_CA_SERVER_NAME'))
    .addOption(envOption('--ca-timeout <duration>', 'deadline of each CA call', 'MESHCA_CA_TIMEOUT', AGENT_DEFAULTS.caTimeout))
    .addOption(envOption('--bundle-refresh <duration>', 'how often --ca-root is re-read between rotations', 'MESHCA_BUNDLE_REFRESH', AGENT_DEFAULTS.bundleRefresh))
    .addOption(envOption('--ca-http-address <host:port>', 'CA HTTPS API, for JWT-SVIDs over the Workload API', 'MESHCA_CA_HTTP_ADDRESS'))
    .addOption(envOption('--health-listen <host:port>', 'serve GET /healthz and /metrics here', 'MESHCA_HEALTH_LISTEN'))
    .addOption(federatedBundleOption(env))
    .addOption(
      envOption(
        '--federated-bundle-ca <file>',
        'PEM CAs that authenticate https:// federated bundle endpoints (default: the system roots)',
        'MESHCA_FEDERATED_BUNDLE_CA',
      ),
    )
    .action(async (opts: AgentOptionValues) => {
      const config = parseAgentConfig(opts);
      const logger = createLogger({ destination: io.stderr });
      const agent = await startAgent(config, { clock: io.clock, logger });
      // Rotation timers are unref'd (a library must not hold its host process open); the agent
      // process itself must stay up until it is told to stop, even with only --out to serve.
      const keepAlive = setInterval(() => undefined, 2 ** 30);
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals): void => {
          clearInterval(keepAlive);
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          logger.info({ signal }, 'shutting down');
          resolve();
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
      await agent.close();
    });
}
