import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ApiException } from '@kubernetes/client-node';

import { callKube, KubeApiError, kubeStatusOf, readOptional, toKubeApiError } from '../../../src/k8s/kube-api.js';

const status = (code: number, reason: string, message: string): string => JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message });

describe('toKubeApiError: coded errors for failed API calls', () => {
  const cases = [
    { code: 401, rule: 'forbidden' },
    { code: 403, rule: 'forbidden' },
    { code: 404, rule: 'api' },
    { code: 409, rule: 'conflict' },
    { code: 422, rule: 'api' },
    { code: 429, rule: 'unavailable' },
    { code: 500, rule: 'unavailable' },
    { code: 503, rule: 'unavailable' },
  ] as const;
  for (const c of cases) {
    it(`maps HTTP ${c.code} to rule ${c.rule} under ERR_CA_NOT_READY`, () => {
      const err = toKubeApiError(new ApiException(c.code, 'x', status(c.code, 'SomeReason', 'some message'), {}), 'get secret ns/x');
      assert.ok(err instanceof KubeApiError);
      assert.equal(err.code, 'ERR_CA_NOT_READY');
      assert.equal(err.rule, c.rule);
      assert.equal(err.status, c.code);
      assert.equal(err.reason, 'SomeReason');
      assert.match(err.message, /^get secret ns\/x: HTTP \d+ SomeReason: some message/);
      assert.equal(kubeStatusOf(err), c.code);
    });
  }

  it('points at RBAC when the CA itself is refused', () => {
    assert.match(toKubeApiError(new ApiException(403, 'x', '', {}), 'list namespaces').message, /RBAC/);
  });

  it('bounds the server message it quotes', () => {
    const err = toKubeApiError(new ApiException(500, 'x', status(500, 'InternalError', 'x'.repeat(5000)), {}), 'op');
    assert.ok(err.message.length < 400);
  });

  it('treats anything that is not an HTTP answer as unavailable, without a status', () => {
    const err = toKubeApiError(new Error('socket hang up'), 'op');
    assert.equal(err.rule, 'unavailable');
    assert.equal(err.status, undefined);
  });

  it('returns a KubeApiError unchanged', () => {
    const original = new KubeApiError('x', { rule: 'conflict', status: 409 });
    assert.equal(toKubeApiError(original, 'op'), original);
  });
});

describe('callKube', () => {
  it('rejects with the caller\'s abort reason, not a coded error, when the caller stops', async () => {
    const controller = new AbortController();
    const reason = new Error('shutting down');
    const pending = callKube('op', () => new Promise<never>(() => undefined), { signal: controller.signal });
    controller.abort(reason);
    await assert.rejects(pending, (err) => err === reason);
  });

  it('gives up on a call that never answers', async () => {
    const err = await callKube('get lease ns/l', () => new Promise<never>(() => undefined), { timeoutMs: 1 }).catch((e: unknown) => e);
    assert.ok(err instanceof KubeApiError);
    assert.equal(err.rule, 'unavailable');
    assert.match(err.message, /no answer within 1 ms/);
  });

  it('readOptional turns 404 into undefined and passes other failures on', async () => {
    assert.equal(await readOptional('op', () => Promise.reject(new ApiException(404, 'x', '', {}))), undefined);
    await assert.rejects(readOptional('op', () => Promise.reject(new ApiException(403, 'x', '', {}))), (err) => err instanceof KubeApiError && err.rule === 'forbidden');
  });
});
