import type { X509Certificate } from 'node:crypto';

/** One key of a SPIFFE bundle in JWKS form (SPIFFE Trust Domain and Bundle, section 4). */
export interface SpiffeBundleJwk {
  readonly kty: string;
  readonly use: 'x509-svid' | 'jwt-svid';
  readonly kid?: string;
  readonly x5c?: readonly string[];
  readonly [member: string]: unknown;
}

export interface SpiffeBundleJwks {
  readonly keys: readonly SpiffeBundleJwk[];
  readonly spiffe_sequence?: number;
  readonly spiffe_refresh_hint?: number;
}

export interface FormatBundleOptions {
  readonly sequence?: number;
  readonly refreshHintSeconds?: number;
  /** JWT-SVID signing keys (public JWKs with `kid`), published beside the X.509 authorities. */
  readonly jwtAuthorities?: readonly Record<string, unknown>[];
}

/** The SPIFFE bundle document a federated peer fetches from `/.well-known/spiffe-bundle`. */
export function formatSpiffeBundleJwks(authorities: readonly X509Certificate[], options: FormatBundleOptions = {}): SpiffeBundleJwks {
  const keys: SpiffeBundleJwk[] = authorities.map((cert) => {
    const jwk = cert.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
    return { ...jwk, kty: String(jwk['kty']), use: 'x509-svid', x5c: [cert.raw.toString('base64')] };
  });
  for (const jwk of options.jwtAuthorities ?? []) keys.push({ ...jwk, kty: String(jwk['kty']), use: 'jwt-svid' });
  return {
    keys,
    ...(options.sequence === undefined ? {} : { spiffe_sequence: options.sequence }),
    ...(options.refreshHintSeconds === undefined ? {} : { spiffe_refresh_hint: options.refreshHintSeconds }),
  };
}
