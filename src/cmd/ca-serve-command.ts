import { Command, Option } from 'commander';
import { parseCaServeConfig } from '../config/ca-serve-config.js';
import type { CliIo } from './cli-common.js';
import { VERSION } from '../version.js';


const opt = (flags: string, description: string, env: string, fallback?: string): Option => {
  const option = new Option(flags, description).env(env);
  return fallback === undefined ? option : option.default(fallback);
};

export function buildCaServeCommand(io: CliIo): Command {
  const namespace = io.env['POD_NAMESPACE'] ?? 'meshca';
  return new Command('serve')
    .description('run the CA: Istio-compatible gRPC API and HTTP API, authenticating service-account tokens')
    .addOption(opt('--data-dir <dir>', 'CA data directory', 'MESHCA_DATA_DIR', './certs'))
    .addOption(opt('--trust-domain <name>', 'SPIFFE trust domain', 'MESHCA_TRUST_DOMAIN', 'cluster.local'))
    .addOption(opt('--grpc-listen <host:port>', 'gRPC API address', 'MESHCA_GRPC_LISTEN', '127.0.0.1:15012'))
    .addOption(opt('--http-listen <host:port>', 'HTTP API, bundle, health and metrics address', 'MESHCA_HTTP_LISTEN', '127.0.0.1:15014'))
    .addOption(opt('--monitoring-listen <host:port>', 'plain HTTP /metrics, /healthz and /readyz for Prometheus (off unless given; e.g. 0.0.0.0:15016)', 'MESHCA_MONITORING_LISTEN'))
    .addOption(opt('--auth <mode>', 'token authentication: dev (embedded issuer), jwks, tokenreview', 'MESHCA_AUTH', 'dev'))
    .addOption(opt('--audiences <list>', 'accepted token audiences, comma-separated', 'MESHCA_AUDIENCES', 'istio-ca'))
    .addOption(opt('--jwks-file <path>', 'JWKS file of the cluster issuer (auth jwks)', 'MESHCA_JWKS_FILE'))
    .addOption(opt('--jwks-uri <url>', 'JWKS URL of the cluster issuer (auth jwks)', 'MESHCA_JWKS_URI'))
    .addOption(opt('--oidc-issuer <url>', 'expected token issuer (auth jwks; discovery when no JWKS is given)', 'MESHCA_OIDC_ISSUER'))
    .addOption(opt('--auth-timeout <duration>', 'longest wait for the API server or JWKS endpoint per request', 'MESHCA_AUTH_TIMEOUT', '5s'))
    .addOption(opt('--kubeconfig <path>', 'kubeconfig for TokenReview (default: in-cluster or $KUBECONFIG)', 'KUBECONFIG'))
    .addOption(
      opt(
        '--serving-dns-names <list>',
        'DNS names in the CA serving certificate',
        'MESHCA_SERVING_DNS_NAMES',
        `meshca.${namespace}.svc,meshca.${namespace}.svc.cluster.local,localhost`,
      ),
    )
    .addOption(
      opt(
        '--serving-ip-addresses <list>',
        'IP addresses in the CA serving certificate, beside the ones it listens on (loopback for 0.0.0.0)',
        'MESHCA_SERVING_IP_ADDRESSES',
      ),
    )
    .addOption(opt('--max-connections <n|auto>', 'open connections per listener (gRPC, HTTPS); auto: half the file-descriptor room each', 'MESHCA_MAX_CONNECTIONS', 'auto'))
    .addOption(opt('--handshake-timeout <duration>', 'TLS handshake deadline, at most 10s', 'MESHCA_HANDSHAKE_TIMEOUT', '10s'))
    .addOption(opt('--request-timeout <duration>', 'HTTPS: deadline for a whole request (headers within 10s)', 'MESHCA_REQUEST_TIMEOUT', '15s'))
    .addOption(opt('--idle-timeout <duration>', 'a connection without requests in flight closes after this', 'MESHCA_IDLE_TIMEOUT', '60s'))
    .addOption(opt('--default-ttl <duration>', 'SVID lifetime when none is requested', 'MESHCA_DEFAULT_TTL', '24h'))
    .addOption(opt('--max-ttl <duration>', 'longest SVID lifetime a workload may request', 'MESHCA_MAX_TTL', '168h'))
    .addOption(opt('--rate-limit <per-second>', 'sustained requests per second per identity (0 = off)', 'MESHCA_RATE_LIMIT', '50'))
    .addOption(opt('--rate-burst <n>', 'burst per identity', 'MESHCA_RATE_BURST', '500'))
    .addOption(opt('--self-signed <bool>', 'create a self-signed root when the data dir has no CA', 'MESHCA_SELF_SIGNED', 'true'))
    .addOption(opt('--signing-workers <n|auto>', 'worker threads for CSR verification and signing (0 = main thread)', 'MESHCA_SIGNING_WORKERS', 'auto'))
    .addOption(opt('--root-resync-interval <duration>', '--kubernetes: how often the leader re-publishes the root to every namespace', 'MESHCA_ROOT_RESYNC_INTERVAL', '60s'))
    .addOption(opt('--cluster-id <id>', "the cluster callers' ClusterID header must name (Istio's CLUSTER_ID)", 'CLUSTER_ID', 'Kubernetes'))
    .addOption(new Option('--sidecar-injector', 'serve the sidecar injection webhook, POST /inject on the HTTPS port (AdmissionReview v1)').env('MESHCA_SIDECAR_INJECTOR'))
    .addOption(opt('--sidecar-image <ref>', `injected sidecar image (default meshca:${VERSION})`, 'MESHCA_SIDECAR_IMAGE'))
    .addOption(opt('--sidecar-image-pull-policy <policy>', 'injected sidecar: Always, IfNotPresent or Never', 'MESHCA_SIDECAR_IMAGE_PULL_POLICY'))
    .addOption(opt('--sidecar-ca-address <host:port>', `injected sidecar: this CA's gRPC address as pods reach it`, 'MESHCA_SIDECAR_CA_ADDRESS', `meshca.${namespace}.svc:15012`))
    .addOption(opt('--root-configmap <name>', 'ConfigMap the root is published in, key root-cert.pem (Istio: istio-ca-root-cert)', 'MESHCA_ROOT_CONFIGMAP', 'meshca-root-cert'))
    .addOption(opt('--log-level <level>', 'log level', 'MESHCA_LOG_LEVEL', 'info'))
    .addOption(new Option('--kubernetes', 'keep the CA in a Secret, elect a leader (Lease) and publish the root to every namespace').env('MESHCA_KUBERNETES'))
    .addOption(opt('--pod-namespace <ns>', 'namespace of this CA pod (downward API)', 'POD_NAMESPACE'))
    .addOption(opt('--pod-name <name>', 'name of this CA pod, the leader-election identity (downward API)', 'POD_NAME'))
    .addOption(new Option('--insecure', 'serve gRPC and HTTP without TLS (tests and local debugging only)').env('MESHCA_INSECURE'))
    .addOption(new Option('--config <file>', 'YAML file with any of these options (flags and env win)').env('MESHCA_CONFIG'))
    .action(async (_opts: Record<string, unknown>, command: Command) => {
      // Commander turns a boolean flag on whenever its variable is set, even to "false".
      for (const [name, variable] of [['insecure', 'MESHCA_INSECURE'], ['kubernetes', 'MESHCA_KUBERNETES'], ['sidecarInjector', 'MESHCA_SIDECAR_INJECTOR']] as const) {
        if (command.getOptionValueSource(name) === 'env') command.setOptionValueWithSource(name, io.env[variable] ?? '', 'env');
      }
      const configFile = command.getOptionValue('config') as string | undefined;
      if (configFile) await (await import('./config-file.js')).applyConfigFile(command, configFile);
      const config = parseCaServeConfig(command.opts());
      const [{ startCa }, { createLogger }] = await Promise.all([import('./ca-runtime.js'), import('../log.js')]);
      const logger = createLogger({ level: config.logLevel, destination: io.stderr });
      const running = await startCa(config, { logger, clock: io.clock });
      io.stdout.write(`meshca CA ready: grpc port ${running.grpcPort}, http port ${running.httpPort}\n`);
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          logger.info({ signal }, 'shutting down');
          running.close().then(resolve, (err: unknown) => {
            logger.error({ err }, 'shutdown failed');
            resolve();
          });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });
}
