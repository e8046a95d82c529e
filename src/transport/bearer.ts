import { AuthnError } from '../errors.js';

/** Extracts the token from an `authorization: Bearer <token>` value; the scheme is case-insensitive. */
export function bearerToken(header: string | readonly string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header;
  if (typeof value !== 'string' || value.length === 0) {
    throw new AuthnError('missing authorization bearer token', { rule: 'token-missing' });
  }
  const match = /^bearer[ \t]+(\S+)[ \t]*$/i.exec(value);
  if (!match) throw new AuthnError('authorization header is not a bearer token', { rule: 'token-scheme' });
  return match[1]!;
}
