import type { Server } from 'node:net';
import { Command, Option } from 'commander';
import { ConfigError } from '../errors.js';
import { loadPolicyFile } from '../files/policy-file.js';
import { createLogger } from '../log.js';
import { authorizeId, authorizeMemberOf } from '../policy/authorizer.js';
import { compilePolicies, type PolicyEngine } from '../policy/index.js';
import { parseSpiffeId } from '../spiffe/spiffe-id.js';
import { createX509SourceFromFiles, type X509Source } from '../tls/index.js';
import { createWorkloadApiX509Source } from '../transport/grpc/workload-api-client.js';
import { createInboundProxy, createOutboundProxy } from '../transport/proxy/mtls-proxy.js';
import { parseTrustDomainFlag, trustDomainOption, type CliIo } from './ca-commands.js';

interface ProxyOptions {
  listen: string;
  upstream: string;
  policy?: string;
  workloadApiSocket?: string;
  svidDir?: string;
  trustDomain: string;
  namespace?: string;
  workloadLabels?: string;
  outbound: boolean;
  upstreamSpiffeId?: string;
  upstreamTrustDomain?: string;
  logLevel: string;
}

function parseListen(value: string, problems: string[]): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  if (!m || Number(m[3]) > 65535) {
    problems.push(`--listen ${JSON.stringify(value)} must be host:port`);
    return { host: '127.0.0.1', port: 0 };
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}

function parseLabels(value: string | undefined, problems: string[]): Record<string, string> | undefined {
  if (!value) return undefined;
  const labels: Record<string, string> = {};
  for (const pair of value.split(',')) {
    const [k, v] = pair.split('=');
    if (!k || v === undefined) problems.push(`--workload-labels ${JSON.stringify(pair)} must be key=value`);
    else labels[k.trim()] = v.trim();
  }
  return labels;
}

/**
 * `meshca proxy`: mTLS and authorization for services in any language. Inbound, it terminates
 * mTLS in front of a plain HTTP app and enforces policy; with --outbound, it lets a plain client
 * reach an mTLS service with the workload's own SVID.
 */
export function buildProxyCommand(io: CliIo): Command {
  const env = io.env;
  return new Command('proxy')
    .description('terminate mTLS in front of a plain HTTP app and enforce policy (or, with --outbound, originate mTLS)')
    .addOption(new Option('--listen <host:port>', 'address to listen on').env('MESHCA_PROXY_LISTEN').makeOptionMandatory())
    .addOption(new Option('--upstream <url>', 'inbound: the app, http://127.0.0.1:8080; outbound: the mTLS service, https://host:port').env('MESHCA_PROXY_UPSTREAM').makeOptionMandatory())
    .addOption(new Option('--policy <file.yaml>', 'Istio AuthorizationPolicy / CiliumNetworkPolicy YAML (inbound)').env('MESHCA_POLICY'))
    .addOption(new Option('--workload-api-socket <path>', 'get the SVID from the SPIFFE Workload API').env('SPIFFE_ENDPOINT_SOCKET'))
    .addOption(new Option('--svid-dir <dir>', 'get the SVID from cert-chain.pem, key.pem, root-cert.pem in this directory').env('MESHCA_SVID_DIR'))
    .addOption(trustDomainOption(io))
    .addOption(new Option('--namespace <ns>', 'namespace of the protected workload, for policy scoping').env('POD_NAMESPACE'))
    .addOption(new Option('--workload-labels <k=v,...>', 'labels of the protected workload, for policy selectors').env('MESHCA_WORKLOAD_LABELS'))
    .option('--outbound', 'originate mTLS to --upstream for a plain local client', false)
    .addOption(new Option('--upstream-spiffe-id <id>', 'outbound: the SPIFFE ID the upstream must present').env('MESHCA_UPSTREAM_SPIFFE_ID'))
    .addOption(new Option('--upstream-trust-domain <td>', 'outbound: accept any upstream in this trust domain'))
    .addOption(new Option('--log-level <level>', 'log level').default(env['MESHCA_LOG_LEVEL'] ?? 'info'))
    .action(async (opts: ProxyOptions) => {
      const problems: string[] = [];
      const listen = parseListen(opts.listen, problems);
      let upstream: URL | undefined;
      try {
        upstream = new URL(opts.upstream);
        const want = opts.outbound ? 'https:' : 'http:';
        if (upstream.protocol !== want) problems.push(`--upstream must be an ${want}// URL ${opts.outbound ? 'with --outbound' : 'for the inbound proxy'}`);
      } catch {
        problems.push(`--upstream ${JSON.stringify(opts.upstream)} is not a URL`);
      }
      if (!opts.workloadApiSocket === !opts.svidDir) problems.push('give exactly one of --workload-api-socket and --svid-dir');
      if (opts.outbound && !opts.upstreamSpiffeId && !opts.upstreamTrustDomain) problems.push('--outbound needs --upstream-spiffe-id or --upstream-trust-domain');
      if (opts.outbound && opts.policy) problems.push('--policy applies to the inbound proxy only');
      const labels = parseLabels(opts.workloadLabels, problems);
      let trustDomain;
      try {
        trustDomain = parseTrustDomainFlag(opts.trustDomain);
      } catch (err) {
        problems.push(...(err as ConfigError).problems);
      }
      if (problems.length > 0 || !upstream || !trustDomain) throw new ConfigError(problems);

      const logger = createLogger({ level: opts.logLevel, destination: io.stderr });
      let engine: PolicyEngine | undefined;
      if (opts.policy) {
        const loaded = await loadPolicyFile(opts.policy);
        engine = compilePolicies(loaded.policies, {
          trustDomain,
          ...(opts.namespace ? { namespace: opts.namespace } : {}),
          ...(labels ? { workloadLabels: labels } : {}),
        });
        logger.info({ policy: opts.policy, applied: engine.appliedPolicies.length, ignored: engine.ignoredPolicies.length }, 'policy loaded');
      }
      const source: X509Source = opts.svidDir
        ? await createX509SourceFromFiles({
            certChainPath: `${opts.svidDir}/cert-chain.pem`,
            keyPath: `${opts.svidDir}/key.pem`,
            bundlePath: `${opts.svidDir}/root-cert.pem`,
            trustDomain,
          })
        : await createWorkloadApiX509Source({ socket: opts.workloadApiSocket!, logger });
      const server: Server = opts.outbound
        ? createOutboundProxy({
            source,
            upstream,
            authorizer: opts.upstreamSpiffeId ? authorizeId(parseSpiffeId(opts.upstreamSpiffeId)) : authorizeMemberOf(parseTrustDomainFlag(opts.upstreamTrustDomain!)),
            logger,
          })
        : createInboundProxy({ source, upstream, logger, listenPort: listen.port, ...(engine ? { engine } : {}) });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(listen.port, listen.host, () => resolve());
      });
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : listen.port;
      logger.info({ mode: opts.outbound ? 'outbound' : 'inbound', listen: `${listen.host}:${port}`, upstream: upstream.origin, spiffeId: source.getX509Svid().id.toString() }, 'meshca proxy listening');
      io.stdout.write(`meshca proxy ready: ${opts.outbound ? 'outbound' : 'inbound'} on port ${port}\n`);
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          server.close(() => resolve());
          void source.close();
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });
}
