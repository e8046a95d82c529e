/**
 * Keeps the inbound proxy's policy in step with its file. A ConfigMap mounted as a volume is
 * updated in place (kubelet swaps a symlink), so the file is re-read on a short interval and
 * compared by content. A change that does not load (bad YAML, a policy that no longer applies
 * to this workload) keeps the last good policy and says so: once in the log, in the reload
 * metric and in `/ready`'s body, until a good version arrives.
 */
import { readFile } from 'node:fs/promises';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { PolicyEngine } from '../policy/index.js';
import type { PolicySource } from './inbound-proxy.js';

export interface PolicyReloaderOptions {
  readonly path: string;
  /** Parses, compiles and checks the file's text; throws to refuse it. */
  readonly load: (text: string) => PolicyEngine;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Default 2 s. */
  readonly intervalMs?: number;
  readonly onReload?: (result: 'success' | 'failure') => void;
}

export class PolicyReloader implements PolicySource {
  readonly #options: PolicyReloaderOptions;
  #engine: PolicyEngine;
  #text: string;
  #failedText: string | undefined;
  #error: string | undefined;
  #timer: TimerHandle | undefined;
  #closed = false;

  private constructor(options: PolicyReloaderOptions, text: string, engine: PolicyEngine) {
    this.#options = options;
    this.#text = text;
    this.#engine = engine;
  }

  /** Loads the file once; throws (the start-up failure) if it does not load. */
  static async start(options: PolicyReloaderOptions): Promise<PolicyReloader> {
    const text = await readFile(options.path, 'utf8');
    const reloader = new PolicyReloader(options, text, options.load(text));
    reloader.#schedule();
    return reloader;
  }

  current(): PolicyEngine {
    return this.#engine;
  }

  /** Why the file's current content is not in force; undefined when it is. */
  get lastError(): string | undefined {
    return this.#error;
  }

  /** Re-reads the file now; resolves once the check is done. */
  async check(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.#options.path, 'utf8');
    } catch (err) {
      this.#refuse(`cannot read ${this.#options.path}: ${(err as Error).message}`, `\0unreadable:${(err as NodeJS.ErrnoException).code ?? ''}`);
      return;
    }
    if (text === this.#text) {
      this.#error = undefined;
      this.#failedText = undefined;
      return;
    }
    if (text === this.#failedText) return;
    try {
      this.#engine = this.#options.load(text);
    } catch (err) {
      this.#refuse((err as Error).message, text);
      return;
    }
    this.#text = text;
    this.#error = undefined;
    this.#failedText = undefined;
    this.#options.logger.info({ policy: this.#options.path, applied: this.#engine.appliedPolicies.length, ignored: this.#engine.ignoredPolicies.length }, 'policy reloaded');
    this.#options.onReload?.('success');
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
  }

  #refuse(message: string, failedText: string): void {
    this.#failedText = failedText;
    this.#error = message;
    this.#options.logger.warn({ policy: this.#options.path, err: message }, 'policy change refused; the last good policy stays in force');
    this.#options.onReload?.('failure');
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = this.#options.clock.setTimeout(() => {
      void this.check().finally(() => this.#schedule());
    }, this.#options.intervalMs ?? 2000);
  }
}
