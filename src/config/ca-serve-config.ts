import { parseListen, type ListenAddress } from './listen.js';
import { availableParallelism } from 'node:os';
import { ConfigError } from '../errors.js';
import { parseTrustDomain, type TrustDomain } from '../spiffe/trust-domain.js';
import { parseDurationSeconds } from './duration.js';
import { isIpAddress } from '../pki/ip-address.js';
import type { ListenerLimits } from './listener-limits.js';
import type { InjectionSettings } from '../inject/pod-injection.js';
import { parseInjectionSettings } from './injection-config.js';
import { VERSION } from '../version.js';
import { isDns1123Subdomain } from '../authn/authenticator.js';

export type AuthMode = 'dev' | 'jwks' | 'tokenreview';

/** Everything `meshca ca serve` needs, parsed once and frozen. */
export interface CaServeConfig {
  readonly dataDir: string;
  readonly trustDomain: TrustDomain;
  readonly grpcListen: { readonly host: string; readonly port: number };
  readonly httpListen: { readonly host: string; readonly port: number };
  /** Plain-HTTP /metrics, /healthz and /readyz for Prometheus and probes (istiod's http-monitoring); off when undefined. */
  readonly monitoringListen: ListenAddress | undefined;
  readonly auth: AuthMode;
  readonly audiences: readonly string[];
  readonly jwksFile: string | undefined;
  readonly jwksUri: string | undefined;
  readonly oidcIssuer: string;
  readonly kubeconfig: string | undefined;
  /** Longest wait for the authentication backend (API server, JWKS endpoint) per request. */
  readonly authTimeoutMs: number;
  readonly servingDnsNames: readonly string[];
  /**
   * IP addresses in the serving certificate: `--serving-ip-addresses`, the IP literals the CA
   * listens on, and loopback when it listens on every address.
   */
  readonly servingIpAddresses: readonly string[];
  readonly insecure: boolean;
  readonly defaultTtlSeconds: number;
  readonly maxTtlSeconds: number;
  readonly rateLimitPerSecond: number;
  readonly rateLimitBurst: number;
  readonly selfSigned: boolean;
  /** Keep CA state in the cluster: the CA Secret, the Lease, per-namespace root ConfigMaps. */
  readonly kubernetes: { readonly namespace: string; readonly podName: string } | undefined;
  /** Worker threads that verify CSRs and sign; 0 signs on the main thread. */
  readonly signingWorkers: number;
  /** Connection cap, handshake, request and idle timeouts of the gRPC and HTTPS listeners. */
  readonly limits: ListenerLimits;
  /** With --kubernetes: how often the leader re-publishes the root to every namespace (new namespaces, repairs). */
  readonly rootResyncIntervalMs: number;
  /** The cluster a caller's `ClusterID` header must name (Istio's CLUSTER_ID). */
  readonly clusterId: string;
  /** With --kubernetes, the ConfigMap the root is published in (`meshca-root-cert`; Istio's `istio-ca-root-cert`). */
  readonly rootConfigMap: string;
  /** Serve the sidecar injection webhook (`POST /inject` on the HTTPS port) with these settings. */
  readonly sidecarInjector: InjectionSettings | undefined;
  readonly logLevel: string;
}

/** Raw values as commander collected them (flags, env, config file, defaults): all strings/booleans. */
export type RawCaServeOptions = Readonly<Record<string, unknown>>;

/**
 * An in-process CA on loopback with the embedded dev issuer, ports chosen by the OS: what the
 * demo, the benchmarks and the tests start. Add `dataDir` and any overrides.
 */
export const LOOPBACK_CA_OPTIONS: RawCaServeOptions = Object.freeze({
  trustDomain: 'cluster.local',
  grpcListen: '127.0.0.1:0',
  httpListen: '127.0.0.1:0',
  auth: 'dev',
  audiences: 'istio-ca',
  servingDnsNames: 'localhost',
  defaultTtl: '24h',
  maxTtl: '168h',
  rateLimit: '50',
  rateBurst: '500',
});

