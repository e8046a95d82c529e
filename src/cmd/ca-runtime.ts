import { createServer as createHttpsServer } from 'node:https';
import type { Server as NodeServer } from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import { CachingAuthenticator, type Authenticator } from '../authn/authenticator.js';
import { createJwksAuthenticator } from '../authn/jwks.js';
import { createTokenReviewAuthenticator } from '../authn/token-review.js';
import { CertificateAuthority } from '../ca/certificate-authority.js';
import { IssuanceService } from '../ca/issuance-service.js';
import { RateLimiter } from '../ca/rate-limiter.js';
import { ServingCertificateManager } from '../ca/serving-certificate.js';
import type { Clock } from '../clock.js';
import type { CaServeConfig } from '../config/ca-serve-config.js';
import { CaNotReadyError } from '../errors.js';
import { readAuthorityFiles, writeAuthorityFiles } from '../files/authority-files.js';
import { loadOrCreateDevIssuer } from '../files/dev-issuer-store.js';
import type { Logger } from '../log.js';
import { createSelfSignedRoot, loadAuthority, type Authority, type AuthorityPem } from '../pki/authority.js';
import { SigningPool } from '../workers/signing-pool.js';
import { bindServer, createCaGrpcServer, createRotatingServerCredentials } from '../transport/grpc/ca-server.js';
import { buildHttpApp } from '../transport/http/app.js';
import { CaMetrics } from '../transport/metrics.js';
import { ServerCredentials } from '@grpc/grpc-js';
import { join } from 'node:path';
import { JwtSvidIssuer } from '../ca/jwt-svid-issuer.js';
import { loadOrCreatePrivateJwk } from '../files/private-jwk-store.js';

/** The CA's JWT-SVID signing key, beside the X.509 CA files. */
export const JWT_SIGNING_KEY_FILE = 'jwt-signing-key.json';

export interface RunningCa {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly issuance: IssuanceService;
  readonly serving: ServingCertificateManager;
  close(): Promise<void>;
}

export interface StartCaOptions {
  readonly logger: Logger;
  readonly clock: Clock;
}

async function openAuthority(config: CaServeConfig, { logger, clock }: StartCaOptions): Promise<{ authority: Authority; pem: AuthorityPem }> {
  try {
    const files = await readAuthorityFiles(config.dataDir);
    for (const warning of files.warnings) logger.warn({ dataDir: config.dataDir }, warning);
    return { authority: loadAuthority(files, clock.now()), pem: files };
  } catch (err) {
    if (!(err instanceof CaNotReadyError && err.rule === 'missing' && config.selfSigned)) throw err;
  }
  // Like istiod without cacerts: the first start creates a self-signed root.
  const now = clock.now();
  const root = await createSelfSignedRoot({ trustDomain: config.trustDomain.name, now });
  const pem: AuthorityPem = { ...root, rootPem: root.certPem };
  await writeAuthorityFiles(config.dataDir, pem);
  logger.info({ dataDir: config.dataDir, trustDomain: config.trustDomain.name }, 'created a self-signed root CA');
  return { authority: loadAuthority(pem, now), pem };
}

async function createAuthenticator(config: CaServeConfig, { logger, clock }: StartCaOptions): Promise<Authenticator> {
  let inner: Authenticator;
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
      const kubeConfig = new KubeConfig();
      if (config.kubeconfig) kubeConfig.loadFromFile(config.kubeconfig);
      else kubeConfig.loadFromDefault();
      inner = createTokenReviewAuthenticator({ kubeConfig, audiences: config.audiences, logger, clock, timeoutMs: config.authTimeoutMs });
      break;
    }
  }
  return new CachingAuthenticator(inner, { clock });
}

