/** Persists the dev token issuer's key so tokens minted before a restart keep verifying after it. */
import { join } from 'node:path';
import { ConfigError } from '../errors.js';
import { DevTokenIssuer } from '../authn/dev-issuer.js';
import type { GenerateDevTokenIssuerOptions } from '../authn/dev-issuer.js';
import { loadOrCreatePrivateJwk } from './private-jwk-store.js';

export const DEV_ISSUER_KEY_FILE = 'dev-issuer-key.json';

export interface LoadOrCreateDevIssuerResult {
  readonly issuer: DevTokenIssuer;
  readonly path: string;
  /** True when this call generated the key. */
  readonly created: boolean;
  /** Problems worth a warning, e.g. a key file readable by other users. */
  readonly warnings: readonly string[];
}

/** Loads `<dataDir>/dev-issuer-key.json`, generating and saving a new key when it is missing. */
export async function loadOrCreateDevIssuer(dataDir: string, options: GenerateDevTokenIssuerOptions = {}): Promise<LoadOrCreateDevIssuerResult> {
  const path = join(dataDir, DEV_ISSUER_KEY_FILE);
  let generated: DevTokenIssuer | undefined;
  const { jwk, created, warnings } = await loadOrCreatePrivateJwk(
    path,
    async () => {
      generated = await DevTokenIssuer.generate(options);
      return generated.exportPrivateJwk();
    },
    'service-account tokens for any workload',
  );
  if (created && generated) return { issuer: generated, path, created, warnings };
  try {
    return { issuer: await DevTokenIssuer.fromPrivateJwk(jwk, options), path, created, warnings };
  } catch (err) {
    throw new ConfigError([`${path} does not hold a usable dev issuer key: ${err instanceof Error ? err.message : String(err)}`], { cause: err });
  }
}
