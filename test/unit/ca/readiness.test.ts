import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { caNotReadyReason } from '../../../src/ca/readiness.js';

const now = new Date('2030-01-01T00:00:00Z');
const later = new Date('2031-01-01T00:00:00Z');
const earlier = new Date('2029-01-01T00:00:00Z');

describe('CA readiness', () => {
  test('ready while the authority and the serving certificate are valid', () => {
    assert.equal(caNotReadyReason({ now, draining: false, authorityNotAfter: later, servingNotAfter: later }), undefined);
    assert.equal(caNotReadyReason({ now, draining: false, authorityNotAfter: later }), undefined);
  });

  test('not ready from the moment shutdown starts', () => {
    assert.equal(caNotReadyReason({ now, draining: true, authorityNotAfter: later, servingNotAfter: later }), 'shutting down');
  });

  test('not ready once the signing authority has expired, at its exact end too', () => {
    assert.match(caNotReadyReason({ now, draining: false, authorityNotAfter: earlier })!, /CA certificate expired at 2029-01-01T00:00:00\.000Z/);
    assert.match(caNotReadyReason({ now, draining: false, authorityNotAfter: now })!, /CA certificate expired/);
  });

  test('not ready when the serving certificate expired (renewal failing)', () => {
    assert.match(caNotReadyReason({ now, draining: false, authorityNotAfter: later, servingNotAfter: earlier })!, /serving certificate expired/);
  });
});
