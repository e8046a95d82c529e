/**
 * Request paths as policy must see them. A DENY on `/admin*` means nothing if `/x/../admin`,
 * `//admin` or `/%61dmin` reach the app as `/admin`; so, as Envoy does before RBAC, the path is
 * normalized once and the same normalized path is both authorized and forwarded.
 */
export type NormalizedPath = { readonly ok: true; readonly path: string; readonly query: string } | { readonly ok: false; readonly reason: string };

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * RFC 3986 normalization: decode percent-encoded unreserved characters (6.2.2.2), uppercase the
 * remaining escapes, merge repeated slashes, remove dot segments (5.2.4). Encoded slashes and
 * backslashes are refused: apps disagree on what they mean, and that disagreement is a bypass.
 */
export function normalizeRequestPath(target: string): NormalizedPath {
  const q = target.search(/[?#]/);
  const raw = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q).split('#')[0]!;
  if (!raw.startsWith('/')) return { ok: false, reason: 'path must start with /' };
  if (raw.includes('\\')) return { ok: false, reason: 'backslash in path' };
  let decoded = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== '%') {
      decoded += c;
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { ok: false, reason: 'malformed percent-encoding in path' };
    const ch = String.fromCharCode(parseInt(hex, 16));
    if (ch === '/' || ch === '\\') return { ok: false, reason: 'encoded slash in path' };
    decoded += UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
    i += 2;
  }
  const output: string[] = [];
  for (const segment of decoded.split('/').slice(1)) {
    if (segment === '.' || segment === '') continue;
    if (segment === '..') {
      output.pop();
      continue;
    }
    output.push(segment);
  }
  const trailing = /\/(\.{0,2})$/.test(decoded) && output.length > 0 ? '/' : '';
  return { ok: true, path: `/${output.join('/')}${trailing}`, query };
}
