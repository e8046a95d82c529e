/**
 * Persists the dev token issuer's key in the data directory so tokens minted before a restart
 * keep verifying after it. The file is a private JWK, written 0600 and atomically (temp file,
 * fsync, then link/rename), so a crash never leaves a half-written key behind.
 */
import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';

import type { JWK } from 'jose';

import { ConfigError } from '../errors.js';
import { DevTokenIssuer } from '../authn/dev-issuer.js';
import type { GenerateDevTokenIssuerOptions } from '../authn/dev-issuer.js';

export const DEV_ISSUER_KEY_FILE = 'dev-issuer-key.json';

export interface LoadOrCreateDevIssuerResult {
  readonly issuer: DevTokenIssuer;
  readonly path: string;
  /** True when this call generated the key. */
  readonly created: boolean;
  /** Problems worth a warning, e.g. a key file readable by other users. */
  readonly warnings: readonly string[];
}

function isErrnoException(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

async function readKeyFile(path: string, options: GenerateDevTokenIssuerOptions): Promise<LoadOrCreateDevIssuerResult> {
  // Read first: ENOENT must reach the caller untouched, it means "create one".
  const text = await readFile(path, 'utf8');
  const warnings: string[] = [];
  if (process.platform !== 'win32') {
    const { mode } = await stat(path);
    if ((mode & 0o077) !== 0) {
      warnings.push(`${path} is accessible by other users (mode ${(mode & 0o777).toString(8)}); anyone who reads it can impersonate any workload. Run: chmod 600 ${path}`);
    }
  }
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch (err) {
    throw new ConfigError([`${path} is not a JSON key file`], { cause: err });
  }
  try {
    return { issuer: await DevTokenIssuer.fromPrivateJwk(jwk, options), path, created: false, warnings };
  } catch (err) {
    throw new ConfigError([`${path} does not hold a usable dev issuer key: ${err instanceof Error ? err.message : String(err)}`], { cause: err });
  }
}

/**
 * Writes `content` to `path` without ever exposing a partial file. Returns false if `path`
 * appeared meanwhile (another process won the race): the caller then reads that one, so every
 * process ends up with the same key.
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

/** Loads `<dataDir>/dev-issuer-key.json`, generating and saving a new key when it is missing. */
export async function loadOrCreateDevIssuer(dataDir: string, options: GenerateDevTokenIssuerOptions = {}): Promise<LoadOrCreateDevIssuerResult> {
  const path = join(dataDir, DEV_ISSUER_KEY_FILE);
  try {
    return await readKeyFile(path, options);
  } catch (err) {
    if (!isErrnoException(err, 'ENOENT')) throw err;
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const issuer = await DevTokenIssuer.generate(options);
  const written = await writeExclusiveAtomic(path, `${JSON.stringify(issuer.exportPrivateJwk(), null, 2)}\n`);
  if (!written) return readKeyFile(path, options);
  // The umask may have narrowed the mode further, never widened it; make it exact.
  if (process.platform !== 'win32') await chmod(path, 0o600);
  return { issuer, path, created: true, warnings: [] };
}
