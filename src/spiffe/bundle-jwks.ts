import { createPublicKey, type JsonWebKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { BundleError } from '../errors.js';
import { decodeDer } from './pem.js';
import { TrustDomain } from './trust-domain.js';
import { X509Bundle } from './x509-bundle.js';

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

/** A `jwt-svid` key from a parsed bundle: a public JWK whose `kid` is guaranteed. */
export interface JwtAuthorityJwk extends SpiffeBundleJwk {
  readonly use: 'jwt-svid';
  readonly kid: string;
}

export interface ParsedSpiffeBundle {
  /** The `x509-svid` authorities, carrying `spiffe_sequence` as their sequence number. */
  readonly x509: X509Bundle;
  readonly jwtAuthorities: readonly JwtAuthorityJwk[];
  readonly sequence?: number;
  readonly refreshHintSeconds?: number;
}

// RFC 7517 key types. A key of another type is skipped, as the bundle spec requires.
const KNOWN_KEY_TYPES: ReadonlySet<string> = new Set(['EC', 'RSA', 'OKP']);
// Members that only a private (or symmetric) JWK has: a bundle that carries one leaked a key.
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Parses a SPIFFE bundle in JWKS form (what a federated peer serves at its bundle endpoint) for
 * `trustDomain`, the name the caller associated with that endpoint: nothing in the document can
 * choose or change it. `json` is the decoded document or its text.
 *
 * Stricter than "ignore what you cannot use", because a bundle is a trust decision: an entry
 * that claims `x509-svid` or `jwt-svid` but is malformed fails the whole document rather than
 * silently shrinking the peer's authorities. Entries with an unknown `use` or `kty` are skipped,
 * as the spec requires. Throws `BundleError` with rule:
 * `json`, `not-object`, `keys`, `sequence`, `refresh-hint`, `key`, `key-use`, `key-type`,
 * `private-key`, `x5c`, `der`, `key-mismatch`, `kid`, `kid-duplicate`, or the X509Bundle rules
 * (`authority-not-ca`, `authority-key-usage`).
 */
export function parseSpiffeBundleJwks(trustDomain: TrustDomain, json: unknown): ParsedSpiffeBundle {
  if (!(trustDomain instanceof TrustDomain)) throw new TypeError('trustDomain must be a TrustDomain');
  const where = `SPIFFE bundle for ${trustDomain.name}`;
  const fail = (message: string, rule: string, cause?: unknown): BundleError =>
    new BundleError(`${where}: ${message}`, cause === undefined ? { rule } : { rule, cause });

  let doc = json;
  if (typeof doc === 'string') {
    try {
      doc = JSON.parse(doc) as unknown;
    } catch (err) {
      throw fail('is not valid JSON', 'json', err);
    }
  }
  if (!isPlainObject(doc)) throw fail('must be a JSON object (a JWK Set)', 'not-object');
  const keys = doc['keys'];
  if (!Array.isArray(keys)) throw fail('"keys" must be present and be an array', 'keys');

  const sequence = optionalCount(doc['spiffe_sequence'], 'spiffe_sequence', 'sequence', fail);
  const refreshHintSeconds = optionalCount(doc['spiffe_refresh_hint'], 'spiffe_refresh_hint', 'refresh-hint', fail);

  const x509: X509Certificate[] = [];
  const jwtAuthorities: JwtAuthorityJwk[] = [];
  const kids = new Set<string>();
  keys.forEach((key: unknown, index) => {
    const what = `key ${index}`;
    if (!isPlainObject(key)) throw fail(`${what} is not a JSON object`, 'key');
    const use = key['use'];
    if (typeof use !== 'string' || use.length === 0) throw fail(`${what} has no "use" (x509-svid or jwt-svid)`, 'key-use');
    const kty = key['kty'];
    if (typeof kty !== 'string' || kty.length === 0) throw fail(`${what} has no "kty"`, 'key-type');
    if ((use !== 'x509-svid' && use !== 'jwt-svid') || !KNOWN_KEY_TYPES.has(kty)) return;
    const leaked = PRIVATE_MEMBERS.filter((m) => key[m] !== undefined);
    if (leaked.length > 0) {
      throw fail(`${what} (${use}) carries private key members (${leaked.join(', ')}); refusing a bundle that leaks a key`, 'private-key');
    }
    const publicKey = importPublicJwk(key, what, fail);
    if (use === 'x509-svid') {
      x509.push(x509Authority(key, publicKey, what, fail));
      return;
    }
    const kid = key['kid'];
    if (typeof kid !== 'string' || kid.length === 0) throw fail(`${what} (jwt-svid) has no "kid"`, 'kid');
    if (kids.has(kid)) throw fail(`${what} (jwt-svid) repeats kid ${JSON.stringify(kid)}`, 'kid-duplicate');
    kids.add(kid);
    jwtAuthorities.push(Object.freeze({ ...key, kty, use, kid }));
  });

  let bundle: X509Bundle;
  try {
    bundle = new X509Bundle(trustDomain, x509, sequence);
  } catch (err) {
    if (err instanceof BundleError) throw fail(err.message, err.rule ?? 'x5c', err);
    throw err;
  }
  return Object.freeze({
    x509: bundle,
    jwtAuthorities: Object.freeze(jwtAuthorities),
    ...(sequence === undefined ? {} : { sequence }),
    ...(refreshHintSeconds === undefined ? {} : { refreshHintSeconds }),
  });
}

type Fail = (message: string, rule: string, cause?: unknown) => BundleError;

function optionalCount(value: unknown, member: string, rule: string, fail: Fail): number | undefined {
  if (value === undefined) return undefined;
  // Values past 2^53 have already lost precision in JSON.parse: refuse rather than compare wrongly.
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw fail(`"${member}" must be a non-negative integer below 2^53, got ${JSON.stringify(value)}`, rule);
  }
  return value;
}

