/**
 * An `X509Source` over the files the agent writes (`cert-chain.pem`, `key.pem`, `root-cert.pem`):
 * how a service that does not speak the Workload API picks up its SVID and follows rotation.
 *
 * The directories are watched rather than the files: writers replace files by rename (see
 * atomic-write.ts) and Kubernetes swaps a `..data` symlink, and either way a watch on the old
 * inode would go quiet. Events are debounced, since a rotation touches several files, and a
 * reload that sees the new chain with the old key (a writer half-way through) simply fails and
 * is retried on the writer's next event. The previous material stays in use until a complete,
 * valid set is read.
 */
import { EventEmitter } from 'node:events';
import type { FSWatcher } from 'node:fs';
import { watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseTrustDomain, TrustDomain } from '../spiffe/trust-domain.js';
import type { X509Bundle } from '../spiffe/x509-bundle.js';
import { parseX509BundlePem, X509BundleSet } from '../spiffe/x509-bundle.js';
import type { X509Svid } from '../spiffe/x509-svid.js';
import { parseX509Svid } from '../spiffe/x509-svid.js';
import type { X509Source } from '../tls/x509-source.js';

export interface X509SourceFromFilesOptions {
  /** PEM: the leaf first, then intermediates (the agent's `cert-chain.pem`). */
  readonly certChainPath: string;
  /** PEM private key of the leaf (`key.pem`). */
  readonly keyPath: string;
  /** PEM authorities of `trustDomain` (`root-cert.pem`). */
  readonly bundlePath: string;
  /** The trust domain the bundle file is for. */
  readonly trustDomain: TrustDomain | string;
  /** Re-read the files when they change. Default true. */
  readonly watch?: boolean;
  /** Quiet period after the last file event before reloading. Default 100 ms. */
  readonly debounceMs?: number;
  /**
   * Called when a reload triggered by a file change fails; the previous material stays in use.
   * Default: `process.emitWarning`.
   */
  readonly onError?: (error: Error) => void;
}

export interface FileX509Source extends X509Source {
  /**
   * Reads the files now. Resolves true if the material changed (`update` was emitted), false if
   * the files hold what is already loaded; rejects (keeping the old material) if they are invalid.
   */
  reload(): Promise<boolean>;
}

/**
 * Loads the files once (rejecting with `SvidError` / `BundleError` or the fs error if they are
 * unusable) and, unless `watch: false`, follows their changes until `close()`.
 */
export async function createX509SourceFromFiles(options: X509SourceFromFilesOptions): Promise<FileX509Source> {
  const paths = {
    certChain: requiredPath(options?.certChainPath, 'certChainPath'),
    key: requiredPath(options.keyPath, 'keyPath'),
    bundle: requiredPath(options.bundlePath, 'bundlePath'),
  };
  const trustDomain =
    options.trustDomain instanceof TrustDomain ? options.trustDomain : parseTrustDomain(options.trustDomain);
  const debounceMs = options.debounceMs ?? 100;
  if (!Number.isFinite(debounceMs) || debounceMs < 0) throw new TypeError('debounceMs must be a non-negative number');
  const initial = await readMaterial(paths, trustDomain);
  const source = new FilesX509Source(paths, trustDomain, initial, debounceMs, options.onError ?? warn);
  if (options.watch ?? true) source.watch();
  return source;
}

interface Paths {
  readonly certChain: string;
  readonly key: string;
  readonly bundle: string;
}

interface Material {
  /** The three file texts, to tell a real change from a touch. */
  readonly texts: readonly [string, string, string];
  readonly svid: X509Svid;
  readonly bundles: X509BundleSet;
  readonly bundleList: readonly X509Bundle[];
}

function requiredPath(path: unknown, name: string): string {
  if (typeof path !== 'string' || path === '') throw new TypeError(`${name} must be a non-empty path`);
  return resolve(path);
}

function warn(error: Error): void {
  process.emitWarning(`meshca: SVID files not reloaded, keeping the previous ones: ${error.message}`);
}

async function readTexts(paths: Paths): Promise<[string, string, string]> {
  return Promise.all([readFile(paths.certChain, 'utf8'), readFile(paths.key, 'utf8'), readFile(paths.bundle, 'utf8')]);
}

function parseMaterial(texts: [string, string, string], trustDomain: TrustDomain): Material {
  const [chainPem, keyPem, bundlePem] = texts;
  const svid = parseX509Svid(chainPem, keyPem);
  const bundles = new X509BundleSet([parseX509BundlePem(trustDomain, bundlePem)]);
  return { texts, svid, bundles, bundleList: Object.freeze(bundles.bundles()) };
}

async function readMaterial(paths: Paths, trustDomain: TrustDomain): Promise<Material> {
  return parseMaterial(await readTexts(paths), trustDomain);
}

class FilesX509Source extends EventEmitter implements FileX509Source {
  readonly #paths: Paths;
  readonly #trustDomain: TrustDomain;
  readonly #debounceMs: number;
  readonly #onError: (error: Error) => void;
  #material: Material;
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** Reloads run one at a time, in order, so an older read never overwrites a newer one. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(paths: Paths, trustDomain: TrustDomain, initial: Material, debounceMs: number, onError: (error: Error) => void) {
    super();
    this.#paths = paths;
    this.#trustDomain = trustDomain;
    this.#material = initial;
    this.#debounceMs = debounceMs;
    this.#onError = onError;
  }

  getX509Svid(): X509Svid {
    return this.#material.svid;
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.#material.bundles.getX509BundleForTrustDomain(trustDomain);
  }

  getX509Bundles(): readonly X509Bundle[] {
    return this.#material.bundleList;
  }

  reload(): Promise<boolean> {
    const run = this.#queue.then(() => this.#reloadNow());
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #reloadNow(): Promise<boolean> {
    if (this.#closed) return false;
    const texts = await readTexts(this.#paths);
    const current = this.#material.texts;
    if (texts[0] === current[0] && texts[1] === current[1] && texts[2] === current[2]) return false;
    this.#material = parseMaterial(texts, this.#trustDomain);
    this.emit('update');
    return true;
  }

  watch(): void {
    const dirs = new Set([dirname(this.#paths.certChain), dirname(this.#paths.key), dirname(this.#paths.bundle)]);
    for (const dir of dirs) {
      // Not persistent: watching alone should not keep a process alive; the server does that.
      const watcher = watch(dir, { persistent: false }, () => this.#schedule());
      watcher.on('error', (err) => this.#onError(err));
      this.#watchers.push(watcher);
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.reload().catch((err: unknown) => this.#onError(err instanceof Error ? err : new Error(String(err))));
    }, this.#debounceMs);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const watcher of this.#watchers) watcher.close();
    this.#watchers = [];
    await this.#queue;
    this.removeAllListeners();
  }
}
