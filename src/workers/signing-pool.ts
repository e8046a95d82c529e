import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { CertificateAuthority, IssuedSvid, SignOptions } from '../ca/certificate-authority.js';
import type { SvidSigner } from '../ca/issuance-service.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { AuthorityPem } from '../pki/authority.js';
import type { SpiffeId } from '../spiffe/spiffe-id.js';
import { reviveError, type SignJob, type SignReply } from './signing-protocol.js';
import type { SigningWorkerData } from './signing-worker.js';

interface Pending {
  readonly identity: SpiffeId;
  resolve(value: IssuedSvid): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker | undefined;
  readonly pending: Map<number, Pending>;
}

export interface SigningPoolOptions {
  /** The in-process CA: validates TTLs synchronously and shares the workers' configuration. */
  readonly ca: CertificateAuthority;
  readonly authority: AuthorityPem;
  readonly workers: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly caOptions: SigningWorkerData['options'];
}

// Run from dist/ (.js) the worker file loads directly. Run from src/ under tsx, worker threads
// do not inherit tsx's loader, so a small bootstrap loads the TypeScript through tsx's API.
const FROM_SOURCE = fileURLToPath(import.meta.url).endsWith('.ts');
const WORKER_URL = new URL(`./signing-worker${FROM_SOURCE ? '.ts' : '.js'}`, import.meta.url);
const SOURCE_BOOTSTRAP = `import('tsx/esm/api').then(({ tsImport }) => tsImport(${JSON.stringify(WORKER_URL.href)}, ${JSON.stringify(import.meta.url)}))`;
/** Consecutive worker deaths without a single answer after which the pool signs in-process. */
const MAX_CRASH_LOOP = 3;

/**
 * Spreads signing over worker threads. Each job goes to the worker with the fewest in flight;
 * a worker that dies fails its jobs with an error and is replaced.
 */
export class SigningPool implements SvidSigner {
  readonly #options: SigningPoolOptions;
  readonly #slots: Slot[] = [];
  #nextId = 1;
  #closed = false;
  #consecutiveCrashes = 0;
  #degraded = false;
  /** Wakes a draining close() when a job settles. */
  #drained: (() => void) | undefined;

  constructor(options: SigningPoolOptions) {
    if (!(options.workers >= 1)) throw new TypeError('a signing pool needs at least one worker');
    this.#options = options;
    for (let i = 0; i < options.workers; i++) {
      const slot: Slot = { worker: undefined, pending: new Map() };
      this.#start(slot);
      this.#slots.push(slot);
    }
  }

  resolveTtlSeconds(requested: number | undefined): number {
    return this.#options.ca.resolveTtlSeconds(requested);
  }

  sign(csr: string | Uint8Array, identity: SpiffeId, options: SignOptions = {}): Promise<IssuedSvid> {
    if (this.#closed) return Promise.reject(new Error('signing pool is closed'));
    if (this.#degraded) return this.#options.ca.sign(csr, identity, options);
    let slot = this.#slots[0]!;
    for (const s of this.#slots) if (s.pending.size < slot.pending.size) slot = s;
    const id = this.#nextId++;
    const job: SignJob = { id, csr, identity: identity.toString(), ttlSeconds: options.ttlSeconds, nowMs: this.#options.clock.now().getTime() };
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { identity, resolve, reject });
      slot.worker!.postMessage(job);
    });
  }

  /**
   * Takes no new jobs, lets the ones in flight finish (an authority change retires a pool while
   * requests are being signed on it: they must be answered, not failed), then stops the workers.
   * Jobs still unanswered after `drainMs` fail as a worker exit would fail them.
   */
  async close(drainMs = 30_000): Promise<void> {
    this.#closed = true;
    const deadline = Date.now() + drainMs;
    while (this.#slots.some((s) => s.pending.size > 0 && s.worker !== undefined) && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
        setTimeout(resolve, 50).unref();
      });
    }
    this.#drained = undefined;
    await Promise.all(this.#slots.map((s) => s.worker?.terminate()));
  }

  #start(slot: Slot): void {
    const data: SigningWorkerData = {
      authority: this.#options.authority,
      options: this.#options.caOptions,
      nowMs: this.#options.clock.now().getTime(),
    };
    const worker = FROM_SOURCE ? new Worker(SOURCE_BOOTSTRAP, { eval: true, workerData: data }) : new Worker(WORKER_URL, { workerData: data });
    slot.worker = worker;
    worker.unref();
    worker.on('message', (reply: SignReply) => {
      this.#consecutiveCrashes = 0;
      const pending = slot.pending.get(reply.id);
      if (!pending) return;
      slot.pending.delete(reply.id);
      if (reply.ok) {
        pending.resolve({
          spiffeId: pending.identity,
          certificate: reply.certificate,
          certChainPem: reply.certChainPem,
          serial: reply.serial,
          notBefore: new Date(reply.notBeforeMs),
          notAfter: new Date(reply.notAfterMs),
        });
      } else {
        pending.reject(reviveError(reply));
      }
      if (this.#closed) this.#drained?.();
    });
    worker.on('error', (err) => {
      this.#options.logger.error({ err }, 'signing worker failed; replacing it');
    });
    worker.on('exit', (code) => {
      for (const p of slot.pending.values()) p.reject(new Error(`signing worker exited (code ${code})`));
      slot.pending.clear();
      if (this.#closed) return;
      if (++this.#consecutiveCrashes >= MAX_CRASH_LOOP) {
        // Workers that die before answering anything will keep dying: sign here instead.
        this.#degraded = true;
        this.#options.logger.error({ code }, 'signing workers keep failing; signing on the main thread');
        return;
      }
      this.#start(slot);
    });
  }
}
