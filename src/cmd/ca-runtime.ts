import { createServer as createHttpsServer } from 'node:https';
import type { Server as NodeServer } from 'node:http';
import { CachingAuthenticator, type Authenticator } from '../authn/authenticator.js';
import { AuthBackendHealth } from '../authn/backend-health.js';
import { createJwksAuthenticator } from '../authn/jwks.js';
import { CertificateAuthority } from '../ca/certificate-authority.js';
import { IssuanceService } from '../ca/issuance-service.js';
import { RateLimiter } from '../ca/rate-limiter.js';
import { ServingCertificateManager } from '../ca/serving-certificate.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { CaServeConfig } from '../config/ca-serve-config.js';
import { CaNotReadyError } from '../errors.js';
import { readAuthorityFiles, writeAuthorityFiles } from '../files/authority-files.js';
import { loadOrCreateDevIssuer } from '../files/dev-issuer-store.js';
import type { Logger } from '../log.js';
import { createSelfSignedRoot, loadAuthority } from '../pki/authority.js';
import { SigningPool } from '../workers/signing-pool.js';
import { caNotReadyReason } from '../ca/readiness.js';
import type { JWK } from 'jose';
import type { AddressInfo } from 'node:net';
import { createCaGrpcServer, createRotatingServerCredentials, listenGrpc } from '../transport/grpc/ca-server.js';
import { capConnections, ConnectionMetrics, httpServerLimits } from '../transport/connection-limits.js';
import { addJwtSvidService } from '../transport/grpc/jwt-svid-service.js';
import { buildHttpApp } from '../transport/http/app.js';
import { formatSpiffeBundleJwks } from '../spiffe/bundle-jwks.js';
import { CaMetrics } from '../transport/metrics.js';
import { createHealthServer } from '../transport/health-server.js';
import { listenOn } from './proxy-parts.js';
import { ServerCredentials } from '@grpc/grpc-js';
import { AuthorityRotation, checkAuthorityLifetime, type AuthoritySnapshot } from '../ca/authority-rotation.js';
import { AutoRotator } from '../ca/auto-rotator.js';
import type { SvidSigner } from '../ca/issuance-service.js';
import { createFileAuthorityStore, loadAuthoritySnapshot, mirrorStoredAuthority, recoverAuthorityDir } from '../files/authority-slots.js';
import type { SecretAuthorityStore } from '../k8s/authority-secret-store.js';
import { watchAuthorityDir } from '../files/authority-watcher.js';
import type { KubeConfig } from '@kubernetes/client-node';
import { join } from 'node:path';
import { JwtSvidIssuer } from '../ca/jwt-svid-issuer.js';
import { loadOrCreatePrivateJwk } from '../files/private-jwk-store.js';

/** The CA's JWT-SVID signing key, beside the X.509 CA files. */
export const JWT_SIGNING_KEY_FILE = 'jwt-signing-key.json';

export interface RunningCa {
  readonly grpcPort: number;
  readonly httpPort: number;
  /** With --monitoring-listen. */
  readonly monitoringPort?: number;
  readonly issuance: IssuanceService;
  readonly serving: ServingCertificateManager;
  /** What `/readyz` reports: why this CA cannot serve now, or undefined when it can. */
  readiness(): string | undefined;
  /** Graceful shutdown: not ready at once, in-flight calls finish, then the servers stop. */
  close(): Promise<void>;
}

export interface StartCaOptions {
  readonly logger: Logger;
  readonly clock: Clock;
}

/** The cluster-facing parts of the CA, imported on demand (see startCa). */
async function loadKubernetesParts() {
  const [{ createKubeConfig, startKubernetesIntegration }, { loadOrCreateAuthoritySecret }, { loadOrCreateJwtKeySecret }, { createSecretAuthorityStore, AuthoritySecretFollower }, { findNamespacesWithoutRoot }] =
    await Promise.all([
      import('./ca-kubernetes.js'),
      import('../k8s/authority-secret.js'),
      import('../k8s/jwt-key-secret.js'),
      import('../k8s/authority-secret-store.js'),
      import('../k8s/root-publisher.js'),
    ]);
  return { createKubeConfig, startKubernetesIntegration, loadOrCreateAuthoritySecret, loadOrCreateJwtKeySecret, createSecretAuthorityStore, AuthoritySecretFollower, findNamespacesWithoutRoot };
}

