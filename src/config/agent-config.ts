/**
 * The agent's configuration: what `meshca agent` and `meshca sidecar` take from flags and env,
 * checked once into a frozen `AgentConfig` (STYLE: config/ parses, the roots only wire).
 */
import { parseDurationSeconds } from './duration.js';
import { parseListen } from './listen.js';
import { parseTrustDomainFlag } from './trust-domain-flag.js';
import { parseWorkloadApiSocket } from './workload-api-socket.js';
import { ConfigError } from '../errors.js';
import { isKeyKind, KEY_KINDS, type KeyKind } from '../pki/algorithms.js';
import { parseTrustDomain, type TrustDomain } from '../spiffe/trust-domain.js';

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

export interface ParseAgentConfigOptions {
  /**
   * Whether the SVID must go somewhere outside the process (`--out`, `--workload-api-socket`).
   * True for `meshca agent`; `meshca sidecar` hands it to its own proxies in memory.
   */
  readonly requireDelivery?: boolean;
}

/** Validates everything at once and lists every problem in one `ConfigError`. */
export function parseAgentConfig(values: AgentOptionValues, options: ParseAgentConfigOptions = {}): AgentConfig {
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
  if ((options.requireDelivery ?? true) && values.out === undefined && values.workloadApiSocket === undefined) {
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
