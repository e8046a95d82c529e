/**
 * The flags of `meshca agent`, shared by `meshca sidecar` (which takes every one of them). Each
 * has an env variable, read from the CLI's `io.env` so tests never touch `process.env`.
 */
import { Option, type Command } from 'commander';
import { AGENT_DEFAULTS } from '../config/agent-config.js';
import { KEY_KINDS } from '../pki/algorithms.js';
import { trustDomainOption, type CliIo } from './cli-common.js';

/** A flag whose default is its env variable (or `fallback`); the help names the variable. */
export function envOption(io: CliIo, flags: string, description: string, name: string, fallback?: string): Option {
  const option = new Option(flags, `${description} (env ${name})`);
  const value = io.env[name] ?? fallback;
  return value === undefined ? option : option.default(value);
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

export function addAgentOptions(command: Command, io: CliIo, delivery: { readonly optional: boolean } = { optional: false }): Command {
  const env = io.env;
  const opt = (flags: string, description: string, name: string, fallback?: string): Option => envOption(io, flags, description, name, fallback);
  const also = delivery.optional ? ' (optional: the proxies get the SVID in memory)' : '';
  return command
    .addOption(opt('--ca-address <host:port>', 'CA gRPC address, e.g. istiod.istio-system.svc:15012', 'MESHCA_CA_ADDRESS'))
    .addOption(opt('--ca-root <file>', 'mesh root-cert.pem: trust anchors, re-read for root rotation', 'MESHCA_CA_ROOT'))
    .addOption(opt('--token-file <path>', 'projected service-account token, re-read before every request', 'MESHCA_TOKEN_FILE'))
    .addOption(trustDomainOption(io))
    .addOption(opt('--out <dir>', `write cert-chain.pem, key.pem, root-cert.pem here${also}`, 'MESHCA_OUT_DIR'))
    .addOption(opt('--workload-api-socket <path>', `serve the SPIFFE Workload API on this unix socket${also}`, 'MESHCA_WORKLOAD_API_SOCKET'))
    .addOption(opt('--svid-ttl <duration>', 'requested SVID lifetime', 'MESHCA_SVID_TTL', AGENT_DEFAULTS.svidTtl))
    .addOption(new Option('--key <kind>', 'SVID key type (env MESHCA_KEY)').choices([...KEY_KINDS]).default(env['MESHCA_KEY'] ?? AGENT_DEFAULTS.key))
    .addOption(opt('--hook <command>', 'shell command run after every rotation (e.g. reload a server)', 'MESHCA_HOOK'))
    .addOption(opt('--hook-timeout <duration>', 'kill the hook after this long', 'MESHCA_HOOK_TIMEOUT', AGENT_DEFAULTS.hookTimeout))
    .addOption(
      new Option('--insecure', 'talk to the CA in plaintext; development only (env MESHCA_CA_INSECURE=true)').default(
        env['MESHCA_CA_INSECURE'] === 'true',
      ),
    )
    .addOption(opt('--ca-server-name <name>', "name to verify in the CA's TLS certificate", 'MESHCA_CA_SERVER_NAME'))
    .addOption(opt('--ca-timeout <duration>', 'deadline of each CA call', 'MESHCA_CA_TIMEOUT', AGENT_DEFAULTS.caTimeout))
    .addOption(opt('--bundle-refresh <duration>', 'how often --ca-root is re-read between rotations', 'MESHCA_BUNDLE_REFRESH', AGENT_DEFAULTS.bundleRefresh))
    .addOption(opt('--ca-http-address <host:port>', 'CA HTTPS API for JWT-SVIDs (default: the gRPC port of --ca-address, meshca.v1.JwtSvidService)', 'MESHCA_CA_HTTP_ADDRESS'))
    .addOption(opt('--health-listen <host:port>', 'serve GET /healthz (alive), /ready (503 with the reason until ready) and /metrics here', 'MESHCA_HEALTH_LISTEN'))
    .addOption(federatedBundleOption(env))
    .addOption(
      opt('--federated-bundle-ca <file>', 'PEM CAs that authenticate https:// federated bundle endpoints (default: the system roots)', 'MESHCA_FEDERATED_BUNDLE_CA'),
    );
}
