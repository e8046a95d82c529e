/**
 * The character-level rules of the SPIFFE-ID standard (sections 2.1-2.3), shared by the trust
 * domain and SPIFFE ID parsers. Internal to `spiffe/`: callers use `parseTrustDomain` /
 * `parseSpiffeId`.
 *
 * Every check is a plain loop over char codes with a lookup table: the inputs come from peer
 * certificates, so parsing must stay linear and allocation-free on the happy path.
 */
import { SpiffeIdError } from '../errors.js';

/** Stable names of the rules a SPIFFE ID or trust domain can break; set as `SpiffeIdError.rule`. */
export type SpiffeIdRule =
  | 'empty'
  | 'scheme'
  | 'too-long'
  | 'trust-domain-missing'
  | 'trust-domain-too-long'
  | 'trust-domain-chars'
  | 'port'
  | 'userinfo'
  | 'query'
  | 'fragment'
  | 'percent-encoding'
  | 'path-leading-slash'
  | 'path-empty-segment'
  | 'path-trailing-slash'
  | 'path-dot-segment'
  | 'path-chars';

export const SPIFFE_SCHEME_PREFIX = 'spiffe://';
/** Section 2.3: implementations must accept, and should not produce, longer IDs. */
export const MAX_SPIFFE_ID_LENGTH = 2048;
/** Section 2.3: the URI host component is capped at 255 bytes by RFC 3986. */
export const MAX_TRUST_DOMAIN_LENGTH = 255;

const TD_CHAR = 1;
const PATH_CHAR = 2;

// ASCII lookup table; anything >= 128 (including every UTF-16 surrogate) is invalid everywhere.
const CHAR_CLASS = new Uint8Array(128);
for (let c = 0x61; c <= 0x7a; c++) CHAR_CLASS[c] = TD_CHAR | PATH_CHAR; // a-z
for (let c = 0x41; c <= 0x5a; c++) CHAR_CLASS[c] = PATH_CHAR; // A-Z: the trust domain is lowercase only
for (let c = 0x30; c <= 0x39; c++) CHAR_CLASS[c] = TD_CHAR | PATH_CHAR; // 0-9
for (const ch of '.-_') CHAR_CLASS[ch.charCodeAt(0)] = TD_CHAR | PATH_CHAR;

const SLASH = 0x2f;
const DOT = 0x2e;
const QUESTION = 0x3f;
const HASH = 0x23;

export function isTrustDomainChar(code: number): boolean {
  return code < 128 && (CHAR_CLASS[code]! & TD_CHAR) !== 0;
}

function isPathChar(code: number): boolean {
  return code < 128 && (CHAR_CLASS[code]! & PATH_CHAR) !== 0;
}

/** Quotes untrusted input for an error message: escaped, and cut short so logs stay bounded. */
export function quote(s: string): string {
  return JSON.stringify(s.length > 120 ? `${s.slice(0, 120)}...` : s);
}

/**
 * What an error message calls the value being checked. A function is called only when a check
 * fails: valid IDs (one per TLS connection, one per issued certificate) never pay for quoting.
 */
export type Subject = string | (() => string);

export function invalid(subject: Subject, rule: SpiffeIdRule, detail: string): SpiffeIdError {
  return new SpiffeIdError(`invalid ${typeof subject === 'function' ? subject() : subject}: ${detail}`, { rule });
}

/** Index of the end of the URI authority that starts at `start` (RFC 3986: it ends at `/`, `?` or `#`). */
export function authorityEnd(s: string, start: number): number {
  let i = start;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === SLASH || c === QUESTION || c === HASH) break;
  }
  return i;
}

/**
 * Throws unless `name` is a valid trust domain name. `subject` names the value in the message
 * (e.g. `SPIFFE ID "spiffe://..."`), so an error raised while parsing a whole ID says so.
 */
export function checkTrustDomainName(name: string, subject: Subject): void {
  if (name.length === 0) {
    throw invalid(subject, 'trust-domain-missing', 'the trust domain is missing');
  }
  if (name.length > MAX_TRUST_DOMAIN_LENGTH) {
    throw invalid(
      subject,
      'trust-domain-too-long',
      `the trust domain is ${name.length} characters long, the maximum is ${MAX_TRUST_DOMAIN_LENGTH}`,
    );
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (!isTrustDomainChar(c)) throw badTrustDomainChar(name, i, subject);
  }
}