/** Wires and starts the CA: authority, authentication, gRPC and HTTP APIs, serving certificate. */
export async function startCa(config: CaServeConfig, options: StartCaOptions): Promise<RunningCa> {
  const { logger, clock } = options;
  const { authority, pem } = await openAuthority(config, options);
  const caOptions = { defaultTtlSeconds: config.defaultTtlSeconds, maxTtlSeconds: config.maxTtlSeconds };
  const ca = new CertificateAuthority({ ...caOptions, authority, clock });
  const pool =
    config.signingWorkers > 0
      ? new SigningPool({ ca, authority: pem, workers: config.signingWorkers, clock, logger, caOptions })
      : undefined;
  const jwtKey = await loadOrCreatePrivateJwk(
    join(config.dataDir, JWT_SIGNING_KEY_FILE),
    async () => (await JwtSvidIssuer.generate()).exportPrivateJwk(),
    'JWT-SVIDs for any workload',
  );
  for (const warning of jwtKey.warnings) logger.warn({ dataDir: config.dataDir }, warning);
  const issuance = new IssuanceService({
    ca: pool ?? ca,
    jwtIssuer: await JwtSvidIssuer.fromPrivateJwk(jwtKey.jwk),
    clock,
    authenticator: await createAuthenticator(config, options),
    trustDomain: config.trustDomain,
    rateLimiter: new RateLimiter({ ratePerSecond: config.rateLimitPerSecond, burst: config.rateLimitBurst, clock }),
  });
  const metrics = new CaMetrics({
    defaultMetrics: true,
    caNotAfter: () => authority.notAfter,
    caSerial: () => authority.certificate.serialNumber.toLowerCase(),
    now: () => clock.now(),
  });
  const serving = new ServingCertificateManager({ ca, dnsNames: config.servingDnsNames, clock, logger });
  const material = await serving.start();

  // The per-call deadline leaves room for authentication's own timeout to report first.
  const grpcServer = createCaGrpcServer({ issuance, logger, metrics, requestTimeoutMs: config.authTimeoutMs + 5000 });
  let grpcCredentials: ServerCredentials;
  if (config.insecure) {
    grpcCredentials = ServerCredentials.createInsecure();
  } else {
    const rotating = createRotatingServerCredentials(material);
    serving.on('update', (m) => rotating.update(m));
    grpcCredentials = rotating.credentials;
  }
  const grpcHost = config.grpcListen.host.includes(':') ? `[${config.grpcListen.host}]` : config.grpcListen.host;
  const grpcPort = await bindServer(grpcServer, `${grpcHost}:${config.grpcListen.port}`, grpcCredentials);

  const bundleSequence = 1;
  const app = buildHttpApp({
    issuance,
    logger,
    metrics,
    bundle: () => ({
      trustDomain: config.trustDomain.name,
      authorities: authority.roots,
      rootsPem: ca.rootsPem,
      sequence: bundleSequence,
      refreshHintSeconds: 300,
      jwtAuthorities: issuance.jwtAuthority ? [issuance.jwtAuthority] : [],
    }),
    ready: () => undefined,
    ...(config.insecure
      ? {}
      : {
          serverFactory: (handler) => {
            const server = createHttpsServer({ cert: material.certChainPem, key: material.keyPem, minVersion: 'TLSv1.2' }, handler);
            serving.on('update', (m) => server.setSecureContext({ cert: m.certChainPem, key: m.keyPem, minVersion: 'TLSv1.2' }));
            return server as unknown as NodeServer;
          },
        }),
  });
  await app.listen({ host: config.httpListen.host, port: config.httpListen.port });
  const address = app.server.address();
  const httpPort = typeof address === 'object' && address ? address.port : config.httpListen.port;
  logger.info(
    {
      trustDomain: config.trustDomain.name,
      grpc: `${config.grpcListen.host}:${grpcPort}`,
      http: `${config.insecure ? 'http' : 'https'}://${config.httpListen.host}:${httpPort}`,
      auth: config.auth,
      tls: !config.insecure,
      caNotAfter: authority.notAfter.toISOString(),
      signingWorkers: config.signingWorkers,
    },
    'meshca CA serving',
  );

  return {
    grpcPort,
    httpPort,
    issuance,
    serving,
    async close() {
      serving.close();
      await pool?.close();
      await Promise.all([
        new Promise<void>((resolve) => {
          const force = setTimeout(() => grpcServer.forceShutdown(), 5000);
          grpcServer.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        }),
        app.close(),
      ]);
    },
  };
}
