/**
 * SPIFFE IDs (`spiffe://<trust-domain>/<path>`), parsed strictly per the SPIFFE-ID standard.
 *
 * The parser accepts exactly the canonical form and nothing that merely normalises to it: no
 * upper-case scheme or trust domain, no percent-encoding, no dot segments, no empty segments.
 * So two IDs are equal iff their strings are equal, and `toString()` returns the input.
 */
import { SpiffeIdError } from '../errors.js';
import {
  authorityEnd,
  checkPath,
  checkSegment,
  checkTrustDomainName,
  invalid,
  MAX_SPIFFE_ID_LENGTH,
  quote,
  SPIFFE_SCHEME_PREFIX,
} from './id-rules.js';
import { TrustDomain } from './trust-domain.js';

export type { SpiffeIdRule } from './id-rules.js';

export class SpiffeId {
  readonly trustDomain: TrustDomain;
  /** `""` for the trust domain's own ID, otherwise `/seg/seg`. */
  readonly path: string;

  /**
   * Throws `SpiffeIdError` unless `path` is empty or a valid SPIFFE ID path. Prefer
   * `parseSpiffeId` or `spiffeIdFromSegments`.
   */
  constructor(trustDomain: TrustDomain, path: string) {
    if (!(trustDomain instanceof TrustDomain)) throw new TypeError('trustDomain must be a TrustDomain');
    if (typeof path !== 'string') throw new TypeError('path must be a string');
    const length = SPIFFE_SCHEME_PREFIX.length + trustDomain.name.length + path.length;
    if (length > MAX_SPIFFE_ID_LENGTH) {
      throw invalid(
        () => `SPIFFE ID in trust domain ${quote(trustDomain.name)}`,
        'too-long',
        `it is ${length} characters long, the maximum is ${MAX_SPIFFE_ID_LENGTH}`,
      );
    }
    checkPath(path, () => `SPIFFE ID ${quote(SPIFFE_SCHEME_PREFIX + trustDomain.name + path)}`);
    this.trustDomain = trustDomain;
    this.path = path;
    Object.freeze(this);
  }

  toString(): string {
    return SPIFFE_SCHEME_PREFIX + this.trustDomain.name + this.path;
  }

  toJSON(): string {
    return this.toString();
  }

  equals(other: SpiffeId | undefined): boolean {
    return other instanceof SpiffeId && other.path === this.path && other.trustDomain.name === this.trustDomain.name;
  }

  memberOf(trustDomain: TrustDomain): boolean {
    return this.trustDomain.equals(trustDomain);
  }

  /** The path split into segments: `[]` for an empty path, `['ns', 'prod']` for `/ns/prod`. */
  segments(): readonly string[] {
    return this.path === '' ? [] : this.path.slice(1).split('/');
  }
}

/**
 * Parses a SPIFFE ID string. Throws `SpiffeIdError` whose `rule` names the broken rule
 * (see `SpiffeIdRule`), or `TypeError` if `s` is not a string.
 */
export function parseSpiffeId(s: string): SpiffeId {
  if (typeof s !== 'string') throw new TypeError('SPIFFE ID must be a string');
  const subject = (): string => `SPIFFE ID ${quote(s)}`;
  if (s.length === 0) throw invalid(subject, 'empty', 'it is empty');
  // UTF-16 length <= byte length, and any non-ASCII character is rejected below anyway.
  if (s.length > MAX_SPIFFE_ID_LENGTH) {
    throw invalid(subject, 'too-long', `it is ${s.length} characters long, the maximum is ${MAX_SPIFFE_ID_LENGTH}`);
  }
  if (!s.startsWith(SPIFFE_SCHEME_PREFIX)) {
    throw invalid(subject, 'scheme', `it must start with "${SPIFFE_SCHEME_PREFIX}" (lowercase)`);
  }
  const end = authorityEnd(s, SPIFFE_SCHEME_PREFIX.length);
  const name = s.slice(SPIFFE_SCHEME_PREFIX.length, end);
  // Checked here as well as in the TrustDomain constructor so the message names the whole ID.
  checkTrustDomainName(name, subject);
  return new SpiffeId(new TrustDomain(name), s.slice(end));
}

/** Like `parseSpiffeId` but for literals in tests and examples; same errors. */
export function mustParseSpiffeId(s: string): SpiffeId {
  return parseSpiffeId(s);
}

/**
 * True iff `s` is a string that `parseSpiffeId` accepts; false for anything else, including
 * non-strings. Deliberately not a type guard: `false` must not narrow a string away.
 */
export function isSpiffeId(s: unknown): boolean {
  if (typeof s !== 'string') return false;
  try {
    parseSpiffeId(s);
    return true;
  } catch (err) {
    if (err instanceof SpiffeIdError) return false;
    throw err;
  }
}

/**
 * Builds an ID from a trust domain and raw path segments, e.g. `(td, 'ns', 'prod', 'sa', 'api')`.
 * Each segment is validated on its own, so a value containing `/` (say, from platform metadata)
 * is rejected instead of silently adding path structure.
 */
export function spiffeIdFromSegments(trustDomain: TrustDomain, ...segments: readonly string[]): SpiffeId {
  if (!(trustDomain instanceof TrustDomain)) throw new TypeError('trustDomain must be a TrustDomain');
  for (const segment of segments) {
    if (typeof segment !== 'string') throw new TypeError('path segments must be strings');
    checkSegment(segment, () => `path segment ${quote(segment)} of a SPIFFE ID in ${quote(trustDomain.name)}`);
  }
  return new SpiffeId(trustDomain, segments.length === 0 ? '' : `/${segments.join('/')}`);
}