function importPublicJwk(key: Record<string, unknown>, what: string, fail: Fail): KeyObject {
  const members: Record<string, unknown> = { kty: key['kty'] };
  for (const m of ['crv', 'x', 'y', 'n', 'e']) if (key[m] !== undefined) members[m] = key[m];
  try {
    return createPublicKey({ key: members as JsonWebKey, format: 'jwk' });
  } catch (err) {
    throw fail(`${what} is not a valid ${String(key['kty'])} public key`, 'key', err);
  }
}

const STRICT_BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** RFC 7517 4.7: x5c holds standard (not URL-safe) base64 DER; SPIFFE requires exactly one. */
function x509Authority(key: Record<string, unknown>, publicKey: KeyObject, what: string, fail: Fail): X509Certificate {
  const x5c = key['x5c'];
  if (!Array.isArray(x5c) || x5c.length !== 1) {
    const got = Array.isArray(x5c) ? `${x5c.length} certificates` : 'none';
    throw fail(`${what} (x509-svid) must have exactly one certificate in "x5c", got ${got}`, 'x5c');
  }
  const b64 = x5c[0];
  if (typeof b64 !== 'string' || !STRICT_BASE64.test(b64) || b64.length % 4 !== 0) {
    throw fail(`${what} (x509-svid) "x5c" is not standard base64`, 'x5c');
  }
  const cert = decodeDer(Buffer.from(b64, 'base64'), 0, (message, rule, cause) => fail(`${what} (x509-svid): ${message}`, rule, cause));
  const certSpki = cert.publicKey.export({ format: 'der', type: 'spki' });
  const jwkSpki = publicKey.export({ format: 'der', type: 'spki' });
  if (!certSpki.equals(jwkSpki)) {
    throw fail(`${what} (x509-svid): the JWK's key is not the public key of its x5c certificate`, 'key-mismatch');
  }
  return cert;
}
