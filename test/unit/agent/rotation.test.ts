import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backoffDelayMs, rotationTime } from '../../../src/agent/rotation.js';

const HOUR = 3_600_000;
const T0 = new Date('2030-01-01T00:00:00.000Z');
const DAY_SVID = { notBefore: T0, notAfter: new Date(T0.getTime() + 24 * HOUR) };
/** 0, 1 and a spread of values in between, including the extremes Math.random can return. */
const RANDOMS = [0, 1, 0.5, 0.25, 0.75, 0.999999, Number.MIN_VALUE, ...Array.from({ length: 200 }, (_, i) => (i * 0.618034) % 1)];

describe('rotationTime', () => {
  test('renews a 24 h SVID at 12 h when jitter is centred', () => {
    assert.equal(rotationTime(DAY_SVID, { random: () => 0.5 }).toISOString(), '2030-01-01T12:00:00.000Z');
  });

  test('renews at exactly half-life with jitter disabled, whatever random returns', () => {
    for (const r of [0, 1, 0.3]) {
      assert.equal(rotationTime(DAY_SVID, { jitterFraction: 0, random: () => r }).getTime(), T0.getTime() + 12 * HOUR);
    }
  });

  test('keeps the default ±10 % of half-life jitter within 10.8 h .. 13.2 h for any random value', () => {
    const times = RANDOMS.map((r) => rotationTime(DAY_SVID, { random: () => r }).getTime() - T0.getTime());
    for (const t of times) {
      assert.ok(t >= 10.8 * HOUR && t <= 13.2 * HOUR, `${t / HOUR} h is outside the window`);
    }
    assert.equal(Math.min(...times), 10.8 * HOUR, 'random 0 gives the earliest time');
    assert.equal(Math.max(...times), 13.2 * HOUR, 'random 1 gives the latest time');
  });

  test('stays strictly inside the lifetime even at the largest allowed jitter', () => {
    for (const r of RANDOMS) {
      const t = rotationTime(DAY_SVID, { jitterFraction: 0.5, random: () => r }).getTime();
      assert.ok(t >= T0.getTime() + 6 * HOUR && t <= T0.getTime() + 18 * HOUR);
    }
  });

  test('scales with the lifetime: a 1 h SVID renews around 30 min, a 90 s one around 45 s', () => {
    const hour = { notBefore: T0, notAfter: new Date(T0.getTime() + HOUR) };
    assert.equal(rotationTime(hour, { random: () => 0.5 }).getTime() - T0.getTime(), 30 * 60_000);
    const short = { notBefore: T0, notAfter: new Date(T0.getTime() + 90_000) };
    assert.equal(rotationTime(short, { random: () => 0.5 }).getTime() - T0.getTime(), 45_000);
  });

  test('clamps a random source that strays outside [0, 1]', () => {
    assert.equal(rotationTime(DAY_SVID, { random: () => 7 }).getTime() - T0.getTime(), 13.2 * HOUR);
    assert.equal(rotationTime(DAY_SVID, { random: () => -3 }).getTime() - T0.getTime(), 10.8 * HOUR);
  });

  test('says "now" (notBefore) for a certificate whose validity is empty or inverted', () => {
    assert.equal(rotationTime({ notBefore: T0, notAfter: T0 }).getTime(), T0.getTime());
    assert.equal(rotationTime({ notBefore: T0, notAfter: new Date(T0.getTime() - 1) }).getTime(), T0.getTime());
  });

  test('refuses jitter fractions that could leave the lifetime, and invalid dates', () => {
    assert.throws(() => rotationTime(DAY_SVID, { jitterFraction: 0.6 }), TypeError);
    assert.throws(() => rotationTime(DAY_SVID, { jitterFraction: -0.1 }), TypeError);
    assert.throws(() => rotationTime({ notBefore: new Date(Number.NaN), notAfter: T0 }), TypeError);
    assert.throws(() => rotationTime(DAY_SVID, { random: () => Number.NaN }), TypeError);
  });
});

describe('backoffDelayMs', () => {
  test('doubles from the base on every attempt (upper end of the jitter)', () => {
    const delays = [1, 2, 3, 4, 5].map((attempt) => backoffDelayMs(attempt, { random: () => 1 }));
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000]);
  });

  test('caps the delay at maxMs (5 min by default), even for huge attempt counts', () => {
    assert.equal(backoffDelayMs(9, { random: () => 1 }), 256_000);
    assert.equal(backoffDelayMs(10, { random: () => 1 }), 300_000);
    assert.equal(backoffDelayMs(10_000, { random: () => 1 }), 300_000);
    assert.equal(backoffDelayMs(4, { baseMs: 500, maxMs: 3000, random: () => 1 }), 3000);
  });

  test('equal jitter (default) waits between half and all of the exponential delay', () => {
    for (const r of RANDOMS) {
      const d = backoffDelayMs(4, { random: () => r });
      assert.ok(d >= 4000 && d <= 8000, `${d} ms`);
    }
    assert.equal(backoffDelayMs(4, { random: () => 0 }), 4000);
  });

  test('equal jitter never shrinks below the cap, and stays above half the cap once there', () => {
    // Below the cap, the shortest wait of attempt n+1 is the longest wait of attempt n.
    for (let attempt = 1; attempt < 9; attempt++) {
      assert.ok(backoffDelayMs(attempt + 1, { random: () => 0 }) >= backoffDelayMs(attempt, { random: () => 1 }));
    }
    for (let attempt = 10; attempt < 40; attempt++) assert.ok(backoffDelayMs(attempt, { random: () => 0 }) >= 150_000);
  });

  test('full jitter waits anywhere from 0 to the exponential delay', () => {
    assert.equal(backoffDelayMs(3, { jitter: 'full', random: () => 0 }), 0);
    assert.equal(backoffDelayMs(3, { jitter: 'full', random: () => 1 }), 4000);
    for (const r of RANDOMS) {
      const d = backoffDelayMs(30, { jitter: 'full', random: () => r });
      assert.ok(d >= 0 && d <= 300_000 && Number.isInteger(d));
    }
  });

  test('refuses attempts below 1 and inconsistent bounds', () => {
    assert.throws(() => backoffDelayMs(0), TypeError);
    assert.throws(() => backoffDelayMs(1.5), TypeError);
    assert.throws(() => backoffDelayMs(1, { baseMs: 0 }), TypeError);
    assert.throws(() => backoffDelayMs(1, { baseMs: 2000, maxMs: 1000 }), TypeError);
  });
});
