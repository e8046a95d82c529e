import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { isDns1123Label, ISTIO_CA_AUDIENCE, isDns1123Subdomain } from '../authn/authenticator.js';
import { parseDurationSeconds } from '../config/duration.js';
import { ConfigError } from '../errors.js';
import { dataDirOption, type CliIo } from './cli-common.js';

/** `meshca token`: a Kubernetes-shaped projected token from the embedded dev issuer. */
export function buildTokenCommand(io: CliIo): Command {
  return new Command('token')
    .requiredOption('--namespace <ns>', 'workload namespace')
    .requiredOption('--service-account <sa>', 'workload service account')
    .option('--audience <aud>', 'token audience', ISTIO_CA_AUDIENCE)
    .option('--ttl <duration>', 'token lifetime', '1h')
    .option('--pod-name <name>', 'bind the token to a pod name')
    .addOption(dataDirOption(io))
    .action(async (opts: { namespace: string; serviceAccount: string; audience: string; ttl: string; podName?: string; dataDir: string }) => {
      const problems: string[] = [];
      if (!isDns1123Label(opts.namespace)) problems.push(`--namespace ${JSON.stringify(opts.namespace)} is not a valid Kubernetes namespace name`);
      if (!isDns1123Subdomain(opts.serviceAccount)) problems.push(`--service-account ${JSON.stringify(opts.serviceAccount)} is not a valid service account name`);
      let ttlSeconds = 3600;
      try {
        ttlSeconds = parseDurationSeconds(opts.ttl, '--ttl');
        if (ttlSeconds <= 0) problems.push(`--ttl ${opts.ttl} must be positive`);
      } catch (err) {
        problems.push(...(err as ConfigError).problems);
      }
      // Without a CA in the data dir a new dev key would be made, and its tokens refused by the
      // CA that does exist somewhere else: say so instead of printing a useless token.
      if (!existsSync(join(opts.dataDir, 'root-cert.pem'))) {
        problems.push(`--data-dir ${opts.dataDir} holds no CA (no root-cert.pem): give the data dir of the CA that will check the token, or run meshca ca init`);
      }
      if (problems.length > 0) throw new ConfigError(problems);
      const { loadOrCreateDevIssuer } = await import('../files/dev-issuer-store.js');
      const { issuer } = await loadOrCreateDevIssuer(opts.dataDir);
      const token = await issuer.mint({
        namespace: opts.namespace,
        serviceAccount: opts.serviceAccount,
        audience: opts.audience,
        ttlSeconds,
        now: io.clock.now(),
        ...(opts.podName ? { podName: opts.podName } : {}),
      });
      io.stdout.write(`${token}\n`);
    });
}