/** Makes sure the data dir holds a CA: validates what is there, or creates a self-signed root. */
async function ensureAuthority(config: CaServeConfig, { logger, clock }: StartCaOptions): Promise<void> {
  try {
    const files = await readAuthorityFiles(config.dataDir);
    for (const warning of files.warnings) logger.warn({ dataDir: config.dataDir }, warning);
    loadAuthority(files, clock.now());
    return;
  } catch (err) {
    if (!(err instanceof CaNotReadyError && err.rule === 'missing' && config.selfSigned)) throw err;
  }
  // Like istiod without cacerts: the first start creates a self-signed root.
  const root = await createSelfSignedRoot({ trustDomain: config.trustDomain.name, now: clock.now() });
  await writeAuthorityFiles(config.dataDir, { ...root, rootPem: root.certPem });
  logger.info({ dataDir: config.dataDir, trustDomain: config.trustDomain.name }, 'created a self-signed root CA');
}

async function createAuthenticator(config: CaServeConfig, { logger, clock }: StartCaOptions): Promise<{ authenticator: Authenticator; backend?: AuthBackendHealth }> {
  let inner: Authenticator;
  let backend: AuthBackendHealth | undefined;
  switch (config.auth) {
    case 'dev': {
      const dev = await loadOrCreateDevIssuer(config.dataDir);
      for (const warning of dev.warnings) logger.warn({ path: dev.path }, warning);
      inner = createJwksAuthenticator({ issuer: dev.issuer.issuer, audiences: config.audiences, jwks: { keys: dev.issuer.publicJwks() }, clock });
      logger.info({ issuer: dev.issuer.issuer, keyFile: dev.path }, 'dev authentication: tokens minted by `meshca token` are accepted');
      break;
    }
    case 'jwks':
      inner = createJwksAuthenticator({
        issuer: config.oidcIssuer,
        audiences: config.audiences,
        clock,
        fetchTimeoutMs: config.authTimeoutMs,
        ...(config.jwksFile ? { jwks: { file: config.jwksFile } } : config.jwksUri ? { jwks: { uri: config.jwksUri } } : { discovery: true }),
      });
      break;
    case 'tokenreview': {
      const [{ createKubeConfig }, { createTokenReviewAuthenticator }] = await Promise.all([import('./ca-kubernetes.js'), import('../authn/token-review.js')]);
      const kubeConfig = createKubeConfig(config.kubeconfig);
      backend = new AuthBackendHealth(createTokenReviewAuthenticator({ kubeConfig, audiences: config.audiences, logger, clock, timeoutMs: config.authTimeoutMs }));
      inner = backend;
      break;
    }
  }
  return { authenticator: new CachingAuthenticator(inner, { clock }), ...(backend === undefined ? {} : { backend }) };
}

/**
 * How often the TokenReview backend is probed: often while it cannot give verdicts (so readiness
 * returns soon after it does; a not-ready replica gets no requests to find out by), rarely while
 * it can (real reviews keep the state current then).
 */
const AUTH_PROBE_UNHEALTHY_MS = 10_000;
const AUTH_PROBE_HEALTHY_MS = 60_000;

