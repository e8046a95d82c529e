/**
 * A SPIFFE trust domain: the authority part of a SPIFFE ID and the unit of trust (one set of
 * root authorities per trust domain). Instances are always valid; build them with
 * `parseTrustDomain` or `new TrustDomain(name)`.
 */
import {
  authorityEnd,
  checkPath,
  checkTrustDomainName,
  invalid,
  MAX_SPIFFE_ID_LENGTH,
  quote,
  SPIFFE_SCHEME_PREFIX,
} from './id-rules.js';

export class TrustDomain {
  /** The bare name, e.g. `example.org`. */
  readonly name: string;

  /** Throws `SpiffeIdError` unless `name` is a bare trust domain name (no scheme, no path). */
  constructor(name: string) {
    if (typeof name !== 'string') throw new TypeError('trust domain name must be a string');
    checkTrustDomainName(name, () => `trust domain ${quote(name)}`);
    this.name = name;
    Object.freeze(this);
  }

  toString(): string {
    return this.name;
  }

  /** The trust domain's own SPIFFE ID as a string, `spiffe://<name>`. */
  idString(): string {
    return SPIFFE_SCHEME_PREFIX + this.name;
  }

  equals(other: TrustDomain | undefined): boolean {
    return other instanceof TrustDomain && other.name === this.name;
  }

  toJSON(): string {
    return this.name;
  }
}

/**
 * Parses a trust domain given either as a bare name (`example.org`) or as a SPIFFE ID
 * (`spiffe://example.org`, `spiffe://example.org/some/path`), like go-spiffe's
 * TrustDomainFromString. A SPIFFE ID form must be a fully valid ID; its path is discarded.
 * Throws `SpiffeIdError` (with `rule`) on invalid input, `TypeError` on a non-string.
 */
export function parseTrustDomain(s: string): TrustDomain {
  if (typeof s !== 'string') throw new TypeError('trust domain must be a string');
  if (s.startsWith(SPIFFE_SCHEME_PREFIX)) {
    const subject = (): string => `SPIFFE ID ${quote(s)}`;
    if (s.length > MAX_SPIFFE_ID_LENGTH) {
      throw invalid(subject, 'too-long', `it is ${s.length} characters long, the maximum is ${MAX_SPIFFE_ID_LENGTH}`);
    }
    const end = authorityEnd(s, SPIFFE_SCHEME_PREFIX.length);
    const name = s.slice(SPIFFE_SCHEME_PREFIX.length, end);
    checkTrustDomainName(name, subject);
    checkPath(s.slice(end), subject);
    return new TrustDomain(name);
  }
  // Anything that looks like a URI with another (or misspelt) scheme is a scheme error, not a
  // character error: `SPIFFE://x`, `https://x`, `spiffe:/x`.
  if (s.includes(':/')) {
    throw invalid(`trust domain ${quote(s)}`, 'scheme', `the scheme must be exactly "${SPIFFE_SCHEME_PREFIX}"`);
  }
  return new TrustDomain(s);
}
