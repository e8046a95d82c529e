/**
 * `FederatedBundleSource` adapters: the bundle of a federated trust domain from a file (PEM
 * authorities, or a SPIFFE bundle document in JWKS form) or from the federated CA's SPIFFE
 * bundle endpoint (`https://host:port/.well-known/spiffe-bundle`).
 *
 * The endpoint is authenticated as SPIFFE Federation's `https_web` profile: an ordinary HTTPS
 * server certificate for the URL's host name, verified against Node's public roots or, with
 * `endpointCaPath`, against that PEM file alone (re-read on every fetch, so a rotated web CA is
 * picked up). Redirects are not followed: the trust decision is about this URL. The response
 * is size-capped and must be a SPIFFE bundle document; the trust domain it is for is the one
 * configured here, never anything the document says.
 */
import { readFile } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { fileURLToPath } from 'node:url';
import type { FederatedBundleSource, FetchedFederatedBundle } from '../agent/ports.js';
import { BundleError, isIdentityError } from '../errors.js';
import { parseSpiffeBundleJwks } from '../spiffe/bundle-jwks.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import { parseX509BundlePem } from '../spiffe/x509-bundle.js';

export const DEFAULT_FEDERATED_FETCH_TIMEOUT_MS = 10_000;
/** A bundle holds a handful of keys; anything near this size is not one. */
export const MAX_FEDERATED_BUNDLE_BYTES = 1024 * 1024;

export interface FederatedBundleSourceOptions {
  /** PEM CA certificates that authenticate an `https://` endpoint; default: Node's public roots. */
  readonly endpointCaPath?: string;
  /** Deadline of one HTTPS fetch. Default 10 s. */
  readonly timeoutMs?: number;
}

/**
 * A source for `location`: an `https://` URL, a `file://` URL or a path. Throws `TypeError` for
 * any other URL scheme (plain `http://` included: a bundle is a trust decision).
 */
export function createFederatedBundleSource(
  trustDomain: TrustDomain,
  location: string,
  options: FederatedBundleSourceOptions = {},
): FederatedBundleSource {
  if (typeof trustDomain?.idString !== 'function') throw new TypeError('trustDomain must be a TrustDomain');
  if (typeof location !== 'string' || location.trim() === '') throw new TypeError('federated bundle location is required');
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(location)?.[1]?.toLowerCase();
  if (scheme === 'https') {
    const url = new URL(location);
    const timeoutMs = options.timeoutMs ?? DEFAULT_FEDERATED_FETCH_TIMEOUT_MS;
    if (!(timeoutMs > 0)) throw new TypeError(`timeoutMs must be positive, got ${timeoutMs}`);
    return {
      trustDomain,
      location,
      async fetchBundle({ signal } = {}) {
        const ca = options.endpointCaPath === undefined ? undefined : await readEndpointCa(options.endpointCaPath);
        const text = await fetchHttps(url, { ca, timeoutMs, signal });
        return parseFederatedBundleDocument(trustDomain, text, location, 'jwks');
      },
    };
  }
  // A one-letter "scheme" is a Windows drive, not a URL.
  if (scheme !== undefined && scheme !== 'file' && scheme.length > 1) {
    throw new TypeError(`federated bundle location ${JSON.stringify(location)} must be an https:// URL or a file`);
  }
  const path = scheme === 'file' ? fileURLToPath(location) : location;
  return {
    trustDomain,
    location,
    async fetchBundle() {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException)?.code ?? 'error';
        throw new BundleError(`federated bundle file ${path} for ${trustDomain.name} cannot be read (${code})`, { rule: 'file', cause: err });
      }
      return parseFederatedBundleDocument(trustDomain, text, path);
    },
  };
}

/**
 * Parses a federated bundle: a SPIFFE bundle document (JWKS, detected by its leading `{`) or
 * concatenated PEM certificates. `format` forces one. Throws `BundleError` naming `where`.
 */
export function parseFederatedBundleDocument(
  trustDomain: TrustDomain,
  text: string,
  where: string,
  format: 'auto' | 'jwks' | 'pem' = 'auto',
): FetchedFederatedBundle {
  const jwks = format === 'jwks' || (format === 'auto' && text.trimStart().startsWith('{'));
  try {
    if (!jwks) return Object.freeze({ bundle: parseX509BundlePem(trustDomain, text) });
    const parsed = parseSpiffeBundleJwks(trustDomain, text);
    return Object.freeze({
      bundle: parsed.x509,
      ...(parsed.refreshHintSeconds === undefined ? {} : { refreshHintSeconds: parsed.refreshHintSeconds }),
    });
  } catch (err) {
    if (!isIdentityError(err)) throw err;
    throw new BundleError(`federated bundle ${where}: ${err.message}`, { rule: err.rule ?? 'parse', cause: err });
  }
}

async function readEndpointCa(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code ?? 'error';
    throw new BundleError(`federated bundle endpoint CA file ${path} cannot be read (${code})`, { rule: 'endpoint-ca', cause: err });
  }
}

function fetchHttps(url: URL, options: { ca: string | undefined; timeoutMs: number; signal: AbortSignal | undefined }): Promise<string> {
  const where = url.href;
  const fail = (message: string, rule: string, cause?: unknown): BundleError =>
    new BundleError(`federated bundle endpoint ${where}: ${message}`, cause === undefined ? { rule } : { rule, cause });
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) return reject(options.signal.reason);
    let settled = false;
    let deadline: NodeJS.Timeout | undefined;
    const settle = (err: unknown, text?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      options.signal?.removeEventListener('abort', onAbort);
      if (err === undefined) resolve(text!);
      else reject(err);
    };
    const request = httpsGet(
      url,
      {
        ...(options.ca === undefined ? {} : { ca: options.ca }),
        headers: { accept: 'application/json' },
        agent: false,
        minVersion: 'TLSv1.2',
      },
      (response) => {
        const status = response.statusCode ?? 0;
        if (status !== 200) {
          response.resume();
          const what = status >= 300 && status < 400 ? `answered a redirect (${status}), which is not followed` : `answered HTTP ${status}`;
          settle(fail(what, 'fetch'));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_FEDERATED_BUNDLE_BYTES) {
            request.destroy();
            settle(fail(`the response exceeds ${MAX_FEDERATED_BUNDLE_BYTES} bytes`, 'too-large'));
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () => settle(undefined, Buffer.concat(chunks).toString('utf8')));
        response.on('error', (err) => settle(fail(`the response broke off (${err.message})`, 'fetch', err)));
      },
    );
    const onAbort = (): void => {
      request.destroy();
      settle(options.signal?.reason);
    };
    deadline = setTimeout(() => {
      request.destroy();
      settle(fail(`no answer within ${options.timeoutMs} ms`, 'timeout'));
    }, options.timeoutMs);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    request.on('error', (err) => settle(fail(err.message, 'fetch', err)));
  });
}
