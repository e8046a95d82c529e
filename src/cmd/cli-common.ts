/**
 * What every subcommand shares: the CLI's I/O and the options several commands take. Kept free
 * of anything heavy, because every `meshca` process loads it (see program.ts).
 */
import { Option } from 'commander';
import type { Clock } from '../clock.js';
import { ConfigError, type SpiffeIdError } from '../errors.js';
import { parseTrustDomain, type TrustDomain } from '../spiffe/trust-domain.js';

export interface CliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly clock: Clock;
  readonly env: NodeJS.ProcessEnv;
}

export function trustDomainOption(io: CliIo): Option {
  return new Option('--trust-domain <name>', 'SPIFFE trust domain').default(io.env['MESHCA_TRUST_DOMAIN'] ?? 'cluster.local');
}

export function dataDirOption(io: CliIo): Option {
  return new Option('--data-dir <dir>', 'CA data directory (Istio plug-in CA file names)').default(io.env['MESHCA_DATA_DIR'] ?? './certs');
}

export function parseTrustDomainFlag(value: string): TrustDomain {
  try {
    return parseTrustDomain(value);
  } catch (err) {
    throw new ConfigError([`--trust-domain: ${(err as SpiffeIdError).message}`], { cause: err });
  }
}