/** Wires and starts the CA: authority, authentication, gRPC and HTTP APIs, serving certificate. */
export async function startCa(config: CaServeConfig, options: StartCaOptions): Promise<RunningCa> {
  const { logger, clock } = options;
  await recoverAuthorityDir(config.dataDir).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return 'clean' as const;
  });
  // The Kubernetes client is hundreds of modules: loaded only in the modes that talk to a cluster,
  // so a CA on files starts fast, small, and within a low open-file limit.
  const k8s = config.kubernetes ? await loadKubernetesParts() : undefined;
  const kubeConfig = k8s?.createKubeConfig(config.kubeconfig);
  let secretStore: SecretAuthorityStore | undefined;
  let secretVersion: string | undefined;
  if (config.kubernetes && k8s && kubeConfig) {
    // The cluster is the source of truth: materialize the Secret's CA into the (emptyDir) data
    // dir, so rotation, the watcher and the signing workers work exactly as with files.
    const pem = await k8s.loadOrCreateAuthoritySecret({
      kubeConfig,
      namespace: config.kubernetes.namespace,
      logger,
      ...(config.selfSigned
        ? {
            create: async () => {
              const root = await createSelfSignedRoot({ trustDomain: config.trustDomain.name, now: clock.now() });
              return { ...root, rootPem: root.certPem };
            },
          }
        : {}),
    });
    if (pem.source === 'plugin') {
      await writeAuthorityFiles(config.dataDir, pem, { force: true });
    } else {
      // meshca's own Secret carries the rotation slots too: the data dir mirrors all of it, and
      // follows it (see the follower below), so rotations reach every replica.
      secretStore = k8s.createSecretAuthorityStore({ kubeConfig, namespace: config.kubernetes.namespace, name: pem.secretName, logger });
      const { resourceVersion, stored } = await secretStore.readVersioned();
      await mirrorStoredAuthority(config.dataDir, stored);
      secretVersion = resourceVersion;
    }
    logger.info({ source: pem.source, secret: pem.secretName, namespace: config.kubernetes.namespace }, 'CA loaded from the cluster');
  }
  await ensureAuthority(config, options);
  let snapshot = await loadAuthoritySnapshot(config.dataDir, { trustDomain: config.trustDomain, now: clock.now() });
  for (const note of snapshot.notes) logger.info({ dataDir: config.dataDir }, note);
  try {
    checkAuthorityLifetime({ authorityNotAfter: snapshot.authority.notAfter, maxSvidTtlSeconds: config.maxTtlSeconds, now: clock.now() });
  } catch (err) {
    // With a successor prepared the operator is mid-rotation: serve, but say so loudly.
    if (!snapshot.next) throw err;
    logger.warn({ err }, 'the active CA is close to its end; activate the prepared authority');
  }
  const caOptions = { defaultTtlSeconds: config.defaultTtlSeconds, maxTtlSeconds: config.maxTtlSeconds };
  const build = (s: AuthoritySnapshot): { ca: CertificateAuthority; pool: SigningPool | undefined } => {
    const ca = new CertificateAuthority({ ...caOptions, authority: s.authority, clock });
    const pool = config.signingWorkers > 0 ? new SigningPool({ ca, authority: s.authorityPem, workers: config.signingWorkers, clock, logger, caOptions }) : undefined;
    return { ca, pool };
  };
  let current = build(snapshot);
  // Issuance and the serving certificate hold this view; an authority change swaps what is behind it.
  const signer: SvidSigner & Pick<CertificateAuthority, 'issueServingCertificate' | 'rootsPem'> = {
    sign: (csr, id, o) => (current.pool ?? current.ca).sign(csr, id, o),
    resolveTtlSeconds: (ttl) => current.ca.resolveTtlSeconds(ttl),
    issueServingCertificate: (key, o) => current.ca.issueServingCertificate(key, o),
    get rootsPem() {
      return snapshot.bundle.toPem();
    },
  };
  const generateJwtKey = async (): Promise<JWK> => (await JwtSvidIssuer.generate()).exportPrivateJwk();
  let jwtKey: JWK;
  if (config.kubernetes && k8s && kubeConfig) {
    // One key for all replicas, or a JWT-SVID from one fails against another's bundle.
    jwtKey = (await k8s.loadOrCreateJwtKeySecret({ kubeConfig, namespace: config.kubernetes.namespace, generate: generateJwtKey, logger })).jwk;
  } else {
    const stored = await loadOrCreatePrivateJwk(join(config.dataDir, JWT_SIGNING_KEY_FILE), generateJwtKey, 'JWT-SVIDs for any workload');
    for (const warning of stored.warnings) logger.warn({ dataDir: config.dataDir }, warning);
    jwtKey = stored.jwk;
  }
  const { authenticator, backend: authBackend } = await createAuthenticator(config, options);
  // TokenReview mode: know before the first request whether the API server can give verdicts,
  // and keep probing, so /readyz says why and recovers by itself.
  let authProbeTimer: TimerHandle | undefined;
  let authProbeClosed = false;
  let lastAuthProblem: string | undefined;
  const probeAuth = async (): Promise<void> => {
    if (authBackend === undefined || authProbeClosed) return;
    const problem = await authBackend.probe();
    if (problem !== lastAuthProblem) {
      if (problem !== undefined) logger.warn({ reason: problem }, 'not ready: the TokenReview backend cannot give verdicts');
      else if (lastAuthProblem !== undefined) logger.info('the TokenReview backend answers again');
      lastAuthProblem = problem;
    }
    if (!authProbeClosed) authProbeTimer = clock.setTimeout(() => void probeAuth(), problem === undefined ? AUTH_PROBE_HEALTHY_MS : AUTH_PROBE_UNHEALTHY_MS);
  };
  await probeAuth();
  const issuance = new IssuanceService({
    ca: signer,
    jwtIssuer: await JwtSvidIssuer.fromPrivateJwk(jwtKey),
    clock,
    authenticator,
    trustDomain: config.trustDomain,
    rateLimiter: new RateLimiter({ ratePerSecond: config.rateLimitPerSecond, burst: config.rateLimitBurst, clock }),
  });
  const metrics = new CaMetrics({
    defaultMetrics: true,
    caNotAfter: () => snapshot.authority.notAfter,
    caSerial: () => snapshot.authority.certificate.serialNumber.toLowerCase(),
    bundleRoots: () => snapshot.bundle.roots,
    now: () => clock.now(),
  });
  const serving = new ServingCertificateManager({ ca: signer, dnsNames: config.servingDnsNames, ipAddresses: config.servingIpAddresses, clock, logger });
  const material = await serving.start();

  // The per-call deadline leaves room for authentication's own timeout to report first.
  const grpcServer = createCaGrpcServer({ issuance, logger, metrics, requestTimeoutMs: config.authTimeoutMs + 5000, idleTimeoutMs: config.limits.idleTimeoutMs, clusterId: config.clusterId });
  let grpcCredentials: ServerCredentials;
  if (config.insecure) {
    grpcCredentials = ServerCredentials.createInsecure();
  } else {
    const rotating = createRotatingServerCredentials(material);
    serving.on('update', (m) => rotating.update(m));
    grpcCredentials = rotating.credentials;
  }
  addJwtSvidService(grpcServer, {
    issuance,
    logger,
    requestTimeoutMs: config.authTimeoutMs + 5000,
    bundleJson: () =>
      JSON.stringify(
        formatSpiffeBundleJwks(snapshot.bundle.roots, { sequence: snapshot.bundle.sequence, refreshHintSeconds: 300, jwtAuthorities: issuance.jwtAuthority ? [issuance.jwtAuthority] : [] }),
      ),
  });
  const connectionMetrics = new ConnectionMetrics(metrics.registry);
  const grpcListener = await listenGrpc(grpcServer, grpcCredentials, config.grpcListen, config.limits, { logger, metrics: connectionMetrics });
  const grpcPort = (grpcListener.address() as AddressInfo).port;

  let draining = false;
  let closing: Promise<void> | undefined;
  const readiness = (): string | undefined =>
    caNotReadyReason({
      now: clock.now(),
      draining,
      authorityNotAfter: snapshot.authority.notAfter,
      ...(config.insecure ? {} : { servingNotAfter: serving.current.notAfter }),
      authBackendProblem: authBackend?.problem,
    });
  const app = buildHttpApp({
    issuance,
    logger,
    metrics,
    bundle: () => ({
      trustDomain: config.trustDomain.name,
      authorities: snapshot.bundle.roots,
      rootsPem: snapshot.bundle.toPem(),
      sequence: snapshot.bundle.sequence,
      refreshHintSeconds: 300,
      jwtAuthorities: issuance.jwtAuthority ? [issuance.jwtAuthority] : [],
    }),
    ready: () => readiness(),
    ...(config.sidecarInjector ? { injection: config.sidecarInjector } : {}),
    ...(config.insecure
      ? {}
      : {
          serverFactory: (handler) => {
            const server = createHttpsServer({ cert: material.certChainPem, key: material.keyPem, minVersion: 'TLSv1.2', ...httpServerLimits(config.limits) }, handler);
            serving.on('update', (m) => server.setSecureContext({ cert: m.certChainPem, key: m.keyPem, minVersion: 'TLSv1.2' }));
            capConnections(server, 'https', config.limits, { logger, metrics: connectionMetrics });
            return server as unknown as NodeServer;
          },
        }),
  });
  await app.listen({ host: config.httpListen.host, port: config.httpListen.port });
  // Prometheus scrapes plain HTTP, as istiod's http-monitoring port: metrics and health only,
  // nothing a client could use to get a certificate.
  let monitoring: NodeServer | undefined;
  let monitoringPort: number | undefined;
  if (config.monitoringListen) {
    monitoring = createHealthServer({ registry: metrics.registry, notReady: () => readiness() });
    capConnections(monitoring, 'monitoring', { ...config.limits, maxConnections: 64 }, { logger, metrics: connectionMetrics });
    monitoringPort = await listenOn(monitoring, config.monitoringListen, 'monitoring');
  }
  // `meshca ca rotate` and re-issued plug-in files take effect without a restart.
  const watcher = watchAuthorityDir(config.dataDir, {
    trustDomain: config.trustDomain,
    clock,
    initial: snapshot,
    onChange: (next) => {
      const previous = current;
      current = build(next);
      snapshot = next;
      void previous.pool?.close();
      logger.info(
        { serial: next.authority.certificate.serialNumber.toLowerCase(), notAfter: next.authority.notAfter.toISOString(), bundleSequence: next.bundle.sequence, roots: next.bundle.roots.length },
        'CA authority or trust bundle changed',
      );
      serving.renew().catch((err: unknown) => logger.error({ err }, 'serving certificate renewal after an authority change failed'));
      kubernetes?.refreshRoots();
    },
    onError: (err) => logger.warn({ err }, 'CA files changed but are not usable; keeping the current authority'),
  });
  const kubernetes =
    config.kubernetes && k8s && kubeConfig
      ? await k8s.startKubernetesIntegration({
          kubeConfig,
          namespace: config.kubernetes.namespace,
          identity: config.kubernetes.podName,
          rootsPem: () => snapshot.bundle.toPem(),
          configMapName: config.rootConfigMap,
          resyncIntervalMs: config.rootResyncIntervalMs,
          injectionWebhook: config.sidecarInjector !== undefined,
          logger,
          clock,
        })
      : undefined;
  // Each replica follows the CA Secret into its data dir; the watcher then swaps the authority.
  const followerStop = new AbortController();
  const follower =
    secretStore && k8s
      ? new k8s.AuthoritySecretFollower({
          store: secretStore,
          ...(secretVersion === undefined ? {} : { initialVersion: secretVersion }),
          clock,
          logger,
          onChange: async (stored) => {
            if ((await mirrorStoredAuthority(config.dataDir, stored)) === 'changed') await watcher.check();
          },
        })
      : undefined;
  const following = follower?.run(followerStop.signal);
  // Self-signed roots renew themselves: prepare, publish, activate, retire, each at its time.
  // Plug-in authorities are never replaced automatically. With --kubernetes the Secret is the
  // store, the leader alone drives rotation, and activation waits until every namespace's
  // root ConfigMap holds the new root.
  const rotation = secretStore
    ? new AuthorityRotation({
        store: secretStore,
        trustDomain: config.trustDomain,
        maxSvidTtlSeconds: config.maxTtlSeconds,
        refreshHintSeconds: 300,
        activationGate: async (next) => {
          const missing = await k8s!.findNamespacesWithoutRoot({ kubeConfig: kubeConfig!, fingerprint: next.anchor.fingerprint256, configMapName: config.rootConfigMap });
          return missing.length === 0 ? undefined : `the ${config.rootConfigMap} ConfigMap of ${missing.length} namespace(s) (${missing.slice(0, 5).join(', ')}) lacks the prepared root`;
        },
      })
    : config.kubernetes
      ? undefined
      : new AuthorityRotation({ store: createFileAuthorityStore(config.dataDir), trustDomain: config.trustDomain, maxSvidTtlSeconds: config.maxTtlSeconds, refreshHintSeconds: 300 });
  const rotationStop = new AbortController();
  const autoRotation = rotation
    ? new AutoRotator({
        rotation,
        clock,
        logger,
        // One driver per store: with --kubernetes the leader; the others follow the Secret.
        ...(kubernetes ? { shouldDrive: () => kubernetes.elector.isLeader } : {}),
        onStep: () => {
          follower?.poke();
          void watcher.check();
        },
      }).run(rotationStop.signal)
    : undefined;
  const address = app.server.address();
  const httpPort = typeof address === 'object' && address ? address.port : config.httpListen.port;
  logger.info(
    {
      trustDomain: config.trustDomain.name,
      grpc: `${config.grpcListen.host}:${grpcPort}`,
      http: `${config.insecure ? 'http' : 'https'}://${config.httpListen.host}:${httpPort}`,
      ...(monitoringPort === undefined ? {} : { monitoring: `http://${config.monitoringListen!.host}:${monitoringPort}` }),
      auth: config.auth,
      tls: !config.insecure,
      caNotAfter: snapshot.authority.notAfter.toISOString(),
      bundleSequence: snapshot.bundle.sequence,
      signingWorkers: config.signingWorkers,
    },
    'meshca CA serving',
  );

  return {
    grpcPort,
    httpPort,
    ...(monitoringPort === undefined ? {} : { monitoringPort }),
    issuance,
    serving,
    readiness,
    close() {
      closing ??= shutdown();
      return closing;
    },
  };

  async function shutdown(): Promise<void> {
    draining = true;
    rotationStop.abort();
    authProbeClosed = true;
    if (authProbeTimer) clock.clearTimeout(authProbeTimer);
    watcher.close();
    followerStop.abort();
    await following;
    // Stop taking calls and let the ones in flight finish before their signer goes away.
    await Promise.all([
      new Promise<void>((resolve) => {
        const force = setTimeout(() => grpcServer.forceShutdown(), 5000);
        grpcListener.close();
        grpcServer.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
      app.close(),
      new Promise<void>((resolve) => (monitoring ? monitoring.close(() => resolve()) : resolve())),
    ]);
    await autoRotation;
    await kubernetes?.close();
    serving.close();
    await current.pool?.close();
  }
}
