/**
 * The loop around `AuthorityRotation.autoRotate`: one step when it is due, then sleep until the
 * next one, re-planning at least daily (the plan depends on files or a Secret an operator may
 * change) and retrying after a failure. Where several replicas share one store, only the one
 * `shouldDrive()` approves (the leader) acts; the others look again every minute, as leadership
 * moves.
 */
import { sleep, type Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { AuthorityRotation, RotationResult } from './authority-rotation.js';

export const AUTO_ROTATION_DEFAULTS = Object.freeze({
  /** Longest sleep between two plans. */
  maxPlanDelayMs: 86_400_000,
  /** After a failed step. */
  retryDelayMs: 300_000,
  /** How often a replica that does not drive looks again. */
  standbyDelayMs: 60_000,
  /** Shortest sleep: a plan due "now" that did not act must not spin. */
  minDelayMs: 1000,
});

export interface AutoRotatorOptions {
  readonly rotation: Pick<AuthorityRotation, 'autoRotate'>;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Whether this process drives rotation now (default: always). */
  readonly shouldDrive?: () => boolean;
  /** After a step changed the store: make the new state take effect here. */
  readonly onStep?: (performed: RotationResult) => void;
  readonly delays?: Partial<typeof AUTO_ROTATION_DEFAULTS>;
}

export class AutoRotator {
  readonly #options: AutoRotatorOptions;
  readonly #delays: typeof AUTO_ROTATION_DEFAULTS;

  constructor(options: AutoRotatorOptions) {
    this.#options = options;
    this.#delays = { ...AUTO_ROTATION_DEFAULTS, ...options.delays };
  }

  /** Runs until `signal` aborts; never throws for a failed step (it is logged and retried). */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, logger, rotation } = this.#options;
    while (!signal.aborted) {
      let delayMs: number;
      if (this.#options.shouldDrive?.() === false) {
        delayMs = this.#delays.standbyDelayMs;
      } else {
        try {
          const { performed, plan } = await rotation.autoRotate({ now: clock.now() });
          if (performed) {
            logger.info({ operation: performed.operation, sequence: performed.sequence }, 'automatic CA rotation step done');
            this.#options.onStep?.(performed);
          }
          const untilPlan = plan.at === undefined ? this.#delays.maxPlanDelayMs : plan.at.getTime() - clock.now().getTime();
          delayMs = Math.min(this.#delays.maxPlanDelayMs, Math.max(this.#delays.minDelayMs, untilPlan));
          logger.debug({ next: plan.action, at: plan.at?.toISOString(), reason: plan.reason }, 'automatic CA rotation planned');
        } catch (err) {
          if (signal.aborted) break;
          logger.error({ err, retryInMs: this.#delays.retryDelayMs }, 'automatic CA rotation failed; retrying');
          delayMs = this.#delays.retryDelayMs;
        }
      }
      await sleep(clock, delayMs, signal).catch(() => undefined);
    }
  }
}