/** The listeners' limits; each listener gets half the descriptor room when not told. */
function parseLimits(raw: RawCaServeOptions, problems: string[], attempt: <T>(fallback: T, fn: () => T) => T): ListenerLimits {
  const seconds = (key: string, flag: string, fallback: string): number => attempt(Number(fallback.replace('s', '')), () => parseDurationSeconds(String(raw[key] ?? fallback), flag));
  const handshake = seconds('handshakeTimeout', '--handshake-timeout', '10s');
  const request = seconds('requestTimeout', '--request-timeout', '15s');
  const idle = seconds('idleTimeout', '--idle-timeout', '60s');
  if (handshake < 1 || handshake > 10) problems.push('--handshake-timeout must be between 1s and 10s');
  if (request < 1) problems.push('--request-timeout must be at least 1s');
  if (idle < 1) problems.push('--idle-timeout must be at least 1s');
  const capRaw = String(raw['maxConnections'] ?? 'auto');
  const requested = capRaw === 'auto' ? undefined : Number(capRaw);
  if (requested !== undefined && (!Number.isInteger(requested) || requested < 1)) problems.push(`--max-connections ${JSON.stringify(capRaw)} must be auto or a whole number >= 1`);
  return {
    maxConnections: requested,
    connectionShare: 0.5,
    handshakeTimeoutMs: handshake * 1000,
    headersTimeoutMs: Math.min(10, request) * 1000,
    requestTimeoutMs: request * 1000,
    idleTimeoutMs: idle * 1000,
  };
}

/**
 * The addresses a client can dial this CA by: those named, each IP the CA listens on, and
 * loopback for a wildcard listener (an operator's `--ca-address 127.0.0.1:15012` on the node).
 */
function servingIps(explicit: readonly string[], listenHosts: readonly string[]): string[] {
  const ips = new Set(explicit.filter(isIpAddress));
  for (const host of listenHosts) {
    const bare = host.replace(/^\[(.*)\]$/, '$1');
    if (bare === '0.0.0.0') ips.add('127.0.0.1');
    else if (bare === '::') ips.add('127.0.0.1').add('::1');
    else if (isIpAddress(bare)) ips.add(bare);
  }
  return [...ips];
}

function listenOrDefault(value: unknown, flag: string, problems: string[]): ListenAddress {
  return parseListen(value, flag, problems) ?? { host: '127.0.0.1', port: 0 };
}

function list(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String).flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
  return String(value ?? '')
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

function bool(value: unknown): boolean {
  return value === true || value === 'true' || value === '1' || value === 'yes';
}

