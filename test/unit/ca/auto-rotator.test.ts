import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';

import type { AutoRotationPlan, RotationResult } from '../../../src/ca/authority-rotation.js';
import { AutoRotator } from '../../../src/ca/auto-rotator.js';
import { silentLogger } from '../../../src/log.js';
import { ManualClock } from '../../helpers/manual-clock.js';

const MINUTE = 60_000;
const DAY = 86_400_000;

/** An autoRotate that plays a script: each call returns the next entry (or throws it). */
function scripted(clock: ManualClock, steps: readonly ({ performed?: string; nextInMs?: number } | Error)[]) {
  const calls: Date[] = [];
  return {
    calls,
    rotation: {
      async autoRotate({ now }: { now: Date }) {
        calls.push(now);
        const step = steps[calls.length - 1] ?? { nextInMs: undefined };
        if (step instanceof Error) throw step;
        const plan: AutoRotationPlan = step.nextInMs === undefined
          ? { action: 'none', at: undefined, reason: 'nothing planned' }
          : { action: 'activate', at: new Date(clock.now().getTime() + step.nextInMs), reason: 'scripted' };
        return { performed: step.performed ? ({ operation: step.performed, sequence: calls.length } as unknown as RotationResult) : undefined, plan };
      },
    },
  };
}

describe('AutoRotator', () => {
  it('sleeps until the planned step, re-plans at least daily, and reports each step it performed', async () => {
    const clock = new ManualClock();
    const start = clock.now().getTime();
    const { rotation, calls } = scripted(clock, [{ nextInMs: 2 * 3600_000 }, { performed: 'activate', nextInMs: 30 * DAY }, { nextInMs: undefined }]);
    const steps: string[] = [];
    const stop = new AbortController();
    const running = new AutoRotator({ rotation, clock, logger: silentLogger, onStep: (r) => steps.push(r.operation) }).run(stop.signal);
    await clock.waitForTimers();
    clock.advance(2 * 3600_000);
    await clock.waitForTimers();
    assert.deepEqual(steps, ['activate']);
    clock.advance(DAY); // 30 days planned, but re-planned after one
    await clock.waitForTimers();
    assert.deepEqual(calls.map((d) => d.getTime() - start), [0, 2 * 3600_000, 2 * 3600_000 + DAY]);
    stop.abort();
    await running;
  });

  it('retries a failed step after 5 minutes instead of stopping', async () => {
    const clock = new ManualClock();
    const { rotation, calls } = scripted(clock, [new Error('store unavailable'), { nextInMs: undefined }]);
    const stop = new AbortController();
    const running = new AutoRotator({ rotation, clock, logger: silentLogger }).run(stop.signal);
    await clock.waitForTimers();
    clock.advance(5 * MINUTE - 1);
    assert.equal(calls.length, 1);
    clock.advance(1);
    await clock.waitForTimers();
    assert.equal(calls.length, 2);
    stop.abort();
    await running;
  });

  it('does not act while it does not drive (not the leader), and looks again every minute', async () => {
    const clock = new ManualClock();
    const { rotation, calls } = scripted(clock, []);
    let leader = false;
    const stop = new AbortController();
    const running = new AutoRotator({ rotation, clock, logger: silentLogger, shouldDrive: () => leader }).run(stop.signal);
    await clock.waitForTimers();
    clock.advance(MINUTE);
    await clock.waitForTimers();
    assert.equal(calls.length, 0);
    leader = true;
    clock.advance(MINUTE);
    await clock.waitForTimers();
    assert.equal(calls.length, 1);
    stop.abort();
    await running;
  });

  it('a plan due now that did not act waits at least a second (no spin)', async () => {
    const clock = new ManualClock();
    const { rotation, calls } = scripted(clock, [{ nextInMs: -5000 }, { nextInMs: undefined }]);
    const stop = new AbortController();
    const running = new AutoRotator({ rotation, clock, logger: silentLogger }).run(stop.signal);
    await clock.waitForTimers();
    assert.equal(clock.nextTimerAt()?.getTime(), calls[0]!.getTime() + 1000);
    stop.abort();
    await running;
  });
});
