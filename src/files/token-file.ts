/**
 * The agent's `TokenSource` over a file: the projected service-account token the kubelet mounts
 * (e.g. /var/run/secrets/tokens/istio-token) and rewrites before it expires. The file is read on
 * every call; caching would eventually hand the CA an expired token.
 */
import { open } from 'node:fs/promises';
import type { TokenSource } from '../agent/ports.js';
import { readServiceAccountTokenClaims } from '../agent/token-claims.js';
import { systemClock, type Clock } from '../clock.js';
import { AuthnError } from '../errors.js';

export interface FileTokenSourceOptions {
  readonly clock?: Clock;
  /** Larger files are refused; real projected tokens are 1–2 KiB. Default 64 KiB. */
  readonly maxBytes?: number;
}

export const DEFAULT_TOKEN_FILE_MAX_BYTES = 64 * 1024;

/**
 * Reads the token file on every `readToken()`. Rejects with `AuthnError` (ERR_AUTHN_FAILED):
 * rule `token-file-missing`, `token-file-unreadable`, `token-file-too-large`, `token-empty`,
 * `expired` (by its own `exp` claim), or a claim rule from `readServiceAccountTokenClaims`.
 * The signature is not checked here; the CA does that.
 */
export function createFileTokenSource(path: string, options: FileTokenSourceOptions = {}): TokenSource {
  if (typeof path !== 'string' || path.length === 0) throw new TypeError('token file path is required');
  const clock = options.clock ?? systemClock;
  const maxBytes = options.maxBytes ?? DEFAULT_TOKEN_FILE_MAX_BYTES;
  return {
    async readToken(): Promise<string> {
      const text = await readBounded(path, maxBytes);
      const token = text.trim();
      if (token.length === 0) throw new AuthnError(`token file ${path} is empty`, { rule: 'token-empty' });
      const claims = readServiceAccountTokenClaims(token);
      const now = clock.now();
      if (claims.expiresAt !== undefined && now.getTime() >= claims.expiresAt.getTime()) {
        throw new AuthnError(
          `the token in ${path} expired at ${claims.expiresAt.toISOString()}; the kubelet normally rewrites it well before that, so check the projected volume`,
          { rule: 'expired' },
        );
      }
      return token;
    },
  };
}

async function readBounded(path: string, maxBytes: number): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw fileError(path, err);
  }
  try {
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > maxBytes) {
        throw new AuthnError(`token file ${path} is larger than ${maxBytes} bytes; is it the right file?`, { rule: 'token-file-too-large' });
      }
    }
    return buffer.subarray(0, length).toString('utf8');
  } catch (err) {
    if (err instanceof AuthnError) throw err;
    throw fileError(path, err);
  } finally {
    await handle.close();
  }
}

function fileError(path: string, err: unknown): AuthnError {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') {
    return new AuthnError(`token file ${path} does not exist (is the projected service-account token mounted?)`, {
      rule: 'token-file-missing',
      cause: err,
    });
  }
  return new AuthnError(`token file ${path} cannot be read (${code ?? 'error'})`, { rule: 'token-file-unreadable', cause: err });
}
