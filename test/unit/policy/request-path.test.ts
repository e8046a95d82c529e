import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { normalizeRequestPath } from '../../../src/policy/request-path.js';

describe('normalizeRequestPath', () => {
  const same: [string, string][] = [
    ['/hello', '/hello'],
    ['/hello?x=1', '/hello'],
    ['/a/b/', '/a/b/'],
    ['/', '/'],
    ['//admin', '/admin'],
    ['/x/../admin', '/admin'],
    ['/./admin', '/admin'],
    ['/a/./b/../../admin', '/admin'],
    ['/../../admin', '/admin'],
    ['/%61dmin', '/admin'],
    ['/%7Euser', '/~user'],
    ['/a%20b', '/a%20b'],
    ['/a%2fb'.replace('2f', '3a'), '/a%3Ab'],
    ['/a/b/..', '/a/'],
  ];
  for (const [input, expected] of same) {
    test(`${input} → ${expected}`, () => {
      const result = normalizeRequestPath(input);
      assert.ok(result.ok, JSON.stringify(result));
      assert.equal(result.path, expected);
    });
  }

  test('keeps the query string for forwarding', () => {
    const result = normalizeRequestPath('/x/../hello?name=a%2Fb');
    assert.deepEqual(result, { ok: true, path: '/hello', query: '?name=a%2Fb' });
  });

  for (const [input, reason] of [
    ['/a%2Fadmin', /encoded slash/],
    ['/a%5cadmin', /encoded slash/],
    ['/a\\admin', /backslash/],
    ['/bad%zz', /malformed/],
    ['/bad%4', /malformed/],
    ['admin', /start with \//],
    ['*', /start with \//],
  ] as const) {
    test(`refuses ${JSON.stringify(input)}`, () => {
      const result = normalizeRequestPath(input);
      assert.equal(result.ok, false);
      if (!result.ok) assert.match(result.reason, reason);
    });
  }
});