export function parseCaServeConfig(raw: RawCaServeOptions): CaServeConfig {
  const problems: string[] = [];
  const attempt = <T>(fallback: T, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof ConfigError) problems.push(...err.problems);
      else problems.push((err as Error).message);
      return fallback;
    }
  };
  let trustDomain: TrustDomain | undefined;
  try {
    trustDomain = parseTrustDomain(String(raw['trustDomain']));
  } catch (err) {
    problems.push(`--trust-domain: ${(err as Error).message}`);
  }
  const auth = String(raw['auth']);
  if (auth !== 'dev' && auth !== 'jwks' && auth !== 'tokenreview') problems.push(`--auth ${auth} must be dev, jwks or tokenreview`);
  const jwksFile = raw['jwksFile'] === undefined ? undefined : String(raw['jwksFile']);
  const jwksUri = raw['jwksUri'] === undefined ? undefined : String(raw['jwksUri']);
  // `--auth jwks` alone discovers the keys from the default issuer (the in-cluster API server's
  // https://kubernetes.default.svc.cluster.local), as documented for --oidc-issuer.
  const audiences = list(raw['audiences']);
  if (audiences.length === 0) problems.push('--audiences must name at least one audience (Istio uses istio-ca)');
  const defaultTtlSeconds = attempt(86_400, () => parseDurationSeconds(String(raw['defaultTtl']), '--default-ttl'));
  const maxTtlSeconds = attempt(604_800, () => parseDurationSeconds(String(raw['maxTtl']), '--max-ttl'));
  if (defaultTtlSeconds > maxTtlSeconds) problems.push('--default-ttl must not exceed --max-ttl');
  if (defaultTtlSeconds < 60) problems.push('--default-ttl must be at least 60s');
  const rateLimitPerSecond = Number(raw['rateLimit']);
  const rateLimitBurst = Number(raw['rateBurst']);
  if (!(rateLimitPerSecond >= 0)) problems.push('--rate-limit must be a number >= 0 (0 disables)');
  if (!(rateLimitBurst >= 1)) problems.push('--rate-burst must be a number >= 1');
  const authTimeoutSeconds = attempt(5, () => parseDurationSeconds(String(raw['authTimeout'] ?? '5s'), '--auth-timeout'));
  if (authTimeoutSeconds < 1 && problems.length === 0) problems.push('--auth-timeout must be at least 1s');
  const servingDnsNames = list(raw['servingDnsNames']);
  const workersRaw = String(raw['signingWorkers'] ?? 'auto');
  // One core stays with the event loop (gRPC, HTTP, token checks); the rest sign.
  const signingWorkers = workersRaw === 'auto' ? Math.max(0, Math.min(4, availableParallelism() - 1)) : Number(workersRaw);
  if (!Number.isInteger(signingWorkers) || signingWorkers < 0 || signingWorkers > 64) {
    problems.push(`--signing-workers ${JSON.stringify(workersRaw)} must be auto or a whole number 0..64`);
  }
  if (servingDnsNames.length === 0) problems.push('--serving-dns-names must name at least one DNS name');
  const limits = parseLimits(raw, problems, attempt);
  const grpcListen = listenOrDefault(raw['grpcListen'], '--grpc-listen', problems);
  const httpListen = listenOrDefault(raw['httpListen'], '--http-listen', problems);
  const monitoringListen = raw['monitoringListen'] === undefined ? undefined : parseListen(raw['monitoringListen'], '--monitoring-listen', problems);
  const explicitIps = list(raw['servingIpAddresses']);
  for (const ip of explicitIps) if (!isIpAddress(ip)) problems.push(`--serving-ip-addresses: ${JSON.stringify(ip)} is not an IP address`);
  const rootResyncSeconds = attempt(60, () => parseDurationSeconds(String(raw['rootResyncInterval'] ?? '60s'), '--root-resync-interval'));
  if (rootResyncSeconds < 1 && problems.length === 0) problems.push('--root-resync-interval must be at least 1s');
  const clusterId = String(raw['clusterId'] ?? 'Kubernetes');
  if (!/^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$/.test(clusterId)) problems.push(`--cluster-id ${JSON.stringify(clusterId)} must be 1-63 letters, digits, '-', '_' or '.'`);
  const rootConfigMap = String(raw['rootConfigmap'] ?? 'meshca-root-cert');
  const rootConfigMapValid = isDns1123Subdomain(rootConfigMap);
  if (!rootConfigMapValid) problems.push(`--root-configmap ${JSON.stringify(rootConfigMap)} is not a ConfigMap name`);
  let sidecarInjector: InjectionSettings | undefined;
  if (bool(raw['sidecarInjector'])) {
    sidecarInjector = attempt(undefined, () =>
      parseInjectionSettings(
        {
          ...(raw['sidecarImage'] === undefined ? {} : { sidecarImage: String(raw['sidecarImage']) }),
          ...(raw['sidecarImagePullPolicy'] === undefined ? {} : { sidecarImagePullPolicy: String(raw['sidecarImagePullPolicy']) }),
          ...(raw['sidecarCaAddress'] === undefined ? {} : { sidecarCaAddress: String(raw['sidecarCaAddress']) }),
          // An invalid name is already listed above, once.
          ...(rootConfigMapValid ? { rootConfigMap } : {}),
        },
        VERSION,
      ),
    );
  }
  const config: CaServeConfig = {
    dataDir: String(raw['dataDir']),
    trustDomain: trustDomain ?? parseTrustDomain('invalid'),
    grpcListen,
    httpListen,
    monitoringListen,
    auth: auth as AuthMode,
    audiences,
    jwksFile,
    jwksUri,
    oidcIssuer: String(raw['oidcIssuer'] ?? 'https://kubernetes.default.svc.cluster.local'),
    kubeconfig: raw['kubeconfig'] === undefined ? undefined : String(raw['kubeconfig']),
    authTimeoutMs: authTimeoutSeconds * 1000,
    servingDnsNames,
    servingIpAddresses: servingIps(explicitIps, [grpcListen.host, httpListen.host]),
    insecure: bool(raw['insecure']),
    defaultTtlSeconds,
    maxTtlSeconds,
    rateLimitPerSecond,
    rateLimitBurst,
    selfSigned: raw['selfSigned'] === undefined ? true : bool(raw['selfSigned']),
    signingWorkers,
    limits,
    rootConfigMap,
    rootResyncIntervalMs: rootResyncSeconds * 1000,
    clusterId,
    sidecarInjector,
    kubernetes: bool(raw['kubernetes'])
      ? { namespace: String(raw['podNamespace'] ?? ''), podName: String(raw['podName'] ?? '') }
      : undefined,
    logLevel: String(raw['logLevel'] ?? 'info'),
  };
  if (config.kubernetes && (!config.kubernetes.namespace || !config.kubernetes.podName)) {
    problems.push('--kubernetes needs the pod namespace and name (POD_NAMESPACE and POD_NAME from the downward API)');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}
