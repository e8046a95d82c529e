import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CaInvalidError, CaNotReadyError } from '../errors.js';
import { loadAuthority, type Authority, type AuthorityPem } from '../pki/authority.js';
import { writeFileAtomic } from './atomic-write.js';
import { readTextIfExists } from './read-if-exists.js';

/** Istio's plug-in CA file names, so existing `cacerts` material drops in unchanged. */
export const AUTHORITY_FILES = {
  cert: 'ca-cert.pem',
  key: 'ca-key.pem',
  chain: 'cert-chain.pem',
  root: 'root-cert.pem',
} as const;

/** The rotation state and the prepared next authority (see authority-slots.ts). */
export const AUTHORITY_STATE_FILE = 'authority-state.json';
export const NEXT_AUTHORITY_DIR = 'next';

/**
 * What is left of a CA whose key is gone: the roots workloads trust, its chain, its rotation
 * state. A directory holding any of them is not empty; making a new root there would replace the
 * mesh's trust without a word and cut off every workload.
 */
async function trustLeftovers(dataDir: string): Promise<string[]> {
  const names = [AUTHORITY_FILES.root, AUTHORITY_FILES.chain, AUTHORITY_STATE_FILE, NEXT_AUTHORITY_DIR];
  const found = await Promise.all(names.map((name) => stat(join(dataDir, name)).then(() => name, () => undefined)));
  return found.filter((name): name is string => name !== undefined);
}

export interface ReadAuthorityResult extends AuthorityPem {
  /** Problems worth a warning that do not stop the CA (e.g. a key file others can read). */
  readonly warnings: readonly string[];
}

/** Reads CA material from a data directory. Missing required files are a clear, coded error. */
export async function readAuthorityFiles(dataDir: string): Promise<ReadAuthorityResult> {
  const [certPem, keyPem, chainPem, rootPem] = await Promise.all(
    [AUTHORITY_FILES.cert, AUTHORITY_FILES.key, AUTHORITY_FILES.chain, AUTHORITY_FILES.root].map((f) =>
      readTextIfExists(join(dataDir, f)),
    ),
  );
  if (certPem === undefined && keyPem === undefined) {
    const left = await trustLeftovers(dataDir);
    if (left.length > 0) {
      throw new CaInvalidError(
        `${dataDir} has no ${AUTHORITY_FILES.cert} or ${AUTHORITY_FILES.key} but holds ${left.join(', ')}: the CA whose roots workloads trust lost its key. Restore ${AUTHORITY_FILES.cert} and ${AUTHORITY_FILES.key}; a new root would cut off every workload (to start a new mesh on purpose, run meshca ca init --force)`,
        { rule: 'missing' },
      );
    }
    throw new CaNotReadyError(`no CA in ${dataDir}: run \`meshca ca init --data-dir ${dataDir}\` or install plug-in CA files`, {
      rule: 'missing',
    });
  }
  const missing = [
    certPem === undefined && AUTHORITY_FILES.cert,
    keyPem === undefined && AUTHORITY_FILES.key,
  ].filter(Boolean);
  if (missing.length > 0) {
    throw new CaInvalidError(`CA in ${dataDir} is incomplete: missing ${missing.join(', ')}`, { rule: 'missing' });
  }
  const warnings: string[] = [];
  const keyMode = (await stat(join(dataDir, AUTHORITY_FILES.key))).mode & 0o777;
  if ((keyMode & 0o077) !== 0) {
    warnings.push(`${join(dataDir, AUTHORITY_FILES.key)} is readable by others (mode ${keyMode.toString(8)}); it should be 0600`);
  }
  return {
    certPem: certPem!,
    keyPem: keyPem!,
    ...(chainPem === undefined ? {} : { chainPem }),
    // A self-signed CA may ship without root-cert.pem: the CA cert is then its own root.
    rootPem: rootPem ?? certPem!,
    warnings,
  };
}

export interface WriteAuthorityOptions {
  readonly force?: boolean;
}

/** Writes a CA's files; refuses to replace an existing CA key unless `force` is set. */
export async function writeAuthorityFiles(dataDir: string, pem: AuthorityPem, options: WriteAuthorityOptions = {}): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o755 });
  if (!options.force) {
    for (const name of [AUTHORITY_FILES.cert, AUTHORITY_FILES.key]) {
      if ((await readTextIfExists(join(dataDir, name))) !== undefined) {
        throw new CaInvalidError(`a CA already exists in ${dataDir} (${name}); pass --force to replace it`, { rule: 'exists' });
      }
    }
    const left = await trustLeftovers(dataDir);
    if (left.length > 0) {
      throw new CaInvalidError(`${dataDir} holds ${left.join(', ')} of an earlier CA; pass --force to replace its trust`, { rule: 'exists' });
    }
  }
  // Key first: a crash between writes leaves no certificate that lacks its key.
  await writeFileAtomic(join(dataDir, AUTHORITY_FILES.key), pem.keyPem, 0o600);
  await writeFileAtomic(join(dataDir, AUTHORITY_FILES.cert), pem.certPem);
  await writeFileAtomic(join(dataDir, AUTHORITY_FILES.chain), pem.chainPem ?? pem.certPem);
  await writeFileAtomic(join(dataDir, AUTHORITY_FILES.root), pem.rootPem);
}

/** Reads and validates the CA in `dataDir`: the one way the CLI and the service open a CA. */
export async function loadAuthorityFromDir(dataDir: string, now: Date): Promise<{ authority: Authority; warnings: readonly string[] }> {
  const files = await readAuthorityFiles(dataDir);
  return { authority: loadAuthority(files, now), warnings: files.warnings };
}
