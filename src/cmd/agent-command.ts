/**
 * `meshca agent`: the node/pod-side half of meshca. Wires the SvidRotator to the gRPC CA client,
 * the token and root files, the SVID output files, the SPIFFE Workload API socket and a
 * health/metrics endpoint, and (with `--federated-bundle`) the bundles of federated trust
 * domains. This is the composition root for the agent (STYLE: L4); everything
 * it wires is tested on its own.
 */
import { readFile } from 'node:fs/promises';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Command } from 'commander';
import { Registry } from '../transport/prometheus.js';
import { FederatedBundles, type FederatedBundleError } from '../agent/federated-bundles.js';
import { SvidRotator, type SvidRotatorError, type X509SvidUpdate } from '../agent/svid-rotator.js';
import type { Clock } from '../clock.js';
import { parseAgentConfig, type AgentConfig, type AgentOptionValues } from '../config/agent-config.js';
import { formatDuration } from '../config/duration.js';
import { ConfigError, isIdentityError } from '../errors.js';
import { createFileBundleSource } from '../files/bundle-file.js';
import { createFederatedBundleSource } from '../files/federated-bundles.js';
import { runPostRotationHook, writeSvidFiles } from '../files/svid-files.js';
import { createFileTokenSource } from '../files/token-file.js';
import { createLogger, type Logger } from '../log.js';
import { parseX509BundlePem, type X509Bundle } from '../spiffe/x509-bundle.js';
import { AgentMetrics } from '../transport/agent-metrics.js';
import { createGrpcCaClient, type GrpcCaClient } from '../transport/grpc/ca-client.js';
import type { WorkloadApiServer } from '../transport/grpc/workload-api-server.js';
import { createHealthServer } from '../transport/health-server.js';
import { errorLogFields } from '../transport/status.js';
import { addAgentOptions } from './agent-options.js';
import { waitForStopSignal, type CliIo } from './cli-common.js';

export interface AgentDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly random?: () => number;
  /** Where the agent's metrics register; `meshca sidecar` passes the one its proxies share. */
  readonly registry?: Registry;
}

export interface RunningAgent {
  /** The X.509 source: the own SVID and bundle, and the federated bundles when configured. */
  readonly rotator: SvidRotator;
  readonly federation: FederatedBundles | undefined;
  readonly workloadApi: WorkloadApiServer | undefined;
  /** Where the health endpoint listens (port resolved when 0 was asked for). */
  readonly healthAddress: { readonly host: string; readonly port: number } | undefined;
  readonly registry: Registry;
  /** Undefined while a valid SVID is held; otherwise why not, one line (for /ready). */
  notReady(): string | undefined;
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
  const metrics = new AgentMetrics(rotator, clock, federation, deps.registry ?? new Registry());
  const notReady = (): string | undefined => {
    try {
      rotator.getX509Svid();
      return undefined;
    } catch (err) {
      // The message names the state and the last CA failure; it holds no secret.
      return (err as Error).message;
    }
  };

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

  let lastFailure: string | undefined;
  rotator.on('update', (update) => {
    if (update.reason === 'svid') {
      lastFailure = undefined;
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
  // A failure that repeats the previous one word for word (a CA still down, a name still
  // wrong) is logged at debug: the first line said it, the metric counts the rest. The stack of a
  // coded error says nothing an operator can act on, so it is only logged at debug.
  rotator.on('error', (event: SvidRotatorError) => {
    const fields = {
      ...errorLogFields(event.error),
      attempt: event.attempt,
      nextAttemptAt: event.nextAttemptAt?.toISOString(),
      svidValid: event.svidValid,
    };
    const err = event.error;
    const said = isIdentityError(err) ? `${event.kind}:${err.code}:${err.rule ?? ''}:${err.message}` : undefined;
    const repeated = said !== undefined && said === lastFailure;
    lastFailure = said;
    logger.debug({ err: event.error, kind: event.kind, attempt: event.attempt }, 'failure detail');
    if (event.kind === 'rotation') {
      metrics.failures.inc();
      const message = event.svidValid ? 'SVID rotation failed; still serving the current SVID' : 'cannot obtain an SVID; retrying';
      if (repeated) logger.debug(fields, `${message} (same failure again)`);
      else logger.warn(fields, message);
    } else if (event.kind === 'expired') {
      logger.error(fields, 'the X.509-SVID expired without a replacement; workloads have no identity until the CA answers');
    } else if (repeated) {
      logger.debug(fields, 'cannot read the trust bundle; keeping the last good one (same failure again)');
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
  let closeJwt: (() => void) | undefined;
  let healthAddress: { host: string; port: number } | undefined;
  try {
    if (config.workloadApiSocket !== undefined) {
      // Loaded only when served: a sidecar that keeps the SVID in memory never loads the
      // Workload API server (grpc-js), nor jose for its JWT-SVID RPCs.
      const { startWorkloadApiServer } = await import('../transport/grpc/workload-api-server.js');
      // JWT-SVIDs from the CA's HTTPS API when --ca-http-address names it, else over the gRPC
      // port the X.509-SVIDs come from.
      const jwtRoots = (): string => rotator.getX509BundleForTrustDomain(config.trustDomain)?.toPem() ?? rootPem;
      const { createCaJwtClient } = await import('../transport/http/ca-jwt-client.js');
      const grpcJwt =
        config.caHttpAddress === undefined
          ? (await import('../transport/grpc/jwt-svid-client.js')).createGrpcJwtSvidTransport({
              address: config.caAddress,
              ...(config.insecure ? {} : { rootCertPem: jwtRoots }),
              ...(config.caServerName === undefined ? {} : { serverName: config.caServerName }),
              timeoutMs: config.caTimeoutMs,
            })
          : undefined;
      if (grpcJwt !== undefined) closeJwt = () => grpcJwt.close();
      const jwt = createCaJwtClient({
        address: config.caHttpAddress ?? config.caAddress,
        ...(grpcJwt === undefined ? {} : { transport: grpcJwt }),
        trustDomain: config.trustDomain,
        tokenSource,
        rootCertPem: jwtRoots,
        ...(config.caServerName === undefined ? {} : { serverName: config.caServerName }),
        timeoutMs: config.caTimeoutMs,
      });
      workloadApi = await startWorkloadApiServer({ socket: config.workloadApiSocket, source: rotator, logger: deps.logger, jwt });
    }
    if (config.healthListen !== undefined) {
      const server = createHealthServer({ registry: metrics.registry, notReady });
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
    closeJwt?.();
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
    registry: metrics.registry,
    notReady,
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
        closeJwt?.();
        await delivery;
      })();
      return closing;
    },
  };
}

export function buildAgentCommand(io: CliIo): Command {
  return addAgentOptions(new Command('agent'), io).action(async (opts: AgentOptionValues) => {
    const config = parseAgentConfig(opts);
    const logger = createLogger({ destination: io.stderr });
    const agent = await startAgent(config, { clock: io.clock, logger });
    const signal = await waitForStopSignal();
    logger.info({ signal }, 'shutting down');
    await agent.close();
  });
}
