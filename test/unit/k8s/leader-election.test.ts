import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { V1LeaseSpec } from '@kubernetes/client-node';

import { leaseHolderAt } from '../../../src/k8s/leader-election.js';

const NOW = new Date('2030-01-01T00:00:30.000Z');

describe('leaseHolderAt: who holds a lease at a given time', () => {
  const cases: readonly { readonly name: string; readonly spec: V1LeaseSpec | undefined; readonly holder: string | undefined }[] = [
    { name: 'no lease at all is free', spec: undefined, holder: undefined },
    { name: 'no holder is free', spec: { leaseDurationSeconds: 15, renewTime: new Date(NOW) }, holder: undefined },
    { name: 'an empty holder (a released lease) is free', spec: { holderIdentity: '', leaseDurationSeconds: 15, renewTime: new Date(NOW) }, holder: undefined },
    { name: 'renewed within the duration is held', spec: { holderIdentity: 'a', leaseDurationSeconds: 15, renewTime: new Date('2030-01-01T00:00:20Z') }, holder: 'a' },
    { name: 'exactly at renewTime + duration is still held', spec: { holderIdentity: 'a', leaseDurationSeconds: 15, renewTime: new Date('2030-01-01T00:00:15Z') }, holder: 'a' },
    { name: 'past renewTime + duration is free', spec: { holderIdentity: 'a', leaseDurationSeconds: 15, renewTime: new Date('2030-01-01T00:00:14.999Z') }, holder: undefined },
    // client-node hands MicroTime back as the wire string despite its typings.
    { name: 'a MicroTime string from the wire is understood', spec: { holderIdentity: 'a', leaseDurationSeconds: 15, renewTime: '2030-01-01T00:00:20.000000Z' as unknown as Date }, holder: 'a' },
    { name: 'without renewTime, acquireTime counts', spec: { holderIdentity: 'a', leaseDurationSeconds: 15, acquireTime: new Date('2030-01-01T00:00:20Z') }, holder: 'a' },
    { name: 'without any time the lease cannot be shown live', spec: { holderIdentity: 'a', leaseDurationSeconds: 15 }, holder: undefined },
    { name: 'without a duration the lease cannot be shown live', spec: { holderIdentity: 'a', renewTime: new Date(NOW) }, holder: undefined },
    { name: 'an unparsable renewTime cannot be shown live', spec: { holderIdentity: 'a', leaseDurationSeconds: 15, renewTime: 'yesterday' as unknown as Date }, holder: undefined },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.equal(leaseHolderAt(c.spec, NOW), c.holder);
    });
  }
});
