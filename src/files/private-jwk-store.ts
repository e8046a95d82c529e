/**
 * Private JWKs kept in the data directory (the dev token issuer's key, the CA's JWT-SVID signing
 * key). Written 0600 and atomically (temp file, fsync, then link/rename), so a crash never
 * leaves a half-written key, and concurrent starters converge on one key.
 */
import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { JWK } from 'jose';
import { ConfigError } from '../errors.js';

export interface LoadOrCreateJwkResult {
  readonly jwk: JWK;
  /** True when this call generated the key. */
  readonly created: boolean;
  /** Problems worth a warning, e.g. a key file readable by other users. */
  readonly warnings: readonly string[];
}

function isErrnoException(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

async function readJwkFile(path: string, what: string): Promise<LoadOrCreateJwkResult> {
  // Read first: ENOENT must reach the caller untouched, it means "create one".
  const text = await readFile(path, 'utf8');
  const warnings: string[] = [];
  if (process.platform !== 'win32') {
    const { mode } = await stat(path);
    if ((mode & 0o077) !== 0) {
      warnings.push(`${path} is accessible by other users (mode ${(mode & 0o777).toString(8)}); anyone who reads it can forge ${what}. Run: chmod 600 ${path}`);
    }
  }
  try {
    const jwk = JSON.parse(text) as JWK;
    if (typeof jwk !== 'object' || jwk === null || typeof jwk.kty !== 'string') throw new Error('not a JWK');
    return { jwk, created: false, warnings };
  } catch (err) {
    throw new ConfigError([`${path} is not a JSON private key file`], { cause: err });
  }
}

/**
 * Writes `content` to `path` without ever exposing a partial file. Returns false if `path`
 * appeared meanwhile (another process won the race): the caller then reads that one.
 */
async function writeExclusiveAtomic(path: string, content: string): Promise<boolean> {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(content, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    // link() fails with EEXIST instead of replacing: no clobbering a concurrent writer's key.
    await link(temp, path);
    return true;
  } catch (err) {
    if (isErrnoException(err, 'EEXIST')) return false;
    // Filesystems without hard links: fall back to rename, still atomic.
    await rename(temp, path);
    return true;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/** Loads the private JWK at `path`, generating and saving one when it is missing. */
export async function loadOrCreatePrivateJwk(path: string, generate: () => Promise<JWK>, what: string): Promise<LoadOrCreateJwkResult> {
  try {
    return await readJwkFile(path, what);
  } catch (err) {
    if (!isErrnoException(err, 'ENOENT')) throw err;
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const jwk = await generate();
  const written = await writeExclusiveAtomic(path, `${JSON.stringify(jwk, null, 2)}\n`);
  if (!written) return readJwkFile(path, what);
  // The umask may have narrowed the mode further, never widened it; make it exact.
  if (process.platform !== 'win32') await chmod(path, 0o600);
  return { jwk, created: true, warnings: [] };
}
