import { ConfigError, type SpiffeIdError } from '../errors.js';
import { parseTrustDomain, type TrustDomain } from '../spiffe/trust-domain.js';

/** `--trust-domain` (and the like): a trust domain name, or a `ConfigError` naming the flag. */
export function parseTrustDomainFlag(value: string, flag = '--trust-domain'): TrustDomain {
  try {
    return parseTrustDomain(value);
  } catch (err) {
    throw new ConfigError([`${flag}: ${(err as SpiffeIdError).message}`], { cause: err });
  }
}