function badTrustDomainChar(name: string, index: number, subject: Subject): SpiffeIdError {
  // Only reachable for bare names (an ID's authority stops at the first '/'): a URI was
  // passed where a name was expected.
  if (name.includes(':/')) {
    return invalid(subject, 'scheme', 'expected a bare trust domain name, not a URI (use parseTrustDomain)');
  }
  // `user:pass@host` would otherwise be reported as a port at the first colon; userinfo is
  // the real problem, so it wins whenever an `@` is anywhere in the authority.
  if (name.includes('@')) {
    return invalid(subject, 'userinfo', 'userinfo (`user@`) is not allowed in the trust domain');
  }
  const ch = name[index]!;
  switch (ch) {
    case ':':
      return invalid(subject, 'port', 'a port is not allowed in the trust domain');
    case '%':
      return invalid(subject, 'percent-encoding', 'percent-encoded characters are not allowed in the trust domain');
    case '?':
      return invalid(subject, 'query', 'a query is not allowed');
    case '#':
      return invalid(subject, 'fragment', 'a fragment is not allowed');
    default: {
      const upper = ch >= 'A' && ch <= 'Z';
      return invalid(
        subject,
        'trust-domain-chars',
        `the trust domain may contain only lowercase letters, digits, '.', '-' and '_'` +
          ` (found ${JSON.stringify(ch)}${upper ? ', trust domains are lowercase' : ''})`,
      );
    }
  }
}

/**
 * Throws unless `path` is empty or a valid SPIFFE ID path (`/seg/seg`). Checked in one pass:
 * characters as they come, segment shape at each `/` and at the end.
 */
export function checkPath(path: string, subject: Subject): void {
  const n = path.length;
  if (n === 0) return;
  if (path.charCodeAt(0) !== SLASH) throw badPathChar(path, 0, subject, true);
  let segmentStart = 1;
  for (let i = 1; i <= n; i++) {
    const c = i < n ? path.charCodeAt(i) : SLASH;
    if (c === SLASH) {
      checkSegmentShape(path, segmentStart, i, i === n, subject);
      segmentStart = i + 1;
    } else if (!isPathChar(c)) {
      throw badPathChar(path, i, subject, false);
    }
  }
}

/** Throws unless `segment` is one valid path segment (no `/`). */
export function checkSegment(segment: string, subject: Subject): void {
  for (let i = 0; i < segment.length; i++) {
    if (!isPathChar(segment.charCodeAt(i))) throw badPathChar(segment, i, subject, false);
  }
  checkSegmentShape(segment, 0, segment.length, false, subject);
}

function checkSegmentShape(s: string, start: number, end: number, atEnd: boolean, subject: Subject): void {
  const len = end - start;
  if (len === 0) {
    throw atEnd
      ? invalid(subject, 'path-trailing-slash', 'the path must not end with a slash')
      : invalid(subject, 'path-empty-segment', 'the path must not contain empty segments (`//`)');
  }
  if (len <= 2 && s.charCodeAt(start) === DOT && (len === 1 || s.charCodeAt(start + 1) === DOT)) {
    throw invalid(subject, 'path-dot-segment', `the path must not contain '.' or '..' segments`);
  }
}

function badPathChar(s: string, index: number, subject: Subject, leading: boolean): SpiffeIdError {
  const ch = s[index]!;
  switch (ch) {
    case '%':
      return invalid(subject, 'percent-encoding', 'percent-encoded characters are not allowed in the path');
    case '?':
      return invalid(subject, 'query', 'a query is not allowed');
    case '#':
      return invalid(subject, 'fragment', 'a fragment is not allowed');
    default:
      if (leading) return invalid(subject, 'path-leading-slash', 'the path must start with a slash');
      return invalid(
        subject,
        'path-chars',
        `path segments may contain only letters, digits, '.', '-' and '_' (found ${JSON.stringify(ch)})`,
      );
  }
}
