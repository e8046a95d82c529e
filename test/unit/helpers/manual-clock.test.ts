import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { sleep } from '../../../src/clock.js';
import { MANUAL_CLOCK_EPOCH, ManualClock } from '../../helpers/manual-clock.js';

describe('ManualClock', () => {
  it('starts at the given time and only moves on advance', () => {
    const clock = new ManualClock(new Date('2031-05-06T07:08:09Z'));
    assert.equal(clock.now().toISOString(), '2031-05-06T07:08:09.000Z');
    clock.advance(1500);
    assert.equal(clock.now().toISOString(), '2031-05-06T07:08:10.500Z');
    assert.equal(new ManualClock().now().getTime(), MANUAL_CLOCK_EPOCH.getTime());
  });

  it('fires due timers in due-time order, ties in arming order, with now() at each due time', () => {
    const clock = new ManualClock(0);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`c@${clock.now().getTime()}`), 300);
    clock.setTimeout(() => fired.push(`a@${clock.now().getTime()}`), 100);
    clock.setTimeout(() => fired.push(`b@${clock.now().getTime()}`), 100);
    clock.setTimeout(() => fired.push('late'), 1000);
    clock.advance(500);
    assert.deepEqual(fired, ['a@100', 'b@100', 'c@300']);
    assert.equal(clock.now().getTime(), 500);
    assert.equal(clock.pendingTimers, 1);
    assert.equal(clock.nextTimerAt()?.getTime(), 1000);
  });

  it('fires timers re-armed from a callback when they fall inside the advanced window', () => {
    const clock = new ManualClock(0);
    const ticks: number[] = [];
    const tick = (): void => {
      ticks.push(clock.now().getTime());
      clock.setTimeout(tick, 100);
    };
    clock.setTimeout(tick, 100);
    clock.advance(350);
    assert.deepEqual(ticks, [100, 200, 300]);
  });

  it('does not fire cleared timers', () => {
    const clock = new ManualClock(0);
    let fired = false;
    const handle = clock.setTimeout(() => {
      fired = true;
    }, 10);
    clock.clearTimeout(handle);
    clock.advance(100);
    assert.equal(fired, false);
    assert.equal(clock.pendingTimers, 0);
  });

  it('waitForTimers resolves once the code under test arms its timer', async () => {
    const clock = new ManualClock(0);
    const done = (async () => {
      await Promise.resolve();
      await sleep(clock, 1000);
      return clock.now().getTime();
    })();
    await clock.waitForTimers();
    clock.advance(1000);
    assert.equal(await done, 1000);
  });

  it('waitForTimers(count) waits for that many pending timers', async () => {
    const clock = new ManualClock(0);
    let resolved = false;
    const waiting = clock.waitForTimers(2).then(() => {
      resolved = true;
    });
    clock.setTimeout(() => undefined, 5);
    await Promise.resolve();
    assert.equal(resolved, false);
    clock.setTimeout(() => undefined, 5);
    await waiting;
    assert.equal(resolved, true);
  });

  it('rejects a negative advance as misuse', () => {
    assert.throws(() => new ManualClock(0).advance(-1), TypeError);
  });
});
